"""Anomaly detection with an autoencoder: configs/classical/autoencoder_mnist5k.py trained without
the digit 0, scored by the squared reconstruction error.

    python -m jaxgen.main --config=configs/classical/autoencoder_mnist5k_anomaly.py --workdir=runs/classical/ae_anomaly

The same protocol as configs/vae/mnist5k_anomaly.py: the model never sees a 0 in training;
`ood_auroc` then reports how well the per-example squared reconstruction error (the Method
contract's `anomaly_score` for families with an encoder) separates the 450 test digits 1-9
from the held-out 0s, uniform noise, inverted and upside-down digits (jaxgen/evals/anomaly.py).

Expected result: after 1,500 steps of 128 (one run, seed 0), ood_auroc_heldout 0.878, noise 1.000,
inverted 1.000, flipped 0.848 (the VAE of configs/vae/mnist5k_anomaly.py, scored by its IWAE NLL:
0.889, 1.000, 1.000, 0.653; experiments/results/evaluation.md). 6.2 min of CPU time.
"""

import os

import ml_collections

from jaxgen.core.config import load_config_file


def get_config(arg=None):
  """configs/classical/autoencoder_mnist5k.py (same network, budget and smoke variant) without the 0s,
  plus ood_auroc."""
  base = os.path.join(os.path.dirname(__file__), 'autoencoder_mnist5k.py')
  config = load_config_file(base + (f':{arg}' if arg else ''))
  config.data.exclude_labels = (0,)
  if arg != 'smoke':
    config.evals.restoration.num = 450  # the test digits 1-9: each once
  config.evals.ood_auroc = ml_collections.ConfigDict({
      'every': config.train.steps, 'ood': ('heldout', 'noise', 'inverted', 'flipped'),
      'max_examples': 500 if arg != 'smoke' else 16})
  return config
