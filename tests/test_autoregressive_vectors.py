"""NADE, MADE and MAF: autoregressive structure, exact normalisation, flow inverses and log-dets, samplers.

Every property is checked against mathematics (autodiff Jacobians, brute-force
sums over all inputs, closed-form entropies, binomial statistics), on tiny
models with random parameters.
"""

import itertools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxgen.core.config import base_config
from jaxgen.data import DataInfo
from jaxgen.errors import ConfigError
from jaxgen.methods import get as get_method
from jaxgen.methods.made import MADEMethod
from jaxgen.methods.maf import MAF
from jaxgen.methods.nade import NADE
from jaxgen.models import masked
from tests.test_train import config_file


def make_info(shape, levels, kind='vector', dequantized=False):
  return DataInfo(name='test', kind=kind, shape=tuple(shape), levels=levels, num_classes=None,
                  num_examples={'train': 100, 'test': 10}, dequantized=dequantized)


def make_config(name, model, method=None, lr=1e-3, steps=100):
  c = base_config()
  c.method = ml_collections.ConfigDict({'name': name, **(method or {})})
  c.model = ml_collections.ConfigDict(model)
  c.data.name = 'test'
  c.train.steps = steps
  c.optim.lr = lr
  return c


def random_params(method, dim, seed=0, scale=0.5):
  """Parameters shaped as method.init makes them, every leaf (biases included) N(0, scale^2) noise."""
  abstract = jax.eval_shape(method.init, jax.random.PRNGKey(seed), {'x': jnp.zeros((1, dim))})
  shapes = nn.meta.unbox(abstract).params
  rng = np.random.RandomState(seed)
  return jax.tree.map(lambda leaf: jnp.asarray(scale * rng.randn(*leaf.shape), jnp.float32), shapes)


def all_binary(dim):
  return jnp.asarray(list(itertools.product([0.0, 1.0], repeat=dim)), jnp.float32)


def made_method(dim, levels, hidden=(12, 10), num_masks=4, eval_masks=4, ordering='random', direct=True):
  config = make_config('made', dict(hidden=hidden, ordering=ordering, direct=direct, mask_seed=3),
                       dict(num_masks=num_masks, eval_masks=min(eval_masks, num_masks)))
  return MADEMethod(config, make_info((dim,), levels))


def nade_method(dim, hidden=10):
  return NADE(make_config('nade', dict(hidden=hidden)), make_info((dim,), 2))


def maf_method(dim, num_layers=3, hidden=(12,), kind='vector', steps=100, lr=1e-3):
  config = make_config('maf', dict(num_layers=num_layers, hidden=hidden), dict(scale_clip=3.0, logit_alpha=0.05),
                       lr=lr, steps=steps)
  if kind == 'image':
    return MAF(config, make_info((2, 2, 1), 256, kind='image', dequantized=True))
  return MAF(config, make_info((dim,), None))


# ---- autoregressive property ----------------------------------------------------------------------


def assert_autoregressive(jac_IJ, degrees):
  """d out_i / d x_j is exactly 0 when deg(j) >= deg(i) and nonzero for every earlier j."""
  jac_IJ = np.asarray(jac_IJ)
  forbidden = degrees[None, :] >= degrees[:, None]
  assert np.all(jac_IJ[forbidden] == 0.0), jac_IJ
  assert np.all(jac_IJ[~forbidden] != 0.0), jac_IJ   # the structure is not trivially empty


def test_nade_autoregressive_property():
  dim = 7
  method = nade_method(dim)
  params = random_params(method, dim)
  x = jax.random.uniform(jax.random.PRNGKey(1), (dim,))
  jac = jax.jit(jax.jacfwd(lambda v: method.logits(params, v[None])[0]))(x)
  assert_autoregressive(jac, np.arange(1, dim + 1))


