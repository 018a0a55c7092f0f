"""The U-Net of DDPM (Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models").

A faithful Flax Linen port of the official implementation (`diffusion_tf/models/unet.py` in
github.com/hojonathanho/diffusion): a PixelCNN++-style U-Net of wide ResNet blocks with
GroupNorm, self-attention at chosen resolutions and a sinusoidal timestep embedding.

    temb   = Dense(4ch)(swish(Dense(4ch)(sinusoidal(t, ch))))   [+ class embedding, below]
    h      = conv3x3(concat(x, cond), ch)
    down   for each level i (width ch * ch_mult[i]): num_res_blocks ResnetBlocks (each + AttnBlock
           when its resolution H is in attn_resolutions); every output is kept as a skip; then a
           Downsample (3x3 conv stride 2, or 2x2 avg-pool) except at the last level
    middle ResnetBlock, AttnBlock, ResnetBlock
    up     for each level in reverse: num_res_blocks + 1 ResnetBlocks on concat(h, skip.pop())
           (+ AttnBlock at attn_resolutions); then an Upsample (nearest x2, 3x3 conv) except at level 0
    out    conv3x3(swish(GroupNorm(h)), out_channels), zero-initialised: the output is 0 at init

    ResnetBlock  h = conv3x3(swish(GN(x))); h += Dense(swish(temb)); h = conv3x3(dropout(swish(GN(h))))
                 (the second conv zero-initialised); x -> NIN(x) when the width changes; x + h
    AttnBlock    GN, q/k/v = NIN, softmax(q k^T * C**-0.5) over the H*W positions (one head),
                 NIN proj_out (zero-initialised), residual

NIN is a dense layer over the channel axis (a 1x1 conv). GroupNorm uses `num_groups` groups
(32, epsilon 1e-6 as tf.contrib's group_norm), or `min(num_groups, C)` for narrow layers; C must
be divisible by the group count (ValueError otherwise). H and W must be divisible by
2 ** (len(ch_mult) - 1).

The paper's CIFAR-10 model (ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,),
dropout 0.1, 32x32x3 in and out) has 35,746,307 parameters (paper: "35.7M"), the same count as the
official TensorFlow graph; `tests/test_unet.py` asserts it and gives the decomposition.

Additions to the official model (which is unconditional only):
  * `num_classes > 0`: a learned class embedding [num_classes + 1, 4ch] added to the timestep
    embedding. Row `num_classes` is the "no label" (null) class for classifier-free guidance;
    `label_B=None` means the null class for every example.
  * `cond_BHWC`: extra input channels (e.g. an upsampled low-resolution image for super-resolution)
    concatenated to x before the first conv.
  * `dtype`: the compute dtype (e.g. bfloat16); parameters are always float32, GroupNorm statistics
    and the attention softmax are computed in float32, and the output is returned in float32.

Deviation from the official code: the official layers draw kernels from
variance_scaling(1, 'fan_avg', 'uniform'); here non-zero kernels use this codebase's lecun_normal
(`conv.conv_kernel_init`, `mlp.dense`'s init). The zero-initialised layers (each block's conv2,
attention proj_out, conv_out) are zero as in the official code. Parameter shapes and the forward
computation are the official ones.

Logical axes: conv kernels (None, None, 'conv_in', 'conv_out') and NIN kernels ('conv_in',
'conv_out') with biases / GroupNorm scales ('conv_out',); the timestep-embedding Dense layers
('embed', 'mlp') with biases ('mlp',); the class embedding ('vocab', 'embed').
"""

import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.models.conv import conv_kernel_init

_CONV_AXES = (None, None, 'conv_in', 'conv_out')
_NIN_AXES = ('conv_in', 'conv_out')
_DENSE_AXES = ('embed', 'mlp')


def timestep_embedding(t_B, dim: int):
  """Sinusoidal embedding [B, dim] of timesteps [B], exactly as DDPM's `get_timestep_embedding`.

  half = dim // 2, freqs = exp(-log(10000) * arange(half) / (half - 1)), e = t * freqs,
  [sin(e), cos(e)] (zero-padded by one column when dim is odd). Computed in float32.
  """
  if t_B.ndim != 1:
    raise ValueError(f'timesteps must be a vector [B], got shape {t_B.shape}.')
  half = dim // 2
  if half < 2:
    raise ValueError(f'the timestep embedding needs dim >= 4, got {dim}.')
  freqs = jnp.exp(jnp.arange(half, dtype=jnp.float32) * (-math.log(10000) / (half - 1)))
  e = t_B.astype(jnp.float32)[:, None] * freqs[None, :]
  emb = jnp.concatenate([jnp.sin(e), jnp.cos(e)], axis=1)
  if dim % 2 == 1:
    emb = jnp.pad(emb, ((0, 0), (0, 1)))
  return emb


def _init(base, zero: bool, axes):
  return nn.with_logical_partitioning(nn.initializers.zeros_init() if zero else base, axes)


def _bias_init(axes):
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


