"""SNGAN (Miyato, Kataoka, Koyama & Yoshida 2018, "Spectral Normalization for GANs") networks.

Spectral normalisation. Every weight of the discriminator (conv, dense and the projection's class
embedding) is used as W / sigma(W), sigma the largest singular value of W reshaped to a matrix
[k*k*c_in, c_out] (the same sigma as chainer's [c_out, c_in*k*k]), estimated by power
iteration: v = W u / |W u|, u = W^T v / |W^T v|, sigma = v^T W u, with u and v held constant
for the gradient (the paper's Algorithm 1; the gradient flows through sigma's W). u persists
between steps in the 'batch_stats' collection (with the latest sigma, for monitoring):
`update_stats=True` (train=True) stores the iterated u; `update_stats=False` iterates from the
stored u without storing, so evaluation is deterministic (as chainer's SN links). flax's
nn.SpectralNorm would do this but fails on logically partitioned (boxed) parameters, hence the
small SNDense / SNConv / SNEmbed here.

arch='sngan_cnn': the paper's standard CNN (Table 3; M = 32 -> M_g = 4), widths from `width`
(the paper's 512) and `d_width` (default `width`):
    G  z -> Dense -> BN -> ReLU -> reshape M_g x M_g x 512
       -> 4x4 stride-2 deconv 256, BN, ReLU -> 128 -> 64 -> 3x3 conv C -> tanh
    D  3x3 conv 64, 4x4 s2 conv 64, 3x3 128, 4x4 s2 128, 3x3 256, 4x4 s2 256, 3x3 512
       (all LeakyReLU 0.1, spectrally normalised, no BN) -> flatten -> SN Dense 1
The official chainer code (chainer-gan-lib DCGANGenerator) is followed where the table is
silent: N(0, 0.02) weights, biases on every layer, the first BatchNorm over the Dense's
M_g*M_g*512 outputs (one statistic per unit), chainer's BN (decay 0.9, eps 2e-5). (chainer-gan-lib's
SNDCGANDiscriminator widens at the stride-2 convs, 64-128-128-256-256-512-512, with slope 0.2;
this follows the paper's table.)

arch='sngan_resnet': the paper's CIFAR ResNet (Table 4; sngan_projection's resnet_32.py /
snresnet_32.py), `width` the generator's 256 and `d_width` (default width // 2) the
discriminator's 128:
    G  z -> Dense 4x4x256 -> 3 x ResBlock up 256 -> BN -> ReLU -> 3x3 conv C -> tanh
       ResBlock up: BN, ReLU, nearest x2, 3x3 conv, BN, ReLU, 3x3 conv; shortcut nearest x2, 1x1 conv
    D  OptimizedBlock down 128, ResBlock down 128, ResBlock 128, ResBlock 128, ReLU,
       global *sum* pooling, SN Dense 1 (no bias)
       ResBlock: ReLU, 3x3 conv, ReLU, 3x3 conv (+ 2x2 avg-pool); shortcut 1x1 conv (+ avg-pool)
       when it downsamples or changes width, identity otherwise
       OptimizedBlock (the first): 3x3 conv, ReLU, 3x3 conv, avg-pool; shortcut avg-pool, 1x1 conv
  Glorot-uniform weights (gain sqrt(2) in the residual branches, 1 elsewhere), as the official code.

Sizes: G has n up-sampling stages from base = size / 2^n (32 -> 4 with n = 3, 28 -> 7 with n = 2,
48 -> 6 with n = 3: the halving rule of gan_dcgan.num_halvings). The CNN keeps the paper's
widths at the high resolutions (G starts at width * 2^(n-3), D ends at d_width * 2^(n-3)); the
ResNet D always downsamples twice (32 -> 8, 28 -> 7), as on CIFAR.

Conditional (num_classes > 0), the projection-discriminator paper's way (Miyato & Koyama 2018):
D adds <SN-embed(label), h> on the pooled (ResNet) or flattened (CNN) features; G uses
*conditional BatchNorm* (per-class scale and offset, initialised 1 and 0) in place of every
BatchNorm except the ResNet G's last (as sngan_projection's resnet_32.py).
"""

