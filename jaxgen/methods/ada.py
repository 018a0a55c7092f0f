"""Adaptive discriminator augmentation (ADA; Karras et al. 2020, "Training generative adversarial
networks with limited data", Sec. 2-3 and Appendix B; the official stylegan2-ada-pytorch
`training/augment.py`), as pure functions.

`augment(x, p, rng, pipeline)` augments images in the model range [-1, 1]. Every transform of the
pipeline is applied to each example independently with probability p (a Python or traced float32
scalar), with the paper's parameter distributions:

  blit  'b'   xflip (mirror x with probability 1/2), rotate90 (k quarter turns, k uniform in 0..3;
              0 or 2 for non-square images), xint (integer translation by round(u * W), u uniform in
              [-1/8, 1/8], per axis; *wrap* padding, so that it is a permutation of the pixels: the
              official code pads by reflection)
  geom  'g'   scale (isotropic, 2^N(0, 0.2^2)), rotate (uniform angle; a pre- and a post-rotation
              each with probability 1 - sqrt(1 - p), so that some rotation happens with probability p),
              aniso (2^N(0, 0.2^2) on x and its inverse on y), xfrac (translation N(0, (W/8)^2)):
              composed into one affine map and resampled bilinearly with reflection padding (the
              official code resamples at 2x resolution with a wavelet low-pass filter)
  color 'c'   brightness (+ N(0, 0.2^2)), contrast (x 2^N(0, 0.5^2)), lumaflip (reflect the colour
              along the luma axis (1, 1, 1) / sqrt 3: a 1-channel image is negated), hue (rotation about
              the luma axis by a uniform angle), saturation (the chroma scaled by 2^N(0, 1)); hue and
              saturation are the identity on 1-channel images
  noise 'n'   additive N(0, sigma^2) noise, sigma = |N(0, 0.1^2)|
  cutout      a zeroed rectangle of half the image's height and width at a uniform centre

A pipeline string is '+'-separated parts, each a group name ('blit', 'geom', 'color', 'noise',
'cutout'), a run of group letters ('b', 'g', 'c', 'n': 'bgc' is the paper's default), or one
transform's name ('xflip', 'hue', ...): e.g. 'bgc', 'bgc+cutout', 'b+noise', 'xint'. The official
image-space filtering ('f') is not implemented. The transforms run in the official order (blit,
geometric, colour, noise, cutout) whatever the order in the string; each reads its own columns of
one set of random draws, so switching one transform on or off does not change the draws of the others.

Every transform is differentiable in x (gradients reach the generator), preserves the shape, and
is exactly the identity at p = 0 (an example a transform skips is passed through unchanged).

`update_p` is the ADA heuristic: every `interval` steps p moves by sign(r_t - target) *
(batch_size * interval) / (kimg * 1000), r_t = E[sign(D(real))] over those steps.
"""

import math

import jax
import jax.numpy as jnp

from jaxgen.errors import ConfigError

# The official AugmentPipe's parameter distributions.
XINT_MAX = 0.125
SCALE_STD = 0.2
ROTATE_MAX = 1.0
ANISO_STD = 0.2
XFRAC_STD = 0.125
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5
HUE_MAX = 1.0
SATURATION_STD = 1.0
NOISE_STD = 0.1
CUTOUT_SIZE = 0.5

GROUPS = {
    'blit': ('xflip', 'rotate90', 'xint'),
    'geom': ('scale', 'rotate', 'aniso', 'xfrac'),
    'color': ('brightness', 'contrast', 'lumaflip', 'hue', 'saturation'),
    'noise': ('noise',),
    'cutout': ('cutout',),
}
LETTERS = {'b': 'blit', 'g': 'geom', 'c': 'color', 'n': 'noise'}
# Every transform, in the order they are applied.
TRANSFORMS = tuple(t for group in GROUPS.values() for t in group)


def parse_pipeline(pipeline: str) -> tuple:
  """The transforms a pipeline string enables (module docstring), in the order they run."""
  if not isinstance(pipeline, str):
    raise ConfigError(f'the augmentation pipeline must be a string such as "bgc", got {pipeline!r}.')
  enabled = set()
  for part in filter(None, pipeline.replace(' ', '').split('+')):
    if part in GROUPS:
      enabled.update(GROUPS[part])
    elif part in TRANSFORMS:
      enabled.add(part)
    elif part == 'filter' or 'f' in part and set(part) <= set(LETTERS) | {'f'}:
      raise ConfigError(f'augmentation pipeline {pipeline!r}: image-space filtering (f) is not implemented; '
                        'use the blit/geom/color/noise/cutout transforms, e.g. "bgc".')
    elif set(part) <= set(LETTERS):
      for letter in part:
        enabled.update(GROUPS[LETTERS[letter]])
    else:
      raise ConfigError(f'augmentation pipeline {pipeline!r}: unknown part {part!r}; parts are group letters '
                        f'(b, g, c, n), group names ({", ".join(GROUPS)}) or transforms ({", ".join(TRANSFORMS)}), '
                        'joined by "+".')
  return tuple(t for t in TRANSFORMS if t in enabled)