def conv3x3(features: int, dtype, strides: int = 1, zero: bool = False, name=None) -> nn.Conv:
  """3x3 'SAME' conv (TF padding: stride 2 pads (0, 1)) with logical axes; `zero`: zero kernel."""
  kernel_init = nn.with_logical_partitioning(nn.initializers.zeros_init(), _CONV_AXES) if zero else conv_kernel_init()
  return nn.Conv(features, (3, 3), strides=(strides, strides), padding='SAME', kernel_init=kernel_init,
                 bias_init=_bias_init(('conv_out',)), dtype=dtype, param_dtype=jnp.float32, name=name)


def nin(features: int, dtype, zero: bool = False, name=None) -> nn.Dense:
  """"Network in network": a dense layer over the channel axis of [B, H, W, C] (a 1x1 conv)."""
  return nn.Dense(features, kernel_init=_init(nn.initializers.lecun_normal(), zero, _NIN_AXES),
                  bias_init=_bias_init(('conv_out',)), dtype=dtype, param_dtype=jnp.float32, name=name)


def dense(features: int, dtype, name=None) -> nn.Dense:
  """`mlp.dense` (axes ('embed', 'mlp'), lecun_normal) with a compute dtype and float32 params."""
  return nn.Dense(features, kernel_init=_init(nn.initializers.lecun_normal(), False, _DENSE_AXES),
                  bias_init=_bias_init(('mlp',)), dtype=dtype, param_dtype=jnp.float32, name=name)


def group_norm(channels: int, num_groups: int, dtype, name=None) -> nn.GroupNorm:
  """GroupNorm with min(num_groups, channels) groups (epsilon 1e-6, as tf.contrib.layers.group_norm)."""
  groups = min(num_groups, channels)
  if channels % groups:
    raise ValueError(f'GroupNorm: {channels} channels are not divisible into {groups} groups; choose '
                     f'num_groups (now {num_groups}) dividing every layer width (ch * ch_mult and the '
                     f'concatenated skip widths of the up path).')
  return nn.GroupNorm(num_groups=groups, epsilon=1e-6, dtype=dtype, param_dtype=jnp.float32,
                      scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ('conv_out',)),
                      bias_init=_bias_init(('conv_out',)), name=name)


class ResnetBlock(nn.Module):
  """DDPM's resnet_block: GN, swish, conv, + temb projection, GN, swish, dropout, zero conv; NIN shortcut."""
  out_ch: Optional[int] = None
  dropout: float = 0.0
  num_groups: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC, temb_BD, train: bool = False):
    c = x_BHWC.shape[-1]
    out_ch = self.out_ch or c
    h = nn.swish(group_norm(c, self.num_groups, self.dtype, name='norm1')(x_BHWC))
    h = conv3x3(out_ch, self.dtype, name='conv1')(h)
    h = h + dense(out_ch, self.dtype, name='temb_proj')(nn.swish(temb_BD))[:, None, None, :]
    h = nn.swish(group_norm(out_ch, self.num_groups, self.dtype, name='norm2')(h))
    if self.dropout > 0:
      h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = conv3x3(out_ch, self.dtype, zero=True, name='conv2')(h)
    if c != out_ch:
      x_BHWC = nin(out_ch, self.dtype, name='nin_shortcut')(x_BHWC)
    return x_BHWC.astype(h.dtype) + h


class AttnBlock(nn.Module):
  """DDPM's attn_block: single-head self-attention over the H*W positions, zero-initialised output."""
  num_groups: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC):
    b, hh, ww, c = x_BHWC.shape
    h = group_norm(c, self.num_groups, self.dtype, name='norm')(x_BHWC)
    q = nin(c, self.dtype, name='q')(h).reshape(b, hh * ww, c)
    k = nin(c, self.dtype, name='k')(h).reshape(b, hh * ww, c)
    v = nin(c, self.dtype, name='v')(h).reshape(b, hh * ww, c)
    logits_BQK = jnp.einsum('bqc,bkc->bqk', q, k, preferred_element_type=jnp.float32) * (c ** -0.5)
    w_BQK = jax.nn.softmax(logits_BQK, axis=-1).astype(v.dtype)
    h = jnp.einsum('bqk,bkc->bqc', w_BQK, v).reshape(b, hh, ww, c)
    h = nin(c, self.dtype, zero=True, name='proj_out')(h)
    return x_BHWC.astype(h.dtype) + h


def downsample(x_BHWC, factor: int):
  """Average-pool H and W by `factor` (each output pixel the mean of a factor x factor block)."""
  b, h, w, c = x_BHWC.shape
  return x_BHWC.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def upsample(x_BHWC, factor: int):
  """Nearest-neighbour upsampling of H and W by `factor` (each pixel repeated factor x factor)."""
  return jnp.repeat(jnp.repeat(x_BHWC, factor, axis=1), factor, axis=2)


class Downsample(nn.Module):
  """Halve H and W: a 3x3 stride-2 conv, or a 2x2 average pool when not `with_conv`."""
  with_conv: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC):
    if self.with_conv:
      return conv3x3(x_BHWC.shape[-1], self.dtype, strides=2, name='conv')(x_BHWC)
    return downsample(x_BHWC, 2)


