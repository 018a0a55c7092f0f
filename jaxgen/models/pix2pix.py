"""pix2pix networks (Isola, Zhu, Zhou & Efros 2017, "Image-to-Image Translation with Conditional GANs").

Networks only; the method (L1 + conditional GAN loss) lives elsewhere. As the paper's appendix
(6.1) and its official Torch code (github.com/phillipi/pix2pix, models.lua: defineG_unet,
defineD_n_layers) build them, with `width` = ngf = ndf = 64:

UNetGenerator, source [B, H, W, Cs] -> target [B, H, W, Ct] in [-1, 1]:
    encoder  C64-C128-C256-C512-C512-C512-C512-C512 (depth 8 for 256x256: down to 1x1)
             4x4 stride-2 convs, LeakyReLU 0.2 before each but the first, BatchNorm after each
             but the first and the innermost (the official code's bottleneck has none)
    decoder  ReLU, 4x4 stride-2 transposed conv, BatchNorm, Dropout 0.5 in the first three
             blocks (the paper's CD512-CD1024-CD1024), then concatenation with the encoder
             output of the same resolution (the U-Net skip): widths 512, 512, 512, 512, 256, 128, 64
             (C1024 ... C128 after concatenation), then ReLU, transposed conv to Ct, tanh.
    Layer i of the encoder has min(width * 2^i, 8 * width) channels; `depth` sets the number of
    down blocks, so the image size must be divisible by 2^depth (28x28: depth 2, 28 -> 14 -> 7).
PatchDiscriminator, (source, target) -> per-patch logits [B, h, w]:
    concat on channels, C64 (no BN) - C128 - C256 (4x4 stride-2 convs, `num_layers` = 3 of them),
    C512 (4x4 stride 1), 4x4 stride-1 conv to 1 logit; LeakyReLU 0.2; every conv padded by 1.
    Each output sees a 70x70 input patch (num_layers = 3; 1 -> 16, 2 -> 34, 4 -> 142): 30x30
    patches on 256x256 input. `receptive_field(num_layers)` computes it from the layer stack.

Weights ~ N(0, 0.02), BN scales ~ N(1, 0.02), every conv with a bias (the official weights_init and
Torch's defaults). BatchNorm (momentum 0.9, epsilon 1e-5) keeps running averages in 'batch_stats':
train=True normalises by the batch statistics, train=False by the running averages. Dropout draws
from the 'dropout' rng and is on when `dropout` is True (default: train). The paper runs the
generator at test time exactly as in training, dropout and batch statistics included (with batch
size 1: instance normalisation): call it with train=True (and mutable 'batch_stats', discarded).
"""

from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from jaxgen.errors import ConfigError
from jaxgen.models.gan_dcgan import batch_norm, conv, conv_transpose, normal_init

_INIT = normal_init(0.02)
_BN_SCALE = normal_init(0.02, mean=1.0)


def _width(width: int, i: int) -> int:
  return width * min(2 ** i, 8)


class UNetGenerator(nn.Module):
  """pix2pix's U-Net (module docstring): [B, H, W, Cs] -> [B, H, W, out_channels] in [-1, 1]."""
  out_channels: int
  depth: int = 8
  width: int = 64
  dropout_rate: float = 0.5
  dropout_blocks: int = 3   # the first decoder blocks with dropout (the paper's CD layers)

  @nn.compact
  def __call__(self, source_BHWC, *, train: bool, dropout: Optional[bool] = None):
    if self.depth < 1:
      raise ConfigError(f'UNetGenerator.depth must be >= 1, got {self.depth}.')
    h_size, w_size = source_BHWC.shape[1:3]
    if h_size % 2 ** self.depth or w_size % 2 ** self.depth:
      raise ConfigError(f'UNetGenerator: a {h_size}x{w_size} image cannot be halved depth={self.depth} times; '
                        f'choose a depth with 2^depth dividing both sides (28x28: depth <= 2; 256x256: 8).')
    dropout = train if dropout is None else dropout
    skips = []
    h = source_BHWC.astype(jnp.float32)
    for i in range(self.depth):
      if i > 0:
        h = nn.leaky_relu(h, 0.2)
      h = conv(_width(self.width, i), 4, 2, 1, _INIT, name=f'down_{i}')(h)
      if 0 < i < self.depth - 1:
        h = batch_norm(train, scale_init=_BN_SCALE, name=f'down_{i}_bn')(h)
      skips.append(h)
    skips.pop()    # the innermost output is h itself
    for j, i in enumerate(reversed(range(self.depth - 1))):   # decoder block j produces encoder level i's width
      h = conv_transpose(_width(self.width, i), 4, 2, 1, _INIT, name=f'up_{i}')(nn.relu(h))
      h = batch_norm(train, scale_init=_BN_SCALE, name=f'up_{i}_bn')(h)
      if j < self.dropout_blocks and self.dropout_rate > 0:
        h = nn.Dropout(self.dropout_rate, deterministic=not dropout)(h)
      h = jnp.concatenate([h, skips.pop()], axis=-1)
    x = conv_transpose(self.out_channels, 4, 2, 1, _INIT, name='to_image')(nn.relu(h))
    return jnp.tanh(x)


def patch_layers(num_layers: int) -> Sequence[Tuple[int, int]]:
  """(kernel, stride) of the PatchGAN's convs, input to output."""
  return [(4, 2)] * num_layers + [(4, 1), (4, 1)]


def receptive_field(num_layers: int) -> int:
  """The side of the input patch one PatchGAN output sees: r_in = (r_out - 1) * stride + kernel, backwards."""
  r = 1
  for kernel, stride in reversed(patch_layers(num_layers)):
    r = (r - 1) * stride + kernel
  return r


class PatchDiscriminator(nn.Module):
  """pix2pix's PatchGAN (module docstring): (source, target) [B, H, W, *] -> logits [B, h, w] float32."""
  num_layers: int = 3
  width: int = 64

  @nn.compact
  def __call__(self, source_BHWC, target_BHWC, *, train: bool):
    if self.num_layers < 1:
      raise ConfigError(f'PatchDiscriminator.num_layers must be >= 1, got {self.num_layers}.')
    h = jnp.concatenate([source_BHWC, target_BHWC], axis=-1).astype(jnp.float32)
    layers = patch_layers(self.num_layers)
    for i, (kernel, stride) in enumerate(layers[:-1]):
      h = conv(_width(self.width, i), kernel, stride, 1, _INIT, name=f'conv_{i}')(h)
      if i > 0:
        h = batch_norm(train, scale_init=_BN_SCALE, name=f'conv_{i}_bn')(h)
      h = nn.leaky_relu(h, 0.2)
    kernel, stride = layers[-1]
    logits = conv(1, kernel, stride, 1, _INIT, name='logit')(h)
    return logits[..., 0]
