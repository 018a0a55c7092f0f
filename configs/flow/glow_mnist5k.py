"""Small Glow on mnist5k (8-bit MNIST subset), uniformly dequantized, logit preprocessing.

    python -m jaxgen.main --config=configs/flow/glow_mnist5k.py --workdir=runs/glow_mnist5k

2 levels (28x28x1 -> squeeze 14x14x4 -> split -> squeeze 7x7x8) of depth 6 (actnorm,
invertible 1x1 conv in LU form, affine coupling with 64-channel nets), learned split and top
priors. Reports test `nll_nats` / `nll_bpd` on the discrete 8-bit data (the dequantization
term D log 256 and the logit Jacobian are included).
`--config.model.num_classes=10` makes the top prior class-conditional.

Expected result: at this budget not yet measured; after 1,500 steps of 64 (15 min on 2 CPU
cores) 1.994 bits/dim; `:cpu` (1,000 steps of 32) 2.125 bits/dim, and 1.764 with
`--config.model.width=128 --config.model.depth=12` (RealNVP's cost per step; RealNVP: 1.903); see
experiments/results/likelihood.md.
"""

import ml_collections

from jaxgen.core.config import cpu_comparison_budget, base_config, smoke_budget


def get_config(arg=None):
  config = base_config()
  config.method.name = 'glow'
  config.method.logit_alpha = 0.05

  config.model.levels = 2                 # 28 -> 14 -> 7
  config.model.depth = 6
  config.model.width = 64
  config.model.scale = 'sigmoid'
  config.model.learn_top = True
  config.model.num_classes = 0

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
  config.optim.warmup_steps = 200
  config.optim.final_lr_ratio = 0.1
  config.optim.grad_clip = 50.0

  config.evals.nll = ml_collections.ConfigDict({'every': 3000})
  config.evals.samples = ml_collections.ConfigDict({'every': 1500, 'num': 64})

  if arg == 'cpu':  # the equal-budget family comparison (experiments/results/likelihood.md)
    cpu_comparison_budget(config)
  if arg == 'smoke':
    config.model.depth = 2
    config.model.width = 8
    smoke_budget(config, steps=6, batch_size=16, eval_examples=32, samples=16)
  return config
