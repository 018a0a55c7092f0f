"""Invertible layers and normalizing-flow networks: RealNVP (Dinh et al., 2017) and Glow (Kingma & Dhariwal, 2018).

Every layer is a Flax Linen module called as `layer(x, reverse=False) -> (y, logdet_B)`:
forward maps x to y with logdet = log|det dy/dx| per example; `reverse=True` maps y
back to x and returns the log-determinant of that inverse map (minus the forward
one). `layer.forward(x)` and `layer.inverse(y)` are the two directions by name.
Layers work on [B, ..., C] arrays (images [B, H, W, C] or vectors [B, D]); a
per-channel quantity is shared over the middle axes, so its log-determinant
counts once per position.

  ActNorm               y = (x + bias) * exp(logs), per channel; data-dependent init: the
                        first call during `init` sets bias/logs from that batch so y has zero
                        mean and unit variance per channel.
  Invertible1x1Conv     y = W x per position, W = P L (U + diag(sign * exp(log_s))) in LU form:
                        P (a permutation) and sign are constants (the 'consts' collection),
                        L is unit lower-triangular, U strictly upper; logdet = positions * sum log_s.
  AffineCoupling        y_b = x_b * exp(log_s(x_a)) + t(x_a), y_a = x_a, with a checkerboard
                        mask (images), a channel split (images) or a half split (vectors);
                        log_s = scale * tanh(raw) (RealNVP) or log sigmoid(raw + 2) (Glow).
  Squeeze               space-to-depth 2x2 ([B, H, W, C] -> [B, H/2, W/2, 4C]), logdet 0.
  LogitTransform        y = logit(alpha + (1 - 2 alpha) x) for x in [0, 1] (image preprocessing).
  ConditionalGaussianize  eps = (z - mean) * exp(-log_std), mean/log_std from a zero-init conv of
                        the kept half (Glow's learned split prior) or from learned per-channel
                        constants plus a class embedding (Glow's learned, class-conditional top prior).

Whole models map data to a flat standard-normal vector, so log p(x) = log N(eps; 0, I) + logdet:

  RealNVPImage          per scale: 3 checkerboard couplings, squeeze, 3 channel couplings, factor
                        out half the channels; the last scale: 4 checkerboard couplings. ResNet
                        coupling nets (no batch norm).
  RealNVPVector         alternating half-split couplings with MLP nets.
  Glow                  per level: squeeze, `depth` x (actnorm, 1x1 conv, affine coupling), then factor
                        out half the channels through the learned split prior; the top latent goes
                        through the learned (optionally class-conditional) top prior. On vectors:
                        one level without squeeze and with MLP coupling nets.
"""

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.models.conv import conv_kernel_init
from jaxgen.models.mlp import dense

_VECTOR = (None,)


def _positions(x) -> int:
  """Number of positions sharing per-channel parameters: prod of the middle axes (1 for vectors)."""
  return math.prod(x.shape[1:-1])


def _sum_except_batch(x):
  return x.reshape(x.shape[0], -1).sum(-1)


def _zeros_boxed(axes):
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


class InvertibleLayer(nn.Module):
  """Mixin: `forward(x) -> (y, logdet)` and `inverse(y) -> x` from `__call__(x, reverse)`."""

  def forward(self, x, *args, **kwargs):
    return self(x, *args, reverse=False, **kwargs)

  def inverse(self, y, *args, **kwargs):
    return self(y, *args, reverse=True, **kwargs)[0]


# ---- elementary layers -----------------------------------------------------------------------------


