"""PixelCNN on dynamically binarized mnist5k: one Bernoulli logit per pixel.

    python -m jaxgen.main --config=configs/autoregressive/pixelcnn_mnist5k_binary.py --workdir=runs/pixelcnn_binary

configs/autoregressive/pixelcnn_mnist5k.py (same network, budget and smoke variant)
with `data.binarize = 'dynamic'`: training sees a fresh binarization each step, the
test split is binarized once with a fixed seed, and `nll_nats` is the exact test NLL
(full binarized MNIST, 12x more training data: PixelCNN 81.3 nats in the PixelRNN paper).

Expected result: `:cpu` (32 channels, 1,000 steps of 32): test 97.3 nats; the default budget is
not yet measured (experiments/results/likelihood.md).
"""

import os

from jaxgen.core.config import load_config_file


def get_config(arg=None):
  """configs/autoregressive/pixelcnn_mnist5k.py with binarized data (levels == 2 -> Bernoulli outputs)."""
  config = load_config_file(os.path.join(os.path.dirname(__file__), 'pixelcnn_mnist5k.py') + (f':{arg}' if arg else ''))
  config.data.binarize = 'dynamic'
  return config
