"""Class-conditional Gated PixelCNN on 8-bit mnist5k: p(x | digit label).

    python -m jaxgen.main --config=configs/autoregressive/gated_pixelcnn_mnist5k_conditional.py \
        --workdir=runs/gated_pixelcnn_conditional

configs/autoregressive/gated_pixelcnn_mnist5k.py with `model.num_classes = 10`: every
layer of both stacks gets a bias computed from the one-hot label (the paper's
V^T h). `nll_nats` / `nll_bpd` are the exact test -log p(x|y) with the data's labels;
the sample grids show the labels 0, 1, ..., 9, 0, ... in reading order.

Expected result: not yet measured (the :smoke variant trains in seconds; see tests/test_pixelcnn.py).
"""

import os

from jaxgen.core.config import load_config_file


def get_config(arg=None):
  """configs/autoregressive/gated_pixelcnn_mnist5k.py conditioned on the 10 digit labels."""
  config = load_config_file(
      os.path.join(os.path.dirname(__file__), 'gated_pixelcnn_mnist5k.py') + (f':{arg}' if arg else ''))
  config.model.num_classes = 10
  if arg != 'smoke':
    config.evals.samples.num = 20  # two of each digit
  return config
