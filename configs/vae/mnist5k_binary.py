"""Convolutional VAE on dynamically binarized mnist5k with a Bernoulli decoder.

    python -m jaxgen.main --config=configs/vae/mnist5k_binary.py --workdir=runs/vae_binary

About four minutes of training on 2 CPU cores, plus a minute for the K=1000 bound.
Training sees a fresh binarization each step; the test split is binarized once
with a fixed seed. Reports the 1000-sample IWAE bound as `nll_nats` (comparable
to binarized-MNIST numbers, though this is a 4,500-image training set).

Expected result: test NLL 97.4 nats (IWAE K=1000) after 1,500 steps, ~4.5 min on 2 CPU cores;
see experiments/results/vae.md
"""

import os

from jaxgen.core.config import load_config_file


def get_config(arg=None):
  """configs/vae/mnist5k.py (same network, budget and smoke variant) with binarized data."""
  config = load_config_file(os.path.join(os.path.dirname(__file__), 'mnist5k.py') + (f':{arg}' if arg else ''))
  config.model.decoder = 'bernoulli'
  config.data.binarize = 'dynamic'
  return config
