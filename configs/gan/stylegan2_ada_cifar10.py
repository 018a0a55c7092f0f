"""StyleGAN2-ADA on CIFAR-10: the paper's `cifar` configuration (Karras et al. 2020, "Training
generative adversarial networks with limited data"; stylegan2-ada-pytorch `train.py --cfg=cifar`).

    python -m jaxgen.main --config=configs/gan/stylegan2_ada_cifar10.py --workdir=runs/stylegan2_ada_cifar10

Needs the TFDS 'cifar10' data prepared (network: `tfds build cifar10`, or set config.data.data_dir).
Class-conditional, as the official example command (`--cfg=cifar --cond=1`); the argument
`:uncond` trains the unconditional model (num_classes 0).

The `cifar` spec: batch 64 (the reference ran 2 GPUs x 32), 100,000 kimg (1,562,500 steps),
channel_base 32768 (fmaps 1) and channel_max 512 (512 channels at every resolution), a 2-layer
mapping network, minibatch-stddev group 32, Adam lr 0.0025 (betas 0, 0.99, eps 1e-8) for both
networks, R1 gamma 0.01 every 16 steps (lazy), no path-length regularisation, no style mixing, the
'orig' discriminator (no residual connections), generator EMA with a 500 kimg half-life, and ADA
(target 0.6, adjusted every 4 steps, 500 kimg for p to go from 0 to 1, pipeline 'bgc').
Parameters (official counts, derived in tests/test_stylegan2.py): conditional G 20,215,315 and
D 23,089,664; unconditional G 19,947,539 and D 20,720,641.

Not modelled here: the EMA ramp-up (ema_rampup 0.05 shortens the half-life to 5% of the images
seen early in training), fp16 layers and conv_clamp (the official --fp32 switches both off).
The Adam settings are the official G_opt_kwargs / D_opt_kwargs as train.py writes them; the
official training loop then adjusts them for lazy regularisation (lr * c, betas ** c with
c = interval / (interval + 1): D interval 16, G interval 4 even without path-length
regularisation), giving effective D lr 0.0025 * 16/17 and beta2 0.99^(16/17), G lr 0.002 and
beta2 0.99^0.8; config.method.lazy_adam makes the GAN method do the same (pl_every 4 with
pl_weight 0 keeps the generator's interval 4, as the official loop).

Expected result: the paper's record CIFAR-10 FID 2.42 (abstract; the class-conditional model),
50k samples against the training set; not reproduced here (this machine has no accelerator).
"""

import ml_collections

from jaxgen.core.config import base_config
from jaxgen.errors import ConfigError

KIMG = 100_000
BATCH = 64
EMA_KIMG = 500


def get_config(arg=None):
  if arg not in (None, '', 'uncond'):
    raise ConfigError(f"stylegan2_ada_cifar10 takes no argument or 'uncond', got {arg!r}.")
  config = base_config()
  config.method.name = 'gan'
  config.method.loss = 'nonsaturating'
  config.method.r1_gamma = 0.01
  config.method.r1_every = 16
  config.method.pl_weight = 0.0
  config.method.pl_every = 4
  config.method.ada_target = 0.6
  config.method.ada_interval = 4
  config.method.ada_kimg = 500
  config.method.augment = 'bgc'
  config.method.n_critic = 1
  config.method.pack = 1
  config.method.lazy_adam = True   # lr * c, betas ** c for lazy R1 (c = 16/17) and path length (c = 4/5)

  config.model.arch = 'stylegan2'
  config.model.latent_dim = 512
  config.model.w_dim = 512
  config.model.mapping_layers = 2
  config.model.channel_base = 32768
  config.model.channel_max = 512
  config.model.num_classes = 0 if arg == 'uncond' else 10
  config.model.style_mixing = 0.0
  config.model.mbstd_group = 32
  config.model.d_architecture = 'orig'
  config.model.d_mapping_layers = 8
  config.model.truncation_psi = 1.0
  config.model.w_avg_beta = 0.995

  config.data.name = 'cifar10'

  config.train.batch_size = BATCH
  config.train.steps = KIMG * 1000 // BATCH
  config.train.log_every = 100
  config.train.eval_every = 50_000
  config.train.checkpoint_every = 10_000
  config.train.eval_batch_size = 500
  config.train.ema_decay = 0.5 ** (BATCH / (EMA_KIMG * 1000))

  config.optim.name = 'adam'
  config.optim.lr = 0.0025
  config.optim.b1 = 0.0
  config.optim.b2 = 0.99
  config.optim.eps = 1e-8
  config.optim.schedule = 'constant'
  config.optim_d = config.optim.copy_and_resolve_references()

  config.evals.samples = ml_collections.ConfigDict({'every': 50_000, 'num': 64})
  # fid50k_full: 50,000 samples against the whole training split, Inception features.
  config.evals.sample_quality = ml_collections.ConfigDict({'every': 200_000, 'features': 'inception',
                                                           'num_samples': 50_000, 'reference_split': 'train'})
  return config
