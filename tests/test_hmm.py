"""Hidden Markov models against brute force: the forward likelihood, posteriors and Viterbi path equal
enumeration over all K^T hidden paths; Baum-Welch never lowers the likelihood; expected counts are
gradients of log p(x); samples follow the model's marginals; gradient training lowers the NLL; sharded
and single-device steps agree; the pysource configs train, evaluate and sample through the loop.
"""

import itertools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.special
import scipy.stats
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxgen import train
from jaxgen.core.config import base_config
from jaxgen.core.mesh import make_mesh, replicated, state_shardings
from jaxgen.data import DataInfo
from jaxgen.errors import ConfigError
from jaxgen.logging import read_metrics
from jaxgen.methods import get as get_method
from jaxgen.methods import hmm as hmm_lib
from tests.test_train import assert_trees_close, config_file

K, T, V, D = 3, 4, 5, 2


def make_hmm(emission='categorical', states=K, length=T, symbols=V, dim=D, steps=100, lr=1e-2, **method):
  c = base_config()
  c.method = ml_collections.ConfigDict({'name': 'hmm', 'em_stepsize_power': 0.0, 'em_pseudocount': 0.0, **method})
  c.model = ml_collections.ConfigDict(dict(states=states, emission=emission, init_scale=1.0))
  c.data.name = 'test'
  c.train.steps = steps
  c.optim.lr = lr
  if emission == 'categorical':
    info = DataInfo('test', 'text', (length,), symbols, None, {'train': 100}, False)
  else:
    info = DataInfo('test', 'vector', (length, dim), None, None, {'train': 100}, False)
  return hmm_lib.HMM(c, info)


def random_data(emission, key, n=6, length=T):
  if emission == 'categorical':
    return jax.random.randint(key, (n, length), 0, V)
  return jax.random.normal(key, (n, length, D))


def random_state(method, seed, x):
  """A TrainState whose parameters are random logits (Gaussian: random means and scales); compiled once
  per method."""
  if not hasattr(method, 'random_state_for_tests'):
    def make(key, x):
      state = method.init(key, {'x': x})
      keys = jax.random.split(jax.random.fold_in(key, 100), 8)
      names = sorted(state.params['hmm'])
      params = {n: 1.5 * jax.random.normal(k, state.params['hmm'][n].shape) for n, k in zip(names, keys)}
      if method.emission == 'gaussian':
        params['log_scale'] = 0.5 * params['log_scale']
      return state.replace(params={'hmm': params})
    method.random_state_for_tests = jax.jit(make)
  return method.random_state_for_tests(jax.random.PRNGKey(seed), x)


def emission_log_probs(emission, params, x):
  """log p(x_bt | z_t = k) [T, B, K] in float64, with numpy and scipy (independently of the method)."""
  p = {k: np.asarray(v, np.float64) for k, v in params['hmm'].items()}
  if emission == 'categorical':
    return np.log(scipy.special.softmax(p['emission'], axis=-1))[:, np.asarray(x).T].transpose(1, 2, 0)
  log_e = scipy.stats.norm.logpdf(np.asarray(x)[:, :, None, :], p['mean'], np.exp(p['log_scale'])).sum(-1)
  return log_e.transpose(1, 0, 2)


def brute_force(params, log_e):
  """Every hidden path's log p(x, z) [B, K^T], and the paths [K^T, T], by enumeration."""
  log_pi = np.log(scipy.special.softmax(np.asarray(params['hmm']['initial'], np.float64)))
  log_a = np.log(scipy.special.softmax(np.asarray(params['hmm']['transition'], np.float64), axis=-1))
  length, _, states = log_e.shape
  paths = np.array(list(itertools.product(range(states), repeat=length)))
  joint = log_pi[paths[:, 0]][None] + log_e[0][:, paths[:, 0]]
  for t in range(1, length):
    joint = joint + log_a[paths[:, t - 1], paths[:, t]][None] + log_e[t][:, paths[:, t]]
  return joint, paths


