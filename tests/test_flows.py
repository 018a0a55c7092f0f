"""Normalizing flows (RealNVP, Glow): exact inverses and log-determinants, brute-force densities, configs."""

import math
import os
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
from jaxgen.methods.flows import GlowMethod, RealNVPMethod
from jaxgen.models import flows

from test_train import config_file

# Small random perturbation of parameters, so zero-initialised couplings and priors are not the identity.
PERTURB = 0.05


def make_info(shape, kind='image', dequantized=True, levels=256, num_classes=None, name='test'):
  """Stand-in for jaxgen.data DataInfo."""
  return types.SimpleNamespace(name=name, kind=kind, shape=tuple(shape), levels=levels if kind == 'image' else None,
                               num_classes=num_classes, num_examples={'train': 100, 'test': 10},
                               dequantized=dequantized)


def make_config(method, model, steps=100, lr=1e-3, **method_keys):
  c = base_config()
  c.method.name = method
  for k, v in method_keys.items():
    c.method[k] = v
  c.model = ml_collections.ConfigDict(model)
  c.data.name = 'synthetic'
  c.train.steps = steps
  c.optim.lr = lr
  return c


def perturb(tree, seed, scale=PERTURB):
  rs = np.random.RandomState(seed)
  return jax.tree.map(lambda p: p + scale * rs.normal(size=p.shape).astype(np.float32), tree)


def jacobian_logdet(fn, x1):
  """log|det d fn / d x| of fn on a single example x1 [1, ...] by brute force (full Jacobian via jacfwd)."""
  flat = lambda v: fn(v.reshape(x1.shape)).reshape(-1)
  jac = jax.jacfwd(flat)(x1.reshape(-1))
  return jnp.linalg.slogdet(jac)[1]


# ---- every layer: inverse and log-determinant ----------------------------------------------------

IMAGE = (3, 4, 4, 2)
LAYERS = {
    'actnorm': (lambda: flows.ActNorm(), IMAGE),
    'invconv_lu': (lambda: flows.Invertible1x1Conv(), IMAGE),
    'coupling_checkerboard_resnet_tanh': (
        lambda: flows.AffineCoupling('checkerboard', 1, 'resnet', width=4, num_blocks=1, scale='tanh'), IMAGE),
    'coupling_channel_glow_sigmoid': (
        lambda: flows.AffineCoupling('channel', 1, 'glow', width=4, scale='sigmoid'), IMAGE),
    'coupling_half_mlp': (lambda: flows.AffineCoupling('half', 1, 'mlp', hidden=(8,)), (3, 5)),
    'squeeze': (lambda: flows.Squeeze(), IMAGE),
    'logit': (lambda: flows.LogitTransform(0.05), (3, 4, 4, 1)),
}


@pytest.mark.parametrize('name', sorted(LAYERS))
def test_layer_inverse_and_logdet_match_jacobian(name):
  make, shape = LAYERS[name]
  layer = make()
  key = jax.random.PRNGKey(1)
  x = jax.random.uniform(key, shape) if name == 'logit' else 1.5 * jax.random.normal(key, shape) + 0.3
  variables = nn.unbox(jax.jit(lambda x: layer.init(jax.random.PRNGKey(0), x))(x))
  if 'params' in variables:
    variables = dict(variables, params=perturb(variables['params'], 0, 0.2))

  @jax.jit
  def run(variables, x):
    y, logdet = layer.apply(variables, x)
    x_back, logdet_inv = layer.apply(variables, y, reverse=True)
    brute = jax.vmap(lambda xi: jacobian_logdet(lambda v: layer.apply(variables, v)[0], xi[None]))(x)
    return y, logdet, x_back, logdet_inv, brute

  y, logdet, x_back, logdet_inv, brute = run(variables, x)
  assert y.shape == (x.shape[0], 2, 2, 8) if name == 'squeeze' else y.shape == x.shape
  assert float(jnp.max(jnp.abs(x_back - x))) < 1e-4
  np.testing.assert_allclose(logdet, brute, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(logdet_inv, -logdet, rtol=1e-6, atol=1e-6)
  if name == 'squeeze':
    assert float(jnp.max(jnp.abs(logdet))) == 0.0
  else:
    assert float(jnp.min(jnp.abs(logdet))) > 1e-3  # a non-trivial map, so the comparison means something


def test_invconv_lu_structure_and_constants():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 3, 5))
  variables = nn.unbox(jax.jit(flows.Invertible1x1Conv().init)(jax.random.PRNGKey(1), x))
  p, c = variables['params'], variables['consts']
  assert p['lower'].shape == p['upper'].shape == (10,) and p['log_s'].shape == (5,)
  perm = np.asarray(c['perm'])
  assert np.array_equal(np.sort(perm, 0), np.sort(np.eye(5), 0)) and np.allclose(perm @ perm.T, np.eye(5))
  assert set(np.abs(np.asarray(c['sign'])).tolist()) == {1.0}
  # Initialised from a rotation: |det W| = 1, so sum log|s| = 0.
  assert abs(float(p['log_s'].sum())) < 1e-5


