"""Gaussian mixtures by EM: monotone log-likelihood, scikit-learn's GaussianMixture reproduced from the same
initialisation, a density that integrates to one, exact sampling moments, sharded == single-device EM steps,
and the configs' smoke runs in the bits/dim convention of the other likelihood families.
"""

import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import threadpoolctl
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxgen import train
from jaxgen.core.config import base_config
from jaxgen.core.mesh import make_mesh, replicated, state_shardings
from jaxgen.data import DataInfo, eval_batches, get_info
from jaxgen.data.builders import toy2d
from jaxgen.errors import ConfigError
from jaxgen.logging import read_metrics
from jaxgen.methods import get as get_method
from jaxgen.methods.gmm import GMM
from tests.test_train import assert_trees_close, config_file


def make_gmm(dim, components=3, covariance='full', init='kmeans++', reg_covar=1e-6, info=None):
  c = base_config()
  c.method = ml_collections.ConfigDict({'name': 'gmm'})
  c.model = ml_collections.ConfigDict(dict(components=components, covariance=covariance, reg_covar=reg_covar,
                                           init=init))
  c.data.name = 'test'
  return GMM(c, info or DataInfo('test', 'vector', (dim,), None, None, {'train': 100}, False))


def mixture_data(n, dim, seed, components=3):
  """n points from a random well-separated Gaussian mixture with random full covariances."""
  rng = np.random.default_rng(seed)
  means = 4 * rng.standard_normal((components, dim))
  factors = rng.standard_normal((components, dim, dim)) / np.sqrt(dim)
  labels = rng.integers(components, size=n)
  points = means[labels] + np.einsum('nde,ne->nd', factors[labels], rng.standard_normal((n, dim)))
  return points.astype(np.float32)


def dequantized_digits():
  """scikit-learn's digits as the pipeline dequantizes them, (x_int + u) / 17, split i % 10 == 0 -> test."""
  from sklearn.datasets import load_digits
  x_int = load_digits().data
  x = ((x_int + np.random.default_rng(0).random(x_int.shape)) / 17).astype(np.float32)
  test = np.arange(len(x)) % 10 == 0
  return x[~test], x[test]


@pytest.mark.parametrize('covariance,init', [('full', 'kmeans++'), ('diag', 'random')])
def test_em_log_likelihood_never_decreases(covariance, init):
  x = jnp.asarray(mixture_data(300, 4, seed=1, components=4))
  method = make_gmm(4, components=4, covariance=covariance, init=init)
  state = jax.jit(method.init)(jax.random.PRNGKey(0), {'x': x})
  step = jax.jit(method.train_step)
  log_likelihood = jax.jit(lambda p: jnp.sum(method.log_prob(p, x)))
  previous = float(log_likelihood(state.params))
  for _ in range(12):
    state, metrics = step(state, {'x': x})
    np.testing.assert_allclose(-float(metrics['loss']) * len(x), previous, rtol=1e-5)   # loss: the old params
    current = float(log_likelihood(state.params))
    assert current >= previous - 1e-5 * abs(previous), (previous, current)
    previous = current


