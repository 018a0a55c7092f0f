"""PixelCNN (van den Oord et al. 2016, "Pixel Recurrent Neural Networks") on 8-bit mnist5k, 256-way softmax.

    python -m jaxgen.main --config=configs/autoregressive/pixelcnn_mnist5k.py --workdir=runs/pixelcnn

The original PixelCNN stack: a 7x7 mask-A conv, 5 residual blocks of mask-B convs
(1x1 -> 3x3 -> 1x1), then two 1x1 mask-B convs to a 256-way softmax per pixel.
The data are the raw 8-bit pixels (not dequantized); `nll_nats` / `nll_bpd` are the
exact test NLL. Sampling runs one compiled lax loop of 784 network evaluations.

Expected result: `:cpu` (32 channels, 1,000 steps of 32): test 1.202 bits/dim; the default
budget is not yet measured (experiments/results/likelihood.md).
"""

import ml_collections

from jaxgen.core.config import cpu_comparison_budget, base_config, smoke_budget


def get_config(arg=None):
  config = base_config()
  config.method.name = 'pixelcnn'

  config.model.arch = 'pixelcnn'
  config.model.channels = 64
  config.model.num_layers = 5
  config.model.first_kernel = 7
  config.model.kernel = 3
  config.model.output_channels = 64
  config.model.num_classes = 0

  config.data.name = 'mnist5k'

  config.train.steps = 2000
  config.train.batch_size = 64
  config.train.log_every = 50
  config.train.eval_every = 1000
  config.train.checkpoint_every = 1000
  config.train.eval_batch_size = 100
  config.optim.lr = 1e-3
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 100
  config.optim.final_lr_ratio = 0.1
  config.optim.grad_clip = 1.0

  config.evals.nll = ml_collections.ConfigDict({'every': 1000})
  config.evals.samples = ml_collections.ConfigDict({'every': 1000, 'num': 16})

  if arg == 'cpu':  # the equal-budget family comparison (experiments/results/likelihood.md)
    config.model.channels = 32
    config.model.output_channels = 32
    cpu_comparison_budget(config)
  if arg == 'smoke':
    config.model.channels = 8
    config.model.num_layers = 1
    config.model.output_channels = 8
    smoke_budget(config, steps=4, batch_size=8, eval_examples=16, samples=2, eval_every=4)
  return config
