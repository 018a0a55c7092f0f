"""PixelCNN++ network (Salimans et al. 2017, "PixelCNN++: Improving the PixelCNN with Discretized
Logistic Mixture Likelihood and Other Modifications").

Maps an image x [B, H, W, C] in [-1, 1] (and, for a class-conditional model, a
one-hot label [B, K]) to the parameters of a discretized logistic mixture per
pixel, [B, H, W, M * (1 + 2C + C(C-1)/2)] (10 M for RGB, 3 M for grey; layout in
`jaxgen.distributions.discretized_mix_logistic_log_prob`). The output at pixel
(r, c) depends only on pixels strictly before (r, c) in raster order: the
channels of a pixel are made autoregressive by the mixture itself (its G and B
means depend linearly on the pixel's actual R and G).

Causality comes from shifting and padding, not masks (paper Sec. 2.5; the
reference code's layers):

  down-shifted conv        kernel (kh, kw) over rows r - kh + 1 .. r and columns
                           c - (kw-1)/2 .. c + (kw-1)/2 (pad top and both sides)
  down-right-shifted conv  kernel (kh, kw) over rows r - kh + 1 .. r and columns
                           c - kw + 1 .. c (pad top and left)
  stride-2 versions of both for down-sampling; the transposed versions (stride 2,
  cropped) for up-sampling.

Two streams: `u` sees the rows above (it starts down-shifted by one row), `ul`
sees the rows above and the pixels to the left in the current row (it starts as a
down-shifted 1 x 3 conv plus a right-shifted 2 x 1 conv). The input gets an extra
channel of ones so the network can tell the image from the zero padding.

Gated resnet block (paper Fig. 2, Sec. 2.3-2.4):

    c1 = conv(concat_elu(x)) [+ nin(concat_elu(a))]      a: skip input (u for ul; the
                                                           stored down-sampling activations
                                                           in the up-sampling pass)
    c2 = conv(dropout(concat_elu(c1)), 2F) [+ h W_h]      h: one-hot label, W_h [K, 2F], no bias
    out = x + c2[:F] * sigmoid(c2[F:])

Three resolution stages of `nr_resnet` blocks per stream going down (stride-2
down-sampling between stages), then back up (`nr_resnet` blocks at the lowest
resolution, `nr_resnet + 1` at each of the two higher ones, transposed-conv
up-sampling between), every up-sampling-pass block taking the matching stored
activation as its skip input `a` (the long shortcut connections; for `ul` the
skip is concat(u, stored ul)). Output: a 1 x 1 conv ("nin") of elu(ul).
(The reference code calls the down-sampling half the "up pass" and the
up-sampling half the "down pass".) H and W must be divisible by 4.

Weight normalisation (Salimans & Kingma 2016) as in the reference code:
W = g * V / ||V|| per output unit, every conv / nin with a kernel `V`, a scale `g`
and a bias `b`, so the parameter count equals the reference's. It is NOT given the
reference's data-dependent initialisation: g starts at 1 (0.1 for the second conv
of each block, the reference's init_scale) and b at 0. `weight_norm=False` uses
plain kernels (no `g`).

Class-conditional models (num_classes > 0) add h W_h to the gate pre-activations
of every block (paper / reference code conditional model). The label is the same
at every position, so it carries no pixel information.
"""

from typing import Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.models.conv import conv_kernel_init


def concat_elu(x):
  """elu([x, -x]) along the feature axis (doubles the features)."""
  return jax.nn.elu(jnp.concatenate([x, -x], axis=-1))


def down_shift(x_BHWC):
  """Rows down by one, zeros in row 0."""
  return jnp.pad(x_BHWC, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]


def right_shift(x_BHWC):
  """Columns right by one, zeros in column 0."""
  return jnp.pad(x_BHWC, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1]


