"""Progressive growing of GANs (Karras, Aila, Laine & Lehtinen 2018, "Progressive Growing of GANs").

Resolutions grow in stages inside one run. With n = len(channels) stages and an H x W dataset,
stage s works at (H / 2^(n-1-s)) x (W / 2^(n-1-s)): 28x28 with three stages gives 7, 14, 28;
32x32 with four gives 4, 8, 16, 32 (the base H / 2^(n-1) must be a whole number). `channels[s]`
is the width of stage s's layers.

Every layer of every resolution exists from initialisation, so parameter shapes never change,
a checkpoint restores at any stage, and resume across a stage change is exact. The stage is a
traced input: both networks run `nn.switch` (the lifted `jax.lax.switch`) over one branch per
stage, so one compiled program serves the whole run.

Generator (z, label=None, *, train, stage, alpha) -> [B, H, W, C], always at full resolution:
    h      = pixel_norm(z)  (the latent on the sphere; conditional: pixel_norm([z, embed(label)]))
    stage 0  Dense -> h0 x w0 x channels[0], lrelu, pixel_norm, conv3x3, lrelu, pixel_norm
    stage s  nearest x2, conv3x3, lrelu, pixel_norm, conv3x3, lrelu, pixel_norm (width channels[s])
    image  toRGB_s(h_s) (1x1 conv, linear: model range [-1, 1] with no tanh, as the paper);
           in a fade-in (1 - alpha) * upsample2(toRGB_{s-1}(h_{s-1})) + alpha * toRGB_s(h_s);
           then nearest-neighbour upsampled by 2^(n-1-s) to H x W.
Discriminator (x, label=None, *, train, stage, alpha) -> logits [B] (float32), x at full resolution:
    x_s    = x average-pooled 2x2, n-1-s times (to stage s's resolution)
    h      = lrelu(fromRGB_s(x_s)) (1x1 conv); for s >= 1 the block conv3x3 (channels[s]), lrelu,
             conv3x3 (channels[s-1]), lrelu, 2x2 average pool; in a fade-in blended as
             (1 - alpha) * lrelu(fromRGB_{s-1}(pool2(x_s))) + alpha * block_s(...);
             then the blocks s-1, ..., 1
    last   minibatch stddev (gan_nets.minibatch_stddev, groups of mbstd_group), conv3x3, lrelu,
           Dense (channels[0]), lrelu, Dense (1); conditional: + the projection term
           (gan_nets.projection) of the last hidden features.

Real and fake images: the method feeds real images at full resolution, and the discriminator's
own pooling brings both to the stage's resolution. The pooling is an exact pairwise average
((a + b) + (c + d)) / 4, so a generator image at stage s, which is a low-resolution image
nearest-upsampled by 2^(n-1-s), pools back to that low-resolution image bit for bit: at stage s
the discriminator compares real images pooled to the stage's resolution with the generator's
stage-resolution images, as the paper's progressive training does. The paper additionally blends
the *real* images during a fade-in ((1 - alpha) * upsample(pool2(x_s)) + alpha * x_s); that is
not done here (the discriminator cannot tell real from fake inputs): real images enter at the
stage's resolution throughout the fade-in.

Schedule (`GanNets.schedule(step)`, T = stage_steps): stage 0 (the base resolution) trains for
steps [0, T); stage s >= 1 fades in for steps [(2s-1)T, 2sT) and stabilises for [2sT, (2s+1)T):

    stage = min(floor((step + T) / (2T)), n - 1)
    alpha = clip((step - (2 * stage - 1) * T) / T, 0, 1)

so alpha rises 0, 1/T, ..., (T-1)/T through a fade-in and is 1 in stage 0, in every stabilising
phase and after the last stage's fade-in (the last stage stays with alpha 1 for the rest of the
run). A run of 2nT steps (the configs' budget) gives stage 0 T steps, every middle stage 2T and
the last stage 3T (its fade-in, then 2T at full resolution).

Equalized learning rate: every kernel is stored as N(0, 1) and scaled at run time by
gain / sqrt(fan_in) (He's constant, gain sqrt(2); gain 1 for toRGB and the discriminator's
output layer, as the paper); biases start at 0. Leaky ReLU slope 0.2 everywhere; pixel-wise feature
normalisation after every generator conv. Deviation from the official code: its generator's first
Dense (a 4x4 "conv" of the latent) uses gain sqrt(2) / 4; here it uses sqrt(2) like every hidden
layer, and a conditional generator embeds the label (N(0, 1) embedding of width latent_dim)
where the official code concatenates a one-hot vector.

`train` is accepted for the contract and unused: the networks have no dropout or batch statistics.
`stage` and `alpha` default to the last stage with alpha 1 (the fully grown networks).

Parameters: generator blocks_0 (stage 0) ... blocks_{n-1}, to_rgb_0 ... to_rgb_{n-1}; discriminator
from_rgb_0 ... from_rgb_{n-1}, blocks_0 (the last block) ... blocks_{n-1}. Conv kernels carry the
logical axes (None, None, 'conv_in', 'conv_out'), Dense kernels ('embed', 'mlp'), embeddings
('vocab', 'embed').

model keys: arch='pggan', latent_dim (128), channels ((128, 64, 32)), stage_steps (1000),
num_classes (0), mbstd_group (4; 0 or 1 = no minibatch stddev layer, as the official code).
"""