class ActNorm(InvertibleLayer):
  """Per-channel affine y = (x + bias) * exp(logs) with data-dependent initialisation."""
  eps: float = 1e-6

  @nn.compact
  def __call__(self, x, reverse=False):
    axes = tuple(range(x.ndim - 1))
    channels = x.shape[-1]

    def init_bias(rng):
      del rng
      return -jnp.mean(x, axis=axes)

    def init_logs(rng):
      del rng
      return -jnp.log(jnp.std(x, axis=axes) + self.eps)

    # Initialised from the batch only when called forward during init (init never runs reverse).
    bias = self.param('bias', nn.with_logical_partitioning(init_bias, _VECTOR))
    logs = self.param('logs', nn.with_logical_partitioning(init_logs, _VECTOR))
    assert bias.shape == (channels,)
    shape = (1,) * (x.ndim - 1) + (channels,)
    bias, logs = bias.reshape(shape), logs.reshape(shape)
    logdet = jnp.full((x.shape[0],), _positions(x) * jnp.sum(logs))
    if not reverse:
      return (x + bias) * jnp.exp(logs), logdet
    return x * jnp.exp(-logs) - bias, -logdet


class Invertible1x1Conv(InvertibleLayer):
  """y = W x at each position with W = P L (U + diag(sign * exp(log_s))), initialised from a random rotation.

  Trainable: `lower` (the C(C-1)/2 entries below L's unit diagonal), `upper` (the C(C-1)/2
  entries above U's diagonal) and `log_s` (C). P and sign(s) are fixed: they live in the
  'consts' collection, not in 'params'.
  """

  @nn.compact
  def __call__(self, x, reverse=False):
    c = x.shape[-1]
    lo_r, lo_c = np.tril_indices(c, -1)
    up_r, up_c = np.triu_indices(c, 1)
    if self.is_initializing() and not self.has_variable('consts', 'perm'):
      w = jnp.linalg.qr(jax.random.normal(self.make_rng('params'), (c, c)))[0]
      p0, l0, u0 = jax.scipy.linalg.lu(w)
      s0 = jnp.diag(u0)
    else:  # Flax evaluates init functions abstractly to check shapes even when the variables exist.
      p0 = l0 = u0 = jnp.eye(c, dtype=x.dtype)
      s0 = jnp.ones((c,), x.dtype)
    perm = self.variable('consts', 'perm', lambda: p0).value
    sign = self.variable('consts', 'sign', lambda: jnp.sign(s0)).value
    lower = self.param('lower', nn.with_logical_partitioning(lambda rng: l0[lo_r, lo_c], _VECTOR))
    upper = self.param('upper', nn.with_logical_partitioning(lambda rng: u0[up_r, up_c], _VECTOR))
    log_s = self.param('log_s', nn.with_logical_partitioning(lambda rng: jnp.log(jnp.abs(s0)), _VECTOR))
    lmat = jnp.eye(c, dtype=x.dtype).at[lo_r, lo_c].set(lower)
    umat = jnp.zeros((c, c), x.dtype).at[up_r, up_c].set(upper) + jnp.diag(sign * jnp.exp(log_s))
    w = jax.lax.stop_gradient(perm) @ lmat @ umat
    logdet = jnp.full((x.shape[0],), _positions(x) * jnp.sum(log_s))
    if not reverse:
      return jnp.einsum('...c,dc->...d', x, w), logdet
    return jnp.einsum('...c,dc->...d', x, jnp.linalg.inv(w)), -logdet


class Squeeze(InvertibleLayer):
  """Space-to-depth: [B, H, W, C] -> [B, H/2, W/2, 4C] (each 2x2 block to channels); logdet 0."""

  def __call__(self, x, reverse=False):
    zero = jnp.zeros((x.shape[0],), x.dtype)
    return (unsqueeze(x) if reverse else squeeze(x)), zero


def squeeze(x):
  b, h, w, c = x.shape
  x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // 2, w // 2, 4 * c)


def unsqueeze(x):
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, 2, 2, c // 4).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, 2 * h, 2 * w, c // 4)


class LogitTransform(InvertibleLayer):
  """y = logit(alpha + (1 - 2 alpha) x), x in [0, 1]; logdet = sum log((1 - 2 alpha) / (p (1 - p)))."""
  alpha: float = 0.05

  def __call__(self, x, reverse=False):
    a = self.alpha
    if not reverse:
      p = a + (1 - 2 * a) * x
      y = jnp.log(p) - jnp.log1p(-p)
      return y, _sum_except_batch(math.log(1 - 2 * a) - jnp.log(p) - jnp.log1p(-p))
    p = jax.nn.sigmoid(x)
    return (p - a) / (1 - 2 * a), -_sum_except_batch(math.log(1 - 2 * a) - jnp.log(p) - jnp.log1p(-p))


