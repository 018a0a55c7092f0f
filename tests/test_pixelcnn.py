"""PixelCNN family: autoregressive masks, blind spot, exact normalisation, sampler, conditioning, configs.

Every property is checked against mathematics on tiny images: Jacobians of the
logits w.r.t. the input (jax.jacrev), sums of p(x) over every possible image,
and sample frequencies against the exact distribution.
"""

import itertools
import math
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxgen import train
from jaxgen.core.config import base_config
from jaxgen.errors import ConfigError
from jaxgen.logging import read_metrics
from jaxgen.methods import get as get_method
from jaxgen.methods.pixelcnn import PixelCNNMethod
from jaxgen.models.pixelcnn import make_mask
from tests.test_train import config_file

ARCHS = ('pixelcnn', 'gated', 'rowlstm')


def make_info(shape, levels, num_classes=None):
  return types.SimpleNamespace(name='test', kind='image', shape=tuple(shape), levels=levels,
                               num_classes=num_classes, num_examples={'train': 10, 'test': 10}, dequantized=False)


def make_method(arch, shape, levels, channels=12, num_layers=1, first_kernel=7, num_classes=0, seed=0):
  """A PixelCNN method and random params (biases nonzero too, so no path is trivially dead)."""
  c = base_config()
  c.method.name = 'pixelcnn'
  c.model = ml_collections.ConfigDict(dict(arch=arch, channels=channels, num_layers=num_layers,
                                           first_kernel=first_kernel, kernel=3, output_channels=channels,
                                           num_classes=num_classes))
  method = PixelCNNMethod(c, make_info(shape, levels, num_classes or None))

  # Random params drawn with numpy in the init's shapes: compiling jax.random draws for every layer costs
  # seconds per layer on XLA:CPU, which this file cannot afford for each tiny model.
  shapes = jax.eval_shape(lambda: nn.unbox(method.init(jax.random.PRNGKey(0), {'x': jnp.zeros((1,) + shape)})))
  rng = np.random.default_rng(seed)

  def draw(leaf):
    if len(leaf.shape) == 1:  # biases: small, nonzero
      return jnp.asarray(0.1 * rng.standard_normal(leaf.shape), jnp.float32)
    fan_in = math.prod(leaf.shape[:-1])
    return jnp.asarray(rng.standard_normal(leaf.shape) / math.sqrt(fan_in), jnp.float32)

  return method, jax.tree.map(draw, shapes.params)


def abs_jacobian(method, params, shape, levels, seeds=(0, 1, 2), label=None):
  """sum over random inputs of |d logits[i, c, :] / d x[j, c']|: [H, W, C, H, W, C]."""
  lab = None if label is None else jnp.asarray([label])
  jac = jax.jit(jax.jacrev(lambda x: method.logits(params, x[None], lab)[0]))
  total = 0.0
  for s in seeds:
    x = jax.random.randint(jax.random.PRNGKey(s), shape, 0, levels) / (levels - 1)
    total = total + np.abs(np.asarray(jac(x))).sum(3)  # sum over the output's softmax axis
  return total


def allowed(shape):
  """[H*W*C, H*W*C] bool: output (pixel i, channel c) may depend on input (pixel j, channel c')."""
  h, w, c = shape
  n = h * w * c
  out = np.zeros((n, n), bool)
  for i, ci, j, cj in itertools.product(range(h * w), range(c), range(h * w), range(c)):
    out[i * c + ci, j * c + cj] = j < i or (j == i and cj < ci)
  return out


# ---- masks ------------------------------------------------------------------------------------


