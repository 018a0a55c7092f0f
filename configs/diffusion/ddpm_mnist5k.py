"""DDPM on 8-bit mnist5k: a CPU-sized U-Net, L_simple, and the discrete-decoder likelihood bound.

    python -m jaxgen.main --config=configs/diffusion/ddpm_mnist5k.py --workdir=runs/ddpm_mnist5k

U-Net ch = 32, ch_mult (1, 2, 2) (28 -> 14 -> 7), 1 residual block per resolution, attention at
14x14, dropout 0.1, GroupNorm with 8 groups; T = 1000 linear betas 1e-4 -> 0.02 (the paper's
schedule), eps-prediction, fixed variance beta_t. Adam 2e-4 (cosine decay), EMA 0.999.
`nll_bpd` is the bound on the discrete data estimated from 50 stratified timesteps plus the
exact decoder and prior terms (method.nll_timesteps; unbiased). Samples: DDIM with 50 steps
(method.sampler='ddpm' for the full 1000-step ancestral sampler).

Expected result: `:cpu` (1,000 steps of 32, no EMA; ~50 min on 2 CPU cores): test nll_bpd
<= 2.4825 (the bound), SDEdit denoise_mse 0.0028 vs noisy_mse 0.040; the default budget
(4,000 steps of 64, ~6 h here) is not measured. See experiments/results/diffusion.md.
"""

import os

import ml_collections

from jaxgen.core.config import base_config, cpu_comparison_budget, load_config_file, smoke_budget


def get_config(arg=None):
  config = base_config()
  # The paper's diffusion (T = 1000, linear betas, eps-prediction, L_simple, variance beta_t):
  # configs/diffusion/ddpm_cifar10.py's method block, with a 50-step DDIM sampler and a
  # 50-timestep estimate of the bound.
  config.method = load_config_file(os.path.join(os.path.dirname(__file__), 'ddpm_cifar10.py')).method
  config.method.random_flip = False
  config.method.sampler = 'ddim'
  config.method.sample_steps = 50
  config.method.nll_timesteps = 50

  config.model.ch = 32
  config.model.ch_mult = (1, 2, 2)
  config.model.num_res_blocks = 1
  config.model.attn_resolutions = (14,)
  config.model.dropout = 0.1
  config.model.num_groups = 8
  config.model.num_classes = 0

  config.data.name = 'mnist5k'

  config.train.steps = 4000
  config.train.batch_size = 64
  config.train.log_every = 50
  config.train.eval_every = 2000
  config.train.checkpoint_every = 1000
  config.train.eval_batch_size = 100
  config.train.ema_decay = 0.999
  config.optim.lr = 2e-4
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 200
  config.optim.final_lr_ratio = 0.1
  config.optim.grad_clip = 1.0

  config.evals.nll = ml_collections.ConfigDict({'every': 4000})
  config.evals.samples = ml_collections.ConfigDict({'every': 2000, 'num': 64})
  config.evals.restoration = ml_collections.ConfigDict({'every': 4000, 'num': 16,
                                                        'tasks': ('inpaint', 'denoise')})

  if arg == 'cpu':  # the equal-budget family comparison (experiments/results/likelihood.md)
    # The same U-Net (a step of 32 takes ~2.5 s on 2 cores); Adam 1e-3: 2e-4 is the paper's
    # rate for 800k steps, too slow for 1,000. No EMA, like every :cpu variant.
    config.optim.lr = 1e-3
    cpu_comparison_budget(config, samples=64)
  if arg == 'smoke':
    config.method.timesteps = 20
    config.method.sample_steps = 5
    config.method.nll_timesteps = 4
    config.model.ch = 8
    config.model.ch_mult = (1, 2)
    config.model.num_groups = 4
    config.model.attn_resolutions = ()  # XLA:CPU compile time (tests/test_unet.py covers attention)
    smoke_budget(config, steps=2, batch_size=8, eval_examples=16, samples=4)
    config.evals.restoration.num = 8
  return config