class WNConv(nn.Module):
  """Conv (or, with `transpose`, stride-s transposed conv) with optional weight normalisation.

  Parameters: 'kernel' V [kh, kw, c_in, features] (axes None, None, 'conv_in', 'conv_out'),
  'scale' g [features] (weight_norm only) and 'bias' [features]. A plain conv uses explicit
  `padding` ((top, bottom), (left, right)) and `strides`. A transposed conv computes the full
  output out[s*i + t] += x[i] W[t] (size s*(n-1) + k per axis) and then keeps `crop`
  ((row_start, row_stop), (col_start, col_stop)).
  """
  features: int
  kernel_size: Tuple[int, int]
  strides: Tuple[int, int] = (1, 1)
  padding: Tuple[Tuple[int, int], Tuple[int, int]] = ((0, 0), (0, 0))
  transpose: bool = False
  crop: Optional[Tuple[Tuple[int, int], Tuple[int, int]]] = None
  weight_norm: bool = True
  init_scale: float = 1.0

  @nn.compact
  def __call__(self, x_BHWC):
    c_in = x_BHWC.shape[-1]
    kernel = self.param('kernel', conv_kernel_init(), (*self.kernel_size, c_in, self.features))
    if self.weight_norm:
      scale = self.param('scale', nn.with_logical_partitioning(nn.initializers.constant(self.init_scale),
                                                               ('conv_out',)), (self.features,))
      norm = jnp.sqrt(jnp.sum(jnp.square(kernel), axis=(0, 1, 2)))
      kernel = kernel * (scale / norm).reshape(1, 1, 1, -1)
    bias = self.param('bias', nn.with_logical_partitioning(nn.initializers.zeros_init(), ('conv_out',)),
                      (self.features,))
    dn = ('NHWC', 'HWIO', 'NHWC')
    if not self.transpose:
      y = jax.lax.conv_general_dilated(x_BHWC, kernel, self.strides, self.padding, dimension_numbers=dn)
    else:
      kh, kw = self.kernel_size
      # Dilate the input by the stride, pad by k - 1 and correlate with the flipped kernel: out[s*i + t] += x[i] W[t].
      y = jax.lax.conv_general_dilated(x_BHWC, kernel[::-1, ::-1], (1, 1), ((kh - 1, kh - 1), (kw - 1, kw - 1)),
                                       lhs_dilation=self.strides, dimension_numbers=dn)
      (r0, r1), (c0, c1) = self.crop
      y = y[:, r0:r1, c0:c1]
    return y + bias.reshape(1, 1, 1, -1)


