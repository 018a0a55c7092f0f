"""MLP classifier on the 8x8 scikit-learn digits: the offline feature network for `digits`.

    python -m jaxgen.main --config=configs/classifier/digits.py --workdir=runs/classifier_digits

configs/classifier/mnist5k.py (same optimiser, schedule and smoke variant) with
an MLP for the 8x8 images, 64-d features, and 1,500 steps of 64.

Expected result: test accuracy 0.944 after 1,500 steps (~10 s on 2 CPU cores);
see experiments/results/evaluation.md
"""

import os

from jaxgen.core.config import load_config_file


def get_config(arg=None):
  config = load_config_file(os.path.join(os.path.dirname(__file__), 'mnist5k.py') + (f':{arg}' if arg else ''))
  config.data.name = 'digits'
  config.method.max_shift = 1
  config.model.arch = 'mlp'
  config.model.channels = ()
  config.model.hidden = (16,) if arg == 'smoke' else (256, 64)   # 64-d features
  if arg != 'smoke':
    config.train.steps = 1500
    config.train.batch_size = 64
    config.train.eval_every = config.train.checkpoint_every = config.evals.classification.every = 1500
    config.train.eval_batch_size = 200
  return config