# Columns of the per-example random draws: one uniform [B, U] and one normal [B, N] array for every
# transform (two random-number programs instead of dozens, which XLA:CPU compiles much faster).
_UNIFORM = ('xflip', 'xflip_bit', 'rotate90', 'rotate90_k', 'xint', 'xint_x', 'xint_y', 'scale', 'rotate_pre',
            'rotate_pre_angle', 'aniso', 'rotate_post', 'rotate_post_angle', 'xfrac', 'brightness', 'contrast',
            'lumaflip', 'lumaflip_bit', 'hue', 'hue_angle', 'saturation', 'noise', 'cutout', 'cutout_x', 'cutout_y')
_NORMAL = ('scale', 'aniso', 'xfrac_x', 'xfrac_y', 'brightness', 'contrast', 'saturation', 'noise')


class _Draws:
  """The per-example random numbers of one augment call: u(name) ~ U[0, 1), n(name) ~ N(0, 1), [B]."""

  def __init__(self, rng, b):
    key_u, key_n, self.key_field = jax.random.split(rng, 3)
    self._u = jax.random.uniform(key_u, (b, len(_UNIFORM)))
    self._n = jax.random.normal(key_n, (b, len(_NORMAL)))

  def u(self, name):
    return self._u[:, _UNIFORM.index(name)]

  def n(self, name):
    return self._n[:, _NORMAL.index(name)]

  def coin(self, name, p):
    """[B] bool: True with probability p (never at p = 0, always at p = 1)."""
    return self.u(name) < p


def _select(apply_B, new_BHWC, x_BHWC):
  return jnp.where(apply_B[:, None, None, None], new_BHWC, x_BHWC)