@pytest.mark.parametrize('levels', [2, 5])
def test_made_autoregressive_property_every_mask(levels):
  dim, num_masks = 7, 4
  method = made_method(dim, levels, num_masks=num_masks)
  params = random_params(method, dim)
  degrees = masked.made_masks(dim, (12, 10), num_masks, 'random', 3)[0]
  assert len({tuple(d) for d in degrees}) == num_masks     # order-agnostic: each mask its own ordering
  x = jax.random.uniform(jax.random.PRNGKey(1), (dim,))
  # One compiled Jacobian for all mask sets: the mask index is traced, as in training.
  jac_MIPJ = jax.jit(jax.vmap(jax.jacfwd(lambda v, m: method.outputs(params, v[None], m)[0]), (None, 0)))(
      x, jnp.arange(num_masks))
  assert jac_MIPJ.shape == (num_masks, dim, 1 if levels == 2 else levels, dim)
  for m in range(num_masks):
    for p in range(jac_MIPJ.shape[2]):
      assert_autoregressive(jac_MIPJ[m, :, p], degrees[m])
    # orderings() lists the dimensions by increasing degree.
    np.testing.assert_array_equal(degrees[m][method.orderings[m]], np.arange(1, dim + 1))


def test_made_without_direct_connection_is_still_autoregressive():
  dim = 6
  method = made_method(dim, 2, hidden=(16,), num_masks=2, ordering='natural', direct=False)
  params = random_params(method, dim)
  x = jax.random.uniform(jax.random.PRNGKey(2), (dim,))
  jac_MIJ = jax.jit(jax.vmap(jax.jacfwd(lambda v, m: method.outputs(params, v[None], m)[0, :, 0]), (None, 0)))(
      x, jnp.arange(2))
  for jac in np.asarray(jac_MIJ):
    assert np.all(jac[np.triu_indices(dim)] == 0.0)
    assert np.any(jac != 0.0)


def test_maf_layer_autoregressive_property():
  dim = 6
  method = maf_method(dim, num_layers=2, hidden=(16, 16))
  params = random_params(method, dim)
  x = jax.random.normal(jax.random.PRNGKey(1), (dim,))

  @jax.jit
  def jacobians(v):  # [layer, (mu, alpha), i, j]
    return jnp.stack([jnp.stack(jax.jacfwd(lambda u: [o[0] for o in method.layer_params(params, k, u[None])])(v))
                      for k in range(method.num_layers)])

  for jac in np.asarray(jacobians(x)).reshape(-1, dim, dim):
    assert np.all(jac[np.triu_indices(dim)] == 0.0), jac
    assert np.any(jac[np.tril_indices(dim, -1)] != 0.0)


# ---- exact normalisation ------------------------------------------------------------------------


def test_nade_normalises_over_all_binary_inputs():
  dim = 8
  method = nade_method(dim)
  params = random_params(method, dim, scale=1.0)
  x = all_binary(dim)
  total = float(jnp.exp(-jax.jit(method.nll)(params, {'x': x}, None)).sum())
  assert abs(total - 1.0) < 1e-5, total


def test_made_binary_normalises_for_every_mask_and_the_ensemble():
  dim = 8
  method = made_method(dim, 2, num_masks=4, eval_masks=3)
  params = random_params(method, dim, scale=1.0)
  x = all_binary(dim)
  log_prob = jax.jit(method.log_prob)   # the mask index is traced: one compile for all
  for m in range(4):
    total = float(jnp.exp(log_prob(params, x, m)).sum())
    assert abs(total - 1.0) < 1e-5, (m, total)
  ensemble = jax.jit(method.nll)(params, {'x': x}, None)
  assert abs(float(jnp.exp(-ensemble).sum()) - 1.0) < 1e-5
  # The ensemble is the mixture of the first eval_masks members.
  mixture = np.mean([np.exp(np.asarray(log_prob(params, x, m), np.float64)) for m in range(3)], axis=0)
  np.testing.assert_allclose(np.exp(-np.asarray(ensemble)), mixture, rtol=1e-5)