def test_masks_by_hand():
  a = make_mask((3, 3), (1, 1), np.arange(1), np.arange(1), 'A')[..., 0, 0]
  b = make_mask((3, 3), (1, 1), np.arange(1), np.arange(1), 'B')[..., 0, 0]
  np.testing.assert_array_equal(a, [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
  np.testing.assert_array_equal(b, [[1, 1, 1], [1, 1, 0], [0, 0, 0]])
  # RGB centre tap: image channels R, G, B -> hidden features of groups 0, 1, 2, 0, 1, 2.
  groups_out = np.arange(6) % 3
  centre_a = make_mask((1, 1), (0, 0), np.arange(3), groups_out, 'A')[0, 0]
  centre_b = make_mask((1, 1), (0, 0), groups_out, groups_out, 'B')[0, 0]
  np.testing.assert_array_equal(centre_a[:, :3], [[0, 1, 1], [0, 0, 1], [0, 0, 0]])  # R feeds G, B; G feeds B
  np.testing.assert_array_equal(centre_b[:3, :3], [[1, 1, 1], [0, 1, 1], [0, 0, 1]])


# ---- autoregressive property ------------------------------------------------------------------


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('shape', [(5, 5, 1), (4, 4, 3)])
def test_autoregressive_property_every_pixel(arch, shape):
  """d logits(i, c) / d x(j, c') == 0 exactly unless (j, c') precedes (i, c); and most allowed ones are used."""
  levels = 4
  method, params = make_method(arch, shape, levels, channels=24 if shape[-1] == 3 else 12)
  jac = abs_jacobian(method, params, shape, levels).reshape(math.prod(shape), math.prod(shape))
  ok = allowed(shape)
  assert np.all(jac[~ok] == 0.0), np.argwhere((jac != 0) & ~ok)[:5]
  # Within a pixel, G sees R and B sees R, G (RGB); every output sees its left neighbour.
  assert np.mean(jac[ok] > 0) > 0.9
  if shape[-1] == 3:
    for p in range(shape[0] * shape[1]):
      assert jac[3 * p + 1, 3 * p] > 0 and jac[3 * p + 2, 3 * p] > 0 and jac[3 * p + 2, 3 * p + 1] > 0


def test_gated_pixelcnn_has_no_blind_spot_and_pixelcnn_has_one():
  shape, levels = (5, 5, 1), 4
  n = math.prod(shape)
  ok = allowed(shape)
  gated, gp = make_method('gated', shape, levels)
  jac_gated = abs_jacobian(gated, gp, shape, levels).reshape(n, n)
  assert np.all(jac_gated[-1, :-1] > 0)        # the last pixel sees every earlier pixel
  assert np.all(jac_gated[ok] > 0)             # indeed every pixel sees every earlier pixel
  plain, pp = make_method('pixelcnn', shape, levels, num_layers=4)
  jac_plain = abs_jacobian(plain, pp, shape, levels).reshape(n, n)
  # The blind spot: pixel (1, 0) never sees (0, 4) -- up-right beyond the 7x7 mask-A reach -- whatever the
  # depth, since each mask-B layer moves at most one column right per row up.
  assert jac_plain[1 * 5 + 0, 0 * 5 + 4] == 0.0
  blind = np.argwhere(ok & (jac_plain == 0))
  assert len(blind) > 0 and all(j == i - 1 for i, j in blind)  # (r, 0) misses (r - 1, 4) only


# ---- exact normalisation ----------------------------------------------------------------------


def all_images(shape, levels):
  grid = np.array(list(itertools.product(range(levels), repeat=math.prod(shape))), np.float32)
  return jnp.asarray(grid.reshape(-1, *shape) / (levels - 1))


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('shape,levels', [((3, 3, 1), 2), ((2, 2, 1), 3), ((2, 2, 3), 2)])
def test_probabilities_sum_to_one(arch, shape, levels):
  method, params = make_method(arch, shape, levels, channels=6)
  x = all_images(shape, levels)
  nll = jax.jit(method.nll)(params, {'x': x}, jax.random.PRNGKey(0))
  total = np.sum(np.exp(-np.asarray(nll, np.float64)))
  assert abs(total - 1.0) < 1e-5
  assert len(x) == levels ** math.prod(shape)


def test_conditional_probabilities_sum_to_one_for_every_label():
  shape, levels = (2, 2, 1), 3
  method, params = make_method('gated', shape, levels, channels=6, num_classes=3)
  x = all_images(shape, levels)
  nll_fn = jax.jit(method.nll)
  for y in range(3):
    nll = nll_fn(params, {'x': x, 'label': jnp.full((len(x),), y)}, None)
    assert abs(float(jnp.sum(jnp.exp(-nll))) - 1.0) < 1e-5


# ---- sampler ----------------------------------------------------------------------------------


@pytest.mark.parametrize('arch', ARCHS)
def test_sampler_matches_exact_distribution(arch):
  """Frequencies of every 2x2 3-level image in 6000 lax-loop samples vs exp(-nll), and pixel 0's marginal."""
  shape, levels, num = (2, 2, 1), 3, 6000
  method, params = make_method(arch, shape, levels, channels=6)
  params = jax.tree.map(lambda p: 3.0 * p, params)  # sharper, far-from-uniform conditionals
  x = all_images(shape, levels)
  probs = np.exp(-np.asarray(jax.jit(method.nll)(params, {'x': x}, None), np.float64))
  samples = np.asarray(jax.jit(method.sample, static_argnums=2)(params, jax.random.PRNGKey(3), num))
  assert samples.shape == (num,) + shape
  index = np.round(samples * (levels - 1)).astype(int).reshape(num, -1) @ (levels ** np.arange(4)[::-1])
  freq = np.bincount(index, minlength=levels ** 4) / num
  tol = 4.5 * np.sqrt(probs * (1 - probs) / num) + 1e-3
  assert np.all(np.abs(freq - probs) < tol), np.max(np.abs(freq - probs) / tol)
  # The first pixel's marginal (summed out of the exact joint) against its empirical frequencies.
  first = probs.reshape(levels, -1).sum(1)
  emp = np.bincount(index // levels ** 3, minlength=levels) / num
  assert np.all(np.abs(emp - first) < 4.5 * np.sqrt(first * (1 - first) / num) + 1e-3)


# ---- class-conditional ------------------------------------------------------------------------


def test_conditional_label_changes_logits_and_samples_and_never_leaks():
  shape, levels = (4, 4, 3), 4
  method, params = make_method('gated', shape, levels, num_classes=5)
  assert method.conditional
  x = jax.random.randint(jax.random.PRNGKey(0), (2,) + shape, 0, levels) / (levels - 1)
  logits = jax.jit(method.logits)
  a = logits(params, x, jnp.array([0, 0]))
  b = logits(params, x, jnp.array([3, 3]))
  assert float(jnp.max(jnp.abs(a - b))) > 1e-3
  # The label enters every position, including the first pixel, but never carries pixel information.
  n = math.prod(shape)
  jac = abs_jacobian(method, params, shape, levels, seeds=(0,), label=2).reshape(n, n)
  assert np.all(jac[~allowed(shape)] == 0.0)
  sample = jax.jit(method.sample, static_argnums=2)
  key = jax.random.PRNGKey(1)
  zeros = np.asarray(sample(params, key, 4, label=jnp.zeros(4, jnp.int32)))
  cycle = np.asarray(sample(params, key, 4, label=jnp.arange(4) % 5))
  # Same key, so the same label gives the same image (example 0) and another label another image.
  np.testing.assert_array_equal(zeros[0], cycle[0])
  assert all(not np.array_equal(zeros[i], cycle[i]) for i in (1, 2, 3))
  # label=None generates the balanced cycle (compiling a second sampler here would cost seconds).
  np.testing.assert_array_equal(np.asarray(method.sample_labels(7)), [0, 1, 2, 3, 4, 0, 1])


def test_conditional_needs_labels_and_unconditional_rejects_them():
  cond, cp = make_method('pixelcnn', (3, 3, 1), 2, num_classes=2)
  x = jnp.zeros((2, 3, 3, 1))
  with pytest.raises(ConfigError, match='label'):
    cond.nll(cp, {'x': x}, None)
  uncond, up = make_method('pixelcnn', (3, 3, 1), 2)
  with pytest.raises(ValueError, match='unconditional'):
    uncond.sample(up, jax.random.PRNGKey(0), 2, label=jnp.zeros(2, jnp.int32))


@pytest.mark.parametrize('model,info,match', [
    (dict(arch='lstm'), make_info((4, 4, 1), 2), 'arch'),
    ({}, types.SimpleNamespace(**{**vars(make_info((4, 4, 1), 256)), 'dequantized': True}), 'dequantize'),
    (dict(channels=8), make_info((4, 4, 3), 256), 'multiple'),
    (dict(num_classes=10), make_info((4, 4, 1), 2), 'classes'),
])
def test_invalid_configs_raise_config_error(model, info, match):
  c = base_config()
  c.model = ml_collections.ConfigDict({**dict(arch='gated', channels=6, num_layers=1, num_classes=0), **model})
  with pytest.raises(ConfigError, match=match):
    PixelCNNMethod(c, info)


def test_registry_and_output_heads():
  assert get_method('pixelcnn') is PixelCNNMethod
  binary, _ = make_method('pixelcnn', (3, 3, 1), 2)
  eight_bit, _ = make_method('gated', (3, 3, 3), 256)
  assert binary.n_out == 1 and eight_bit.n_out == 256


# ---- configs through the real train loop -------------------------------------------------------

CONFIGS = ['pixelcnn_mnist5k_binary.py', 'pixelcnn_mnist5k.py', 'gated_pixelcnn_mnist5k.py',
           'gated_pixelcnn_mnist5k_conditional.py']


@pytest.mark.parametrize('name', CONFIGS)
def test_smoke_config_trains_evaluates_and_samples(name, tmp_path):
  full = config_file(f'autoregressive/{name}', None)
  assert full.method.name == 'pixelcnn' and set(full.evals) >= {'nll', 'samples'}
  config = config_file(f'autoregressive/{name}')
  assert config.train.steps <= 10 and config.evals.samples.num <= 4
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
  records = read_metrics(workdir)
  nll = [r for r in records if 'nll_nats' in r]
  assert nll and all(np.isfinite(r['nll_nats']) and r['nll_nats'] > 0 for r in nll)
  binary = name.endswith('binary.py')
  assert nll[-1]['nll_nats'] < 784 * math.log(2 if binary else 256) * 1.2
  samples = np.load(tmp_path / 'samples' / f'samples_{config.train.steps:07d}.npy')
  assert (tmp_path / 'samples' / f'samples_{config.train.steps:07d}.png').exists()
  levels = 2 if binary else 256
  assert samples.shape == (config.evals.samples.num, 28, 28, 1)
  np.testing.assert_allclose(samples * (levels - 1), np.round(samples * (levels - 1)), atol=1e-4)