def _blit(x, p, draws, enabled):
  """Flip, quarter turns and integer translation with wrap-around, as one exact pixel gather."""
  b, h, w, _ = x.shape
  # Pixel centres in doubled centred coordinates (integers): U = 2j - (W - 1), V = 2i - (H - 1).
  u = jnp.broadcast_to((2 * jnp.arange(w) - (w - 1))[None, None, :], (b, h, w))
  v = jnp.broadcast_to((2 * jnp.arange(h) - (h - 1))[None, :, None], (b, h, w))
  expand = lambda a: a[:, None, None]  # noqa: E731
  if 'xint' in enabled:
    on = draws.coin('xint', p)
    tx = jnp.where(on, jnp.round((draws.u('xint_x') * 2 - 1) * XINT_MAX * w), 0.0).astype(jnp.int32)
    ty = jnp.where(on, jnp.round((draws.u('xint_y') * 2 - 1) * XINT_MAX * h), 0.0).astype(jnp.int32)
    u, v = u - 2 * expand(tx), v - 2 * expand(ty)
  if 'rotate90' in enabled:
    k = jnp.floor(draws.u('rotate90_k') * 4).astype(jnp.int32)
    if h != w:
      k = 2 * (k // 2)
    k = expand(jnp.where(draws.coin('rotate90', p), k, 0))
    u, v = (jnp.where(k == 0, u, jnp.where(k == 1, -v, jnp.where(k == 2, -u, v))),
            jnp.where(k == 0, v, jnp.where(k == 1, u, jnp.where(k == 2, -v, -u))))
  if 'xflip' in enabled:
    flip = draws.coin('xflip', p) & (draws.u('xflip_bit') < 0.5)
    u = jnp.where(expand(flip), -u, u)
  cols = jnp.mod((u + (w - 1)) // 2, w)
  rows = jnp.mod((v + (h - 1)) // 2, h)
  batch = jnp.broadcast_to(jnp.arange(b)[:, None, None], (b, h, w))
  return x[batch, rows, cols]


def _matmul(a, b):
  return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def _affine(a00, a01, a10, a11, t0=None, t1=None):
  """[B, 3, 3] homogeneous 2-D maps from [B] entries."""
  zero, one = jnp.zeros_like(a00), jnp.ones_like(a00)
  t0 = zero if t0 is None else t0
  t1 = zero if t1 is None else t1
  return jnp.stack([jnp.stack([a00, a01, t0], -1), jnp.stack([a10, a11, t1], -1),
                    jnp.stack([zero, zero, one], -1)], -2)


def _reflect(i, n):
  """Index i of a reflection-padded axis of length n (edge not repeated: -1 -> 1, n -> n - 2)."""
  period = 2 * (n - 1)
  i = jnp.mod(i, period)
  return jnp.where(i >= n, period - i, i)


def _geom(x, p, draws, enabled):
  """Scale, rotations, anisotropic scale and fractional translation: one inverse affine map from
  output to input pixel coordinates (centred), bilinear resampling with reflection padding."""
  b, h, w, _ = x.shape
  ones, zeros = jnp.ones((b,), jnp.float32), jnp.zeros((b,), jnp.float32)
  g_inv = _affine(ones, zeros, zeros, ones)
  active = jnp.zeros((b,), bool)
  p_rot = 1.0 - jnp.sqrt(jnp.clip(1.0 - p, 0.0, 1.0))
  for name in ('scale', 'rotate_pre', 'aniso', 'rotate_post', 'xfrac'):
    if name.split('_')[0] not in enabled:
      continue
    if name.startswith('rotate'):
      on = draws.coin(name, p_rot)
      theta = jnp.where(on, (draws.u(name + '_angle') * 2 - 1) * math.pi * ROTATE_MAX, 0.0)
      c, s = jnp.cos(theta), jnp.sin(theta)
      m = _affine(c, -s, s, c)
    elif name == 'scale':
      on = draws.coin(name, p)
      s = jnp.where(on, jnp.exp2(draws.n('scale') * SCALE_STD), 1.0)
      m = _affine(1.0 / s, zeros, zeros, 1.0 / s)
    elif name == 'aniso':
      on = draws.coin(name, p)
      s = jnp.where(on, jnp.exp2(draws.n('aniso') * ANISO_STD), 1.0)
      m = _affine(1.0 / s, zeros, zeros, s)
    else:  # xfrac
      on = draws.coin(name, p)
      tx = jnp.where(on, draws.n('xfrac_x') * XFRAC_STD * w, 0.0)
      ty = jnp.where(on, draws.n('xfrac_y') * XFRAC_STD * h, 0.0)
      m = _affine(ones, zeros, zeros, ones, -tx, -ty)
    g_inv = _matmul(g_inv, m)
    active = active | on

  cx, cy = (w - 1) / 2, (h - 1) / 2
  u = jnp.broadcast_to(jnp.arange(w, dtype=jnp.float32)[None, :] - cx, (h, w))
  v = jnp.broadcast_to(jnp.arange(h, dtype=jnp.float32)[:, None] - cy, (h, w))
  a = lambda i, j: g_inv[:, i, j][:, None, None]  # noqa: E731
  col = a(0, 0) * u[None] + a(0, 1) * v[None] + a(0, 2) + cx
  row = a(1, 0) * u[None] + a(1, 1) * v[None] + a(1, 2) + cy
  c0, r0 = jnp.floor(col), jnp.floor(row)
  fc, fr = col - c0, row - r0
  # The 2x2 neighbours of every sample point, gathered at once: [B, H, W, 2 (rows), 2 (cols)].
  shape = (b, h, w, 2, 2)
  offset = jnp.arange(2)
  rows = jnp.broadcast_to(_reflect(r0.astype(jnp.int32)[..., None, None] + offset[None, None, None, :, None], h),
                          shape)
  cols = jnp.broadcast_to(_reflect(c0.astype(jnp.int32)[..., None, None] + offset[None, None, None, None, :], w),
                          shape)
  batch = jnp.broadcast_to(jnp.arange(b)[:, None, None, None, None], shape)
  weight_r = jnp.stack([1 - fr, fr], axis=-1)[..., :, None]
  weight_c = jnp.stack([1 - fc, fc], axis=-1)[..., None, :]
  weights = (weight_r * weight_c)[..., None]                        # [B, H, W, 2, 2, 1]
  resampled = jnp.sum(x[batch, rows, cols] * weights, axis=(3, 4))
  return _select(active, resampled, x)


def _color(x, p, draws, enabled):
  """Brightness, contrast, luma flip, hue rotation, saturation, each on its own coin."""
  c = x.shape[-1]
  per_example = lambda a: a[:, None, None, None]  # noqa: E731
  luma = lambda y: jnp.mean(y, axis=-1, keepdims=True)  # noqa: E731  (v v^T y, v = (1, 1, 1) / sqrt 3)
  for name in ('brightness', 'contrast', 'lumaflip', 'hue', 'saturation'):
    if name not in enabled or (name in ('hue', 'saturation') and c == 1):
      continue
    on = draws.coin(name, p)
    if name == 'brightness':
      new = x + per_example(draws.n(name) * BRIGHTNESS_STD)
    elif name == 'contrast':
      new = x * per_example(jnp.exp2(draws.n(name) * CONTRAST_STD))
    elif name == 'lumaflip':
      on = on & (draws.u('lumaflip_bit') < 0.5)
      new = x - 2 * luma(x)
    elif name == 'hue':
      # Rodrigues' rotation about the unit luma axis v: y cos + (v x y) sin + v (v . y)(1 - cos).
      theta = per_example((draws.u('hue_angle') * 2 - 1) * math.pi * HUE_MAX)
      r, g, bl = x[..., 0:1], x[..., 1:2], x[..., 2:3]
      cross = jnp.concatenate([bl - g, r - bl, g - r], axis=-1) / math.sqrt(3)
      new = x * jnp.cos(theta) + cross * jnp.sin(theta) + luma(x) * (1 - jnp.cos(theta))
    else:  # saturation
      s = per_example(jnp.exp2(draws.n(name) * SATURATION_STD))
      new = luma(x) + (x - luma(x)) * s
    x = _select(on, new, x)
  return x


def augment(x_BHWC, p, rng, pipeline: str = 'bgc'):
  """Augment images in [-1, 1] with probability p per example and transform (module docstring)."""
  if x_BHWC.ndim != 4:
    raise ValueError(f'augment needs images [B, H, W, C], got shape {x_BHWC.shape}.')
  enabled = parse_pipeline(pipeline)
  if not enabled:
    return x_BHWC
  x = x_BHWC
  b, h, w, c = x.shape
  if c not in (1, 3) and {'lumaflip', 'hue', 'saturation'} & set(enabled):
    raise ConfigError(f'colour augmentation (lumaflip, hue, saturation) needs 1- or 3-channel images, got {c} '
                      'channels; drop "c" from config.method.augment (e.g. "bg").')
  p = jnp.asarray(p, jnp.float32)
  draws = _Draws(rng, b)
  if set(GROUPS['blit']) & set(enabled):
    x = _blit(x, p, draws, enabled)
  if set(GROUPS['geom']) & set(enabled):
    x = _geom(x, p, draws, enabled)
  if set(GROUPS['color']) & set(enabled):
    x = _color(x, p, draws, enabled)
  if 'noise' in enabled:
    sigma = jnp.abs(draws.n('noise')) * NOISE_STD
    field = jax.random.normal(draws.key_field, (b, h * w * c), x.dtype).reshape(x.shape)
    x = _select(draws.coin('noise', p), x + field * sigma[:, None, None, None], x)
  if 'cutout' in enabled:
    centre_x, centre_y = draws.u('cutout_x')[:, None], draws.u('cutout_y')[:, None]
    inside_x = jnp.abs((jnp.arange(w) + 0.5)[None, :] / w - centre_x) < CUTOUT_SIZE / 2   # [B, W]
    inside_y = jnp.abs((jnp.arange(h) + 0.5)[None, :] / h - centre_y) < CUTOUT_SIZE / 2   # [B, H]
    keep = ~(inside_y[:, :, None] & inside_x[:, None, :])
    x = _select(draws.coin('cutout', p), x * keep[..., None].astype(x.dtype), x)
  return x


def update_p(p, sign_sum, count, *, target: float, batch_size: int, interval: int, kimg: float):
  """The ADA update of the augmentation probability (module docstring), clipped to [0, 1].

  sign_sum / count = r_t, the mean of sign(D(real)) over the last `interval` steps; with count = 0
  p is returned unchanged. Works on Python numbers and (traced) arrays alike.
  """
  if not 0.0 <= float(target) <= 1.0:
    raise ConfigError(f'config.method.ada_target must be in [0, 1], got {target}.')
  if float(kimg) <= 0 or int(batch_size) <= 0 or int(interval) <= 0:
    raise ConfigError(f'ADA needs positive ada_kimg, batch size and ada_interval; got {kimg}, {batch_size}, '
                      f'{interval}.')
  p = jnp.asarray(p, jnp.float32)
  count = jnp.asarray(count, jnp.float32)
  r_t = jnp.asarray(sign_sum, jnp.float32) / jnp.maximum(count, 1.0)
  step = (int(batch_size) * int(interval)) / (float(kimg) * 1000.0)
  new = jnp.clip(p + jnp.sign(r_t - float(target)) * step, 0.0, 1.0)
  return jnp.where(count > 0, new, p)