# ---- coupling networks -----------------------------------------------------------------------------


class ZeroConv(nn.Module):
  """3x3 conv initialised to zero, output scaled by exp(logscale_factor * logs) (Glow's conv2d_zeros)."""
  features: int
  logscale_factor: float = 3.0

  @nn.compact
  def __call__(self, x):
    h = nn.Conv(self.features, (3, 3), padding='SAME',
                kernel_init=nn.with_logical_partitioning(nn.initializers.zeros_init(),
                                                         (None, None, 'conv_in', 'conv_out')),
                bias_init=_zeros_boxed(('conv_out',)))(x)
    logs = self.param('logs', _zeros_boxed(_VECTOR), (self.features,))
    return h * jnp.exp(self.logscale_factor * logs).reshape(1, 1, 1, self.features)


def _conv(features, kernel, use_bias=True):
  return nn.Conv(features, (kernel, kernel), padding='SAME', use_bias=use_bias, kernel_init=conv_kernel_init(),
                 bias_init=_zeros_boxed(('conv_out',)))


class ResNetCouplingNet(nn.Module):
  """RealNVP's coupling network: conv 3x3 -> `num_blocks` residual blocks (two 3x3 convs) -> zero conv."""
  width: int
  num_blocks: int
  out_features: int

  @nn.compact
  def __call__(self, x):
    h = _conv(self.width, 3)(x)
    for _ in range(self.num_blocks):
      r = _conv(self.width, 3)(nn.relu(h))
      h = h + _conv(self.width, 3)(nn.relu(r))
    return ZeroConv(self.out_features)(nn.relu(h))


class GlowCouplingNet(nn.Module):
  """Glow's NN(): conv 3x3 (no bias) -> actnorm -> relu -> conv 1x1 (no bias) -> actnorm -> relu -> zero conv 3x3."""
  width: int
  out_features: int

  @nn.compact
  def __call__(self, x):
    h = nn.relu(ActNorm()(_conv(self.width, 3, use_bias=False)(x))[0])
    h = nn.relu(ActNorm()(_conv(self.width, 1, use_bias=False)(h))[0])
    return ZeroConv(self.out_features)(h)


class MLPCouplingNet(nn.Module):
  """[B, D_in] -> [B, out_features]: `hidden` SiLU Dense layers then a zero-initialised Dense."""
  hidden: Sequence[int]
  out_features: int

  @nn.compact
  def __call__(self, x):
    h = x
    for width in self.hidden:
      h = nn.silu(dense(width)(h))
    return nn.Dense(self.out_features, kernel_init=_zeros_boxed(('embed', 'mlp')),
                    bias_init=_zeros_boxed(('mlp',)))(h)