from typing import Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.errors import ConfigError
from jaxgen.models import gan_nets
from jaxgen.models.gan_dcgan import (CONV_AXES, DENSE_AXES, batch_norm, boxed, conv, conv_transpose, dense,
                                     glorot_uniform_init, image_shape, normal_init, num_halvings, positive_int,
                                     zeros)

# float32 matrix-vector products in the power iteration (no reduced-precision passes on GPU/TPU).
_HIGHEST = jax.lax.Precision.HIGHEST
# chainer.links.BatchNormalization's defaults (the official SNGAN code).
_BN = dict(epsilon=2e-5, momentum=0.9)


def _l2_normalize(x, eps):
  return x / (jnp.sqrt(jnp.sum(x * x)) + eps)


def spectral_normalize(module: nn.Module, w, update_stats: bool, power_iterations: int = 1, eps: float = 1e-12):
  """w / sigma(w) for `module`'s weight w (any rank; the matrix is w reshaped to [-1, w.shape[-1]]).

  Keeps the right singular vector estimate u [w.shape[-1]] and the latest sigma in `module`'s
  'batch_stats' collection; `power_iterations` rounds of power iteration per call, from the stored u.
  """
  if power_iterations < 1:
    raise ValueError(f'spectral normalisation needs power_iterations >= 1, got {power_iterations}.')
  w_KN = w.reshape(-1, w.shape[-1])
  u_var = module.variable('batch_stats', 'u',
                          lambda: _l2_normalize(jax.random.normal(module.make_rng('params'), (w.shape[-1],)), eps))
  sigma_var = module.variable('batch_stats', 'sigma', lambda: jnp.ones((), jnp.float32))
  u_N = u_var.value
  for _ in range(power_iterations):
    v_K = _l2_normalize(jnp.matmul(w_KN, u_N, precision=_HIGHEST), eps)
    u_N = _l2_normalize(jnp.matmul(v_K, w_KN, precision=_HIGHEST), eps)
  u_N, v_K = jax.lax.stop_gradient(u_N), jax.lax.stop_gradient(v_K)
  sigma = jnp.matmul(v_K, jnp.matmul(w_KN, u_N, precision=_HIGHEST), precision=_HIGHEST)
  if update_stats:
    u_var.value = u_N
    sigma_var.value = jax.lax.stop_gradient(sigma)
  return w / jnp.where(sigma > 0, sigma, 1.0)   # an all-zero w stays zero


class SNDense(nn.Module):
  """Dense layer x @ (W / sigma(W)) + b; kernel axes ('embed', 'mlp')."""
  features: int
  use_bias: bool = True
  power_iterations: int = 1
  kernel_init: nn.initializers.Initializer = normal_init(0.02)

  @nn.compact
  def __call__(self, x, *, update_stats: bool):
    kernel = self.param('kernel', boxed(self.kernel_init, DENSE_AXES), (x.shape[-1], self.features), jnp.float32)
    kernel = spectral_normalize(self, kernel, update_stats, self.power_iterations)
    y = jnp.matmul(x.astype(jnp.float32), kernel)
    if self.use_bias:
      y = y + self.param('bias', zeros(('mlp',)), (self.features,), jnp.float32).reshape((1,) * (y.ndim - 1) + (-1,))
    return y


