"""Multi-scale RealNVP on mnist5k (8-bit MNIST subset), uniformly dequantized, logit preprocessing.

    python -m jaxgen.main --config=configs/flow/realnvp_mnist5k.py --workdir=runs/realnvp_mnist5k

Two scales (28x28x1: 3 checkerboard couplings, squeeze to 14x14x4, 3 channel couplings,
factor out 2 channels; 14x14x2: 4 checkerboard couplings), ResNet coupling nets of 32
channels and 2 blocks. Reports test `nll_nats` / `nll_bpd` on the discrete 8-bit data
(the dequantization term D log 256 and the logit Jacobian are included).

Expected result: `:cpu` (1,000 steps of 32): test 1.903 bits/dim; the default budget is not yet
measured (experiments/results/likelihood.md).
"""

import ml_collections

from jaxgen.core.config import cpu_comparison_budget, base_config, smoke_budget


def get_config(arg=None):
  config = base_config()
  config.method.name = 'realnvp'
  config.method.logit_alpha = 0.05

  config.model.num_scales = 2             # 28 -> 14
  config.model.width = 32
  config.model.num_blocks = 2
  config.model.scale = 'tanh'

  config.data.name = 'mnist5k'
  config.data.dequantize = True

  config.train.steps = 3000
  config.train.batch_size = 64
  config.train.log_every = 50
  config.train.eval_every = 1500
  config.train.checkpoint_every = 1500
  config.train.eval_batch_size = 100
  config.optim.lr = 1e-3
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 100
  config.optim.final_lr_ratio = 0.1
  config.optim.grad_clip = 100.0

  config.evals.nll = ml_collections.ConfigDict({'every': 3000})
  config.evals.samples = ml_collections.ConfigDict({'every': 1500, 'num': 64})

  if arg == 'cpu':  # the equal-budget family comparison (experiments/results/likelihood.md)
    cpu_comparison_budget(config)
  if arg == 'smoke':
    config.model.width = 4
    config.model.num_blocks = 1
    smoke_budget(config, steps=6, batch_size=16, eval_examples=32, samples=16)
  return config
