"""DDPM on CIFAR-10: the paper's model and training (Ho, Jain & Abbeel 2020, Sec. 4 and Appendix B).

    python -m jaxgen.main --config=configs/diffusion/ddpm_cifar10.py --workdir=runs/ddpm_cifar10

Needs the TFDS 'cifar10' data prepared (network: `tfds build cifar10`, or set config.data.data_dir).

The paper's CIFAR-10 setup: U-Net with ch = 128, ch_mult (1, 2, 2, 2), 2 residual blocks per
resolution, self-attention at 16x16, dropout 0.1, GroupNorm (35.7M parameters, asserted in
tests/test_unet.py); T = 1000, linear betas 1e-4 -> 0.02; eps-prediction with L_simple and the
fixed variance beta_t ('large'); Adam lr 2e-4 with 5000 linear warm-up steps, batch 128, gradient
clipping at norm 1, EMA 0.9999 used for evaluation and sampling, random horizontal flips;
800k training steps (the paper trained 10.6 h on a TPU v3-8 at ~21 steps/s).

Expected result: the paper's FID 3.17 and test bits/dim <= 3.75 (L_simple); not reproduced here
(this machine has no accelerator). The likelihood evaluates every one of the 1000 terms
(method.nll_timesteps = 0) as in the paper's Table 1.
"""

import ml_collections

from jaxgen.core.config import base_config, smoke_budget


def get_config(arg=None):
  config = base_config()
  config.method.name = 'ddpm'
  config.method.timesteps = 1000
  config.method.beta_schedule = 'linear'
  config.method.beta_start = 1e-4
  config.method.beta_end = 0.02
  config.method.prediction = 'eps'
  config.method.loss = 'simple'
  config.method.variance = 'large'
  config.method.random_flip = True
  config.method.sampler = 'ddpm'
  config.method.sample_steps = 1000
  config.method.ddim_eta = 0.0
  config.method.nll_timesteps = 0

  config.model.ch = 128
  config.model.ch_mult = (1, 2, 2, 2)
  config.model.num_res_blocks = 2
  config.model.attn_resolutions = (16,)
  config.model.dropout = 0.1
  config.model.num_classes = 0
  config.model.compute_dtype = 'float32'

  config.data.name = 'cifar10'

  config.train.steps = 800_000
  config.train.batch_size = 128
  config.train.log_every = 100
  config.train.eval_every = 50_000
  config.train.checkpoint_every = 10_000
  config.train.eval_batch_size = 500
  config.train.ema_decay = 0.9999
  config.optim.name = 'adam'
  config.optim.lr = 2e-4
  config.optim.schedule = 'constant'
  config.optim.warmup_steps = 5000
  config.optim.grad_clip = 1.0

  config.evals.nll = ml_collections.ConfigDict({'every': 200_000})
  config.evals.samples = ml_collections.ConfigDict({'every': 50_000, 'num': 64})

  if arg == 'smoke':  # the code path on a tiny model (tests run it on tfds.testing.mock_data)
    config.method.timesteps = 20
    config.method.sample_steps = 20
    config.method.nll_timesteps = 4
    config.model.ch = 8
    config.model.ch_mult = (1, 2)
    config.model.num_res_blocks = 1
    config.model.num_groups = 4
    config.model.attn_resolutions = ()  # XLA:CPU compile time (tests/test_unet.py covers attention)
    smoke_budget(config, steps=2, batch_size=4, eval_examples=4, samples=2)
  return config
