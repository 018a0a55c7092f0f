"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders") on 8-bit mnist5k.

    python -m jaxgen.main --config=configs/autoregressive/gated_pixelcnn_mnist5k.py --workdir=runs/gated_pixelcnn

Vertical and horizontal stacks (no blind spot), tanh * sigmoid gates, residual
horizontal stack: a 7x7 first layer then 5 gated 3x3 layers, 64 channels, and a
256-way softmax per pixel on the raw 8-bit data. `nll_nats` / `nll_bpd` are the exact
test NLL. Budget and optimizer as configs/autoregressive/pixelcnn_mnist5k.py.

Expected result: `:cpu` (16 channels, 1,000 steps of 32): test 1.201 bits/dim; the default
budget (64 channels, 20 s per step here) is not yet measured (experiments/results/likelihood.md).
"""

import os

from jaxgen.core.config import load_config_file


def get_config(arg=None):
  """configs/autoregressive/pixelcnn_mnist5k.py (same widths, budget and smoke variant) with arch='gated'.

  The :smoke variant has only the first gated layer (one layer of each stack).
  """
  config = load_config_file(os.path.join(os.path.dirname(__file__), 'pixelcnn_mnist5k.py') + (f':{arg}' if arg else ''))
  config.model.arch = 'gated'
  if arg == 'cpu':  # the equal-budget family comparison (experiments/results/likelihood.md)
    config.model.channels = 16   # 32 would take 2.7 s per step of 32 here
  if arg == 'smoke':
    config.model.num_layers = 0  # the first gated layer only (both stacks): XLA:CPU compiles fast
  return config
