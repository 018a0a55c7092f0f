"""PixelCNN (van den Oord et al. 2016a) and Gated PixelCNN (van den Oord et al. 2016b) networks.

Both map an image x [B, H, W, C] (and, for a class-conditional model, a one-hot
label [B, K]) to per-sub-pixel outputs [B, H, W, n_out * C] such that the outputs
of pixel (r, c), channel k depend only on pixels before (r, c) in raster order
and on channels < k of pixel (r, c) itself (R -> G -> B within a pixel).

Output feature layout: feature index `o * C + k` is output `o` of data channel
`k`; callers reshape to [B, H, W, n_out, C].

Channel masking (PixelRNN paper, Sec. 3.4). Every hidden feature map is split
into C groups, feature f belonging to group f % C (the data channel it may "see
up to"); input feature k of the image is group k. At a kernel's centre tap, an
input feature of group g_in feeds an output feature of group g_out iff
g_in < g_out (mask 'A') or g_in <= g_out (mask 'B'). Off-centre taps are masked
spatially only. For C = 1 mask A's centre tap is empty and mask B's is full,
which is the plain spatial mask.

  'pixelcnn'  `PixelCNN`: a k0 x k0 mask-A conv, `num_layers` residual blocks
              (ReLU, 1x1 B conv to F/2, ReLU, k x k B conv, ReLU, 1x1 B conv to F; PixelRNN
              paper Fig. 5), then ReLU, 1x1 B conv, ReLU, 1x1 B conv to the outputs. Its
              receptive field has the "blind spot": pixels up and to the right beyond the
              diagonal are never seen, however deep the stack.
  'gated'     `GatedPixelCNN`: a vertical stack (convs of (k//2 + 1) x k over the current
              row and the rows above; it reaches the horizontal stack only shifted down by one
              row, so the current row never leaks) and a horizontal stack (1 x (k//2 + 1)
              convs over the pixels to the left, centre tap channel-masked A in the first layer,
              B after), each layer `tanh(a) * sigmoid(b)` gated, with a 1x1 link from the
              vertical to the horizontal stack and a residual connection in the horizontal
              stack. No blind spot.

Class-conditional models (num_classes > 0) add a per-layer bias computed from the
one-hot label (Gated PixelCNN paper, Eq. 4: V^T h) to the pre-activations of
every layer, in both stacks. The label is the same at every position, so it
cannot carry information about any pixel.

Hidden widths must be divisible by C so that both halves of a gate have the
same channel groups.
"""

from typing import Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.models.conv import conv_kernel_init
from jaxgen.models.mlp import dense


def channel_groups(num_features: int, data_channels: int) -> np.ndarray:
  """The data channel (0..C-1) each of `num_features` features belongs to: f % C."""
  return np.arange(num_features) % data_channels


def make_mask(kernel_size: Tuple[int, int], centre: Tuple[int, int], in_groups: np.ndarray,
              out_groups: np.ndarray, mask_type: Optional[str]) -> np.ndarray:
  """[kh, kw, c_in, c_out] 0/1 mask of a masked conv whose output sits at tap `centre`.

  Taps in rows above `centre`, and left of it in its row, are open; taps to its
  right or below are closed; the centre tap itself is channel-masked ('A':
  g_in < g_out, 'B': g_in <= g_out). mask_type None opens every tap (for convs
  whose causality comes from padding and shifting, as in the gated stacks).
  """
  kh, kw = kernel_size
  mask = np.ones((kh, kw, len(in_groups), len(out_groups)), np.float32)
  if mask_type is None:
    return mask
  if mask_type not in ('A', 'B'):
    raise ValueError(f"mask_type must be 'A', 'B' or None, got {mask_type!r}.")
  cr, cc = centre
  mask[cr, cc + 1:] = 0.0
  mask[cr + 1:] = 0.0
  allowed = (in_groups[:, None] < out_groups[None, :]) if mask_type == 'A' else (
      in_groups[:, None] <= out_groups[None, :])
  mask[cr, cc] = allowed.astype(np.float32)
  return mask


