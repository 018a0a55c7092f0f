"""Anomaly detection with a VAE: configs/vae/mnist5k.py trained without the digit 0, scored by its NLL.

    python -m jaxgen.main --config=configs/vae/mnist5k_anomaly.py --workdir=runs/vae_anomaly

The model never sees a 0 in training. `ood_auroc` then reports how well the
test NLL (IWAE bound, K=100 to keep five sets affordable) separates the test
digits 1-9 from: the held-out 0s, uniform noise, inverted and upside-down
digits (jaxgen/evals/anomaly.py).

Expected result: see experiments/results/evaluation.md ("Anomaly detection").
"""

import os

import ml_collections

from jaxgen.core.config import load_config_file


def get_config(arg=None):
  """configs/vae/mnist5k.py (same network, budget and smoke variant) without the digit 0, plus ood_auroc."""
  config = load_config_file(os.path.join(os.path.dirname(__file__), 'mnist5k.py') + (f':{arg}' if arg else ''))
  config.data.exclude_labels = (0,)
  if arg != 'smoke':
    config.method.eval_samples = 100
    del config.evals['sample_quality']
  config.evals.ood_auroc = ml_collections.ConfigDict({
      'every': config.train.steps, 'ood': ('heldout', 'noise', 'inverted', 'flipped'),
      'max_examples': 500 if arg != 'smoke' else 16})
  return config
