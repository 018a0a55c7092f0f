"""DCGAN (Radford, Metz & Chintala 2016, "Unsupervised Representation Learning with Deep Convolutional GANs").

The paper's 64x64 networks (Figure 1 and Sec. 3-4) as the official code builds them
(github.com/Newmu/dcgan_code, faces/train_uncond_dcgan.py, ngf = ndf = 128, nz = 100):

    G  z [B, 100] -> Dense (no bias) -> BN -> ReLU -> reshape 4x4x1024
       -> 5x5 stride-2 transposed conv 512, BN, ReLU -> ... 256 -> ... 128 (8, 16, 32 px)
       -> 5x5 stride-2 transposed conv C (no BN, no bias) -> tanh          (64 px)
    D  x -> 5x5 stride-2 conv 128, LeakyReLU 0.2 (no BN on the first layer)
       -> 5x5 stride-2 conv 256, BN, LeakyReLU -> 512 -> 1024               (4x4x1024)
       -> flatten -> Dense 1 (no bias): the logit

No pooling, no hidden fully connected layer; every weight ~ N(0, 0.02), BN scales ~ N(1, 0.02)
and offsets 0, as in the official code. Convolutions carry no bias (the official code has
none: each is followed by BatchNorm's offset, or is an output layer). The projection Dense
is followed by a BatchNorm over its 4*4*1024 outputs, one statistic per output unit (the
official code normalises the Dense's output before the reshape). G: 18,885,760 parameters,
D: 17,232,768 (tests/test_gan_nets.py counts them layer by layer).

Kernel size: the paper and the official code use 5x5 (padding 2; transposed convs the adjoint
of that conv, padding (2, 3) on the dilated input, so each exactly doubles); `kernel_size=4`
(padding 1) gives the variant of dcgan.torch / the PyTorch example. Both halve or double
the spatial size exactly.

Other image sizes: the number of stride-2 layers n is the number of times the size halves to a
base of at least 4 (64 -> 4 with n = 4, 32 -> 4 with n = 3, 28 -> 7 with n = 2 since 7 is odd,
8 -> 4 with n = 1). Widths keep the paper's at the high resolutions and scale with `width`
(= ngf = ndf, the paper's 128): G projects to base x base x width * 2^(n-1) and halves the
width at every transposed conv; D doubles from `width`.

Conditional (num_classes > 0): G takes [z, one_hot(label)] (a one-hot label embedding
concatenated to z, as the official conditional MNIST code: the Dense then learns one vector
per class); D adds the projection term <embed(label), h> (gan_nets.projection) on the
flattened last features h.

BatchNorm (momentum 0.9, epsilon 1e-5; the official Theano code keeps no running averages):
train=True normalises by the batch statistics and updates the running averages in the
'batch_stats' collection; train=False uses the running averages (each example on its own).
Under jit with a sharded batch the statistics are over the whole global batch.

This module also holds the small layer helpers the other convolutional GANs here share
(gan_sngan, pix2pix): flat-drawn initialisers, torch-style padded convs and BatchNorm with
logical axes.
"""

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.errors import ConfigError
from jaxgen.models import gan_nets

CONV_AXES = (None, None, 'conv_in', 'conv_out')
DENSE_AXES = ('embed', 'mlp')


# ----------------------------------------------------------------------------- layer helpers

def _flat(draw):
  """An initializer drawing a [prod(shape[:-1]), shape[-1]] matrix and reshaping it (see conv._kernel_init:
  XLA:CPU compiles the threefry draw of a 4-D array far more slowly than of a 2-D one)."""
  def init(key, shape, dtype=jnp.float32):
    flat = (math.prod(shape[:-1]), shape[-1]) if len(shape) > 2 else tuple(shape)
    return draw(key, flat, shape, dtype).reshape(shape)
  return init


def normal_init(stddev: float, mean: float = 0.0):
  """N(mean, stddev^2) entries (DCGAN's N(0, 0.02); mean 1 for BatchNorm scales)."""
  return _flat(lambda key, flat, shape, dtype: mean + stddev * jax.random.normal(key, flat, dtype))


def glorot_uniform_init(gain: float = 1.0):
  """chainer's GlorotUniform(gain): U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)), the fans of the
  full kernel shape (receptive field * channels), as SNGAN's official code initialises."""
  def draw(key, flat, shape, dtype):
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    limit = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, flat, dtype, -limit, limit)
  return _flat(draw)


def boxed(init, axes):
  return nn.with_logical_partitioning(init, axes)


def zeros(axes):
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