@pytest.mark.parametrize('covariance', ['full', 'diag'])
def test_em_reaches_sklearns_test_log_likelihood_from_the_same_initialisation(covariance):
  """Stated tolerance: the mean test log-likelihood after 25 EM iterations agrees with scikit-learn's
  (float64) to 1e-4 relative; the weights and means to 1e-3."""
  from sklearn.mixture import GaussianMixture
  x_train, x_test = dequantized_digits()
  method = make_gmm(64, components=5, covariance=covariance)
  state = jax.jit(method.init)(jax.random.PRNGKey(0), {'x': jnp.asarray(x_train)})
  weights = np.asarray(jax.nn.softmax(state.params['gmm']['logits']), np.float64)
  means = np.asarray(state.params['gmm']['means'], np.float64)
  covariances = np.asarray(jax.jit(method.covariances)(state.params), np.float64)
  precisions = np.linalg.inv(covariances) if covariance == 'full' else 1.0 / covariances
  iterations = 25
  # init_params='random': the responsibilities sklearn computes before the given *_init override them are
  # not used, so skip its default k-means. One BLAS thread: on a shared 2-core machine OpenBLAS's
  # threads made this fit 50x slower.
  with threadpoolctl.threadpool_limits(1):
    reference = GaussianMixture(5, covariance_type=covariance, reg_covar=1e-6, weights_init=weights / weights.sum(),
                                means_init=means, precisions_init=precisions, max_iter=iterations, tol=0.0,
                                n_init=1, init_params='random', random_state=0).fit(x_train)
    reference_score = reference.score(x_test)
  assert reference.n_iter_ == iterations
  step = jax.jit(method.train_step)
  for _ in range(iterations):
    state, _ = step(state, {'x': jnp.asarray(x_train)})
  ours = -float(jnp.mean(jax.jit(method.nll)(state.params, {'x': jnp.asarray(x_test)}, None)))
  np.testing.assert_allclose(ours, reference_score, rtol=1e-4)
  np.testing.assert_allclose(jax.nn.softmax(state.params['gmm']['logits']), reference.weights_, atol=1e-3)
  np.testing.assert_allclose(state.params['gmm']['means'], reference.means_, atol=1e-3)


@pytest.mark.parametrize('covariance', ['full', 'diag'])
def test_density_integrates_to_one_on_toy2d(covariance):
  """Grid quadrature of exp(-nll) over [-3, 3]^2 after 3 EM iterations on ring8 (std 0.02: a fine grid)."""
  points, _ = toy2d.sample('ring8', 4000, seed=5)
  method = make_gmm(2, components=8, covariance=covariance)
  state = jax.jit(method.init)(jax.random.PRNGKey(1), {'x': jnp.asarray(points)})
  step = jax.jit(method.train_step)
  for _ in range(3):
    state, _ = step(state, {'x': jnp.asarray(points)})
  h = 0.004
  axis = np.arange(-3.0, 3.0, h) + h / 2
  grid = np.stack(np.meshgrid(axis, axis, indexing='ij'), -1).reshape(-1, 2).astype(np.float32)
  density = np.exp(-np.asarray(jax.jit(method.nll)(state.params, {'x': jnp.asarray(grid)}, None), np.float64))
  np.testing.assert_allclose(density.sum() * h * h, 1.0, atol=2e-3)
  # And it fits: the exact ring8 density's cross-entropy is close (entropy -2.907 nats).
  nll = float(jnp.mean(jax.jit(method.nll)(state.params, {'x': jnp.asarray(toy2d.sample('ring8', 2000, 6)[0])}, None)))
  assert nll < -2.7


@pytest.mark.parametrize('covariance', ['full', 'diag'])
def test_samples_have_the_mixtures_mean_and_covariance(covariance):
  method = make_gmm(3, components=2, covariance=covariance)
  weights, means = np.array([0.3, 0.7]), np.array([[1.0, -2.0, 0.5], [-1.0, 0.0, 2.0]])
  if covariance == 'full':
    a = np.random.default_rng(0).standard_normal((2, 3, 3))
    covariances = a @ np.swapaxes(a, -1, -2) + 0.1 * np.eye(3)
  else:
    covariances = np.array([[0.5, 1.0, 2.0], [1.5, 0.2, 0.7]])
  params = method.params_from(weights, means, covariances)
  np.testing.assert_allclose(method.covariances(params), covariances, rtol=1e-4, atol=1e-5)
  samples = np.asarray(jax.jit(lambda p, k: method.sample(p, k, 100_000))(params, jax.random.PRNGKey(2)), np.float64)
  full = covariances if covariance == 'full' else np.stack([np.diag(c) for c in covariances])
  mean = weights @ means
  second = np.einsum('k,kde->de', weights, full + np.einsum('kd,ke->kde', means, means))
  np.testing.assert_allclose(samples.mean(0), mean, atol=0.03)
  np.testing.assert_allclose(np.cov(samples.T), second - np.outer(mean, mean), atol=0.05)


