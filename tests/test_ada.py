"""Adaptive discriminator augmentation (jaxgen/methods/ada.py): the p heuristic moves towards the
target and is clipped; every augmentation is exactly the identity at p = 0, differentiable and
shape-preserving, changes images at p = 1, and keeps its defining invariant (blits permute pixels,
hue and saturation keep the luma, brightness shifts and contrast scales, cutout zeroes a rectangle)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.errors import ConfigError
from jaxgen.methods import ada

B, H, W = 8, 16, 16


def _images(channels=3, seed=0, batch=B, size=H):
  """Random (so not symmetric under any flip or rotation) images in [-1, 1], drawn with numpy (every
  new jax.random shape would be an XLA compile, which dominates these tests)."""
  return jnp.asarray(np.random.default_rng(seed).uniform(-1.0, 1.0, (batch, size, size, channels)), jnp.float32)


def _cotangent(shape):
  return jnp.asarray(np.random.default_rng(7).standard_normal(shape), jnp.float32)


FULL = 'bgc+noise+cutout'
GREY_PIPELINES = ('lumaflip', 'hue', 'saturation', FULL)


def _run(pipelines):
  """A jitted (x, p, rng) -> {pipeline: (augment(x, p), vjp of a fixed random cotangent)}: one compile
  for all the pipelines."""
  @jax.jit
  def run(x, p, rng):
    r = _cotangent(x.shape)
    results = {}
    for pipeline in pipelines:
      out, vjp = jax.vjp(lambda y: ada.augment(y, p, rng, pipeline), x)
      results[pipeline] = (out, vjp(r)[0])
    return results
  return run


_run_rgb = _run(ada.TRANSFORMS + (FULL,))
_run_grey = _run(GREY_PIPELINES)


@functools.lru_cache(maxsize=None)
def _rgb(p):
  x = _images()
  return x, _run_rgb(x, jnp.float32(p), jax.random.key(1))


@functools.lru_cache(maxsize=None)
def _grey(p):
  x = _images(channels=1)
  return x, _run_grey(x, jnp.float32(p), jax.random.key(1))


def test_update_p_moves_towards_the_target_by_the_paper_step_and_is_clipped():
  kw = dict(target=0.6, batch_size=64, interval=4, kimg=500)
  step = 64 * 4 / 500_000
  np.testing.assert_allclose(ada.update_p(0.5, 0.8 * 256, 256, **kw), 0.5 + step, rtol=1e-6)   # r_t > target
  np.testing.assert_allclose(ada.update_p(0.5, -0.2 * 256, 256, **kw), 0.5 - step, rtol=1e-6)  # r_t < target
  assert float(ada.update_p(0.5, 0.6 * 10, 10, **kw)) == 0.5                                      # r_t = target
  assert float(ada.update_p(1.0, 256, 256, **kw)) == 1.0                                          # clipped at 1
  assert float(ada.update_p(0.0, -256, 256, **kw)) == 0.0                                         # clipped at 0
  assert float(ada.update_p(0.3, 0.0, 0, **kw)) == np.float32(0.3)                                # nothing seen
  jitted = jax.jit(functools.partial(ada.update_p, **kw))
  np.testing.assert_allclose(jitted(jnp.float32(0.25), jnp.float32(100.0), jnp.float32(128.0)), 0.25 + step,
                             rtol=1e-6)
  with pytest.raises(ConfigError, match='ada_kimg'):
    ada.update_p(0.5, 1.0, 1, target=0.6, batch_size=64, interval=4, kimg=0)


@pytest.mark.parametrize('transform', ada.TRANSFORMS + (FULL,))
def test_each_transform_is_identity_at_p0_changes_images_at_p1_and_is_differentiable(transform):
  x, at0 = _rgb(0.0)
  _, at1 = _rgb(1.0)
  out0, out1, grad = at0[transform][0], at1[transform][0], at1[transform][1]
  assert out0.shape == out1.shape == grad.shape == x.shape
  np.testing.assert_array_equal(out0, x)
  assert not np.allclose(out1, x, atol=1e-4), f'{transform} at p=1 left every image unchanged'
  assert np.all(np.isfinite(out1)) and np.all(np.isfinite(grad)) and np.any(grad != 0)


@pytest.mark.parametrize('transform', ['xflip', 'rotate90', 'xint'])
def test_blit_transforms_at_p1_permute_pixels_exactly(transform):
  x, results = _rgb(1.0)
  x, (out, grad) = np.asarray(x), jax.tree.map(np.asarray, results[transform])
  for b in range(B):
    np.testing.assert_array_equal(np.sort(out[b], axis=None), np.sort(x[b], axis=None))
    if transform == 'xflip':
      candidates = [x[b], x[b, :, ::-1]]
    elif transform == 'rotate90':
      candidates = [np.rot90(x[b], k, axes=(0, 1)) for k in range(4)]
    else:  # integer translation by at most W/8 = 2 pixels, wrapping around
      candidates = [np.roll(x[b], (dy, dx), axis=(0, 1)) for dy in range(-2, 3) for dx in range(-2, 3)]
    assert any(np.array_equal(out[b], c) for c in candidates), f'{transform}: example {b} is no such image'
  # A permutation's transposed Jacobian permutes the cotangent back: the same multiset of values.
  r = np.asarray(_cotangent(x.shape))
  np.testing.assert_array_equal(np.sort(grad, axis=None), np.sort(r, axis=None))


def test_colour_transforms_keep_their_invariants():
  x, results = _rgb(1.0)
  x = np.asarray(x)
  out = {t: np.asarray(results[t][0]) for t in ('brightness', 'contrast', 'hue', 'saturation')}
  luma = lambda y: y.mean(axis=-1)  # noqa: E731
  shift = out['brightness'] - x                      # one offset per example
  np.testing.assert_allclose(shift, np.broadcast_to(shift[:, :1, :1, :1], x.shape), atol=1e-6)
  ratio = out['contrast'] / x                        # one factor per example
  np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1, :1, :1], x.shape), rtol=1e-4)
  for t in ('hue', 'saturation'):                    # both keep the luma (the mean over R, G, B)
    np.testing.assert_allclose(luma(out[t]), luma(x), atol=1e-5)
  chroma = lambda y: np.linalg.norm(y - y.mean(axis=-1, keepdims=True), axis=-1)  # noqa: E731
  np.testing.assert_allclose(chroma(out['hue']), chroma(x), atol=1e-5)  # a rotation about the luma axis


def test_grey_images_luma_flip_negates_hue_and_saturation_are_identities():
  grey, at0 = _grey(0.0)
  _, at1 = _grey(1.0)
  grey = np.asarray(grey)
  flipped = np.asarray(at1['lumaflip'][0])
  for b in range(B):  # a grey image is either kept or negated
    assert np.array_equal(flipped[b], grey[b]) or np.array_equal(flipped[b], -grey[b])
  assert any(np.array_equal(flipped[b], -grey[b]) for b in range(B))
  for t in ('hue', 'saturation'):
    np.testing.assert_array_equal(at1[t][0], grey)
  np.testing.assert_array_equal(at0[FULL][0], grey)
  out, grad = at1[FULL]
  assert not np.allclose(out, grey) and np.all(np.isfinite(out)) and np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_geometric_transforms_resample_within_each_images_range():
  x, results = _rgb(1.0)
  x = np.asarray(x)
  lo, hi = x.min(axis=(1, 2, 3)), x.max(axis=(1, 2, 3))
  for t in ada.GROUPS['geom']:  # bilinear weights are convex: no value leaves the image's range
    out = np.asarray(results[t][0])
    assert np.all(out.min(axis=(1, 2, 3)) >= lo - 1e-6) and np.all(out.max(axis=(1, 2, 3)) <= hi + 1e-6)


def test_cutout_zeroes_one_rectangle_of_at_most_half_the_height_and_width():
  x, results = _rgb(1.0)
  x, out = np.asarray(x), np.asarray(results['cutout'][0])
  for b in range(B):
    cut = np.all(out[b] == 0, axis=-1) & np.any(x[b] != 0, axis=-1)
    np.testing.assert_array_equal(out[b][~cut], x[b][~cut])
    rows, cols = np.where(cut.any(axis=1))[0], np.where(cut.any(axis=0))[0]
    assert 0 < len(rows) <= H // 2 and 0 < len(cols) <= W // 2
    assert cut[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all() and cut.sum() == len(rows) * len(cols)


def test_each_example_is_augmented_with_probability_p():
  x = _images(channels=1, batch=2000, size=4)
  out = jax.jit(lambda y, p: ada.augment(y, p, jax.random.key(9), 'brightness'))(x, jnp.float32(0.3))
  changed = np.mean(np.any(np.asarray(out) != np.asarray(x), axis=(1, 2, 3)))
  assert abs(changed - 0.3) < 0.045, changed  # 4.4 standard errors of a Binomial(2000, 0.3) fraction


def test_pipeline_strings():
  assert ada.parse_pipeline('bgc') == ada.GROUPS['blit'] + ada.GROUPS['geom'] + ada.GROUPS['color']
  assert ada.parse_pipeline('cutout+b') == ada.GROUPS['blit'] + ('cutout',)
  assert ada.parse_pipeline('color+n') == ada.GROUPS['color'] + ('noise',)
  assert ada.parse_pipeline('hue') == ('hue',)
  x = _images()
  assert ada.augment(x, 1.0, jax.random.key(0), '') is x
  for bad in ('bgcfnc', 'bgx', 'blur'):
    with pytest.raises(ConfigError):
      ada.parse_pipeline(bad)
  with pytest.raises(ConfigError, match='1- or 3-channel'):
    ada.augment(jnp.zeros((2, 8, 8, 2)), 0.5, jax.random.key(0), 'c')