def down_shifted_conv(features, x, kernel=(2, 3), strides=(1, 1), weight_norm=True, init_scale=1.0, name=None):
  kh, kw = kernel
  return WNConv(features, kernel, strides, ((kh - 1, 0), ((kw - 1) // 2, (kw - 1) // 2)),
                weight_norm=weight_norm, init_scale=init_scale, name=name)(x)


def down_right_shifted_conv(features, x, kernel=(2, 2), strides=(1, 1), weight_norm=True, init_scale=1.0,
                            name=None):
  kh, kw = kernel
  return WNConv(features, kernel, strides, ((kh - 1, 0), (kw - 1, 0)), weight_norm=weight_norm,
                init_scale=init_scale, name=name)(x)


def down_shifted_deconv(features, x, kernel=(2, 3), weight_norm=True, name=None):
  """Stride-2 transposed conv to [2H, 2W]: keeps rows 0 .. 2H - 1, columns (kw-1)/2 .. (kw-1)/2 + 2W - 1."""
  h, w = x.shape[1], x.shape[2]
  pad = (kernel[1] - 1) // 2
  return WNConv(features, kernel, (2, 2), transpose=True, crop=((0, 2 * h), (pad, pad + 2 * w)),
                weight_norm=weight_norm, name=name)(x)


def down_right_shifted_deconv(features, x, kernel=(2, 2), weight_norm=True, name=None):
  """Stride-2 transposed conv to [2H, 2W]: keeps rows 0 .. 2H - 1 and columns 0 .. 2W - 1."""
  h, w = x.shape[1], x.shape[2]
  return WNConv(features, kernel, (2, 2), transpose=True, crop=((0, 2 * h), (0, 2 * w)),
                weight_norm=weight_norm, name=name)(x)


def nin(features, x, weight_norm=True, name=None):
  """A 1 x 1 conv ("network in network")."""
  return WNConv(features, (1, 1), weight_norm=weight_norm, name=name)(x)


class GatedResnet(nn.Module):
  """x + gate(conv(dropout(concat_elu(conv(concat_elu(x)) + nin(concat_elu(a))))) + h W_h); see module doc."""
  conv: str                    # 'down' (down-shifted 2x3) | 'down_right' (down-right-shifted 2x2)
  dropout: float = 0.0
  weight_norm: bool = True

  @nn.compact
  def __call__(self, x, a=None, onehot_BK=None, train=False):
    f = x.shape[-1]
    conv = down_shifted_conv if self.conv == 'down' else down_right_shifted_conv
    c1 = conv(f, concat_elu(x), weight_norm=self.weight_norm, name='conv1')
    if a is not None:
      c1 = c1 + nin(f, concat_elu(a), weight_norm=self.weight_norm, name='skip')
    c1 = concat_elu(c1)
    if self.dropout > 0:
      c1 = nn.Dropout(self.dropout, deterministic=not train)(c1)
    c2 = conv(2 * f, c1, weight_norm=self.weight_norm, init_scale=0.1, name='conv2')
    if onehot_BK is not None:
      hw = self.param('label', nn.with_logical_partitioning(nn.initializers.normal(0.05), ('embed', 'mlp')),
                      (onehot_BK.shape[-1], 2 * f))
      c2 = c2 + (onehot_BK @ hw).reshape(-1, 1, 1, 2 * f)
    a_, b_ = jnp.split(c2, 2, axis=-1)
    return x + a_ * jax.nn.sigmoid(b_)


class PixelCNNPP(nn.Module):
  """The PixelCNN++ network (see the module docstring). Returns [B, H, W, n_out]."""
  nr_resnet: int = 5
  nr_filters: int = 160
  n_out: int = 100
  dropout: float = 0.5
  weight_norm: bool = True

  @nn.compact
  def __call__(self, x_BHWC, onehot_BK=None, train=False):
    f, n, wn = self.nr_filters, self.nr_resnet, self.weight_norm
    if x_BHWC.shape[1] % 4 or x_BHWC.shape[2] % 4:
      raise ValueError(f'PixelCNN++ down-samples twice by 2: H and W must be divisible by 4, got {x_BHWC.shape[1:3]}.')
    counter = {'u': 0, 'ul': 0}

    def block(stream, x, a=None):
      i = counter[stream]
      counter[stream] += 1
      return GatedResnet('down' if stream == 'u' else 'down_right', self.dropout, wn,
                         name=f'{stream}_block{i}')(x, a, onehot_BK, train)

    x = jnp.concatenate([x_BHWC, jnp.ones(x_BHWC.shape[:-1] + (1,), x_BHWC.dtype)], axis=-1)
    u_list = [down_shift(down_shifted_conv(f, x, (2, 3), weight_norm=wn, name='u_in'))]
    ul_list = [down_shift(down_shifted_conv(f, x, (1, 3), weight_norm=wn, name='ul_in_above'))
               + right_shift(down_right_shifted_conv(f, x, (2, 1), weight_norm=wn, name='ul_in_left'))]
    # Down-sampling half (the reference's "up pass"): 3 stages, stride-2 convs between them.
    for stage in range(3):
      if stage > 0:
        u_list.append(down_shifted_conv(f, u_list[-1], (2, 3), (2, 2), wn, name=f'u_down{stage}'))
        ul_list.append(down_right_shifted_conv(f, ul_list[-1], (2, 2), (2, 2), wn, name=f'ul_down{stage}'))
      for _ in range(n):
        u_list.append(block('u', u_list[-1]))
        ul_list.append(block('ul', ul_list[-1], u_list[-1]))
    # Up-sampling half (the reference's "down pass"), with the long skip connections.
    u, ul = u_list.pop(), ul_list.pop()
    for stage in range(3):
      if stage > 0:
        u = down_shifted_deconv(f, u, (2, 3), wn, name=f'u_up{stage}')
        ul = down_right_shifted_deconv(f, ul, (2, 2), wn, name=f'ul_up{stage}')
      for _ in range(n if stage == 0 else n + 1):
        u = block('u', u, u_list.pop())
        ul = block('ul', ul, jnp.concatenate([u, ul_list.pop()], axis=-1))
    assert not u_list and not ul_list
    return nin(self.n_out, jax.nn.elu(ul), wn, name='out')