class AffineCoupling(InvertibleLayer):
  """Affine coupling with mask 'checkerboard' | 'channel' (images) or 'half' (vectors).

  `parity` chooses which half is transformed. `net` is 'resnet' (RealNVP), 'glow' or 'mlp';
  `scale` is 'tanh' (log_s = scale_c * tanh(raw), scale_c learned, init 1) or 'sigmoid'
  (log_s = log sigmoid(raw + 2), Glow).
  """
  mask: str
  parity: int = 0
  net: str = 'resnet'
  width: int = 64
  num_blocks: int = 2
  hidden: Sequence[int] = (64, 64)
  scale: str = 'tanh'

  def _network(self, features):
    if self.net == 'resnet':
      return ResNetCouplingNet(self.width, self.num_blocks, 2 * features, name='net')
    if self.net == 'glow':
      return GlowCouplingNet(self.width, 2 * features, name='net')
    if self.net == 'mlp':
      return MLPCouplingNet(tuple(self.hidden), 2 * features, name='net')
    raise ValueError(f'unknown coupling net {self.net!r}')

  def _log_scale(self, raw):
    if self.scale == 'tanh':
      s = self.param('scale', nn.with_logical_partitioning(nn.initializers.ones_init(), _VECTOR), (raw.shape[-1],))
      return s.reshape((1,) * (raw.ndim - 1) + (-1,)) * jnp.tanh(raw)
    if self.scale == 'sigmoid':
      return jax.nn.log_sigmoid(raw + 2.0)
    raise ValueError(f'unknown coupling scale {self.scale!r}')

  @nn.compact
  def __call__(self, x, reverse=False):
    if self.mask == 'checkerboard':
      return self._checkerboard(x, reverse)
    if self.mask in ('channel', 'half'):
      return self._split(x, reverse)
    raise ValueError(f'unknown coupling mask {self.mask!r}')

  def _checkerboard(self, x, reverse):
    b, h, w, c = x.shape
    grid = (np.arange(h)[:, None] + np.arange(w)[None, :] + self.parity) % 2
    mask = jnp.asarray(grid, x.dtype).reshape(1, h, w, 1)
    kept = x * mask
    inp = jnp.concatenate([kept, jnp.broadcast_to(mask, (b, h, w, 1))], axis=-1)
    out = self._network(c)(inp)
    t, log_s = out[..., :c] * (1 - mask), self._log_scale(out[..., c:]) * (1 - mask)
    logdet = _sum_except_batch(log_s)
    if not reverse:
      return kept + (1 - mask) * (x * jnp.exp(log_s) + t), logdet
    return kept + (1 - mask) * ((x - t) * jnp.exp(-log_s)), -logdet

  def _split(self, x, reverse):
    c = x.shape[-1]
    half = c // 2
    if self.parity == 0:
      xa, xb = x[..., :half], x[..., half:]
    else:
      xa, xb = x[..., c - half:], x[..., :c - half]
    nb = xb.shape[-1]
    out = self._network(nb)(xa)
    t, log_s = out[..., :nb], self._log_scale(out[..., nb:])
    logdet = _sum_except_batch(log_s)
    yb = xb * jnp.exp(log_s) + t if not reverse else (xb - t) * jnp.exp(-log_s)
    y = jnp.concatenate([xa, yb] if self.parity == 0 else [yb, xa], axis=-1)
    return y, (logdet if not reverse else -logdet)


class ConditionalGaussianize(InvertibleLayer):
  """eps = (z - mean) * exp(-log_std), an affine bijection that turns a learned prior into N(0, I).

  'split' (needs `context`, the kept half): [mean, log_std] = ZeroConv(context).
  'top': [mean, log_std] per channel = learned constants (`learn_top`, zero init) plus, when
  `num_classes` > 0, a zero-initialised class embedding of `label` (the Glow paper's
  class-conditional prior).
  """
  kind: str
  num_classes: int = 0
  learn_top: bool = True

  @nn.compact
  def __call__(self, z, context=None, label=None, reverse=False):
    c = z.shape[-1]
    shape = (z.shape[0],) + (1,) * (z.ndim - 2) + (2 * c,)
    if self.kind == 'split':
      h = ZeroConv(2 * c)(context)
    else:
      h = jnp.zeros(shape, z.dtype)
      if self.learn_top:
        h = h + self.param('prior', _zeros_boxed(_VECTOR), (2 * c,)).reshape((1,) * (z.ndim - 1) + (2 * c,))
      if self.num_classes > 0:
        table = self.param('class_prior', _zeros_boxed((None, None)), (self.num_classes, 2 * c))
        h = h + table[label].reshape(shape)
    mean, log_std = h[..., :c], h[..., c:]
    logdet = -_sum_except_batch(jnp.broadcast_to(log_std, z.shape))
    if not reverse:
      return (z - mean) * jnp.exp(-log_std), logdet
    return z * jnp.exp(log_std) + mean, -logdet


