"""RBM: free energies and conditionals against enumeration, CD/PCD updates against the exact gradient,
persistent chains, exact resume, sharded steps, and the mnist5k configs through the train loop."""

import itertools
import math
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import train
from jaxgen.core.config import base_config
from jaxgen.core.state import step_rng
from jaxgen.errors import ConfigError
from jaxgen.logging import read_metrics
from jaxgen.methods import get as get_method
from jaxgen.methods import rbm
from test_train import assert_trees_close, assert_trees_equal, config_file, train_until

RBM_CONFIG = 'ebm/rbm_mnist5k_binary.py'


def make_info(shape, levels=2, kind='image', dequantized=False, train=1000):
  """Stand-in for jaxgen.data DataInfo."""
  return types.SimpleNamespace(name='test', kind=kind, shape=tuple(shape), levels=levels, num_classes=None,
                               num_examples={'train': train, 'test': 10}, dequantized=dequantized)


def make_config(visible='binary', hidden=4, k=1, persistent=False, chains=0, lr=1.0, momentum=0.0,
                weight_decay=0.0, batch_size=16, steps=100):
  c = base_config()
  c.method.name = 'rbm'
  c.method.visible = visible
  c.method.cd_k = k
  c.method.persistent = persistent
  c.method.chains = chains
  c.method.initial_momentum = momentum
  c.method.ais_betas = (100,)
  c.method.ais_breaks = ()
  c.method.ais_chains = 16
  c.model.hidden = hidden
  c.data.name = 'test'
  c.train.batch_size = batch_size
  c.train.steps = steps
  c.optim.name = 'sgd'
  c.optim.lr = lr
  c.optim.momentum = momentum
  c.optim.weight_decay = weight_decay
  return c


def random_rbm(seed, num_v, num_h, scale=1.0):
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
  return {'W': scale * jax.random.normal(k1, (num_v, num_h)), 'b': 0.5 * jax.random.normal(k2, (num_v,)),
          'c': 0.5 * jax.random.normal(k3, (num_h,))}


def np_energy(p, v, h, visible):
  """E(v, h) written out in float64 numpy, independently of jaxgen.methods.rbm."""
  W, b, c = (np.asarray(p[k], np.float64) for k in ('W', 'b', 'c'))
  quad = -v @ b if visible == 'binary' else 0.5 * np.sum((v - b) ** 2)
  return quad - c @ h - v @ W @ h


def states(n):
  return np.array(list(itertools.product((0.0, 1.0), repeat=n)))


def logsumexp(a):
  m = np.max(a)
  return m + np.log(np.sum(np.exp(a - m)))


# ---- free energy, conditionals and log Z against enumeration ---------------------------------------


