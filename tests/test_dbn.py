"""DBN: the greedy stage schedule, the lower bound against exact log-likelihoods of enumerable DBNs,
generation, exact resume across a stage boundary, and the mnist5k config through the train loop."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxgen import distributions, train
from jaxgen.errors import ConfigError
from jaxgen.methods import dbn, rbm
from jaxgen.methods import get as get_method
from test_rbm import assert_resume_is_exact, assert_sharded_chains_run_matches, make_info, random_rbm, smoke_run
from test_rbm import make_config as rbm_config
from test_train import assert_trees_equal, config_file

DBN_CONFIG = 'ebm/dbn_mnist5k_binary.py'


def make_config(hidden=(4, 3), stage_steps=2, steps=4, lr=0.1, batch_size=16, bound_samples=8):
  c = rbm_config(lr=lr, batch_size=batch_size, steps=steps)
  c.method.name = 'dbn'
  del c.method['visible']
  c.method.stage_steps = stage_steps
  c.method.bound_samples = bound_samples
  c.model = ml_collections.ConfigDict({'hidden': hidden})
  return c


def binary_batch(n, dims, seed=0):
  return (jax.random.uniform(jax.random.PRNGKey(seed), (n, *dims)) < 0.5).astype(jnp.float32)


def states(n):
  return jnp.asarray(rbm.binary_states(n))


@jax.jit
def exact_log_likelihood(layers, v_NV):
  """log p(v) of the DBN by enumerating every hidden layer: the top RBM's marginal over h_{L-1}, then the
  directed layers down to v."""
  top = layers[-1]
  h = states(top['W'].shape[0])                                      # all h_{L-1}
  log_p_h = -rbm.free_energy(top, h, 'binary')
  log_p_h = log_p_h - jax.nn.logsumexp(log_p_h)                      # log p(h_{L-1})
  for p in reversed(layers[:-1]):                                    # -> log p(h_l) for every h_l
    below = states(p['W'].shape[0])
    logits = h @ p['W'].T + p['b'][None]                               # [h_{l+1}, units of h_l]
    log_cond = distributions.bernoulli_log_prob(logits[:, None], below[None]).sum(-1)   # [h_{l+1}, h_l]
    log_p_h = jax.nn.logsumexp(log_p_h[:, None] + log_cond, axis=0)
    h = below
  index = (v_NV @ (2 ** jnp.arange(v_NV.shape[1] - 1, -1, -1))).astype(jnp.int32)   # row of v in states()
  return log_p_h[index]


@jax.jit
def exact_bound(layers, v_NV):
  """The 2-layer bound E_q[log p(v|h1) - F_2(h1) - log q(h1|v)] - log Z_2 by enumerating h1."""
  p0, p1 = layers
  h1 = states(p0['W'].shape[1])
  q_logits = rbm.hidden_logits(p0, v_NV)                                              # [N, H1]
  log_q = distributions.bernoulli_log_prob(q_logits[:, None], h1[None]).sum(-1)                     # [N, S]
  log_pv = distributions.bernoulli_log_prob((h1 @ p0['W'].T + p0['b'][None])[None], v_NV[:, None]).sum(-1)
  log_ph = -rbm.free_energy(p1, h1, 'binary') - rbm.exact_log_z(p1, 'binary')
  return jnp.sum(jnp.exp(log_q) * (log_pv + log_ph[None] - log_q), axis=1)


def dbn_method(hidden, shape, samples):
  return dbn.DBN(make_config(hidden=hidden, stage_steps=1, steps=len(hidden), bound_samples=samples),
                 make_info(shape))


@pytest.mark.parametrize('hidden,shape', [((4, 3), (6,)), ((4, 3, 2), (5,))])
def test_bound_is_below_the_exact_log_likelihood(hidden, shape):
  method = dbn_method(hidden, shape, samples=4000)
  sizes = (shape[0],) + hidden
  layers = [random_rbm(20 + l, sizes[l], sizes[l + 1], scale=1.5) for l in range(len(hidden))]
  params = {f'rbm{l}': p for l, p in enumerate(layers)}
  v = states(shape[0])[::3]
  exact = exact_log_likelihood(layers, v)
  np.testing.assert_allclose(jax.nn.logsumexp(exact_log_likelihood(layers, states(shape[0]))), 0.0, atol=1e-5)
  log_z = rbm.exact_log_z(layers[-1], 'binary')
  bound = -jax.jit(method.nll_given_log_z)(params, {'x': v}, jax.random.PRNGKey(0), log_z)
  bound, exact = np.asarray(bound), np.asarray(exact)
  assert np.all(bound <= exact + 0.02), (bound, exact)
  assert np.mean(exact - bound) > 0.05    # a strict bound here (q is not the true posterior)
  if len(hidden) == 2:  # the Monte Carlo estimate is of the enumerated bound (4,000 samples per example)
    enumerated = np.asarray(exact_bound(layers, v))
    assert np.all(enumerated <= exact + 1e-5)
    np.testing.assert_allclose(bound, enumerated, atol=0.2)
    np.testing.assert_allclose(bound.mean(), enumerated.mean(), atol=0.03)


def test_one_layer_bound_is_the_rbm_log_likelihood():
  method = dbn_method((4,), (6,), samples=3)
  p = random_rbm(30, 6, 4)
  v = states(6)[::5]
  log_z = rbm.exact_log_z(p, 'binary')
  nll = jax.jit(method.nll_given_log_z)({'rbm0': p}, {'x': v}, jax.random.PRNGKey(0), log_z)
  np.testing.assert_allclose(nll, rbm.free_energy(p, v, 'binary') + log_z, rtol=1e-6)


def test_greedy_stages_train_one_layer_on_posterior_samples_of_the_one_below():
  lr, S = 0.1, 2
  method = dbn.DBN(make_config(hidden=(4, 3), stage_steps=S, lr=lr), make_info((2, 3, 1)))
  assert [int(method.stage(jnp.int32(s))) for s in (0, 1, 2, 3, 9)] == [0, 0, 1, 1, 1]
  x = binary_batch(16, (2, 3, 1))
  state = nn.unbox(jax.jit(method.init)(jax.random.PRNGKey(0), {'x': x}))
  step = jax.jit(method.train_step)
  # Stage 0 (step 0): layer 0 changes, layer 1 and its optimizer do not.
  after, metrics = step(state, {'x': x})
  assert float(metrics['stage']) == 0
  assert not np.allclose(after.params['rbm0']['W'], state.params['rbm0']['W'])
  assert_trees_equal(after.params['rbm1'], state.params['rbm1'])
  assert_trees_equal(after.opt_state['rbm1'], state.opt_state['rbm1'])
  # Stage 1 (step S): layer 0 copies v_1..v_4 into h1 (deterministically: logits +-20); layer 1 has W = 0
  # and b = -40, so its negative chains' visibles are all 0 and its update is lr * (positive statistics).
  p0 = {'W': 40.0 * jnp.eye(6, 4), 'b': jnp.zeros((6,)), 'c': jnp.full((4,), -20.0)}
  p1 = {'W': jnp.zeros((4, 3)), 'b': jnp.full((4,), -40.0), 'c': jnp.zeros((3,))}
  state = state.replace(step=jnp.int32(S), params={**state.params, 'rbm0': p0, 'rbm1': p1},
                        opt_state={'rbm0': method.tx.init(p0), 'rbm1': method.tx.init(p1)})
  after, metrics = step(state, {'x': x})
  assert float(metrics['stage']) == 1
  assert_trees_equal(after.params['rbm0'], p0)
  assert_trees_equal(after.opt_state['rbm0'], state.opt_state['rbm0'])
  h1_mean = np.asarray(x).reshape(16, 6)[:, :4].mean(0)        # the posterior samples' mean
  np.testing.assert_allclose(after.params['data']['rbm1']['mean'], h1_mean, atol=1e-6)
  np.testing.assert_allclose(after.params['rbm1']['b'] - p1['b'], lr * h1_mean, atol=1e-5)
  np.testing.assert_allclose(after.params['rbm1']['W'], lr * 0.5 * np.outer(h1_mean, np.ones(3)), atol=1e-6)
  np.testing.assert_allclose(after.params['rbm1']['c'], 0.0, atol=1e-6)   # p(h2 | .) = 1/2 in both phases


def test_config_errors():
  with pytest.raises(ConfigError, match='config.train.steps=4 must be at least 3 x'):
    dbn.DBN(make_config(hidden=(4, 3, 2), stage_steps=2, steps=4), make_info((6,)))
  with pytest.raises(ConfigError, match='unknown key.*stages'):
    config = make_config()
    config.method.stages = 2
    dbn.DBN(config, make_info((6,)))
  with pytest.raises(ConfigError, match="binarize='dynamic'"):
    dbn.DBN(make_config(), make_info((6,), levels=256))
  assert get_method('dbn') is dbn.DBN


@pytest.fixture(scope='module')
def dbn_smoke(tmp_path_factory):
  """configs/ebm/dbn_mnist5k_binary.py:smoke through the loop (2 stages of 3 steps, evaluated at the end)."""
  return smoke_run(tmp_path_factory.mktemp('dbn_smoke'), DBN_CONFIG, 'smoke')


def test_smoke_config_trains_evaluates_and_samples(dbn_smoke):
  config, records, ev, samples, state = dbn_smoke
  assert config.train.steps == 2 * config.method.stage_steps
  assert [r['stage'] for r in records if 'stage' in r] == [0.0, 1.0]   # logged at steps 3 and 6
  assert ev['nll_nats'] > 0
  assert samples.shape == (16, 28, 28, 1) and set(np.unique(samples)) <= {0.0, 1.0}
  assert set(state.extra['chains']) == {'rbm0', 'rbm1'}                 # PCD layers: chains per layer


def test_resume_across_the_stage_boundary_is_exact(tmp_path, monkeypatch, dbn_smoke):
  """Preempted at step 3 (the end of stage 0), resumed into stage 1 in a new run == 6 steps straight."""
  assert_resume_is_exact(tmp_path, monkeypatch, DBN_CONFIG, 'smoke', 3, dbn_smoke[-1])


def test_sharded_run_through_the_stage_boundary_matches_single_device(tmp_path, dbn_smoke):
  """Both PCD stages (6 steps) with the batch and every layer's persistent chains split over 8 devices ==
  on one device: the upward pass that feeds stage 1 and its chains shard like the data."""
  assert_sharded_chains_run_matches(config_file(DBN_CONFIG, 'smoke'), tmp_path, dbn_smoke[-1])