class VariationalDequantizer(nn.Module):
  """q(u | x), a density on (0, 1)^D for the dequantization noise of a discrete image x.

  u = sigmoid(mean(x) + exp(log_scale(x)) * e), e ~ N(0, I): a logistic-normal whose
  per-dimension mean and log-scale come from a small conv net of x (two 3x3 ReLU convs
  and a zero-initialised 3x3 conv). It is Flow++'s variational dequantization
  (Ho et al., 2019) with a single elementwise conditional layer instead of a
  conditional coupling flow. Returns (u, log q(u | x) per dimension).
  """
  width: int = 32

  @nn.compact
  def __call__(self, x_in, e):
    c = x_in.shape[-1]
    h = nn.relu(_conv(self.width, 3)(x_in))
    h = nn.relu(_conv(self.width, 3)(h))
    out = ZeroConv(2 * c)(h)
    mean, log_scale = out[..., :c], out[..., c:]
    z = mean + jnp.exp(log_scale) * e
    log_q = (-0.5 * e ** 2 - 0.5 * math.log(2 * math.pi) - log_scale
             - jax.nn.log_sigmoid(z) - jax.nn.log_sigmoid(-z))
    return jax.nn.sigmoid(z), log_q


# ---- whole models ----------------------------------------------------------------------------------


def _flatten(parts):
  return jnp.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=-1)


def _unflatten(flat, shapes):
  out, start = [], 0
  for shape in shapes:
    n = math.prod(shape)
    out.append(flat[:, start:start + n].reshape((flat.shape[0],) + tuple(shape)))
    start += n
  return out