@pytest.mark.parametrize('visible', ['binary', 'gaussian'])
def test_free_energy_is_minus_log_sum_over_hidden_states(visible):
  p = random_rbm(0, 5, 4)
  rng = np.random.default_rng(0)
  v = states(5)[::3] if visible == 'binary' else rng.normal(size=(7, 5))
  expected = [-logsumexp([-np_energy(p, vi, h, visible) for h in states(4)]) for vi in v]
  got = rbm.free_energy(p, jnp.asarray(v, jnp.float32), visible)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_binary_conditionals_match_the_enumerated_joint():
  p = random_rbm(1, 4, 3)
  vs, hs = states(4), states(3)
  log_joint = np.array([[-np_energy(p, v, h, 'binary') for h in hs] for v in vs])   # [16 v, 8 h]
  joint = np.exp(log_joint - logsumexp(log_joint.ravel()))
  p_h1_given_v = (joint @ hs) / joint.sum(1, keepdims=True)                      # [v, H]
  p_v1_given_h = (joint.T @ vs) / joint.sum(0)[:, None]                          # [h, V]
  np.testing.assert_allclose(jax.nn.sigmoid(rbm.hidden_logits(p, jnp.asarray(vs, jnp.float32))), p_h1_given_v,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(rbm.visible_mean(p, jnp.asarray(hs, jnp.float32), 'binary'), p_v1_given_h,
                             rtol=1e-5, atol=1e-6)


def test_gaussian_conditionals_match_the_energy():
  p = random_rbm(2, 3, 4)
  rng = np.random.default_rng(1)
  hs = states(4)
  for v in rng.normal(size=(3, 3)):
    log_h = np.array([-np_energy(p, v, h, 'gaussian') for h in hs])
    post = np.exp(log_h - logsumexp(log_h))
    np.testing.assert_allclose(jax.nn.sigmoid(rbm.hidden_logits(p, jnp.asarray(v[None], jnp.float32)))[0],
                               post @ hs, rtol=1e-5, atol=1e-6)
  # As a function of v, -E(v, h) is log N(v; b + W h, I) plus a constant: the difference is flat in v.
  for h in hs[[0, 5, 15]]:
    mean = rbm.visible_mean(p, jnp.asarray(h[None], jnp.float32), 'gaussian')[0]
    vs = rng.normal(size=(6, 3)) * 2
    gaps = [-np_energy(p, v, h, 'gaussian') + 0.5 * np.sum((v - np.asarray(mean)) ** 2) for v in vs]
    np.testing.assert_allclose(gaps, gaps[0], atol=1e-4)


def test_exact_log_z_matches_brute_force():
  p = random_rbm(3, 6, 5)
  brute = logsumexp([-np_energy(p, v, h, 'binary') for v in states(6) for h in states(5)])
  np.testing.assert_allclose(rbm.exact_log_z(p, 'binary'), brute, rtol=1e-5)
  # Gaussian: integrate over v on a grid (2 visible units) and sum over h.
  g = random_rbm(4, 2, 3, scale=0.5)
  grid = np.linspace(-9, 9, 601)
  dv = grid[1] - grid[0]
  v = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
  f = -np.asarray(rbm.free_energy({k: jnp.asarray(x, jnp.float32) for k, x in g.items()},
                                  jnp.asarray(v, jnp.float32), 'gaussian'), np.float64)
  np.testing.assert_allclose(rbm.exact_log_z(g, 'gaussian'), logsumexp(f) + 2 * np.log(dv), rtol=1e-4)


# ---- the CD / PCD update ---------------------------------------------------------------------------


def patterns(repeat):
  base = np.array([[1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1], [1, 0, 1, 0, 1, 0, 1, 0],
                   [1, 1, 0, 0, 1, 1, 0, 0]], np.float32)
  return np.tile(base, (repeat, 1)).reshape(-1, 2, 4, 1)


def state_with(method, p, x):
  state = nn.unbox(jax.jit(method.init)(jax.random.PRNGKey(0), {'x': x}))
  return state.replace(params={**state.params, 'rbm': p}, opt_state=method.tx.init(p))


@pytest.mark.parametrize('k', [1, 10])
def test_cd_update_follows_the_exact_log_likelihood_gradient(k):
  """One train_step with SGD (lr 1, no momentum or decay) moves the parameters by the CD-k estimate; its
  cosine with the exact gradient of the mean log-likelihood (enumeration) is clearly positive."""
  x = patterns(512)                                     # 2048 examples: little sampling noise
  method = rbm.RBM(make_config(k=k, batch_size=x.shape[0]), make_info((2, 4, 1)))
  p = random_rbm(5, 8, 4)
  state = state_with(method, p, x)
  new_state, metrics = jax.jit(method.train_step)(state, {'x': x})
  delta = jax.tree.map(lambda a, b: a - b, new_state.params['rbm'], p)
  v = jnp.asarray(x.reshape(x.shape[0], -1))
  exact = jax.grad(lambda q: jnp.mean(-rbm.free_energy(q, v, 'binary')) - rbm.exact_log_z(q, 'binary'))(p)
  flat = lambda t: np.concatenate([np.ravel(t[key]) for key in ('W', 'b', 'c')])
  cosine = flat(delta) @ flat(exact) / (np.linalg.norm(flat(delta)) * np.linalg.norm(flat(exact)))
  assert cosine > 0.9, cosine
  assert np.isfinite(metrics['loss']) and int(new_state.step) == 1


def test_pcd_chains_persist_and_drive_the_negative_phase():
  """The chains after step t are k Gibbs steps from those before it (with the step's key), and the
  update's visible-bias change is lr * (<v>_data - <v>_chains) with the new chain states."""
  x = patterns(4)
  lr, k = 0.1, 2
  method = rbm.RBM(make_config(k=k, persistent=True, chains=24, lr=lr, batch_size=16), make_info((2, 4, 1)))
  state = nn.unbox(jax.jit(method.init)(jax.random.PRNGKey(0), {'x': x}))
  assert state.extra['chains'].shape == (24, 8)
  step = jax.jit(method.train_step)
  for _ in range(3):
    new_state, _ = step(state, {'x': x})
    expected, _ = rbm.gibbs(state.params['rbm'], state.extra['chains'], step_rng(state, rbm._NEGATIVE), k, 'binary')
    np.testing.assert_array_equal(new_state.extra['chains'], expected)
    assert not np.array_equal(new_state.extra['chains'], state.extra['chains'])
    db = new_state.params['rbm']['b'] - state.params['rbm']['b']
    np.testing.assert_allclose(db, lr * (x.reshape(16, -1).mean(0) - np.asarray(expected).mean(0)), atol=1e-6)
    state = new_state


def test_momentum_schedule_and_weight_decay_on_weights_only():
  """Hinton's update: trace <- m trace + (g + wd W) for W (g alone for biases), params -= lr trace,
  with m = initial_momentum for momentum_steps updates, then optim.momentum."""
  config = make_config(lr=0.1, weight_decay=0.01)
  config.method.initial_momentum, config.method.momentum_steps, config.optim.momentum = 0.5, 2, 0.9
  tx = rbm.RBM(config, make_info((2, 4, 1))).tx
  p = random_rbm(6, 8, 4)
  g = random_rbm(7, 8, 4)
  opt = tx.init(p)
  trace = jax.tree.map(jnp.zeros_like, p)
  for i in range(4):
    m = 0.5 if i < 2 else 0.9
    trace = {key: m * trace[key] + g[key] + (0.01 * p[key] if key == 'W' else 0.0) for key in p}
    expected = {key: p[key] - 0.1 * trace[key] for key in p}
    updates, opt = tx.update(g, opt, p)
    p = jax.tree.map(lambda a, u: a + u, p, updates)
    assert_trees_close(p, expected, rtol=1e-5, atol=1e-6)


def test_first_epoch_statistics_and_base_rates():
  """params['data'] is the mean of the first epoch's inputs, frozen afterwards; the base-rate biases
  are their smoothed logits."""
  method = rbm.RBM(make_config(batch_size=4), make_info((2, 4, 1), train=8))   # epoch = 2 steps
  x = patterns(2)
  state = nn.unbox(jax.jit(method.init)(jax.random.PRNGKey(0), {'x': x[:4]}))
  step = jax.jit(method.train_step)
  for batch in (x[:4], x[4:], 1 - x[:4]):
    state, _ = step(state, {'x': batch})
  stats = state.params['data']
  np.testing.assert_allclose(stats['mean'], x.reshape(8, -1).mean(0), atol=1e-6)
  assert float(stats['count']) == 8
  q = (np.asarray(stats['mean']) * 8 + 1) / 10
  np.testing.assert_allclose(method.base_bias(state.params), np.log(q / (1 - q)), rtol=1e-5, atol=1e-6)


def test_config_errors():
  info = make_info((2, 4, 1))
  with pytest.raises(ConfigError, match='unknown key.*cdk.*valid keys'):
    config = make_config()
    config.method.cdk = 3
    rbm.RBM(config, info)
  with pytest.raises(ConfigError, match="binarize='dynamic'"):
    rbm.RBM(make_config(), make_info((2, 4, 1), levels=256))
  with pytest.raises(ConfigError, match='dequantize=True'):
    rbm.RBM(make_config(visible='gaussian'), make_info((2, 4, 1), levels=17))
  with pytest.raises(ConfigError, match='cd_k must be >= 1'):
    config = make_config()
    config.method.cd_k = 0
    rbm.RBM(config, info)
  with pytest.raises(ConfigError, match="optim.name='sgd'"):
    config = make_config()
    config.optim.name = 'adam'
    rbm.RBM(config, info)
  assert get_method('rbm') is rbm.RBM


# ---- through the train loop ------------------------------------------------------------------------


def smoke_run(tmp_path, name, arg):
  """Train `arg`'s smoke config through the loop on one device with one evaluation at the end; check what
  every energy model's run writes (finite losses, an AIS NLL with its spread, sample grids and Gibbs
  chains) and return (config, metrics records, the final eval record, the samples, the final state)."""
  config = config_file(name, arg)
  assert config.train.steps <= 10
  for evaluator in config.evals.values():  # one evaluation, at the end
    evaluator.every = config.train.steps
  state = train.train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:1])
  records = read_metrics(str(tmp_path))
  assert all(np.isfinite(r['loss']) for r in records if 'loss' in r)
  ev = [r for r in records if r['split'] == 'eval'][-1]
  assert np.isfinite(ev['nll_nats']) and np.isfinite(ev['train_nll_nats']) and ev['nll_bpd'] > 0
  assert ev['log_z_upper'] >= ev['log_z'] and ev['log_z_std'] >= 0
  steps, gibbs = config.train.steps, config.evals.gibbs_chain
  chain = np.load(tmp_path / f'samples/gibbs_chain_{steps:07d}.npy')
  assert len(chain) == gibbs.num * len(gibbs.snapshots)
  assert (tmp_path / f'samples/gibbs_chain_{steps:07d}.png').exists()
  assert (tmp_path / f'samples/samples_{steps:07d}.png').exists()
  return config, records, ev, np.load(tmp_path / f'samples/samples_{steps:07d}.npy'), state


