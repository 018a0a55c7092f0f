"""LeNet-style classifier on mnist5k: the offline feature network for FD/KID/precision-recall on MNIST-like data.

    python -m jaxgen.main --config=configs/classifier/mnist5k.py --workdir=runs/classifier_mnist5k

The sample-quality evaluator trains this config itself, once, into
$JAXGEN_CACHE_DIR/classifiers/mnist5k-<config hash> when it needs features and no
`feature_workdir` is given (see jaxgen/evals/features.py).

Expected result: test accuracy 0.976 after 1,000 steps (~3 min on 2 busy CPU cores);
see experiments/results/evaluation.md
"""

import ml_collections

from jaxgen.core.config import base_config


def get_config(arg=None):
  config = base_config()
  config.method.name = 'classifier'
  config.method.max_shift = 2
  config.model.arch = 'conv'
  config.model.channels = (16, 32)      # 28 -> 14 -> 7
  config.model.hidden = (128,)          # 128-d features

  config.data.name = 'mnist5k'

  config.train.steps = 1000
  config.train.batch_size = 128
  config.train.log_every = 100
  config.train.eval_every = 1000
  config.train.checkpoint_every = 1000
  config.train.keep_checkpoints = 1
  config.train.eval_batch_size = 100
  config.optim.name = 'adamw'
  config.optim.lr = 1e-3
  config.optim.weight_decay = 1e-4
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 100

  config.evals.classification = ml_collections.ConfigDict({'every': 1000})

  if arg == 'smoke':
    config.model.channels = (4, 8)
    config.model.hidden = (16,)
    config.train.steps = 20
    config.train.batch_size = 32
    config.train.log_every = 10
    config.train.eval_every = 20
    config.train.checkpoint_every = 20
    config.optim.warmup_steps = 0
    config.evals.classification.every = 20
  return config
