"""PixelCNN++ (Salimans et al. 2017) on 8-bit mnist5k: a CPU-sized model, discretized logistic mixture.

    python -m jaxgen.main --config=configs/autoregressive/pixelcnnpp_mnist5k.py --workdir=runs/pixelcnnpp_mnist5k

The PixelCNN++ architecture of configs/autoregressive/pixelcnnpp_cifar10.py (down-shifted /
down-right-shifted convs, gated resnets, 3 resolutions 28 -> 14 -> 7 with long skips,
weight norm, dropout) shrunk to fit a few thousand CPU steps: 2 blocks per stage and stream,
32 filters, a mixture of 5 logistics per pixel (3 * 5 = 15 outputs per pixel for grey).
The data are the raw 8-bit pixels (not dequantized); `nll_nats` / `nll_bpd` are the exact
test NLL (dropout off, EMA parameters). Sampling is one compiled lax loop of 784 network
evaluations.

Expected result: `:cpu` (16 filters, 1,000 steps of 32, no EMA): test 1.288 bits/dim; the default
budget is not yet measured (experiments/results/likelihood.md).
"""

import ml_collections

from jaxgen.core.config import cpu_comparison_budget, base_config, smoke_budget


def get_config(arg=None):
  config = base_config()
  config.method.name = 'pixelcnnpp'

  config.model.nr_resnet = 2
  config.model.nr_filters = 32
  config.model.nr_logistic_mix = 5
  config.model.dropout = 0.1
  config.model.weight_norm = True
  config.model.num_classes = 0

  config.data.name = 'mnist5k'

  config.train.steps = 3000
  config.train.batch_size = 32
  config.train.log_every = 50
  config.train.eval_every = 1000
  config.train.checkpoint_every = 1000
  config.train.eval_batch_size = 100
  config.train.ema_decay = 0.999
  config.optim.lr = 1e-3
  config.optim.b1 = 0.95
  config.optim.b2 = 0.9995
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 100
  config.optim.final_lr_ratio = 0.1
  config.optim.grad_clip = 1.0

  config.evals.nll = ml_collections.ConfigDict({'every': 1000})
  config.evals.samples = ml_collections.ConfigDict({'every': 1000, 'num': 16})

  if arg == 'cpu':  # the equal-budget family comparison (experiments/results/likelihood.md)
    config.model.nr_filters = 16
    cpu_comparison_budget(config)
  if arg == 'smoke':
    config.model.nr_resnet = 1
    config.model.nr_filters = 8
    config.model.nr_logistic_mix = 2
    smoke_budget(config, steps=4, batch_size=8, eval_examples=16, samples=2, eval_every=4)
  return config