def conv(features: int, kernel: int, stride: int, pad: int, kernel_init, use_bias: bool = True,
         name: Optional[str] = None) -> nn.Conv:
  """A k x k conv with torch/Theano padding (pad, pad): out = floor((H + 2 pad - k) / stride) + 1."""
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                 use_bias=use_bias, kernel_init=boxed(kernel_init, CONV_AXES), bias_init=zeros(('conv_out',)),
                 param_dtype=jnp.float32, name=name)


def conv_transpose(features: int, kernel: int, stride: int, pad: int, kernel_init, use_bias: bool = True,
                   name: Optional[str] = None) -> nn.ConvTranspose:
  """The transposed conv that is the adjoint of conv(kernel, stride, pad) and maps H to stride * H.

  On the stride-dilated input it pads (k - 1 - pad, stride - 1 + pad): torch's
  ConvTranspose2d(k, stride, pad, output_padding=stride + 2 pad - k), Theano's deconv of the official
  DCGAN code. The kernel is not flipped (a re-parametrisation of the same function class).
  """
  lo, hi = kernel - 1 - pad, stride - 1 + pad
  return nn.ConvTranspose(features, (kernel, kernel), strides=(stride, stride), padding=((lo, hi), (lo, hi)),
                          use_bias=use_bias, kernel_init=boxed(kernel_init, CONV_AXES),
                          bias_init=zeros(('conv_out',)), param_dtype=jnp.float32, name=name)


def dense(features: int, kernel_init, use_bias: bool = True, name: Optional[str] = None) -> nn.Dense:
  return nn.Dense(features, use_bias=use_bias, kernel_init=boxed(kernel_init, DENSE_AXES),
                  bias_init=zeros(('mlp',)), param_dtype=jnp.float32, name=name)


def batch_norm(train: bool, axis_name: str = 'conv_out', scale_init=nn.initializers.ones_init(),
               epsilon: float = 1e-5, momentum: float = 0.9, use_scale: bool = True, use_bias: bool = True,
               name: Optional[str] = None) -> nn.BatchNorm:
  """BatchNorm over all axes but the last: batch statistics (and running-average updates in
  'batch_stats') when train, the running averages otherwise. Scale/offset carry the logical axis."""
  return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=epsilon,
                      use_scale=use_scale, use_bias=use_bias, scale_init=boxed(scale_init, (axis_name,)),
                      bias_init=zeros((axis_name,)), param_dtype=jnp.float32, name=name)


def image_shape(info, arch: str):
  """(H, C) of a square image dataset, else ConfigError."""
  shape = tuple(info.shape)
  if getattr(info, 'kind', 'image') != 'image' or len(shape) != 3 or shape[0] != shape[1]:
    raise ConfigError(f'config.model.arch={arch!r} needs square images [H, H, C]; dataset {info.name!r} '
                      f'has examples of shape {shape}. Use arch="mlp" for vector data.')
  return shape[0], shape[2]


def num_halvings(size: int, arch: str, min_halvings: int = 1):
  """(n, base): size = base * 2^n, halving while the size is even and the half is >= 4 (64 -> 4: n = 4;
  32 -> 4: n = 3; 28 -> 7: n = 2)."""
  n, base = 0, size
  while base % 2 == 0 and base // 2 >= 4:
    base //= 2
    n += 1
  if n < min_halvings:
    raise ConfigError(f'config.model.arch={arch!r} cannot build a {size}x{size} image: it needs the size to be '
                      f'base * 2^n with n >= {min_halvings} and base >= 4 (e.g. 28, 32, 64).')
  return n, base


def positive_int(model_config, key: str, default: int) -> int:
  value = model_config.get(key, default)
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ConfigError(f'config.model.{key} must be a positive integer, got {value!r}.')
  return value


# ----------------------------------------------------------------------------- DCGAN

def _dcgan_pad(kernel_size: int) -> int:
  return (kernel_size - 1) // 2   # 5 -> 2 (the paper), 4 -> 1 (dcgan.torch)