def test_made_categorical_normalises():
  dim, levels = 3, 5
  method = made_method(dim, levels, num_masks=3, eval_masks=3)
  params = random_params(method, dim, scale=1.0)
  x = jnp.asarray(list(itertools.product(range(levels), repeat=dim)), jnp.float32) / (levels - 1)
  log_prob = jax.jit(method.log_prob)
  for m in range(3):
    assert abs(float(jnp.exp(log_prob(params, x, m)).sum()) - 1.0) < 1e-5
  assert abs(float(jnp.exp(-jax.jit(method.nll)(params, {'x': x}, None)).sum()) - 1.0) < 1e-5


# ---- MAF: inverses, log-determinants, change of variables ------------------------------------------


def test_maf_out_init_scale_starts_every_layer_near_the_identity():
  """model.out_init_scale scales each MADE's initial output weights; at 1e-3 every layer
  moves its input by < 1e-2 and its log-det is < 1e-2 (at the default 1 they are O(1))."""
  dim = 64
  x = jax.random.normal(jax.random.PRNGKey(0), (8, dim))
  for scale, near in ((1e-3, True), (1.0, False)):
    config = make_config('maf', dict(num_layers=3, hidden=(128,), out_init_scale=scale), dict(scale_clip=3.0))
    method = MAF(config, make_info((dim,), None))
    params = nn.meta.unbox(method.init(jax.random.PRNGKey(1), {'x': x}).params)
    for k in range(method.num_layers):
      u, log_det = method.layer_forward(params, k, x)
      moved, spread = float(jnp.abs(u - x).max()), float(jnp.abs(log_det).max())
      assert (moved < 1e-2 and spread < 1e-2) if near else (moved > 0.1 and spread > 0.1), (scale, moved, spread)


def test_maf_layer_inverse_and_log_det_match_autodiff():
  dim = 5
  method = maf_method(dim, num_layers=2, hidden=(16, 16))
  params = random_params(method, dim)
  x = 1.5 * jax.random.normal(jax.random.PRNGKey(3), (4, dim))

  @jax.jit
  def check(v):
    out = []
    for k in range(method.num_layers):
      u, log_det = method.layer_forward(params, k, v)
      jac = jax.vmap(jax.jacfwd(lambda w: method.layer_forward(params, k, w[None])[0][0]))(v)
      out.append((method.layer_inverse(params, k, u), log_det, jac))
    return out

  for x_back, log_det, jac in check(x):
    assert float(jnp.abs(x_back - x).max()) < 1e-4
    np.testing.assert_allclose(log_det, np.linalg.slogdet(np.asarray(jac, np.float64))[1], atol=1e-4)


@pytest.mark.parametrize('kind', ['vector', 'image'])
def test_maf_log_density_is_change_of_variables_by_brute_force(kind):
  """log p(x) = log N(f(x)) + log|det df/dx| with f the whole flow (logit included for images), by jacfwd."""
  dim = 4
  method = maf_method(dim, num_layers=2, kind=kind)
  params = random_params(method, dim)
  if kind == 'image':
    x = jax.random.uniform(jax.random.PRNGKey(4), (3, 2, 2, 1), minval=0.01, maxval=0.99)
  else:
    x = jax.random.normal(jax.random.PRNGKey(4), (3, dim))

  def flow(v):  # the whole map x -> z for one example, written out from the layers
    y = v.reshape(1, -1)
    if kind == 'image':
      s = 0.05 + 0.9 * y
      y = jnp.log(s / (1 - s))
    for k in range(method.num_layers):
      y = method.layer_forward(params, k, y)[0][:, ::-1]
    return y[0]

  @jax.jit
  def both(x, key):
    flat = x.reshape(x.shape[0], -1)
    samples = method.sample(params, key, 4)
    return (method.nll(params, {'x': x}, None), jax.vmap(flow)(flat), jax.vmap(jax.jacfwd(flow))(flat), samples,
            jax.vmap(flow)(samples.reshape(4, -1)))

  key = jax.random.PRNGKey(5)
  got, z, jac, samples, z_of_samples = both(x, key)
  log_det = np.linalg.slogdet(np.asarray(jac, np.float64))[1]
  expected = -(-0.5 * np.sum(np.asarray(z, np.float64) ** 2, -1) - 0.5 * dim * math.log(2 * math.pi) + log_det)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
  # The sampler inverts the whole flow: z -> x -> z.
  assert samples.shape == (4,) + method.shape
  if kind == 'vector':
    np.testing.assert_allclose(z_of_samples, jax.random.normal(key, (4, dim)), atol=1e-4)
  else:
    assert np.all((np.asarray(samples) >= 0) & (np.asarray(samples) <= 1))