def assert_resume_is_exact(tmp_path, monkeypatch, name, arg, stop_at, straight):
  """`arg`'s smoke run preempted after `stop_at` steps and resumed in a new run == `straight`, the
  state of the uninterrupted run (evaluating does not change it): params, optimizer state and extra
  state (the persistent chains), bit for bit."""
  config = config_file(name, arg)
  config.evals = {}
  train_until(config, str(tmp_path / 'resumed'), stop_at, monkeypatch, devices=jax.devices()[:1])
  resumed = train.train_and_evaluate(config, str(tmp_path / 'resumed'), devices=jax.devices()[:1])
  assert int(resumed.step) == int(straight.step) == config.train.steps
  assert_trees_equal(resumed.params, straight.params)
  assert_trees_equal(resumed.opt_state, straight.opt_state)
  assert_trees_equal(resumed.extra, straight.extra)


def check_binary_smoke(config, ev, samples):
  assert config.data.binarize == 'dynamic' and config.model.hidden == 16
  # A barely trained 16-hidden RBM: positive, and not far worse than independent pixels (784 log 2).
  assert 0 < ev['nll_nats'] < 784 * math.log(2) * 1.5
  assert samples.shape == (16, 28, 28, 1) and set(np.unique(samples)) <= {0.0, 1.0}