def test_kmeans_plus_plus_picks_distinct_data_points_one_per_cluster():
  x = mixture_data(600, 2, seed=3, components=3)
  method = make_gmm(2, components=3)
  centres = np.asarray(jax.jit(method.kmeans_plus_plus)(jax.random.PRNGKey(0), jnp.asarray(x)))
  assert all((np.abs(x - c).sum(1) == 0).any() for c in centres)            # data points
  # D^2 sampling on well-separated clusters puts the centres in different clusters: far apart.
  distances = np.linalg.norm(centres[:, None] - centres[None], axis=-1)[np.triu_indices(3, 1)]
  assert distances.min() > 2.0


def test_sharded_and_single_device_em_steps_agree():
  x = mixture_data(64, 3, seed=4)
  method = make_gmm(3, components=3)
  results = []
  for devices in (jax.devices()[:1], jax.devices()[:8]):
    mesh = make_mesh(ml_collections.ConfigDict({'data': -1, 'fsdp': 1, 'tensor': 1}), devices)
    batch = {'x': jax.device_put(jnp.asarray(x), NamedSharding(mesh, P(('data', 'fsdp'))))}
    state = jax.jit(method.init)(jax.random.PRNGKey(0), {'x': jnp.asarray(x)})
    shardings = state_shardings(state, mesh, base_config().mesh.rules)
    step = jax.jit(method.train_step, out_shardings=(shardings, replicated(mesh)))
    state = jax.device_put(state, shardings)
    for _ in range(2):
      state, _ = step(state, batch)
    results.append(state.params)
  assert_trees_close(results[0], results[1], rtol=1e-4, atol=1e-5)


def test_invalid_configs_raise_config_error():
  discrete = DataInfo('mnist5k', 'image', (28, 28, 1), 256, 10, {}, False)
  with pytest.raises(ConfigError, match='dequantize=True'):
    make_gmm(784, info=discrete)
  with pytest.raises(ConfigError, match='covariance'):
    make_gmm(2, covariance='spherical')
  with pytest.raises(ConfigError, match='init'):
    make_gmm(2, init='kmeans')
  assert get_method('gmm') is GMM


@pytest.mark.parametrize('name,arg', [('classical/gmm_digits.py', 'smoke'), ('classical/gmm_mnist5k.py', 'smoke'),
                                      ('classical/gmm_toy2d.py', 'ring8,smoke')])
def test_smoke_configs_train_evaluate_and_sample(tmp_path, name, arg):
  config = config_file(name, arg)
  assert config.train.steps <= 10
  for evaluator in config.evals.values():   # one evaluation, at the end
    evaluator.every = config.train.steps
  state = train.train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:1])
  records = read_metrics(str(tmp_path))
  losses = [r['loss'] for r in records if r['split'] == 'train' and 'loss' in r]
  assert losses and all(np.isfinite(losses))
  final = [r for r in records if r['split'] == 'eval'][-1]
  samples = np.load(tmp_path / 'samples' / f'samples_{config.train.steps:07d}.npy')
  assert np.isfinite(final['nll_nats']) and np.all(np.isfinite(samples))
  if config.data.dequantize:   # bits/dim of the discrete data: (nats of x in [0, 1]^D + D log L) / (D log 2)
    shape = (8, 8, 1) if config.data.name == 'digits' else (28, 28, 1)
    levels = 17 if config.data.name == 'digits' else 256
    dim = math.prod(shape)
    assert samples.shape[1:] == shape
    np.testing.assert_allclose(final['nll_bpd'], final['nll_nats'] / (dim * math.log(2)), rtol=1e-9)
    # The GMM's nll is the density of x = (x_int + u) / L; the evaluator adds D log L for the discrete data.
    method = GMM(config, get_info(config.data))
    nats = [(np.asarray(method.nll(state.params, b, None)) * b['mask']).sum() for b in
            eval_batches(config.data, config.train.eval_batch_size)]
    count = config.data.max_eval_examples   # smaller than the test split
    np.testing.assert_allclose(final['nll_nats'], sum(nats) / count + dim * math.log(levels), rtol=1e-5)
  else:
    assert samples.shape[1:] == (2,) and final['modes'] >= 1 and 'nll_bpd' not in final
  assert any(f.endswith('.png') for f in os.listdir(tmp_path / 'samples'))