def test_maf_trained_on_a_gaussian_reaches_its_entropy():
  cov = np.array([[1.0, 0.9], [0.9, 1.5]])
  chol = np.linalg.cholesky(cov)
  mean = np.array([0.5, -1.0])
  entropy = 0.5 * np.log(np.linalg.det(2 * np.pi * np.e * cov))
  draw = lambda n, seed: jnp.asarray(np.random.RandomState(seed).randn(n, 2) @ chol.T + mean, jnp.float32)
  method = maf_method(2, num_layers=2, hidden=(16,), steps=300, lr=1e-2)
  state = nn.meta.unbox(jax.jit(method.init)(jax.random.PRNGKey(0), {'x': draw(2, 0)}))
  step = jax.jit(method.train_step)
  for i in range(300):
    state, _ = step(state, {'x': draw(256, i + 1)})
  test_nll = float(jnp.mean(jax.jit(method.nll)(state.params, {'x': draw(50_000, 10_000)}, None)))
  assert abs(test_nll - entropy) < 0.02, (test_nll, entropy)


# ---- samplers agree with the conditionals -------------------------------------------------------------


def pattern_frequencies(samples, dim):
  codes = np.asarray(samples).reshape(-1, dim).astype(int) @ (2 ** np.arange(dim)[::-1])
  return np.bincount(codes, minlength=2 ** dim) / len(codes)


@pytest.mark.parametrize('family', ['nade', 'made'])
def test_sampler_matches_brute_force_probabilities(family):
  """With random parameters, the frequency of each of the 2^3 patterns is p(x) within binomial error."""
  dim, num = 3, 20_000
  method = nade_method(dim) if family == 'nade' else made_method(dim, 2, hidden=(8,), num_masks=3)
  params = random_params(method, dim, scale=1.0)
  mask = {} if family == 'nade' else {'mask_index': 2}
  samples = jax.jit(lambda p, k: method.sample(p, k, num, **mask))(params, jax.random.PRNGKey(7))
  probs = np.exp(np.asarray(jax.jit(lambda p, x: method.log_prob(p, x, *mask.values()))(params, all_binary(dim))))
  freq = pattern_frequencies(samples, dim)
  np.testing.assert_array_less(np.abs(freq - probs), 5 * np.sqrt(probs * (1 - probs) / num) + 1e-3)


def test_made_sampler_with_hand_set_conditionals():
  """A linear MADE whose logit_d = c_d + w x_prev(d) (prev: the preceding dim in mask 1's random ordering)."""
  dim, num, w = 4, 20_000, 3.0
  method = made_method(dim, 2, hidden=(), num_masks=2, ordering='random', direct=False)
  order = method.orderings[1]
  assert list(order) != list(range(dim))
  c = np.array([-1.0, 0.5, -2.0, 1.0])
  kernel = np.zeros((dim, dim), np.float32)
  for t in range(1, dim):
    kernel[order[t - 1], order[t]] = w
  params = {'made': {'MaskedDense_0': {'kernel': jnp.asarray(kernel), 'bias': jnp.asarray(c, jnp.float32)}}}
  x = np.asarray(jax.jit(lambda p, k: method.sample(p, k, num, mask_index=1))(params, jax.random.PRNGKey(0)))
  sigmoid = lambda v: 1 / (1 + np.exp(-v))
  first = order[0]
  tol = lambda p, n: 5 * math.sqrt(p * (1 - p) / n)
  assert abs(x[:, first].mean() - sigmoid(c[first])) < tol(sigmoid(c[first]), num)
  for t in range(1, dim):
    d, prev = order[t], order[t - 1]
    for value in (0, 1):
      rows = x[:, prev] == value
      p = sigmoid(c[d] + w * value)
      assert abs(x[rows, d].mean() - p) < tol(p, rows.sum()), (t, value)