class SNConv(nn.Module):
  """2-D conv with the kernel W / sigma(W) (W as [k*k*c_in, c_out]); NHWC, kernel axes CONV_AXES.

  padding: an int p (torch's (p, p) on both spatial axes), 'SAME' or 'VALID'.
  """
  features: int
  kernel_size: int = 3
  stride: int = 1
  padding: Union[int, str] = 1
  use_bias: bool = True
  power_iterations: int = 1
  kernel_init: nn.initializers.Initializer = normal_init(0.02)

  @nn.compact
  def __call__(self, x_BHWC, *, update_stats: bool):
    k = self.kernel_size
    kernel = self.param('kernel', boxed(self.kernel_init, CONV_AXES), (k, k, x_BHWC.shape[-1], self.features),
                        jnp.float32)
    kernel = spectral_normalize(self, kernel, update_stats, self.power_iterations)
    padding = self.padding if isinstance(self.padding, str) else ((self.padding,) * 2,) * 2
    y = jax.lax.conv_general_dilated(x_BHWC.astype(jnp.float32), kernel, (self.stride, self.stride), padding,
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    if self.use_bias:
      y = y + self.param('bias', zeros(('conv_out',)), (self.features,), jnp.float32)[None, None, None, :]
    return y


class SNEmbed(nn.Module):
  """Class embedding rows of E / sigma(E), E [num_classes, features] (the projection D's SNEmbedID)."""
  num_classes: int
  features: int
  power_iterations: int = 1
  embedding_init: nn.initializers.Initializer = glorot_uniform_init()

  @nn.compact
  def __call__(self, label_B, *, update_stats: bool):
    table = self.param('embedding', boxed(self.embedding_init, ('vocab', 'embed')),
                       (self.num_classes, self.features), jnp.float32)
    return spectral_normalize(self, table, update_stats, self.power_iterations)[label_B]


def sn_projection(features_BF, label_B, num_classes: int, power_iterations: int, update_stats: bool):
  """<SN-embed(label), h> [B] (0 when unconditional); call inside a compact discriminator."""
  if not num_classes or label_B is None:
    return jnp.zeros(features_BF.shape[:1], jnp.float32)
  embed_BF = SNEmbed(num_classes, features_BF.shape[-1], power_iterations, name='label_projection')(
      label_B, update_stats=update_stats)
  return jnp.sum(embed_BF * features_BF, axis=-1)


class ConditionalBatchNorm(nn.Module):
  """BatchNorm whose scale and offset are per class (conditional BN) when num_classes > 0, else plain.

  Normalises over all axes but the last (batch statistics when train, running averages otherwise),
  then y = gamma[label] * x_hat + beta[label], gamma initialised 1 and beta 0.
  """
  num_classes: int = 0
  axis_name: str = 'conv_out'
  scale_init: nn.initializers.Initializer = nn.initializers.ones_init()

  @nn.compact
  def __call__(self, x, label_B=None, *, train: bool):
    if not self.num_classes:
      return batch_norm(train, self.axis_name, self.scale_init, name='bn', **_BN)(x)
    if label_B is None:
      raise ValueError('a conditional generator (num_classes > 0) needs label_B.')
    x = batch_norm(train, self.axis_name, use_scale=False, use_bias=False, name='bn', **_BN)(x)
    c = x.shape[-1]
    gamma = self.param('scale', boxed(nn.initializers.ones_init(), (None, self.axis_name)), (self.num_classes, c),
                       jnp.float32)[label_B]
    beta = self.param('bias', zeros((None, self.axis_name)), (self.num_classes, c), jnp.float32)[label_B]
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (c,)
    return gamma.reshape(shape) * x + beta.reshape(shape)


def _upsample2(x_BHWC):
  """Nearest-neighbour x2 (chainer's unpooling_2d(2, cover_all=False))."""
  return jnp.repeat(jnp.repeat(x_BHWC, 2, axis=1), 2, axis=2)


def _avg_pool2(x_BHWC):
  return nn.avg_pool(x_BHWC, (2, 2), strides=(2, 2))


# ----------------------------------------------------------------------------- standard CNN (Table 3)

class SNGANCNNGenerator(nn.Module):
  """z [B, Z] (+ label [B]) -> [B, H, H, C] in [-1, 1]: Dense, n 4x4 stride-2 deconvs, 3x3 conv, tanh."""
  base: int
  halvings: int
  channels: int
  width: int = 512          # the width at M_g for n = 3 (the paper's 512)
  num_classes: int = 0

  @nn.compact
  def __call__(self, z_BZ, label_B=None, *, train: bool, **unused_schedule):
    init = normal_init(0.02)
    top = self.width * 2 ** (self.halvings - 1) // 4
    h = dense(self.base * self.base * top, init, name='project')(z_BZ.astype(jnp.float32))
    h = nn.relu(ConditionalBatchNorm(self.num_classes, 'mlp', name='project_bn')(h, label_B, train=train))
    h = h.reshape(h.shape[0], self.base, self.base, top)
    for i in range(1, self.halvings + 1):
      h = conv_transpose(top // 2 ** i, 4, 2, 1, init, name=f'up_{i}')(h)
      h = nn.relu(ConditionalBatchNorm(self.num_classes, name=f'up_{i}_bn')(h, label_B, train=train))
    return jnp.tanh(conv(self.channels, 3, 1, 1, init, name='to_image')(h))


class SNGANCNNDiscriminator(nn.Module):
  """[B, H, H, C'] (+ label) -> logits [B]: (3x3 conv, 4x4 s2 conv) x n, 3x3 conv, SN Dense; LeakyReLU 0.1."""
  halvings: int
  width: int = 512          # the last conv's width for n = 3 (the paper's 512; the first is width / 8)
  num_classes: int = 0
  power_iterations: int = 1

  @nn.compact
  def __call__(self, x_BHWC, label_B=None, *, train: bool, **unused_schedule):
    sn = dict(power_iterations=self.power_iterations)
    first = self.width // 8   # the paper's 64 at full resolution, doubling after every stride-2 conv
    h = x_BHWC.astype(jnp.float32)
    for i in range(self.halvings):
      h = nn.leaky_relu(SNConv(first * 2 ** i, 3, 1, 1, name=f'conv_{i}_0', **sn)(h, update_stats=train), 0.1)
      h = nn.leaky_relu(SNConv(first * 2 ** i, 4, 2, 1, name=f'conv_{i}_1', **sn)(h, update_stats=train), 0.1)
    h = nn.leaky_relu(SNConv(first * 2 ** self.halvings, 3, 1, 1, name=f'conv_{self.halvings}_0', **sn)(
        h, update_stats=train), 0.1)
    h_BF = h.reshape(h.shape[0], -1)
    logit_B = SNDense(1, name='logit', **sn)(h_BF, update_stats=train)[:, 0]
    return logit_B + sn_projection(h_BF, label_B, self.num_classes, self.power_iterations, train)


# ----------------------------------------------------------------------------- ResNet (Table 4)

class GenBlock(nn.Module):
  """SNGAN's generator ResBlock with upsampling: BN, ReLU, up x2, conv3x3, BN, ReLU, conv3x3 + up x2, conv1x1."""
  features: int
  num_classes: int = 0

  @nn.compact
  def __call__(self, x_BHWC, label_B, *, train: bool):
    h = nn.relu(ConditionalBatchNorm(self.num_classes, name='bn_1')(x_BHWC, label_B, train=train))
    h = conv(self.features, 3, 1, 1, glorot_uniform_init(2 ** 0.5), name='conv_1')(_upsample2(h))
    h = nn.relu(ConditionalBatchNorm(self.num_classes, name='bn_2')(h, label_B, train=train))
    h = conv(self.features, 3, 1, 1, glorot_uniform_init(2 ** 0.5), name='conv_2')(h)
    shortcut = conv(self.features, 1, 1, 0, glorot_uniform_init(), name='shortcut')(_upsample2(x_BHWC))
    return h + shortcut


class DiscBlock(nn.Module):
  """SNGAN's discriminator ResBlock (pre-activation; `first`: the OptimizedBlock without the first ReLU)."""
  features: int
  downsample: bool
  first: bool = False
  power_iterations: int = 1

  @nn.compact
  def __call__(self, x_BHWC, *, train: bool):
    sn = dict(power_iterations=self.power_iterations)
    gain = glorot_uniform_init(2 ** 0.5)
    h = x_BHWC if self.first else nn.relu(x_BHWC)
    h = SNConv(self.features, 3, 1, 1, kernel_init=gain, name='conv_1', **sn)(h, update_stats=train)
    h = SNConv(self.features, 3, 1, 1, kernel_init=gain, name='conv_2', **sn)(nn.relu(h), update_stats=train)
    if self.downsample:
      h = _avg_pool2(h)
    shortcut = x_BHWC
    if self.first:
      shortcut = SNConv(self.features, 1, 1, 0, kernel_init=glorot_uniform_init(), name='shortcut', **sn)(
          _avg_pool2(x_BHWC), update_stats=train)
    elif self.downsample or x_BHWC.shape[-1] != self.features:
      shortcut = SNConv(self.features, 1, 1, 0, kernel_init=glorot_uniform_init(), name='shortcut', **sn)(
          x_BHWC, update_stats=train)
      if self.downsample:
        shortcut = _avg_pool2(shortcut)
    return h + shortcut


class SNGANResNetGenerator(nn.Module):
  """z [B, Z] (+ label) -> [B, H, H, C]: Dense to base x base x width, n up-blocks, BN, ReLU, conv3x3, tanh."""
  base: int
  halvings: int
  channels: int
  width: int = 256
  num_classes: int = 0

  @nn.compact
  def __call__(self, z_BZ, label_B=None, *, train: bool, **unused_schedule):
    h = dense(self.base * self.base * self.width, glorot_uniform_init(), name='project')(z_BZ.astype(jnp.float32))
    h = h.reshape(h.shape[0], self.base, self.base, self.width)
    for i in range(self.halvings):
      h = GenBlock(self.width, self.num_classes, name=f'block_{i}')(h, label_B, train=train)
    h = nn.relu(batch_norm(train, name='out_bn', **_BN)(h))
    return jnp.tanh(conv(self.channels, 3, 1, 1, glorot_uniform_init(), name='to_image')(h))


class SNGANResNetDiscriminator(nn.Module):
  """[B, H, H, C'] (+ label) -> logits [B]: 4 ResBlocks (2 down), ReLU, global sum pool, SN Dense (+ projection)."""
  width: int = 128
  num_classes: int = 0
  power_iterations: int = 1

  @nn.compact
  def __call__(self, x_BHWC, label_B=None, *, train: bool, **unused_schedule):
    sn = dict(power_iterations=self.power_iterations)
    h = DiscBlock(self.width, downsample=True, first=True, name='block_0', **sn)(x_BHWC.astype(jnp.float32),
                                                                                 train=train)
    h = DiscBlock(self.width, downsample=True, name='block_1', **sn)(h, train=train)
    h = DiscBlock(self.width, downsample=False, name='block_2', **sn)(h, train=train)
    h = DiscBlock(self.width, downsample=False, name='block_3', **sn)(h, train=train)
    h_BF = jnp.sum(nn.relu(h), axis=(1, 2))
    logit_B = SNDense(1, use_bias=False, kernel_init=glorot_uniform_init(), name='logit', **sn)(
        h_BF, update_stats=train)[:, 0]
    return logit_B + sn_projection(h_BF, label_B, self.num_classes, self.power_iterations, train)


def _d_width(model_config, default: int) -> int:
  """config.model.d_width, where 0 or absent means `default` (the paper's ratio to width)."""
  if not model_config.get('d_width', 0):
    return default
  return positive_int(model_config, 'd_width', default)


def build(model_config, info) -> gan_nets.GanNets:
  """config.model keys: arch ('sngan_cnn' | 'sngan_resnet'), latent_dim (128), width (cnn 512, resnet 256),
  d_width (cnn: width, resnet: width // 2), num_classes (0), power_iterations (1)."""
  arch = model_config.get('arch', '')
  if arch not in ('sngan_cnn', 'sngan_resnet'):
    raise ConfigError(f"gan_sngan builds arch 'sngan_cnn' or 'sngan_resnet', not {arch!r}.")
  size, channels = image_shape(info, arch)
  halvings, base = num_halvings(size, arch)
  latent_dim = positive_int(model_config, 'latent_dim', 128)
  power_iterations = positive_int(model_config, 'power_iterations', 1)
  classes = gan_nets.num_classes(model_config, info)
  if arch == 'sngan_cnn':
    width = positive_int(model_config, 'width', 512)
    d_width = _d_width(model_config, width)
    for key, value in (('width', width), ('d_width', d_width)):
      if value % 8:
        raise ConfigError(f'config.model.{key}={value}: sngan_cnn widths are width / 8 ... width (the paper: '
                          f'64 ... 512), so it must be divisible by 8.')
    generator = SNGANCNNGenerator(base, halvings, channels, width, classes)
    discriminator = SNGANCNNDiscriminator(halvings, d_width, classes, power_iterations)
  else:
    if size % 4:
      raise ConfigError(f'sngan_resnet: the discriminator halves the image twice; {size}x{size} is not divisible by 4.')
    width = positive_int(model_config, 'width', 256)
    d_width = _d_width(model_config, max(1, width // 2))
    generator = SNGANResNetGenerator(base, halvings, channels, width, classes)
    discriminator = SNGANResNetDiscriminator(d_width, classes, power_iterations)
  return gan_nets.GanNets(generator=generator, discriminator=discriminator, latent_shape=(latent_dim,))