class RealNVPImage(InvertibleLayer):
  """Multi-scale RealNVP on [B, H, W, C] images; maps x to eps [B, H*W*C], eps ~ N(0, I)."""
  data_shape: Sequence[int] = (28, 28, 1)
  num_scales: int = 2
  width: int = 64
  num_blocks: int = 2
  scale: str = 'tanh'

  def _coupling(self, name, mask, parity):
    return AffineCoupling(mask, parity, 'resnet', self.width, self.num_blocks, scale=self.scale, name=name)

  def _scale_layers(self, s):
    """[(layer, is_squeeze)] of scale s, in forward order."""
    last = s == self.num_scales - 1
    layers = [self._coupling(f's{s}_cb{i}', 'checkerboard', i % 2) for i in range(4 if last else 3)]
    if not last:
      layers.append(Squeeze(name=f's{s}_squeeze'))
      layers += [self._coupling(f's{s}_ch{i}', 'channel', i % 2) for i in range(3)]
    return layers

  def latent_shapes(self, shape):
    h, w, c = shape
    shapes = []
    for _ in range(self.num_scales - 1):
      h, w, c = h // 2, w // 2, 4 * c
      shapes.append((h, w, c // 2))
      c = c - c // 2
    shapes.append((h, w, c))
    return shapes

  @nn.compact
  def __call__(self, x, label=None, reverse=False):
    del label
    if not reverse:
      logdet = jnp.zeros((x.shape[0],), x.dtype)
      parts, h = [], x
      for s in range(self.num_scales):
        for layer in self._scale_layers(s):
          h, ld = layer(h)
          logdet = logdet + ld
        if s < self.num_scales - 1:
          parts.append(h[..., :h.shape[-1] // 2])
          h = h[..., h.shape[-1] // 2:]
      parts.append(h)
      return _flatten(parts), logdet
    eps = x
    parts = _unflatten(eps, self.latent_shapes(self.data_shape))
    h = parts[-1]
    logdet = jnp.zeros((eps.shape[0],), eps.dtype)
    for s in reversed(range(self.num_scales)):
      if s < self.num_scales - 1:
        h = jnp.concatenate([parts[s], h], axis=-1)
      for layer in reversed(self._scale_layers(s)):
        h, ld = layer(h, reverse=True)
        logdet = logdet + ld
    return h, logdet


class RealNVPVector(InvertibleLayer):
  """RealNVP on [B, D] vectors: `num_couplings` half-split couplings (alternating halves) with MLP nets."""
  num_couplings: int = 8
  hidden: Sequence[int] = (64, 64)
  scale: str = 'tanh'

  def _layers(self):
    return [AffineCoupling('half', i % 2, 'mlp', hidden=tuple(self.hidden), scale=self.scale, name=f'coupling{i}')
            for i in range(self.num_couplings)]

  @nn.compact
  def __call__(self, x, label=None, reverse=False):
    del label
    layers = self._layers()
    logdet = jnp.zeros((x.shape[0],), x.dtype)
    for layer in (reversed(layers) if reverse else layers):
      x, ld = layer(x, reverse=reverse)
      logdet = logdet + ld
    return x, logdet


class Glow(InvertibleLayer):
  """Glow: `levels` x (squeeze, `depth` x (actnorm, 1x1 conv, affine coupling), split); learned priors.

  On images maps x [B, H, W, C] to eps [B, H*W*C]; on vectors (`image=False`) uses one level,
  no squeeze, MLP coupling nets (`hidden`) and the 1x1 conv as an LU-parametrised dense map.
  """
  data_shape: Sequence[int] = (32, 32, 3)
  levels: int = 3
  depth: int = 32
  width: int = 512
  hidden: Sequence[int] = (64, 64)
  scale: str = 'sigmoid'
  num_classes: int = 0
  learn_top: bool = True
  image: bool = True

  def _step(self, lvl, k):
    net = dict(net='glow', width=self.width) if self.image else dict(net='mlp', hidden=tuple(self.hidden))
    return [ActNorm(name=f'l{lvl}_k{k}_actnorm'), Invertible1x1Conv(name=f'l{lvl}_k{k}_invconv'),
            AffineCoupling('channel' if self.image else 'half', 0, scale=self.scale, name=f'l{lvl}_k{k}_coupling',
                           **net)]

  def _level_layers(self, lvl):
    layers = [Squeeze(name=f'l{lvl}_squeeze')] if self.image else []
    for k in range(self.depth):
      layers += self._step(lvl, k)
    return layers

  def latent_shapes(self, shape):
    if not self.image:
      return [tuple(shape)]
    h, w, c = shape
    shapes = []
    for lvl in range(self.levels):
      h, w, c = h // 2, w // 2, 4 * c
      if lvl < self.levels - 1:
        shapes.append((h, w, c // 2))
        c = c - c // 2
    shapes.append((h, w, c))
    return shapes

  def _split_prior(self, lvl):
    return ConditionalGaussianize('split', name=f'l{lvl}_split_prior')

  def _top_prior(self):
    return ConditionalGaussianize('top', self.num_classes, self.learn_top, name='top_prior')

  @nn.compact
  def __call__(self, x, label=None, reverse=False):
    if reverse:
      return self._invert(x, label)
    levels = self.levels if self.image else 1
    logdet = jnp.zeros((x.shape[0],), x.dtype)
    parts, h = [], x
    for lvl in range(levels):
      for layer in self._level_layers(lvl):
        h, ld = layer(h)
        logdet = logdet + ld
      if lvl < levels - 1:
        half = h.shape[-1] // 2
        z, h = h[..., :half], h[..., half:]
        eps, ld = self._split_prior(lvl)(z, context=h)
        parts.append(eps)
        logdet = logdet + ld
    eps, ld = self._top_prior()(h, label=label)
    parts.append(eps)
    return _flatten(parts), logdet + ld

  def _invert(self, eps, label):
    levels = self.levels if self.image else 1
    parts = _unflatten(eps, self.latent_shapes(self.data_shape))
    h, logdet = self._top_prior()(parts[-1], label=label, reverse=True)
    for lvl in reversed(range(levels)):
      if lvl < levels - 1:
        z, ld = self._split_prior(lvl)(parts[lvl], context=h, reverse=True)
        logdet = logdet + ld
        h = jnp.concatenate([z, h], axis=-1)
      for layer in reversed(self._level_layers(lvl)):
        h, ld = layer(h, reverse=True)
        logdet = logdet + ld
    return h, logdet


def gaussian_log_prob(eps):
  """log N(eps; 0, I) summed over all but the batch axis."""
  return -0.5 * _sum_except_batch(eps ** 2) - 0.5 * math.prod(eps.shape[1:]) * math.log(2 * math.pi)