class MaskedConv(nn.Module):
  """A conv with a fixed 0/1 mask on its kernel (see `make_mask`) and explicit padding.

  padding: ((top, bottom), (left, right)). `in_groups_channels` is the C used to
  assign input features to groups (features of the image itself: group k = k).
  """
  features: int
  kernel_size: Tuple[int, int]
  padding: Tuple[Tuple[int, int], Tuple[int, int]]
  centre: Tuple[int, int]
  mask_type: Optional[str]
  data_channels: int = 1

  @nn.compact
  def __call__(self, x_BHWC):
    c_in = x_BHWC.shape[-1]
    kernel = self.param('kernel', conv_kernel_init(), (*self.kernel_size, c_in, self.features))
    bias = self.param('bias', nn.with_logical_partitioning(nn.initializers.zeros_init(), ('conv_out',)),
                      (self.features,))
    mask = make_mask(self.kernel_size, self.centre, channel_groups(c_in, self.data_channels),
                     channel_groups(self.features, self.data_channels), self.mask_type)
    y = jax.lax.conv_general_dilated(x_BHWC, kernel * jnp.asarray(mask, kernel.dtype), (1, 1), self.padding,
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y + bias.reshape(1, 1, 1, -1)


def square_masked_conv(features, k, mask_type, data_channels, name=None):
  """k x k conv, SAME-padded, masked around its centre (k odd)."""
  return MaskedConv(features, (k, k), ((k // 2, k // 2), (k // 2, k // 2)), (k // 2, k // 2), mask_type,
                    data_channels, name=name)


def _label_bias(features, onehot_BK, name):
  """Per-layer class bias [B, 1, 1, features] from a one-hot label (None: 0)."""
  if onehot_BK is None:
    return 0.0
  b = dense(features, name=name)(onehot_BK)
  return b.reshape(b.shape[0], 1, 1, features)


def _check_width(width, data_channels, what):
  if width % data_channels:
    raise ValueError(f'{what}={width} must be divisible by the number of image channels {data_channels} '
                     '(channel masking splits features into R/G/B groups).')


class PixelCNN(nn.Module):
  """The original PixelCNN stack (see the module docstring). Returns [B, H, W, n_out * C]."""
  channels: int = 64
  num_layers: int = 5
  first_kernel: int = 7
  kernel: int = 3
  output_channels: int = 64
  n_out: int = 256
  data_channels: int = 1

  def rows_above(self) -> int:
    """How many rows above its own an output depends on (the masked convs never look below)."""
    return self.first_kernel // 2 + self.num_layers * (self.kernel // 2)

  @nn.compact
  def __call__(self, x_BHWC, onehot_BK=None):
    C = self.data_channels
    for width, what in ((self.channels, 'channels'), (self.output_channels, 'output_channels')):
      _check_width(width, C, f'config.model.{what}')
    half = max(C, (self.channels // 2) // C * C)
    h = square_masked_conv(self.channels, self.first_kernel, 'A', C, name='conv_in')(x_BHWC)
    h = h + _label_bias(self.channels, onehot_BK, 'label_in')
    for i in range(self.num_layers):
      r = square_masked_conv(half, 1, 'B', C, name=f'block{i}_reduce')(nn.relu(h))
      r = square_masked_conv(half, self.kernel, 'B', C, name=f'block{i}_conv')(nn.relu(r))
      r = r + _label_bias(half, onehot_BK, f'block{i}_label')
      r = square_masked_conv(self.channels, 1, 'B', C, name=f'block{i}_expand')(nn.relu(r))
      h = h + r
    h = square_masked_conv(self.output_channels, 1, 'B', C, name='out_hidden')(nn.relu(h))
    return square_masked_conv(self.n_out * C, 1, 'B', C, name='out')(nn.relu(h))


def down_shift(x_BHWC):
  """Shift rows down by one (zeros in row 0): row r then holds what row r - 1 held."""
  return jnp.pad(x_BHWC, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]


def _gate(h):
  a, b = jnp.split(h, 2, axis=-1)
  return jnp.tanh(a) * jax.nn.sigmoid(b)


class GatedPixelCNN(nn.Module):
  """Gated PixelCNN (see the module docstring). Returns [B, H, W, n_out * C].

  Layer 0 uses kernel `first_kernel` with a mask-A horizontal centre tap and has
  no residual; layers 1..num_layers use `kernel`, mask B, and a residual.

  The network splits into two parts, which the sampler uses to re-use work:
    `context(x)`      the vertical stack's contribution to every layer of the horizontal
                      stack ("links", one [B, H, W, 2F] array per layer); row r of a link is a
                      function of the input rows < r only.
    `rows(x, links)`  the horizontal stack and the output head. Every layer is a 1-row conv or
                      a 1x1 conv, so it works on any set of rows (e.g. the one row being sampled)
                      given those rows' links.
  `__call__(x) == rows(x, context(x))`.
  """
  channels: int = 64
  num_layers: int = 5
  first_kernel: int = 7
  kernel: int = 3
  output_channels: int = 64
  n_out: int = 256
  data_channels: int = 1

  def setup(self):
    C, F = self.data_channels, self.channels
    for width, what in ((self.channels, 'channels'), (self.output_channels, 'output_channels')):
      _check_width(width, C, f'config.model.{what}')
    kernels = [self.first_kernel] + [self.kernel] * self.num_layers
    # Vertical stack: rows r - p .. r (all columns c - p .. c + p) -> row r. Channels unmasked: the
    # vertical stack reaches the horizontal one only through `down_shift`.
    self.v_conv = [MaskedConv(2 * F, (k // 2 + 1, k), ((k // 2, 0), (k // 2, k // 2)), (k // 2, k // 2), None, C)
                   for k in kernels]
    # Horizontal stack: pixels c - p .. c of row r; the centre tap channel-masked (A first, then B).
    self.h_conv = [MaskedConv(2 * F, (1, k // 2 + 1), ((0, 0), (k // 2, 0)), (0, k // 2), 'A' if i == 0 else 'B',
                              C) for i, k in enumerate(kernels)]
    self.v_to_h = [MaskedConv(2 * F, (1, 1), ((0, 0), (0, 0)), (0, 0), None, C) for _ in kernels]
    self.h_out = [square_masked_conv(F, 1, 'B', C) for _ in kernels]
    # Class-conditional biases (Eq. 4), created only when a label is given.
    self.v_label = [dense(2 * F) for _ in kernels]
    self.h_label = [dense(2 * F) for _ in kernels]
    self.out_hidden = square_masked_conv(self.output_channels, 1, 'B', C)
    self.out = square_masked_conv(self.n_out * C, 1, 'B', C)

  @staticmethod
  def _bias_from(layer, onehot_BK):
    if onehot_BK is None:
      return 0.0
    b = layer(onehot_BK)
    return b.reshape(b.shape[0], 1, 1, -1)

  def context(self, x_BHWC, onehot_BK=None):
    """The links [B, H, W, 2F] into each horizontal layer; row r depends on input rows < r only."""
    v, links = x_BHWC, []
    for i in range(self.num_layers + 1):
      v_pre = self.v_conv[i](v) + self._bias_from(self.v_label[i], onehot_BK)
      links.append(self.v_to_h[i](down_shift(v_pre)))
      v = _gate(v_pre)
    return tuple(links)

  def rows(self, x_BRWC, links, onehot_BK=None):
    """Outputs [B, R, W, n_out * C] for R rows of the image given their links (each [B, R, W, 2F])."""
    h = x_BRWC
    for i in range(self.num_layers + 1):
      h_pre = self.h_conv[i](h) + links[i] + self._bias_from(self.h_label[i], onehot_BK)
      h_out = self.h_out[i](_gate(h_pre))
      h = h_out if i == 0 else h + h_out
    h = self.out_hidden(nn.relu(h))
    return self.out(nn.relu(h))

  def __call__(self, x_BHWC, onehot_BK=None):
    return self.rows(x_BHWC, self.context(x_BHWC, onehot_BK), onehot_BK)


ARCHS = {'pixelcnn': PixelCNN, 'gated': GatedPixelCNN}

# PixelRNN's Row LSTM lives in models/pixelrnn.py, which imports the masked convs above, so it is imported
# last. Whichever of the two modules is imported first, ARCHS ends with 'rowlstm' (pixelrnn.py also
# registers itself when this import finds it only partly initialised).
from jaxgen.models import pixelrnn as _pixelrnn  # noqa: E402  pylint: disable=wrong-import-position

if hasattr(_pixelrnn, 'RowLSTM'):
  ARCHS['rowlstm'] = _pixelrnn.RowLSTM
