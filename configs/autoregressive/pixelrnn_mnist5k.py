"""PixelRNN with Row LSTM layers (van den Oord et al. 2016, "Pixel Recurrent Neural Networks") on 8-bit
mnist5k: a 256-way softmax per pixel on the raw pixels.

    python -m jaxgen.main --config=configs/autoregressive/pixelrnn_mnist5k.py --workdir=runs/pixelrnn

Network (jaxgen/models/pixelrnn.py, model.arch = 'rowlstm'): a 7x7 mask-A conv to a
32-feature stream, 3 residual Row LSTM layers (LSTM state h = 16 features per gate,
1 x 3 mask-B input-to-state conv, width-3 state-to-state conv over the previous row,
one lax.scan over the 28 rows), then ReLU, 1x1 mask-B conv (32), ReLU, 1x1 mask-B conv
to the output. Budget, optimizer, evaluators and smoke variant as
configs/autoregressive/pixelcnn_mnist5k.py; `nll_nats` / `nll_bpd` are the exact test NLL.

Paper vs. here: the paper's MNIST model is a 7-layer Diagonal BiLSTM with h = 16 and its
CIFAR-10 Row LSTM has 12 layers with h = 128; we keep h = 16 (stream 2h = 32, the paper's
residual layout) but use 3 layers to stay CPU-sized; `--config.model.num_layers=7` gives
the paper's depth. mnist5k has 12x less training data than MNIST.

Expected result: `:cpu` (1,000 steps of 32): test 1.191 bits/dim (experiments/results/likelihood.md).
"""

import os

from jaxgen.core.config import load_config_file


def get_config(arg=None):
  """configs/autoregressive/pixelcnn_mnist5k.py (data, budget, evals, smoke/cpu variants) with a Row LSTM."""
  config = load_config_file(os.path.join(os.path.dirname(__file__), 'pixelcnn_mnist5k.py') + (f':{arg}' if arg else ''))
  config.model.arch = 'rowlstm'
  config.model.channels = 32        # the residual stream (2h); LSTM state h = 16 per gate
  config.model.num_layers = 3       # paper (MNIST, Diagonal BiLSTM): 7
  config.model.first_kernel = 7
  config.model.kernel = 3
  config.model.output_channels = 32
  if arg == 'smoke':
    config.model.channels = 8       # h = 4
    config.model.num_layers = 1
    config.model.output_channels = 8
  return config
