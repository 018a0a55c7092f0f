"""DCGAN on 64x64 CelebA faces: the paper's networks and training (Radford, Metz & Chintala 2016).

    python -m jaxgen.main --config=configs/gan/dcgan_celeba64.py --workdir=runs/dcgan_celeba64

Needs the TFDS 'celeb_a' data prepared (network: `tfds build celeb_a`, or set config.data.data_dir);
images are center-cropped and resized to 64x64 (config.data.image_size). There is no `:smoke`
variant: no offline data has 64x64 faces (the mnist5k GAN configs exercise the same code paths).

The paper's setup (Sec. 3-4 and the official code, github.com/Newmu/dcgan_code faces/):
  G  z ~ 100-d -> project and reshape 4x4x1024 -> four 5x5 stride-2 transposed convs
     512 -> 256 -> 128 -> 3, BatchNorm + ReLU, tanh out                    18,885,760 parameters
  D  four 5x5 stride-2 convs 128 -> 256 -> 512 -> 1024, LeakyReLU 0.2, BatchNorm
     except on the first, flatten, one sigmoid logit                       17,232,768 parameters
  (both asserted in tests/test_gan_nets.py; jaxgen/models/gan_dcgan.py has the details)
  weights N(0, 0.02); the non-saturating GAN loss; one D and one G update per step; Adam
  lr 2e-4, beta1 0.5 (beta2 0.999) for both nets; minibatch 128; no EMA.
Training length: the official faces script runs 25 epochs; 25 epochs of CelebA's 162,770
training images at 128 per step are 31,790 steps, hence 32,000.

Not reproduced from the official code: its L2 weight decay of 1e-5 (not in the paper) and its
uniform z ~ U(-1, 1) (the method draws z ~ N(0, I)). The paper reports no FID; expected result:
recognisable faces in the sample grids after a few thousand steps.
"""

import ml_collections

from jaxgen.core.config import base_config
from jaxgen.errors import ConfigError


def get_config(arg=None):
  if arg:
    raise ConfigError(f'configs/gan/dcgan_celeba64.py has no variant {arg!r} (there is no :smoke: no offline '
                      '64x64 face data).')
  config = base_config()
  config.method.name = 'gan'
  config.method.loss = 'nonsaturating'
  config.method.n_critic = 1
  config.method.pack = 1

  config.model.arch = 'dcgan'
  config.model.latent_dim = 100
  config.model.width = 128
  config.model.kernel_size = 5
  config.model.num_classes = 0

  config.data.name = 'celeb_a'
  config.data.image_size = 64        # center crop, then resize to 64x64
  config.data.eval_split = 'test'

  config.train.steps = 32_000
  config.train.batch_size = 128
  config.train.log_every = 100
  config.train.eval_every = 2000
  config.train.checkpoint_every = 2000
  config.train.eval_batch_size = 500
  config.train.ema_decay = 0.0

  config.optim.name = 'adam'
  config.optim.lr = 2e-4
  config.optim.b1 = 0.5
  config.optim.b2 = 0.999
  config.optim.schedule = 'constant'
  config.optim.warmup_steps = 0
  config.optim.grad_clip = 0.0
  config.optim.weight_decay = 0.0
  config.optim_d = config.optim.copy_and_resolve_references()   # the discriminator's Adam: the same

  config.evals.samples = ml_collections.ConfigDict({'every': 2000, 'num': 64})
  return config