class Upsample(nn.Module):
  """Double H and W: nearest neighbour (each pixel repeated 2x2), then a 3x3 conv when `with_conv`."""
  with_conv: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC):
    x = upsample(x_BHWC, 2)
    if self.with_conv:
      x = conv3x3(x.shape[-1], self.dtype, name='conv')(x)
    return x


class UNet(nn.Module):
  """The DDPM U-Net (see the module docstring). Returns [B, H, W, out_channels] in float32."""
  ch: int = 128
  ch_mult: Sequence[int] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.1
  out_channels: int = 3
  num_classes: int = 0
  resample_with_conv: bool = True
  num_groups: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC, t_B, label_B=None, cond_BHWC=None, train: bool = False):
    if x_BHWC.ndim != 4:
      raise ValueError(f'UNet expects images [B, H, W, C], got shape {x_BHWC.shape}.')
    b, height, width, _ = x_BHWC.shape
    num_levels = len(self.ch_mult)
    factor = 2 ** (num_levels - 1)
    if height % factor or width % factor:
      raise ValueError(
          f'UNet with {num_levels} levels (ch_mult={tuple(self.ch_mult)}) halves the image {num_levels - 1} '
          f'times: H and W must be divisible by {factor}, got {height}x{width}. Use fewer levels or pad '
          f'the images.')
    t_B = jnp.asarray(t_B)
    if t_B.shape != (b,):
      raise ValueError(f'UNet expects one timestep per example, t of shape ({b},), got {t_B.shape}.')
    if cond_BHWC is not None:
      if cond_BHWC.ndim != 4 or cond_BHWC.shape[:3] != x_BHWC.shape[:3]:
        raise ValueError(f'cond_BHWC must be [B, H, W, C_cond] with the B, H, W of x {x_BHWC.shape[:3]}, '
                         f'got {cond_BHWC.shape}; upsample a low-resolution conditioning image to H x W first.')
      x_BHWC = jnp.concatenate([x_BHWC, cond_BHWC.astype(x_BHWC.dtype)], axis=-1)

    ch, dtype, groups = self.ch, self.dtype, self.num_groups

    # Timestep embedding (+ class embedding).
    temb = dense(4 * ch, dtype, name='temb_dense0')(timestep_embedding(t_B, ch))
    temb = dense(4 * ch, dtype, name='temb_dense1')(nn.swish(temb))
    if self.num_classes > 0:
      if label_B is None:
        label_B = jnp.full((b,), self.num_classes, jnp.int32)
      label_B = jnp.asarray(label_B)
      if label_B.shape != (b,):
        raise ValueError(f'UNet expects one integer label per example, shape ({b},), got {label_B.shape}.')
      emb = nn.Embed(self.num_classes + 1, 4 * ch, dtype=dtype, param_dtype=jnp.float32,
                     embedding_init=nn.with_logical_partitioning(nn.initializers.normal(1.0), ('vocab', 'embed')),
                     name='label_emb')
      temb = temb + emb(label_B.astype(jnp.int32))
    elif label_B is not None:
      raise ValueError('UNet was built with num_classes=0 (unconditional) but got a label; set num_classes '
                       'to the number of classes for a class-conditional model.')

    def resnet(h, out_ch, name):
      return ResnetBlock(out_ch, self.dropout, groups, dtype, name=name)(h, temb, train)

    # Down path.
    hs = [conv3x3(ch, dtype, name='conv_in')(x_BHWC)]
    for i in range(num_levels):
      for j in range(self.num_res_blocks):
        h = resnet(hs[-1], ch * self.ch_mult[i], f'down_{i}_block_{j}')
        if h.shape[1] in self.attn_resolutions:
          h = AttnBlock(groups, dtype, name=f'down_{i}_attn_{j}')(h)
        hs.append(h)
      if i != num_levels - 1:
        hs.append(Downsample(self.resample_with_conv, dtype, name=f'down_{i}_downsample')(hs[-1]))

    # Middle.
    h = resnet(hs[-1], None, 'mid_block_1')
    h = AttnBlock(groups, dtype, name='mid_attn_1')(h)
    h = resnet(h, None, 'mid_block_2')

    # Up path.
    for i in reversed(range(num_levels)):
      for j in range(self.num_res_blocks + 1):
        h = resnet(jnp.concatenate([h, hs.pop().astype(h.dtype)], axis=-1), ch * self.ch_mult[i], f'up_{i}_block_{j}')
        if h.shape[1] in self.attn_resolutions:
          h = AttnBlock(groups, dtype, name=f'up_{i}_attn_{j}')(h)
      if i != 0:
        h = Upsample(self.resample_with_conv, dtype, name=f'up_{i}_upsample')(h)
    assert not hs

    h = nn.swish(group_norm(h.shape[-1], groups, dtype, name='norm_out')(h))
    h = conv3x3(self.out_channels, dtype, zero=True, name='conv_out')(h)
    return h.astype(jnp.float32)