@pytest.mark.parametrize('emission', ['categorical', 'gaussian'])
def test_forward_posteriors_and_viterbi_equal_brute_force_enumeration(emission):
  method = make_hmm(emission)
  x = random_data(emission, jax.random.PRNGKey(1), n=8)
  params = random_state(method, 0, x).params
  log_e, nll, (gamma, xi, log_z_fb), (path, score) = jax.jit(lambda p: (
      method.emission_log_probs(p, x), method.nll(p, {'x': x}, None), method.posteriors(p, x),
      method.viterbi(p, x)))(params)
  expected_e = emission_log_probs(emission, params, x)
  np.testing.assert_allclose(log_e, expected_e, rtol=1e-5, atol=1e-5)
  joint, paths = brute_force(params, expected_e)

  # Forward: log p(x) = logsumexp over all K^T paths.
  log_z = scipy.special.logsumexp(joint, axis=1)
  np.testing.assert_allclose(-nll, log_z, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(log_z_fb, log_z, rtol=1e-5, atol=1e-4)

  # Forward-backward: state and transition posteriors.
  posterior = np.exp(joint - log_z[:, None])                               # p(z | x) [B, paths]
  onehot = np.eye(K)[paths]                                                 # [paths, T, K]
  np.testing.assert_allclose(gamma, np.einsum('bp,ptk->btk', posterior, onehot), atol=1e-5)
  np.testing.assert_allclose(np.asarray(gamma).sum(-1), 1.0, atol=1e-5)    # posteriors sum to one
  pairs = np.einsum('bp,pti,ptj->ij', posterior, onehot[:, :-1], onehot[:, 1:])
  np.testing.assert_allclose(xi, pairs, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(xi).sum(), x.shape[0] * (T - 1), rtol=1e-5)

  # Viterbi: the max over paths, and a path attaining it (paths with equal transition multisets can
  # tie), the argmax itself wherever the maximum is unique.
  np.testing.assert_allclose(score, joint.max(1), rtol=1e-5, atol=1e-4)
  index = np.ravel_multi_index(np.asarray(path).T, (K,) * T)
  np.testing.assert_allclose(joint[np.arange(len(x)), index], joint.max(1), rtol=1e-6, atol=1e-5)
  top2 = np.sort(joint, axis=1)[:, -2:]
  unique = top2[:, 1] - top2[:, 0] > 1e-3
  assert unique.sum() >= len(x) // 2
  np.testing.assert_array_equal(np.asarray(path)[unique], paths[np.argmax(joint, axis=1)][unique])


def test_expected_counts_are_gradients_of_the_log_likelihood():
  """d sum_b log p(x_b) / d log A_ij = E[#(i -> j)] (log A as free log-potentials): the forward-backward
  counts equal autodiff of the forward pass, on longer sequences than enumeration allows."""
  method = make_hmm('categorical', states=4, length=30)
  x = random_data('categorical', jax.random.PRNGKey(3), n=5, length=30)
  params = random_state(method, 2, x).params
  log_pi, log_a = method.log_probs(params)
  log_e = method.emission_log_probs(params, x)
  grad_a, grad_e = jax.jit(jax.grad(lambda a, e: hmm_lib.forward_log_likelihood(log_pi, a, e).sum(), (0, 1)))(
      log_a, log_e)
  gamma, xi, _ = jax.jit(method.posteriors)(params, x)
  np.testing.assert_allclose(xi, grad_a, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(gamma, jnp.swapaxes(grad_e, 0, 1), rtol=1e-4, atol=5e-5)


@pytest.mark.parametrize('emission', ['categorical', 'gaussian'])
def test_baum_welch_steps_never_decrease_the_likelihood(emission):
  method = make_hmm(emission, states=4, length=12)
  step = jax.jit(method.train_step)
  log_likelihood = jax.jit(lambda p, x: method.log_likelihood(p, x).sum())
  for seed in range(3):   # several random models and datasets
    x = random_data(emission, jax.random.PRNGKey(10 + seed), n=16, length=12)
    state = random_state(method, seed, x)
    before = float(log_likelihood(state.params, x))
    for _ in range(4):
      state, metrics = step(state, {'x': x})
      np.testing.assert_allclose(-float(metrics['loss']) * 16, before, rtol=1e-5)   # loss: under the old params
      after = float(log_likelihood(state.params, x))
      assert after >= before - 1e-4 * abs(before), (seed, before, after)
      before = after
    assert float(metrics['em_stepsize']) == 1.0


@pytest.mark.slow  # Baum-Welch monotonicity (default suite) already checks the M-step's effect
def test_m_step_maximises_the_expected_complete_log_likelihood():
  """The M-step's distributions beat random perturbations of them on the E-step's objective."""
  method = make_hmm('categorical', states=3, length=10)
  x = random_data('categorical', jax.random.PRNGKey(4), n=8, length=10)
  stats, _ = jax.jit(method.expected_stats)(random_state(method, 3, x).params, x)
  q = jax.jit(lambda p: sum(jnp.sum(stats[k] * jax.nn.log_softmax(p['hmm'][k], axis=-1)) for k in stats))
  best = jax.jit(method.m_step)(stats)
  for i in range(5):
    keys = jax.random.split(jax.random.PRNGKey(i), 3)
    other = {'hmm': {k: v + 0.3 * jax.random.normal(key, v.shape) for (k, v), key in zip(best['hmm'].items(), keys)}}
    assert float(q(best)) > float(q(other))


def test_stepwise_em_mixes_statistics_with_decaying_step_sizes():
  method = make_hmm('categorical', em_stepsize_power=0.7)
  x1, x2 = random_data('categorical', jax.random.PRNGKey(5)), random_data('categorical', jax.random.PRNGKey(6))
  state = random_state(method, 0, x1)
  stats, step = jax.jit(method.expected_stats), jax.jit(method.train_step)
  s1 = stats(state.params, x1)[0]
  state, metrics = step(state, {'x': x1})
  assert float(metrics['em_stepsize']) == 1.0
  s2 = stats(state.params, x2)[0]
  state, metrics = step(state, {'x': x2})
  eta = 2.0 ** -0.7
  np.testing.assert_allclose(metrics['em_stepsize'], eta, rtol=1e-6)
  for k in s1:
    np.testing.assert_allclose(state.extra['stats'][k], (1 - eta) * s1[k] + eta * s2[k], rtol=1e-5, atol=1e-7)


def test_samples_follow_the_models_marginals():
  """Empirical frequencies of (x_1, x_2) over many samples match p(x_1, x_2) = sum pi_i B_i A_ij B_j."""
  method = make_hmm('categorical', states=3, length=2, symbols=4)
  x = random_data('categorical', jax.random.PRNGKey(7), length=2) % 4
  params = random_state(method, 4, x).params
  samples = np.asarray(jax.jit(lambda p, k: method.sample(p, k, 40_000))(params, jax.random.PRNGKey(8)))
  assert samples.shape == (40_000, 2) and samples.dtype == np.int32
  pi, a = (np.exp(np.asarray(v, np.float64)) for v in method.log_probs(params))
  b = scipy.special.softmax(np.asarray(params['hmm']['emission'], np.float64), axis=-1)
  expected = np.einsum('i,iu,ij,jv->uv', pi, b, a, b)
  counts = np.zeros((4, 4))
  np.add.at(counts, (samples[:, 0], samples[:, 1]), 1)
  np.testing.assert_allclose(counts / len(samples), expected, atol=4 * np.sqrt(expected.max() / len(samples)))


def test_gaussian_samples_have_the_emission_moments():
  method = make_hmm('gaussian', states=2, length=3)
  x = random_data('gaussian', jax.random.PRNGKey(9), length=3)
  params = random_state(method, 5, x).params
  samples = np.asarray(jax.jit(lambda p, k: method.sample(p, k, 40_000))(params, jax.random.PRNGKey(1)))
  assert samples.shape == (40_000, 3, D)
  pi = np.exp(np.asarray(method.log_probs(params)[0], np.float64))
  mean = np.asarray(params['hmm']['mean'], np.float64)
  np.testing.assert_allclose(samples[:, 0].mean(0), pi @ mean, atol=0.05)


@pytest.mark.slow  # ~7 s of training; the pysource smoke configs run gradient training in the default suite
def test_gradient_training_lowers_the_nll():
  """Adam on the exact likelihood of data drawn from another HMM."""
  teacher = make_hmm('categorical', states=3, length=20)
  x0 = random_data('categorical', jax.random.PRNGKey(0), length=20)
  data = jax.jit(lambda p: teacher.sample(p, jax.random.PRNGKey(11), 64))(random_state(teacher, 7, x0).params)
  method = make_hmm('categorical', states=3, length=20, training='gradient', lr=0.1)
  state = jax.jit(method.init)(jax.random.PRNGKey(1), {'x': data})
  nll = jax.jit(lambda p: jnp.mean(method.nll(p, {'x': data}, None)))
  before = float(nll(state.params))
  step = jax.jit(method.train_step)
  for _ in range(15):
    state, metrics = step(state, {'x': data})
  after = float(nll(state.params))
  assert np.isfinite(after) and after < before - 0.05 * abs(before), (before, after)


def test_sharded_and_single_device_em_steps_agree():
  """Two stepwise-EM steps on the batch split over an 8-device mesh equal two steps on one device (the
  expected counts are sums over the sharded batch)."""
  method = make_hmm('categorical', states=4, length=12, em_stepsize_power=0.7)
  x = random_data('categorical', jax.random.PRNGKey(12), n=16, length=12)
  results = []
  for devices in (jax.devices()[:1], jax.devices()[:8]):
    mesh = make_mesh(ml_collections.ConfigDict({'data': -1, 'fsdp': 1, 'tensor': 1}), devices)
    batch = {'x': jax.device_put(x, NamedSharding(mesh, P(('data', 'fsdp'))))}
    state = random_state(method, 0, x)
    shardings = state_shardings(state, mesh, base_config().mesh.rules)
    state = jax.device_put(state, shardings)
    step = jax.jit(method.train_step, out_shardings=(shardings, replicated(mesh)))
    for _ in range(2):
      state, _ = step(state, batch)
    results.append(state)
  assert len(results[1].params['hmm']['emission'].sharding.device_set) == 8
  assert_trees_close(results[0].params, results[1].params, rtol=1e-4, atol=1e-5)
  assert_trees_close(results[0].extra, results[1].extra, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('model,match', [
    (dict(emission='gaussian'), 'continuous sequences'),
    (dict(emission='poisson'), 'not one of'),
])
def test_invalid_configs_raise_config_error(model, match):
  c = base_config()
  c.method = ml_collections.ConfigDict({'name': 'hmm'})
  c.model = ml_collections.ConfigDict(dict(states=3, **model))
  with pytest.raises(ConfigError, match=match):
    hmm_lib.HMM(c, DataInfo('t', 'text', (8,), 256, None, {}, False))


def test_unknown_method_keys_and_em_with_ema_raise_config_error():
  c = base_config()
  c.method = ml_collections.ConfigDict({'name': 'hmm', 'trainig': 'em'})
  c.model = ml_collections.ConfigDict(dict(states=3))
  info = DataInfo('t', 'text', (8,), 256, None, {}, False)
  with pytest.raises(ConfigError, match='unknown key.*trainig'):
    hmm_lib.HMM(c, info)
  c.method = ml_collections.ConfigDict({'name': 'hmm'})
  c.train.ema_decay = 0.99
  with pytest.raises(ConfigError, match='ema_decay'):
    hmm_lib.HMM(c, info)
  assert get_method('hmm') is hmm_lib.HMM


@pytest.mark.parametrize('variant', ['em', 'gradient'])
def test_pysource_smoke_config_trains_evaluates_and_samples(tmp_path, variant):
  config = config_file('classical/hmm_pysource.py', f'{variant},smoke')
  assert config.method.training == variant and config.train.steps <= 10
  config.evals.nll.every = config.evals.samples.every = config.train.steps
  train.train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:1])
  records = read_metrics(str(tmp_path))
  losses = [r['loss'] for r in records if r['split'] == 'train' and 'loss' in r]
  assert losses and all(np.isfinite(losses))
  final = [r for r in records if r['split'] == 'eval'][-1]
  seq_len = config.data.seq_len
  np.testing.assert_allclose(final['nll_bpd'], final['nll_nats'] / (seq_len * np.log(2)), rtol=1e-6)
  assert 1.0 < final['nll_bpd'] < 9.0    # bits per byte: below uniform (8) plus slack for an untrained model
  samples = np.load(tmp_path / 'samples' / f'samples_{config.train.steps:07d}.npy')
  assert samples.shape == (config.evals.samples.num, seq_len) and samples.dtype == np.int32
  assert samples.min() >= 0 and samples.max() <= 255
  text = (tmp_path / 'samples' / f'samples_{config.train.steps:07d}.txt').read_text(encoding='utf-8')
  assert text.count('===== sample') == config.evals.samples.num
  assert os.path.exists(tmp_path / 'checkpoints')