class DCGANGenerator(nn.Module):
  """z [B, Z] (+ label [B]) -> images [B, H, H, C] in [-1, 1] (module docstring)."""
  base: int                 # spatial size of the projection (4, or 7 for 28x28)
  halvings: int             # number of stride-2 transposed convs n
  channels: int             # C of the output
  width: int = 128          # ngf: the width of the last hidden layer; the projection has width * 2^(n-1)
  kernel_size: int = 5
  num_classes: int = 0

  @nn.compact
  def __call__(self, z_BZ, label_B=None, *, train: bool, **unused_schedule):
    init = normal_init(0.02)
    bn_scale = normal_init(0.02, mean=1.0)
    h = z_BZ.astype(jnp.float32)
    if self.num_classes:
      if label_B is None:
        raise ValueError('a conditional DCGAN generator (num_classes > 0) needs label_B.')
      h = jnp.concatenate([h, jax.nn.one_hot(label_B, self.num_classes, dtype=h.dtype)], axis=-1)
    top = self.width * 2 ** (self.halvings - 1)
    h = dense(self.base * self.base * top, init, use_bias=False, name='project')(h)
    h = nn.relu(batch_norm(train, 'mlp', bn_scale, name='project_bn')(h))
    h_BHWC = h.reshape(h.shape[0], self.base, self.base, top)
    pad = _dcgan_pad(self.kernel_size)
    for i in range(1, self.halvings):
      h_BHWC = conv_transpose(top // 2 ** i, self.kernel_size, 2, pad, init, use_bias=False, name=f'up_{i}')(h_BHWC)
      h_BHWC = nn.relu(batch_norm(train, scale_init=bn_scale, name=f'up_{i}_bn')(h_BHWC))
    x = conv_transpose(self.channels, self.kernel_size, 2, pad, init, use_bias=False, name='to_image')(h_BHWC)
    return jnp.tanh(x)


class DCGANDiscriminator(nn.Module):
  """images [B, H, H, C'] (C' = pack * C under PacGAN) (+ label [B]) -> logits [B] float32."""
  halvings: int
  width: int = 128          # ndf: the first layer's width; layer i has width * 2^i
  kernel_size: int = 5
  num_classes: int = 0
  norm: str = 'batch'       # 'batch' (DCGAN) | 'layer' | 'none' (WGAN-GP: no BatchNorm in the critic)

  @nn.compact
  def __call__(self, x_BHWC, label_B=None, *, train: bool, **unused_schedule):
    init = normal_init(0.02)
    bn_scale = normal_init(0.02, mean=1.0)
    pad = _dcgan_pad(self.kernel_size)
    h = x_BHWC.astype(jnp.float32)
    for i in range(self.halvings):
      h = conv(self.width * 2 ** i, self.kernel_size, 2, pad, init, use_bias=False, name=f'down_{i}')(h)
      if i > 0 and self.norm == 'batch':   # no BatchNorm on the first layer (the paper, Sec. 3)
        h = batch_norm(train, scale_init=bn_scale, name=f'down_{i}_bn')(h)
      elif i > 0 and self.norm == 'layer':  # per example over (H, W, C): WGAN-GP's recommendation
        h = nn.LayerNorm(reduction_axes=(1, 2, 3), feature_axes=-1, name=f'down_{i}_ln')(h)
      h = nn.leaky_relu(h, 0.2)
    h_BF = h.reshape(h.shape[0], -1)
    logit_B = dense(1, init, use_bias=False, name='logit')(h_BF)[:, 0]
    return logit_B.astype(jnp.float32) + gan_nets.projection(h_BF, label_B, self.num_classes)


def build(model_config, info) -> gan_nets.GanNets:
  """config.model keys: arch='dcgan', latent_dim (100), width (128), kernel_size (5; or 4), num_classes (0),
  d_norm ('batch'; 'layer' or 'none' for a WGAN-GP critic, whose penalty is per example)."""
  size, channels = image_shape(info, 'dcgan')
  halvings, base = num_halvings(size, 'dcgan')
  latent_dim = positive_int(model_config, 'latent_dim', 100)
  width = positive_int(model_config, 'width', 128)
  kernel_size = model_config.get('kernel_size', 5)
  if kernel_size not in (4, 5):
    raise ConfigError(f'config.model.kernel_size must be 5 (the DCGAN paper) or 4 (dcgan.torch), got {kernel_size!r}.')
  d_norm = model_config.get('d_norm', 'batch')
  if d_norm not in ('batch', 'layer', 'none'):
    raise ConfigError(f"config.model.d_norm must be 'batch', 'layer' or 'none', got {d_norm!r}.")
  classes = gan_nets.num_classes(model_config, info)
  return gan_nets.GanNets(
      generator=DCGANGenerator(base=base, halvings=halvings, channels=channels, width=width,
                               kernel_size=kernel_size, num_classes=classes),
      discriminator=DCGANDiscriminator(halvings=halvings, width=width, kernel_size=kernel_size,
                                       num_classes=classes, norm=d_norm),
      latent_shape=(latent_dim,))