@pytest.fixture(scope='module')
def pcd_smoke(tmp_path_factory):
  """configs/ebm/rbm_mnist5k_binary.py:pcd,smoke through the loop (6 steps, evaluated at the end)."""
  return smoke_run(tmp_path_factory.mktemp('pcd_smoke'), RBM_CONFIG, 'pcd,smoke')


def test_pcd_smoke_config_trains_evaluates_and_samples(pcd_smoke):
  config, _, ev, samples, state = pcd_smoke
  assert config.method.persistent and config.method.cd_k == 1
  assert state.extra['chains'].shape == (config.method.chains, 784)
  check_binary_smoke(config, ev, samples)


@pytest.mark.parametrize('variant', ['cd1', pytest.param('cd25', marks=pytest.mark.slow)])
def test_cd_smoke_config_trains_evaluates_and_samples(tmp_path, variant):
  config, _, ev, samples, state = smoke_run(tmp_path, RBM_CONFIG, f'{variant},smoke')
  assert config.method.cd_k == (25 if variant == 'cd25' else 1) and not config.method.persistent
  assert state.extra == {}
  check_binary_smoke(config, ev, samples)


def test_pcd_resume_is_exact(tmp_path, monkeypatch, pcd_smoke):
  """3 steps, preempted, resumed in a new run, 3 more == 6 steps straight: params, optimizer, chains."""
  assert_resume_is_exact(tmp_path, monkeypatch, RBM_CONFIG, 'pcd,smoke', 3, pcd_smoke[-1])


def assert_sharded_chains_run_matches(config, workdir, single):
  """Train `config` (evaluators off) on 8 devices: every persistent-chain array in state.extra is split
  over the 8, the parameters and optimizer state equal the single-device run's `single` to float
  rounding, and the chains (binary states) are identical."""
  config.evals = {}
  sharded = train.train_and_evaluate(config, str(workdir), devices=jax.devices()[:8])
  for path, chains in jax.tree_util.tree_leaves_with_path(sharded.extra):
    assert len(chains.sharding.device_set) == 8 and not chains.sharding.is_fully_replicated, path
  assert_trees_close(sharded.params, single.params, rtol=1e-4, atol=1e-5)
  assert_trees_close(sharded.opt_state, single.opt_state, rtol=1e-4, atol=1e-5)
  assert_trees_equal(sharded.extra, single.extra)


def test_sharded_pcd_step_matches_single_device(tmp_path, pcd_smoke):
  """PCD-1 with the batch and the persistent chains split over 8 devices == on one device (6 steps)."""
  assert_sharded_chains_run_matches(config_file(RBM_CONFIG, 'pcd,smoke'), tmp_path, pcd_smoke[-1])
