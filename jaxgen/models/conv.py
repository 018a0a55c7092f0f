"""Convolutional encoder (strided convs) and decoder (transposed convs) for small images.

Every conv halves (encoder) or doubles (decoder) the spatial size, so an image
of H x W needs H and W divisible by 2 ** len(channels): 28x28 with two convs
(28 -> 14 -> 7) and 8x8 with up to three. Conv kernels carry the logical axes
(None, None, 'conv_in', 'conv_out') and biases ('conv_out',); Dense layers come
from `mlp.dense`.
"""

import math
from typing import Callable, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from jaxgen.errors import ConfigError
from jaxgen.models.mlp import dense

_KERNEL_AXES = (None, None, 'conv_in', 'conv_out')


def _kernel_init(key, shape, dtype=jnp.float32):
  """lecun_normal drawn as a [kh * kw * c_in, c_out] matrix, then reshaped.

  The same distribution as drawing the 4-D kernel (fan_in = kh * kw * c_in), but
  XLA:CPU compiles the partitionable-threefry draw of a 4-D array in seconds per
  layer and of a 2-D one in a fraction of a second.
  """
  flat = nn.initializers.lecun_normal()(key, (math.prod(shape[:-1]), shape[-1]), dtype)
  return flat.reshape(shape)


def conv_kernel_init():
  """`_kernel_init` with the conv kernel's logical axes, for any nn.Conv / nn.ConvTranspose."""
  return nn.with_logical_partitioning(_kernel_init, _KERNEL_AXES)


def _conv_kwargs():
  return dict(
      kernel_size=(3, 3), strides=(2, 2), padding='SAME',
      kernel_init=conv_kernel_init(),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ('conv_out',)))


def check_encoder_arch(model_config, shape, dataset: str) -> None:
  """ConfigError unless config.model.arch is 'mlp' or 'conv' and, for 'conv', `shape` is [H, W, C] with
  H and W divisible by 2**len(model_config.channels) (the encoder halves them once per entry)."""
  if model_config.arch not in ('mlp', 'conv'):
    raise ConfigError(f"config.model.arch={model_config.arch!r} is not one of 'mlp', 'conv'.")
  if model_config.arch == 'conv':
    n = len(model_config.channels)
    if len(shape) != 3 or n == 0 or shape[0] % 2 ** n or shape[1] % 2 ** n:
      raise ConfigError(
          f'config.model.arch=conv needs images whose height and width are divisible by '
          f'2**len(config.model.channels) = {2 ** n} (and at least one channel entry); '
          f'dataset {dataset!r} has shape {tuple(shape)}. Use arch=mlp or fewer channels.')


class ConvEncoder(nn.Module):
  """[B, H, W, C] -> [B, out_features]: stride-2 3x3 convs, flatten, Dense layers `hidden`, linear out."""
  channels: Sequence[int]
  hidden: Sequence[int]
  out_features: int
  activation: Callable = nn.silu

  @nn.compact
  def __call__(self, x_BHWC):
    h = x_BHWC
    for width in self.channels:
      h = self.activation(nn.Conv(width, **_conv_kwargs())(h))
    h_BF = h.reshape(h.shape[0], -1)
    for width in self.hidden:
      h_BF = self.activation(dense(width)(h_BF))
    return dense(self.out_features)(h_BF)


class ConvDecoder(nn.Module):
  """[B, L] -> [B, H, W, out_channels], mirroring ConvEncoder.

  Dense layers `hidden`, a Dense to a (H / 2^n) x (W / 2^n) x channels[0] map,
  then n = len(channels) stride-2 3x3 transposed convs with widths
  channels[1:] + (out_channels,); the last one is linear.
  """
  image_hw: Tuple[int, int]
  channels: Sequence[int]
  hidden: Sequence[int]
  out_channels: int
  activation: Callable = nn.silu

  @nn.compact
  def __call__(self, z_BL):
    factor = 2 ** len(self.channels)
    h0, w0 = self.image_hw[0] // factor, self.image_hw[1] // factor
    h_BF = z_BL
    for width in self.hidden:
      h_BF = self.activation(dense(width)(h_BF))
    h = self.activation(dense(h0 * w0 * self.channels[0])(h_BF))
    h = h.reshape(h.shape[0], h0, w0, self.channels[0])
    widths = list(self.channels[1:]) + [self.out_channels]
    for i, width in enumerate(widths):
      h = nn.ConvTranspose(width, **_conv_kwargs())(h)
      if i < len(widths) - 1:
        h = self.activation(h)
    return h