def test_made_categorical_sampler_matches_softmax():
  dim, levels, num = 2, 5, 20_000
  method = made_method(dim, levels, hidden=(), num_masks=1, ordering='natural', direct=False)
  logits = np.array([[0.0, 1.0, -1.0, 2.0, 0.5], [1.5, -0.5, 0.0, 0.0, -2.0]], np.float32)
  params = {'made': {'MaskedDense_0': {'kernel': jnp.zeros((dim, dim * levels)),
                                        'bias': jnp.asarray(logits.reshape(-1))}}}
  x = np.asarray(jax.jit(lambda p, k: method.sample(p, k, num))(params, jax.random.PRNGKey(1)))
  index = np.round(x * (levels - 1)).astype(int)
  np.testing.assert_allclose(x * (levels - 1), index, atol=1e-6)    # on the data grid
  for d in range(dim):
    p = np.exp(logits[d]) / np.exp(logits[d]).sum()
    freq = np.bincount(index[:, d], minlength=levels) / num
    np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / num))


# ---- registry, validation, configs ------------------------------------------------------------------


def test_registry_and_data_validation():
  assert get_method('nade') is NADE and get_method('made') is MADEMethod and get_method('maf') is MAF
  with pytest.raises(ConfigError, match='binary'):
    NADE(make_config('nade', dict(hidden=4)), make_info((4,), 17))
  with pytest.raises(ConfigError, match='dequantize'):
    made_method(4, None)
  with pytest.raises(ConfigError, match='eval_masks'):
    MADEMethod(make_config('made', dict(hidden=(4,)), dict(num_masks=2, eval_masks=3)), make_info((4,), 2))
  with pytest.raises(ConfigError, match='dequantize=True'):
    MAF(make_config('maf', dict(num_layers=1, hidden=(4,))), make_info((2, 2, 1), 256, kind='image'))


SMOKE_CONFIGS = ['autoregressive/nade_mnist5k_binary.py', 'autoregressive/made_mnist5k_binary.py',
                 'autoregressive/made_digits.py', 'flow/maf_ring8.py', 'flow/maf_checkerboard.py', 'flow/maf_mnist5k.py']


@pytest.mark.parametrize('name', SMOKE_CONFIGS)
def test_smoke_config_trains_evaluates_and_samples(tmp_path, name):
  from jaxgen import train
  from jaxgen.logging import read_metrics
  config = config_file(name)
  for evaluator in config.evals.values():   # log, save and evaluate once, at the end
    evaluator.every = config.train.steps
  config.train.log_every = config.train.checkpoint_every = config.train.steps
  train.train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:1])
  evals = [r for r in read_metrics(str(tmp_path)) if r['split'] == 'eval' and 'nll_nats' in r]
  assert evals and np.isfinite(evals[-1]['nll_nats'])
  if config.data.name.startswith('toy2d'):
    assert 'nll_bpd' not in evals[-1]
  else:
    assert evals[-1]['nll_bpd'] > 0
  samples = np.load(sorted((tmp_path / 'samples').glob('samples_*.npy'))[-1])
  assert samples.shape[0] == config.evals.samples.num and np.all(np.isfinite(samples))
  assert list((tmp_path / 'samples').glob('samples_*.png'))