def test_actnorm_data_dependent_init_standardises_the_init_batch():
  rs = np.random.RandomState(0)
  x = (rs.normal(size=(64, 5, 5, 3)) * np.array([0.1, 3.0, 20.0]) + np.array([-4.0, 0.5, 7.0])).astype(np.float32)
  layer = flows.ActNorm()
  variables = nn.unbox(layer.init(jax.random.PRNGKey(0), x))
  y, _ = layer.apply(variables, x)
  np.testing.assert_allclose(np.mean(y, (0, 1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(np.std(y, (0, 1, 2)), 1.0, atol=1e-4)
  # Another batch is normalised with the stored statistics, not its own.
  y2, _ = layer.apply(variables, x[:8] + 1.0)
  assert np.all(np.abs(np.mean(y2, (0, 1, 2))) > 1e-2)


# ---- whole models against brute-force change of variables --------------------------------------

def brute_force_log_prob(method, params, x, label=None):
  """log N(f(x); 0, I) + log|det df/dx| with f = preprocessing then the flow, Jacobian via jacfwd."""
  variables = method._variables(params)

  def f(v, lab):
    y, _ = method._preprocess(v)
    return method.model.apply(variables, y, lab)[0]

  def one(xi, lab):
    lab = None if lab is None else lab[None]
    eps = f(xi[None], lab)
    return flows.gaussian_log_prob(eps)[0] + jacobian_logdet(lambda v: f(v, lab), xi[None])

  return jax.vmap(one)(x, label) if label is not None else jax.vmap(lambda xi: one(xi, None))(x)


def _dequantized_images(shape, seed):
  rs = np.random.RandomState(seed)
  return ((rs.randint(0, 256, size=shape) + rs.uniform(size=shape)) / 256).astype(np.float32)


def test_realnvp_image_density_equals_brute_force_change_of_variables():
  # 4x4x1: 3 checkerboard couplings, squeeze to 2x2x4, 3 channel couplings, factor out 2, 4 checkerboard.
  config = make_config('realnvp', dict(num_scales=2, width=4, num_blocks=1, scale='tanh'), logit_alpha=0.05)
  method = RealNVPMethod(config, make_info((4, 4, 1)))
  x = _dequantized_images((3, 4, 4, 1), 0)
  state = nn.unbox(jax.jit(method.init)(jax.random.PRNGKey(0), {'x': x}))
  params = dict(state.params, flow=perturb(state.params['flow'], 1))

  @jax.jit
  def run(params, x):
    nll = method.nll(params, {'x': x}, jax.random.PRNGKey(0))
    eps, _ = method.model.apply(method._variables(params), method._preprocess(x)[0])
    x_back = method.logit.inverse(method.model.apply(method._variables(params), eps, reverse=True)[0])
    return nll, brute_force_log_prob(method, params, x), x_back

  nll, brute, x_back = run(params, x)
  np.testing.assert_allclose(-nll, brute, rtol=1e-4, atol=2e-3)
  assert float(jnp.max(jnp.abs(x_back - x))) < 1e-4


@pytest.fixture(scope='module')
def tiny_conditional_glow():
  """A 2-level, depth-1, class-conditional Glow on 4x4x2 images, parameters perturbed from init."""
  config = make_config('glow', dict(levels=2, depth=1, width=4, scale='sigmoid', learn_top=True, num_classes=3))
  method = GlowMethod(config, make_info((4, 4, 2), num_classes=3))
  x = _dequantized_images((4, 4, 4, 2), 2)
  label = jnp.array([0, 1, 2, 1], jnp.int32)
  state = nn.unbox(jax.jit(method.init)(jax.random.PRNGKey(0), {'x': x, 'label': label}))
  params = dict(state.params, flow=perturb(state.params['flow'], 3, 0.02))
  return method, params, x, label, state


def test_glow_density_equals_brute_force_change_of_variables(tiny_conditional_glow):
  method, params, x, label, _ = tiny_conditional_glow
  assert method.conditional and set(params['flow']) >= {'l0_split_prior', 'top_prior', 'l1_k0_invconv'}

  @jax.jit
  def run(params, x, label):
    nll = method.nll(params, {'x': x, 'label': label}, jax.random.PRNGKey(0))
    other = method.nll(params, {'x': x, 'label': (label + 1) % 3}, jax.random.PRNGKey(0))
    return nll, other, brute_force_log_prob(method, params, x, label)

  nll, other, brute = run(params, x, label)
  np.testing.assert_allclose(-nll, brute, rtol=1e-4, atol=2e-3)
  assert float(jnp.min(jnp.abs(nll - other))) > 1e-4  # the label enters the density


def test_conditional_glow_label_changes_samples(tiny_conditional_glow):
  method, params, _, _, _ = tiny_conditional_glow
  sample = jax.jit(method.sample, static_argnums=2)
  rng = jax.random.PRNGKey(5)
  a = np.asarray(sample(params, rng, 4, label=jnp.zeros(4, jnp.int32)))
  b = np.asarray(sample(params, rng, 4, label=jnp.ones(4, jnp.int32)))
  a2 = np.asarray(sample(params, rng, 4, label=jnp.zeros(4, jnp.int32)))
  assert a.shape == (4, 4, 4, 2) and np.all((a >= 0) & (a <= 1))
  np.testing.assert_array_equal(a, a2)
  assert np.max(np.abs(a - b)) > 1e-3


# ---- data-dependent init through the method, consts, errors -------------------------------------

def test_glow_init_is_data_dependent_and_consts_are_not_trained(tiny_conditional_glow):
  method, _, x, label, state = tiny_conditional_glow
  # The first actnorm standardises squeeze(logit(x)) of the init batch, channel by channel.
  h = flows.squeeze(method.logit(jnp.asarray(x))[0])
  an = state.params['flow']['l0_k0_actnorm']
  out = h + an['bias'].reshape(1, 1, 1, -1)
  out = out * jnp.exp(an['logs']).reshape(1, 1, 1, -1)
  np.testing.assert_allclose(np.mean(out, (0, 1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(np.std(out, (0, 1, 2)), 1.0, atol=1e-4)
  new_state, metrics = jax.jit(method.train_step)(state, {'x': x, 'label': label})
  assert np.isfinite(float(metrics['loss']))
  equal = lambda a, b: all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))
  assert equal(new_state.params['consts'], state.params['consts'])
  assert not equal(new_state.params['flow'], state.params['flow'])


def test_flows_refuse_bad_data():
  config = make_config('realnvp', dict(num_scales=2, width=4, num_blocks=1))
  with pytest.raises(ConfigError, match='dequantize=True'):
    RealNVPMethod(config, make_info((4, 4, 1), dequantized=False))
  glow = make_config('glow', dict(levels=3, depth=1, width=4))
  with pytest.raises(ConfigError, match='divisible by 8'):
    GlowMethod(glow, make_info((28, 28, 1)))
  with pytest.raises(ConfigError, match='num_classes'):
    GlowMethod(make_config('glow', dict(levels=1, depth=1, width=4, num_classes=10)), make_info((4, 4, 1)))
  assert get_method('realnvp') is RealNVPMethod and get_method('glow') is GlowMethod


# ---- a RealNVP learns a 2-D Gaussian to its entropy ----------------------------------------------

def test_realnvp_reaches_the_entropy_of_a_correlated_gaussian():
  cov = np.array([[2.0, 1.2], [1.2, 1.0]])
  mean = np.array([1.0, -2.0])
  entropy = 0.5 * np.linalg.slogdet(2 * np.pi * np.e * cov)[1]
  chol = np.linalg.cholesky(cov)
  rs = np.random.RandomState(0)
  draw = lambda n: (mean + rs.normal(size=(n, 2)) @ chol.T).astype(np.float32)
  train_x, test_x = draw(50_000), draw(100_000)

  steps, batch = 1500, 256
  config = make_config('realnvp', dict(num_couplings=4, mlp_hidden=(32,), scale='tanh'), steps=steps, lr=3e-3)
  config.optim.schedule = 'cosine'
  config.optim.final_lr_ratio = 0.01
  method = RealNVPMethod(config, make_info((2,), kind='vector', dequantized=False))
  state = nn.unbox(jax.jit(method.init)(jax.random.PRNGKey(0), {'x': train_x[:batch]}))
  step = jax.jit(method.train_step)  # optimised: it runs 1,500 times
  order = rs.randint(0, len(train_x), size=(steps, batch))
  for i in range(steps):
    state, _ = step(state, {'x': train_x[order[i]]})
  nll = float(jnp.mean(jax.jit(method.nll)(state.params, {'x': test_x}, jax.random.PRNGKey(0))))
  assert abs(nll - entropy) < 0.02, (nll, entropy)
  samples = np.asarray(jax.jit(method.sample, static_argnums=2)(state.params, jax.random.PRNGKey(1), 20_000))
  np.testing.assert_allclose(np.cov(samples.T), cov, atol=0.15)


# ---- configs -------------------------------------------------------------------------------------

SMOKE_CONFIGS = ['flow/realnvp_ring8.py', 'flow/realnvp_checkerboard.py', 'flow/realnvp_mnist5k.py',
                 'flow/glow_mnist5k.py']


@pytest.mark.parametrize('name', SMOKE_CONFIGS)
def test_smoke_config_trains_evaluates_and_samples(name, tmp_path):
  config = config_file(name)
  assert config.train.steps <= 10 and config.method.name in ('realnvp', 'glow')
  # One evaluation and one checkpoint, at the end: these runs are dominated by compilation and saving.
  config.evals.nll.every = config.evals.samples.every = config.train.steps
  config.train.checkpoint_every = config.train.steps
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
  evals = [r for r in read_metrics(workdir) if 'nll_nats' in r]
  assert evals and all(np.isfinite(r['nll_nats']) for r in evals)
  if 'mnist5k' in name:
    assert 0 < evals[-1]['nll_bpd'] < 12
  assert any(f.endswith('.png') for f in os.listdir(os.path.join(workdir, 'samples')))


def test_glow_cifar10_config_and_parameter_count():
  config = config_file('flow/glow_cifar10.py', None)
  m = config.model
  assert (m.levels, m.depth, m.width, m.scale, config.data.name, config.data.dequantize) == (
      3, 32, 512, 'sigmoid', 'cifar10', True)
  assert config.method.preprocess == 'center'  # the paper's code models x - 0.5
  method = GlowMethod(config, make_info((32, 32, 3), name='cifar10', num_classes=10))
  abstract = jax.eval_shape(method.init, jax.random.PRNGKey(0), {'x': jax.ShapeDtypeStruct((1, 32, 32, 3),
                                                                                          jnp.float32)})
  count = lambda tree: sum(math.prod(p.shape) for p in jax.tree.leaves(nn.unbox(tree)))

  # Level l works on C channels after its squeeze: 32x32x3 -> 16x16x12 (split 6 | 6) -> 8x8x24 (12 | 12)
  # -> 4x4x48. One step of flow on C channels, width 512, coupling on half (C/2 in, C/2 out):
  #   actnorm                                     2C             (bias, logs)
  #   1x1 conv, LU                                C(C-1)/2 + C(C-1)/2 + C = C^2   (lower, upper, log_s)
  #   coupling net  conv3x3 C/2 -> 512, no bias   9 * (C/2) * 512
  #                 actnorm                       2 * 512
  #                 conv1x1 512 -> 512, no bias   512 * 512
  #                 actnorm                       2 * 512
  #                 zero conv3x3 512 -> C         9 * 512 * C + C (bias) + C (logs)
  #   total = C^2 + 6916 C + 264192
  # Split prior of levels 0 and 1: zero conv3x3 C/2 -> C: 9 (C/2) C + 2C. Top prior: 2 * 48.
  step = lambda c: c * c + 6916 * c + 264192
  assert (step(12), step(24), step(48)) == (347_328, 430_752, 598_464)
  split = lambda c: 9 * (c // 2) * c + 2 * c
  assert (split(12), split(24)) == (672, 2_640)
  expected = 32 * (347_328 + 430_752 + 598_464) + 672 + 2_640 + 96
  assert expected == 44_052_816
  assert count(abstract.params['flow']) == expected
  # Fixed (untrained) 1x1-conv constants: a C x C permutation and C signs per step.
  assert count(abstract.params['consts']) == 32 * sum(c * c + c for c in (12, 24, 48))
