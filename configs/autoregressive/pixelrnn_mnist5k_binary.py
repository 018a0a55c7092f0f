"""PixelRNN with Row LSTM layers (van den Oord et al. 2016) on dynamically binarized mnist5k: one Bernoulli
logit per pixel.

    python -m jaxgen.main --config=configs/autoregressive/pixelrnn_mnist5k_binary.py --workdir=runs/pixelrnn_binary

configs/autoregressive/pixelrnn_mnist5k.py (network, budget, smoke and cpu variants; the
paper-vs-here notes) with `data.binarize = 'dynamic'`: a fresh binarization each training
step, the test split binarized once with a fixed seed; `nll_nats` is the exact test NLL.
The paper reports the Row LSTM at 80.54 nats (PixelCNN 81.30, Diagonal BiLSTM 79.20) on
the full 60k binarized MNIST (from memory of the paper, not re-checked here); mnist5k has
12x less training data, so the numbers are not comparable.

Expected result: `:cpu` (1,000 steps of 32): test 93.9 nats (experiments/results/likelihood.md).
"""

import os

from jaxgen.core.config import load_config_file


def get_config(arg=None):
  """configs/autoregressive/pixelrnn_mnist5k.py (network, budget, evals, smoke/cpu variants) on binarized data."""
  config = load_config_file(os.path.join(os.path.dirname(__file__), 'pixelrnn_mnist5k.py') + (f':{arg}' if arg else ''))
  config.data.binarize = 'dynamic'
  return config