import functools
import math
import numbers
from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.errors import ConfigError
from jaxgen.models import canonical_conv, gan_nets
from jaxgen.models.unet import upsample

HE_GAIN = math.sqrt(2.0)
_CONV_AXES = (None, None, 'conv_in', 'conv_out')
_DENSE_AXES = ('embed', 'mlp')


def _unit_normal(key, shape, dtype=jnp.float32):
  """N(0, 1) drawn as a [prod(shape[:-1]), shape[-1]] matrix and reshaped (XLA:CPU compiles a 2-D
  partitionable-threefry draw much faster than a 4-D one; see jaxgen.models.conv)."""
  return jax.random.normal(key, (math.prod(shape[:-1]), shape[-1]), dtype).reshape(shape)


def lrelu(x):
  return nn.leaky_relu(x, 0.2)


def pixel_norm(x, eps: float = 1e-8):
  """x / sqrt(mean over the last axis of x^2 + eps): unit mean square over channels at every pixel."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def pool2(x_BHWC):
  """2x2 average pooling as ((a + b) + (c + d)) * 0.25: exact on 2x2 blocks of equal values, so a
  nearest-upsampled image pools back to itself bit for bit (module docstring)."""
  a, b = x_BHWC[:, 0::2, 0::2], x_BHWC[:, 0::2, 1::2]
  c, d = x_BHWC[:, 1::2, 0::2], x_BHWC[:, 1::2, 1::2]
  return ((a + b) + (c + d)) * 0.25


class EqualizedDense(nn.Module):
  """Dense layer with the equalized learning rate: y = x @ (W * gain / sqrt(fan_in)) + b, W ~ N(0, 1)."""
  features: int
  gain: float = HE_GAIN

  @nn.compact
  def __call__(self, x_BF):
    fan_in = x_BF.shape[-1]
    kernel = self.param('kernel', nn.with_logical_partitioning(_unit_normal, _DENSE_AXES),
                        (fan_in, self.features), jnp.float32)
    bias = self.param('bias', nn.with_logical_partitioning(nn.initializers.zeros_init(), ('mlp',)),
                      (self.features,), jnp.float32)
    return x_BF @ (kernel * (self.gain / math.sqrt(fan_in))) + bias[None, :]


class EqualizedConv(nn.Module):
  """k x k 'SAME' conv, stride 1, with the equalized learning rate (fan_in = k * k * C_in)."""
  features: int
  kernel_size: int = 3
  gain: float = HE_GAIN

  @nn.compact
  def __call__(self, x_BHWC):
    k, c_in = self.kernel_size, x_BHWC.shape[-1]
    kernel = self.param('kernel', nn.with_logical_partitioning(_unit_normal, _CONV_AXES),
                        (k, k, c_in, self.features), jnp.float32)
    bias = self.param('bias', nn.with_logical_partitioning(nn.initializers.zeros_init(), ('conv_out',)),
                      (self.features,), jnp.float32)
    y = canonical_conv.conv(x_BHWC, kernel * (self.gain / math.sqrt(k * k * c_in)), 'SAME')
    return y + bias[None, None, None, :]


class GBase(nn.Module):
  """Stage 0 of G: [B, L] -> [B, h0, w0, features] (Dense, lrelu, pixel norm, conv3x3, lrelu, pixel norm)."""
  base_hw: Tuple[int, int]
  features: int

  @nn.compact
  def __call__(self, h_BL):
    h0, w0 = self.base_hw
    h = pixel_norm(lrelu(EqualizedDense(h0 * w0 * self.features)(h_BL)))
    h = h.reshape(h.shape[0], h0, w0, self.features)
    return pixel_norm(lrelu(EqualizedConv(self.features)(h)))


class GBlock(nn.Module):
  """A growth block of G: nearest x2, then twice (conv3x3, lrelu, pixel norm)."""
  features: int

  @nn.compact
  def __call__(self, x_BHWC):
    h = upsample(x_BHWC, 2)
    h = pixel_norm(lrelu(EqualizedConv(self.features)(h)))
    return pixel_norm(lrelu(EqualizedConv(self.features)(h)))


class DBlock(nn.Module):
  """A block of D: conv3x3 (features), lrelu, conv3x3 (out_features), lrelu, 2x2 average pool."""
  features: int
  out_features: int

  @nn.compact
  def __call__(self, x_BHWC):
    h = lrelu(EqualizedConv(self.features)(x_BHWC))
    return pool2(lrelu(EqualizedConv(self.out_features)(h)))


class DFinal(nn.Module):
  """D's last block at the base resolution: minibatch stddev, conv3x3, lrelu, Dense, lrelu, Dense(1),
  plus the projection term when conditional. -> float32 logits [B]."""
  features: int
  mbstd_group: int = 4
  num_classes: int = 0

  @nn.compact
  def __call__(self, x_BHWC, label_B=None):
    h = x_BHWC
    if self.mbstd_group > 1:
      h = gan_nets.minibatch_stddev(h, self.mbstd_group)
    h = lrelu(EqualizedConv(self.features)(h))
    f_BF = lrelu(EqualizedDense(self.features)(h.reshape(h.shape[0], -1)))
    logit_B = EqualizedDense(1, gain=1.0)(f_BF)[:, 0].astype(jnp.float32)
    return logit_B + gan_nets.projection(f_BF, label_B, self.num_classes)


def _stage_alpha(stage, alpha, num_stages):
  """(int32 stage, float32 alpha) scalars; None = the last stage, alpha 1."""
  stage = jnp.asarray(num_stages - 1 if stage is None else stage, jnp.int32)
  alpha = jnp.asarray(1.0 if alpha is None else alpha, jnp.float32)
  if stage.ndim or alpha.ndim:
    raise ValueError(f'stage and alpha must be scalars, got shapes {stage.shape} and {alpha.shape}.')
  return stage, alpha


def _fade(old, new, alpha):
  """(1 - alpha) * old + alpha * new: exactly `old` at alpha 0 and exactly `new` at alpha 1."""
  return (1.0 - alpha) * old + alpha * new


def _switch(module, stage, branch_fn, num_stages, *operands):
  """nn.switch over one branch per stage. At init every branch runs (a stage's layers are only reached
  by some branches, and every stage's parameters must exist) and the stage's output is selected from
  theirs, so that init compiles each branch once."""
  branches = [functools.partial(branch_fn, s=s) for s in range(num_stages)]
  if module.is_initializing():
    outputs = [branch(module, *operands) for branch in branches]
    return jnp.stack(outputs)[jnp.clip(stage, 0, num_stages - 1)]
  return nn.switch(stage, branches, module, *operands)


class Generator(nn.Module):
  """PGGAN generator (module docstring): (z [B, L], label [B] | None) -> [B, H, W, C] at full resolution."""
  channels: Sequence[int]
  base_hw: Tuple[int, int]
  out_channels: int
  num_classes: int = 0
  embed_dim: int = 0           # conditional: width of the label embedding (build: latent_dim)

  def setup(self):
    n = len(self.channels)
    self.blocks = [GBase(tuple(self.base_hw), self.channels[0])] + [GBlock(c) for c in self.channels[1:]]
    self.to_rgb = [EqualizedConv(self.out_channels, kernel_size=1, gain=1.0) for _ in range(n)]
    if self.num_classes:
      self.label_embed = nn.Embed(self.num_classes, self.embed_dim, embedding_init=nn.with_logical_partitioning(
          nn.initializers.normal(1.0), ('vocab', 'embed')))

  def __call__(self, z_BZ, label_B=None, *, train: bool, stage=None, alpha=None):
    if z_BZ.ndim != 2:
      raise ValueError(f'the PGGAN generator takes latents [B, latent_dim], got shape {z_BZ.shape}.')
    h_BL = z_BZ
    if self.num_classes:
      if label_B is None:
        raise ValueError(f'this generator is conditional ({self.num_classes} classes): pass label_B.')
      h_BL = jnp.concatenate([h_BL, self.label_embed(label_B)], axis=-1)
    stage, alpha = _stage_alpha(stage, alpha, len(self.channels))
    return _switch(self, stage, _generator_branch, len(self.channels), pixel_norm(h_BL), alpha)


def _generator_branch(g: Generator, h_BL, alpha, *, s: int):
  """Stage s of the generator: the stage's image (faded in), nearest-upsampled to full resolution."""
  x = g.blocks[0](h_BL)
  prev = x
  for i in range(1, s + 1):
    prev, x = x, g.blocks[i](x)
  image = g.to_rgb[s](x)
  if s > 0:
    image = _fade(upsample(g.to_rgb[s - 1](prev), 2), image, alpha)
  return upsample(image, 2 ** (len(g.channels) - 1 - s))


class Discriminator(nn.Module):
  """PGGAN discriminator (module docstring): (x [B, H, W, C] at full resolution, label | None) -> logits [B]."""
  channels: Sequence[int]
  image_hw: Tuple[int, int]
  mbstd_group: int = 4
  num_classes: int = 0

  def setup(self):
    c = self.channels
    self.from_rgb = [EqualizedConv(width, kernel_size=1) for width in c]
    self.blocks = ([DFinal(c[0], self.mbstd_group, self.num_classes)]
                   + [DBlock(c[s], c[s - 1]) for s in range(1, len(c))])

  def __call__(self, x_BHWC, label_B=None, *, train: bool, stage=None, alpha=None):
    if x_BHWC.ndim != 4 or tuple(x_BHWC.shape[1:3]) != tuple(self.image_hw):
      raise ValueError(f'the PGGAN discriminator takes full-resolution images [B, {self.image_hw[0]}, '
                       f'{self.image_hw[1]}, C], got shape {x_BHWC.shape}.')
    if self.num_classes and label_B is None:
      raise ValueError(f'this discriminator is conditional ({self.num_classes} classes): pass label_B.')
    stage, alpha = _stage_alpha(stage, alpha, len(self.channels))
    return _switch(self, stage, _discriminator_branch, len(self.channels), x_BHWC,
                   label_B if self.num_classes else None, alpha)


def _discriminator_branch(d: Discriminator, x_BHWC, label_B, alpha, *, s: int):
  """Stage s of the discriminator: pool to the stage's resolution, fromRGB (faded in), blocks s..0."""
  x = x_BHWC
  for _ in range(len(d.channels) - 1 - s):
    x = pool2(x)
  h = lrelu(d.from_rgb[s](x))
  if s > 0:
    h = _fade(lrelu(d.from_rgb[s - 1](pool2(x))), d.blocks[s](h), alpha)
    for i in range(s - 1, 0, -1):
      h = d.blocks[i](h)
  return d.blocks[0](h, label_B)


def schedule_fn(stage_steps: int, num_stages: int):
  """step -> {'stage': int32, 'alpha': float32}: the schedule of the module docstring (pure, traceable)."""
  t = int(stage_steps)

  def schedule(step):
    step = jnp.asarray(step, jnp.int32)
    stage = jnp.clip((step + t) // (2 * t), 0, num_stages - 1).astype(jnp.int32)
    alpha = jnp.clip((step - (2 * stage - 1) * t).astype(jnp.float32) / t, 0.0, 1.0)
    return {'stage': stage, 'alpha': alpha}

  return schedule


def _is_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_int(model_config, key, default) -> int:
  value = model_config.get(key, default)
  if not _is_int(value) or value <= 0:
    raise ConfigError(f'config.model.{key} must be a positive integer, got {value!r}.')
  return int(value)


def build(model_config, info) -> gan_nets.GanNets:
  """The PGGAN GanNets for image dataset `info` (model keys: module docstring)."""
  if info.kind != 'image' or len(info.shape) != 3:
    raise ConfigError(f"config.model.arch='pggan' is for images [H, W, C]; dataset {info.name!r} is "
                      f"{info.kind} {tuple(info.shape)}: use config.model.arch='mlp' for vector data.")
  latent_dim = _positive_int(model_config, 'latent_dim', 128)
  stage_steps = _positive_int(model_config, 'stage_steps', 1000)
  channels = model_config.get('channels', (128, 64, 32))
  if (not isinstance(channels, (tuple, list)) or not channels
      or any(not _is_int(c) or c <= 0 for c in channels)):
    raise ConfigError(f'config.model.channels must be a non-empty tuple of positive integers (the width of '
                      f'each resolution from the base), got {channels!r}.')
  channels = tuple(int(c) for c in channels)
  mbstd_group = model_config.get('mbstd_group', 4)
  if not _is_int(mbstd_group) or mbstd_group < 0:
    raise ConfigError(f'config.model.mbstd_group must be an integer >= 0 (0 or 1: no minibatch stddev '
                      f'layer), got {mbstd_group!r}.')
  height, width, out_channels = (int(d) for d in info.shape)
  factor = 2 ** (len(channels) - 1)
  if height % factor or width % factor:
    raise ConfigError(f'config.model.channels has {len(channels)} entries (stages), so the {height}x{width} '
                      f'images of {info.name!r} must be divisible by 2^{len(channels) - 1} = {factor}; '
                      f'use fewer stages (e.g. 3 for 28x28: 7, 14, 28; 4 for 32x32: 4, 8, 16, 32).')
  classes = gan_nets.num_classes(model_config, info)
  generator = Generator(channels, (height // factor, width // factor), out_channels, classes, latent_dim)
  discriminator = Discriminator(channels, (height, width), int(mbstd_group), classes)
  return gan_nets.GanNets(generator, discriminator, latent_shape=(latent_dim,),
                          schedule=schedule_fn(stage_steps, len(channels)))
