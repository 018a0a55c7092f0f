"""DCGAN and WGAN-GP on mnist5k (28x28 digits): the CPU-sized image GANs of experiments/results/gan.md.

    python -m jaxgen.main --config=configs/gan/dcgan_mnist5k.py --workdir=runs/gan/dcgan
    python -m jaxgen.main --config=configs/gan/dcgan_mnist5k.py:wgan_gp --workdir=runs/gan/wgan_gp

`dcgan` (default): the DCGAN paper's architecture (jaxgen/models/gan_dcgan.py: 5x5 stride-2
(transposed) convs, BatchNorm, ReLU / leaky ReLU 0.2, tanh output, N(0, 0.02) init) at 28x28
(7 -> 14 -> 28) with ngf = ndf = 32, latent 100, the non-saturating loss, Adam 2e-4 (b1 0.5),
batch 64.
`wgan_gp`: the same generator with the WGAN-GP recipe (Gulrajani et al. 2017): Wasserstein loss,
gradient penalty 10, 5 critic updates per generator update on fresh real micro-batches of 64,
a critic with layer norm instead of BatchNorm (the paper's recommendation), Adam 1e-4
(b1 0.5, b2 0.9).
`:smoke` (either: `:dcgan,smoke`, `:wgan_gp,smoke`) is a seconds-long run for the tests.

Evaluation: sample_quality with the offline LeNet features (FD, KID, precision/recall, IS on
10,000 samples against the training split) and 64-sample grids.
Expected result: see experiments/results/gan.md.
"""

import ml_collections

from jaxgen.core.config import base_config, smoke_budget


def get_config(arg=None):
  parts = (arg or 'dcgan').split(',')
  variant = parts[0] if parts[0] in ('dcgan', 'wgan_gp') else 'dcgan'
  if any(p not in ('dcgan', 'wgan_gp', 'smoke') for p in parts):
    raise ValueError(f'configs/gan/dcgan_mnist5k.py takes "[dcgan|wgan_gp][,smoke]", got {arg!r}.')
  config = base_config()
  config.method.name = 'gan'
  config.method.loss = 'nonsaturating'
  config.method.n_critic = 1
  config.method.pack = 1

  config.model.arch = 'dcgan'
  config.model.latent_dim = 100
  config.model.width = 32
  config.model.kernel_size = 5
  config.model.d_norm = 'batch'
  config.model.num_classes = 0

  config.data.name = 'mnist5k'

  config.train.steps = 3000
  config.train.batch_size = 64
  config.train.log_every = 50
  config.train.eval_every = 3000
  config.train.checkpoint_every = 1000
  config.optim.lr = 2e-4
  config.optim.b1 = 0.5
  config.optim.b2 = 0.999
  config.optim_d = config.optim.copy_and_resolve_references()

  if variant == 'wgan_gp':
    config.method.loss = 'wasserstein'
    config.method.gp_weight = 10.0
    config.method.n_critic = 5
    config.model.d_norm = 'layer'
    config.train.batch_size = 5 * 64
    for optim in (config.optim, config.optim_d):
      optim.lr, optim.b1, optim.b2 = 1e-4, 0.5, 0.9

  config.evals.samples = ml_collections.ConfigDict({'every': 3000, 'num': 64})
  config.evals.sample_quality = ml_collections.ConfigDict({'every': 3000, 'features': 'classifier',
                                                           'num_samples': 10000})
  if 'smoke' in parts:
    config.model.width = 4
    config.model.latent_dim = 8
    del config.evals['sample_quality']  # its feature classifier takes minutes to train
    smoke_budget(config, steps=4, batch_size=8 * config.method.n_critic, eval_examples=16, samples=8)
  return config
