"""VAE family: distributions, exact likelihoods (probabilistic PCA), IWAE properties, configs."""

import functools
import importlib.util
import math
import pathlib
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.scipy.stats import multivariate_normal, norm

from jaxgen import distributions
from jaxgen.core.config import base_config
from jaxgen.core.state import step_rng
from jaxgen.errors import ConfigError
from jaxgen.methods import get as get_method
from jaxgen.methods.vae import VAE

ROOT = pathlib.Path(__file__).resolve().parents[1]


def make_info(shape, levels, kind='image', dequantized=False, name='test', num_classes=None):
  """Stand-in for jaxgen.data DataInfo."""
  return types.SimpleNamespace(name=name, kind=kind, shape=tuple(shape), levels=levels, num_classes=num_classes,
                               num_examples={'train': 100, 'test': 10}, dequantized=dequantized)


def make_config(arch='mlp', latent_dim=4, hidden=(32,), channels=(), decoder='bernoulli', fixed_std=0.0,
                beta=1.0, lr=3e-3, steps=100, eval_samples=16, eval_chunk=8, num_classes=None):
  c = base_config()
  c.method.name = 'vae'
  c.method.beta = beta
  c.method.eval_samples = eval_samples
  c.method.eval_chunk = eval_chunk
  c.model = ml_collections.ConfigDict(dict(arch=arch, latent_dim=latent_dim, hidden=hidden, channels=channels,
                                           decoder=decoder, decoder_fixed_std=fixed_std))
  if num_classes is not None:  # absent by default: old configs have no such key
    c.model.num_classes = num_classes
  c.data.name = 'synthetic'
  c.train.steps = steps
  c.optim.lr = lr
  return c


def init_unboxed(method, x, seed=0):
  return nn.meta.unbox(jax.jit(method.init)(jax.random.PRNGKey(seed), {'x': x}))


# ---- distributions -------------------------------------------------------------------------------


@pytest.mark.parametrize('levels', [256, 17, 2])
def test_discretized_logistic_normalises(levels):
  x_K = jnp.arange(levels, dtype=jnp.float32) / (levels - 1)
  mean_M = jnp.array([-5.0, -0.3, 0.0, 0.21, 0.5, 0.77, 1.0, 1.4, 9.0])
  log_scale_S = jnp.array([-12.0, -7.0, -4.0, -1.5, 0.0, 2.0, 8.0])
  logp_KMS = distributions.discretized_logistic_log_prob(
      mean_M[None, :, None], log_scale_S[None, None, :], x_K[:, None, None], levels)
  logp_KMS = np.asarray(logp_KMS)
  assert np.all(np.isfinite(logp_KMS)) and np.all(logp_KMS <= 1e-6)
  np.testing.assert_allclose(jnp.exp(logp_KMS).sum(0), 1.0, atol=2e-5)


def test_discretized_logistic_matches_cdf_differences():
  levels = 256
  mean, log_scale = 0.4, -3.0
  k = np.array([0, 1, 60, 102, 200, 255])
  x = k / (levels - 1)
  cdf = lambda v: 1.0 / (1.0 + np.exp(-(v - mean) / np.exp(log_scale)))
  h = 0.5 / (levels - 1)
  expected = np.where(k == 0, cdf(x + h), np.where(k == levels - 1, 1.0 - cdf(x - h), cdf(x + h) - cdf(x - h)))
  got = distributions.discretized_logistic_log_prob(jnp.float32(mean), jnp.float32(log_scale),
                                                    jnp.asarray(x, jnp.float32), levels)
  np.testing.assert_allclose(got, np.log(expected), rtol=1e-4, atol=1e-5)


def test_discretized_logistic_gradients_finite_at_extremes():
  grad = jax.grad(lambda m, s: distributions.discretized_logistic_log_prob(m, s, jnp.float32(0.5), 256),
                  argnums=(0, 1))
  for mean, log_scale in [(0.5, -15.0), (3.0, -10.0), (-3.0, 10.0), (0.5, 20.0)]:
    g = grad(jnp.float32(mean), jnp.float32(log_scale))
    assert np.all(np.isfinite(g)), (mean, log_scale, g)


def test_bernoulli_log_prob_matches_direct_formula():
  logits = np.array([-30.0, -4.0, -0.5, 0.0, 0.3, 2.5, 30.0])
  e = np.exp(-logits)  # float64: P(x=1) = 1 / (1 + e), P(x=0) = e / (1 + e), no cancellation
  for x in (0.0, 1.0):
    expected = np.log(1.0 / (1.0 + e)) if x == 1.0 else np.log(e / (1.0 + e))
    got = distributions.bernoulli_log_prob(jnp.asarray(logits, jnp.float32), jnp.float32(x))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  # Extreme logits stay finite: log sigmoid(-100) = -100.
  np.testing.assert_allclose(distributions.bernoulli_log_prob(jnp.float32(100.0), 0.0), -100.0, rtol=1e-6)


def test_gaussian_log_prob_matches_scipy():
  x = jnp.linspace(-3, 3, 13)
  got = distributions.gaussian_log_prob(x, 0.7, jnp.log(1.3))
  np.testing.assert_allclose(got, norm.logpdf(x, 0.7, 1.3), rtol=1e-5, atol=1e-6)


def test_gaussian_kl_matches_monte_carlo():
  mean = jnp.array([0.0, 1.5, -0.7, 0.2])
  log_var = jnp.array([0.0, -1.0, 0.8, -3.0])
  n = 400_000
  std = jnp.exp(0.5 * log_var)
  z = mean[None] + std[None] * jax.random.normal(jax.random.PRNGKey(0), (n, 4))
  log_ratio = norm.logpdf(z, mean[None], std[None]) - norm.logpdf(z)
  mc, stderr = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(n)
  exact = distributions.gaussian_kl_standard(mean, log_var)
  assert float(exact[0]) == 0.0
  np.testing.assert_array_less(jnp.abs(mc - exact), 5 * stderr + 1e-4)


# ---- probabilistic PCA: the marginal likelihood is exact -----------------------------------------


def ppca_setup(sigma=0.5, d=5, latent=2, n=32):
  """A linear-Gaussian VAE with known W, b, sigma, the data it generates, and the exact posterior map."""
  rng = np.random.RandomState(0)
  q, _ = np.linalg.qr(rng.randn(d, latent))
  W = q * np.array([1.5, 0.8])                 # orthogonal columns: the exact posterior is diagonal
  b = rng.randn(d)
  z = rng.randn(n, latent)
  x = z @ W.T + b + sigma * rng.randn(n, d)
  M = W.T @ W + sigma ** 2 * np.eye(latent)    # diagonal
  A = np.linalg.solve(M, W.T)                  # posterior mean = A (x - b)
  post_log_var = np.log(np.diag(sigma ** 2 * np.linalg.inv(M)))
  config = make_config(arch='mlp', latent_dim=latent, hidden=(), decoder='gaussian', fixed_std=sigma,
                       eval_samples=1000, eval_chunk=100)
  method = VAE(config, make_info((d,), None, kind='vector'))
  with jax.numpy_rank_promotion('allow'):  # logpdf broadcasts the mean internally
    exact = multivariate_normal.logpdf(x, b, W @ W.T + sigma ** 2 * np.eye(d))
  return method, W, b, A, post_log_var, jnp.asarray(x, jnp.float32), exact


def ppca_params(method, W, b, A, post_log_var, x, mean_shift=0.0, log_var_shift=0.0):
  shapes = jax.tree.map(jnp.shape, init_unboxed(method, x).params['vae'])
  d, latent = W.shape
  enc_kernel = np.concatenate([A.T, np.zeros((d, latent))], axis=1)
  enc_bias = np.concatenate([-A @ b + mean_shift, post_log_var + log_var_shift])
  params = {'encoder': {'Dense_0': {'kernel': enc_kernel, 'bias': enc_bias}},
            'decoder': {'Dense_0': {'kernel': W.T, 'bias': b}}}
  params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), params)
  assert jax.tree.map(jnp.shape, params) == shapes
  return params


def test_ppca_exact_posterior_gives_exact_likelihood_for_any_k():
  method, W, b, A, post_log_var, x, exact = ppca_setup()
  params = ppca_params(method, W, b, A, post_log_var, x)
  rng = jax.random.PRNGKey(1)
  # p(x, z) / q(z|x) = p(x) for every z: zero variance, so even K = 1 is exact.
  np.testing.assert_allclose(jax.jit(method.iwae_bound, static_argnums=3)(params, x, rng, 1), exact, atol=2e-4)
  np.testing.assert_allclose(jax.jit(method.nll)({'vae': params}, {'x': x}, rng), -exact, atol=2e-4)


def test_ppca_large_k_converges_from_an_approximate_posterior():
  method, W, b, A, post_log_var, x, exact = ppca_setup()
  params = ppca_params(method, W, b, A, post_log_var, x, mean_shift=0.4, log_var_shift=0.6)
  bound = jax.jit(method.iwae_bound, static_argnums=(3,))
  rng = jax.random.PRNGKey(2)
  gap_k1 = float(jnp.mean(exact - bound(params, x, rng, 1)))
  gap_k = exact - bound(params, x, rng, 5000)
  assert gap_k1 > 0.2                        # the perturbed encoder is measurably off at K = 1 ...
  assert abs(float(jnp.mean(gap_k))) < 0.05 and float(jnp.max(jnp.abs(gap_k))) < 0.1, gap_k  # ... K = 5000 is not
  # The vector-data sampler draws from the model: its covariance is W W^T + sigma^2 I.
  draws = jax.jit(method.sample, static_argnums=2)({'vae': params}, jax.random.PRNGKey(3), 20_000)
  assert draws.shape == (20_000, 5)
  np.testing.assert_allclose(np.cov(np.asarray(draws).T), W @ W.T + 0.25 * np.eye(5), atol=0.1)


# ---- IWAE on a briefly trained model -------------------------------------------------------------


PROTOTYPES = np.random.RandomState(123).rand(4, 6, 6, 1) < 0.5


def labelled_binary_data(n, seed):
  """Four 6x6 binary prototypes with 10% of the pixels flipped, and each example's prototype index."""
  rng = np.random.RandomState(seed)
  label = rng.randint(0, 4, n)
  x = PROTOTYPES[label] ^ (rng.rand(n, 6, 6, 1) < 0.1)
  return jnp.asarray(x, jnp.float32), jnp.asarray(label, jnp.int32)


def binary_data(n, seed):
  return labelled_binary_data(n, seed)[0]


@pytest.fixture(scope='module')
def trained():
  method = VAE(make_config(steps=60), make_info((6, 6, 1), 2))
  state = init_unboxed(method, binary_data(2, 0))
  step = jax.jit(method.train_step)
  losses = []
  for i in range(60):
    state, metrics = step(state, {'x': binary_data(64, i)})
    losses.append(metrics)
  return method, state, losses


def test_train_step_decreases_loss(trained):
  _, state, metrics = trained
  losses = [float(m['loss']) for m in metrics]
  assert int(state.step) == 60
  assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
  for m in metrics:  # beta = 1: the loss is the negative ELBO, which is recon + kl
    np.testing.assert_allclose(m['loss'], -m['elbo'], rtol=1e-6)
    np.testing.assert_allclose(m['loss'], m['recon'] + m['kl'], rtol=1e-5)
  beta_vae = VAE(make_config(beta=0.25), make_info((6, 6, 1), 2))
  _, m = jax.jit(beta_vae.train_step)(state, {'x': binary_data(64, 0)})
  np.testing.assert_allclose(m['loss'], m['recon'] + 0.25 * m['kl'], rtol=1e-5)
  np.testing.assert_allclose(m['elbo'], -(m['recon'] + m['kl']), rtol=1e-5)


def test_iwae_monotone_in_k(trained):
  method, state, _ = trained
  x = binary_data(128, 1000)
  bound = jax.jit(method.iwae_bound, static_argnums=(3, 4))
  nll = {k: np.mean([-bound(state.params['vae'], x, jax.random.PRNGKey(s), k, k) for s in range(4)])
         for k in (1, 10, 100)}
  assert nll[1] >= nll[10] >= nll[100], nll
  assert nll[1] - nll[100] > 0.1, nll        # the bound really tightens


def direct_terms(method, params, x, eps):
  """log p(x|z), log p(z), log q(z|x) and the analytic KL, from the networks and scipy formulas only."""
  out = method.encoder.apply({'params': params['encoder']}, x.reshape(x.shape[0], -1))
  mean, log_var = out[:, :method.latent_dim], out[:, method.latent_dim:]
  std = jnp.exp(0.5 * log_var)
  z = mean + std * eps
  probs = jax.nn.sigmoid(method.decoder.apply({'params': params['decoder']}, z))
  xf = x.reshape(x.shape[0], -1)
  log_px = jnp.sum(xf * jnp.log(probs) + (1 - xf) * jnp.log1p(-probs), -1)
  kl = 0.5 * jnp.sum(std ** 2 + mean ** 2 - 1 - log_var, -1)
  return log_px, norm.logpdf(z).sum(-1), norm.logpdf(z, mean, std).sum(-1), kl


def test_k1_bound_and_training_elbo_match_direct_formulas(trained):
  method, state, _ = trained
  x = binary_data(64, 2000)
  # Sample 0 of the bound at key step_rng(state) is the draw the training step makes.
  key = step_rng(state)
  eps = jax.random.normal(jax.random.fold_in(key, 0), (64, method.latent_dim))
  log_px, log_pz, log_qz, kl = jax.jit(functools.partial(direct_terms, method))(state.params['vae'], x, eps)

  _, metrics = jax.jit(method.train_step)(state, {'x': x})
  np.testing.assert_allclose(metrics['elbo'], jnp.mean(log_px - kl), rtol=1e-5)
  np.testing.assert_allclose(metrics['recon'], -jnp.mean(log_px), rtol=1e-5)
  np.testing.assert_allclose(metrics['kl'], jnp.mean(kl), rtol=1e-5)

  # Same draw, two KL estimators: the K = 1 bound is the ELBO with a Monte Carlo KL (whose mean is the
  # closed form, test_gaussian_kl_matches_monte_carlo), the training ELBO uses the closed form.
  bound = jax.jit(method.iwae_bound, static_argnums=3)(state.params['vae'], x, key, 1)
  np.testing.assert_allclose(bound, log_px + log_pz - log_qz, rtol=1e-5, atol=1e-4)


def test_chunked_iwae_equals_unchunked(trained):
  method, state, _ = trained
  x = binary_data(16, 3000)
  rng = jax.random.PRNGKey(5)
  bound = jax.jit(method.iwae_bound, static_argnums=(3, 4))
  whole = bound(state.params['vae'], x, rng, 60, 60)
  # Eight chunks of 7 in the loop and a remainder of 4, against one chunk of 60.
  np.testing.assert_allclose(bound(state.params['vae'], x, rng, 60, 7), whole, rtol=1e-5, atol=1e-4)


def test_sample_and_reconstruct(trained):
  method, state, _ = trained
  x = binary_data(64, 10)
  samples = jax.jit(method.sample, static_argnums=2)(state.params, jax.random.PRNGKey(0), 7)
  recon = jax.jit(method.reconstruct)(state.params, {'x': x}, jax.random.PRNGKey(1))
  assert samples.shape == (7, 6, 6, 1) and recon.shape == (64, 6, 6, 1)
  for arr in (samples, recon):
    assert np.all((np.asarray(arr) >= 0) & (np.asarray(arr) <= 1))
  # Probabilities, not draws: the trained model reconstructs the prototypes far better than chance (0.5).
  assert float(jnp.mean(jnp.abs(recon - x))) < 0.35


# ---- state, sharding annotations, validation -----------------------------------------------------


def test_init_state_and_registry():
  assert get_method('vae') is VAE
  method = VAE(make_config(), make_info((4,), 2, kind='vector'))
  state = jax.jit(method.init)(jax.random.PRNGKey(0), {'x': jnp.zeros((2, 4))})
  assert int(state.step) == 0 and state.extra == {} and state.ema_params is None
  dense = state.params['vae']['encoder']['Dense_0']
  assert dense['kernel'].names == ('embed', 'mlp') and dense['bias'].names == ('mlp',)
  # Adam's moments mirror the boxed parameters, so the train loop can shard them with the same rules.
  adam_specs = nn.get_partition_spec(state.opt_state)[0]
  assert adam_specs.mu['vae']['encoder']['Dense_0']['kernel'] == jax.sharding.PartitionSpec('embed', 'mlp')


@pytest.mark.parametrize('model, info, match', [
    (dict(decoder='bernoulli'), make_info((28, 28, 1), 256), 'binary'),
    (dict(decoder='discretized_logistic'), make_info((28, 28, 1), 256, dequantized=True), 'dequantize'),
    (dict(decoder='gaussian'), make_info((28, 28, 1), 256), 'continuous'),
    (dict(decoder='poisson'), make_info((28, 28, 1), 256), 'poisson'),
    (dict(decoder='bernoulli', arch='conv', channels=(4, 8, 16)), make_info((28, 28, 1), 2), 'divisible'),
    (dict(decoder='gaussian', arch='conv', channels=(4,)), make_info((5,), None, kind='vector'), 'divisible'),
    (dict(decoder='bernoulli', arch='rnn'), make_info((28, 28, 1), 2), 'arch'),
    (dict(num_classes=10), make_info((28, 28, 1), 2), 'has no labels'),
    (dict(num_classes=5), make_info((28, 28, 1), 2, num_classes=10), r'num_classes=5 does not match .* 10 classes'),
    (dict(num_classes=-1), make_info((28, 28, 1), 2, num_classes=10), '>= 0'),
])
def test_invalid_combinations_raise_config_error(model, info, match):
  with pytest.raises(ConfigError, match=match):
    VAE(make_config(**model), info)


# ---- configs -------------------------------------------------------------------------------------

CONFIGS = {
    'mnist5k': make_info((28, 28, 1), 256, name='mnist5k'),
    'mnist5k_binary': make_info((28, 28, 1), 2, name='mnist5k'),
    'digits': make_info((8, 8, 1), 17, name='digits'),
    'mnist5k_conditional': make_info((28, 28, 1), 256, name='mnist5k', num_classes=10),
}


def load_config(name, arg=None):
  spec = importlib.util.spec_from_file_location(name, ROOT / 'configs' / 'vae' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  assert 'python -m jaxgen.main --config=configs/vae/' in module.__doc__
  assert 'Expected result:' in module.__doc__
  return module.get_config(arg)


def param_count(method, config):
  shapes = jax.eval_shape(method.init, jax.random.PRNGKey(0),
                          {'x': jax.ShapeDtypeStruct((2, *method.shape), jnp.float32)})
  return sum(math.prod(p.shape) for p in jax.tree.leaves(nn.meta.unbox(shapes.params)))


@pytest.mark.parametrize('name', sorted(CONFIGS))
@pytest.mark.parametrize('arg', [None, 'smoke'])
def test_configs_build(name, arg):
  config = load_config(name, arg)
  assert config.method.name == 'vae' and config.data.name == CONFIGS[name].name
  assert config.evals.samples.num == (64 if arg is None else 16)
  for key in ('nll', 'samples', 'reconstructions'):
    assert config.evals[key].every > 0
  assert (config.data.binarize == 'dynamic') == (name == 'mnist5k_binary')
  if arg == 'smoke':
    assert config.train.steps <= 10 and config.method.eval_samples <= 8
  method = VAE(config, CONFIGS[name])
  assert param_count(method, config) > 0
  assert method.conditional == (name == 'mnist5k_conditional')


def test_mnist5k_conv_parameter_count_by_hand():
  config = load_config('mnist5k')
  m = config.model
  assert (m.arch, m.channels, m.hidden, m.latent_dim, m.decoder) == ('conv', (32, 64), (256,), 32,
                                                                      'discretized_logistic')
  conv = lambda c_in, c_out: 3 * 3 * c_in * c_out + c_out
  dense = lambda n_in, n_out: n_in * n_out + n_out
  encoder = conv(1, 32) + conv(32, 64) + dense(7 * 7 * 64, 256) + dense(256, 2 * 32)
  decoder = dense(32, 256) + dense(256, 7 * 7 * 64) + conv(64, 32) + conv(32, 2)  # mean and log-scale
  assert encoder + decoder == 1_671_778
  assert param_count(VAE(config, CONFIGS['mnist5k']), config) == encoder + decoder


def test_smoke_conv_logistic_trains_evaluates_and_keeps_ema():
  config = load_config('mnist5k', 'smoke')
  config.train.ema_decay = 0.99
  method = VAE(config, CONFIGS['mnist5k'])
  x = jnp.round(jax.random.uniform(jax.random.PRNGKey(0), (16, 28, 28, 1)) * 255) / 255
  boxed = jax.jit(method.init)(jax.random.PRNGKey(0), {'x': x})
  enc, dec = boxed.params['vae']['encoder'], boxed.params['vae']['decoder']
  assert enc['Conv_0']['kernel'].names == (None, None, 'conv_in', 'conv_out')
  assert enc['Conv_0']['bias'].names == ('conv_out',)
  assert dec['ConvTranspose_0']['kernel'].names == (None, None, 'conv_in', 'conv_out')
  state = nn.meta.unbox(boxed)
  equal = lambda a, b: all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))
  assert equal(state.params, state.ema_params)

  new_state, metrics = jax.jit(method.train_step)(state, {'x': x})
  assert set(metrics) >= {'loss', 'elbo', 'kl', 'recon'}
  assert all(np.isfinite(v) for v in metrics.values())
  assert not equal(new_state.params, state.params) and equal(new_state.ema_params, state.ema_params)  # loop owns EMA
  nll = jax.jit(method.nll)(new_state.params, {'x': x[:4]}, jax.random.PRNGKey(1))
  # A discrete likelihood: -log P(x) >= 0, and near the ~784 log 256 nats of a barely trained model.
  nll = np.asarray(nll)
  assert nll.shape == (4,) and np.all(nll > 0) and np.all(nll < 784 * math.log(256) * 1.5)
  samples = jax.jit(method.sample, static_argnums=2)(new_state.params, jax.random.PRNGKey(2), 3)
  samples = np.asarray(samples)
  assert samples.shape == (3, 28, 28, 1) and np.all((samples >= 0) & (samples <= 1))


# ---- class-conditional VAE -----------------------------------------------------------------------


@pytest.fixture(scope='module')
def trained_conditional():
  """An MLP CVAE trained 150 steps on the four labelled prototypes."""
  method = VAE(make_config(num_classes=4), make_info((6, 6, 1), 2, num_classes=4))
  state = init_unboxed(method, binary_data(2, 0))
  step = jax.jit(method.train_step)
  for i in range(150):
    x, label = labelled_binary_data(64, i)
    state, _ = step(state, {'x': x, 'label': label})
  return method, state


def test_conditional_flag_and_input_widths():
  assert VAE.conditional is False and get_method('vae').conditional is False
  plain = VAE(make_config(), make_info((6, 6, 1), 2, num_classes=4))   # labels present but unused
  cond = VAE(make_config(num_classes=4), make_info((6, 6, 1), 2, num_classes=4))
  assert not plain.conditional and cond.conditional
  shapes = lambda m: jax.tree.map(jnp.shape, nn.meta.unbox(
      jax.eval_shape(m.init, jax.random.PRNGKey(0), {'x': binary_data(2, 0)})).params['vae'])
  # The encoder sees the flat image plus the one-hot label, the decoder z plus the one-hot label.
  assert shapes(plain)['encoder']['Dense_0']['kernel'] == (36, 32)
  assert shapes(cond)['encoder']['Dense_0']['kernel'] == (36 + 4, 32)
  assert shapes(cond)['decoder']['Dense_0']['kernel'] == (4 + 4, 32)


def test_conditional_nll_prefers_the_true_label_and_samples_follow_it(trained_conditional):
  method, state = trained_conditional
  x, label = labelled_binary_data(128, 1000)
  nll = jax.jit(method.nll)
  rng = jax.random.PRNGKey(0)
  true = np.asarray(nll(state.params, {'x': x, 'label': label}, rng))
  wrong = np.asarray(nll(state.params, {'x': x, 'label': (label + 1) % 4}, rng))
  # -log p(x|y): the label says which prototype x is a noisy copy of (at initialisation the gap is -0.2
  # nats and the true label wins for 38% of the images; after 150 steps +6.3 nats and 99%).
  assert np.all(np.isfinite(true)) and np.mean(wrong - true) > 4.0, (true.mean(), wrong.mean())
  assert np.mean(true < wrong) > 0.95
  # The same rng with different labels decodes different images, each resembling its class prototype.
  sample = jax.jit(method.sample, static_argnums=2)
  key = jax.random.PRNGKey(1)
  per_class = np.stack([np.asarray(sample(state.params, key, 32, label=jnp.full(32, c, jnp.int32)))
                        for c in range(4)])                                   # [class, 32, 6, 6, 1]
  assert np.abs(per_class[0] - per_class[1]).max() > 0.25
  distance = np.abs(per_class[:, :, None] - PROTOTYPES[None, None]).mean((3, 4, 5))  # [class, 32, prototype]
  np.testing.assert_array_equal(distance.mean(1).argmin(-1), np.arange(4))
  assert np.mean(distance.argmin(-1) == np.arange(4)[:, None]) > 0.6           # chance: 0.25
  # Reconstructions use the label too: the wrong one pulls them away from x.
  recon = jax.jit(method.reconstruct)
  err = lambda y: float(jnp.mean(jnp.abs(recon(state.params, {'x': x, 'label': y}, rng) - x)))
  assert err(label) < err((label + 1) % 4) - 0.1


def test_conditional_needs_labels_in_the_batch_and_unconditional_rejects_them(trained_conditional):
  method, state = trained_conditional
  x = binary_data(4, 0)
  with pytest.raises(ConfigError, match="no 'label'"):
    jax.jit(method.train_step)(state, {'x': x})
  with pytest.raises(ConfigError, match="no 'label'"):
    jax.jit(method.nll)(state.params, {'x': x}, jax.random.PRNGKey(0))
  plain = VAE(make_config(), make_info((6, 6, 1), 2))
  with pytest.raises(ValueError, match='unconditional'):
    plain.sample(None, jax.random.PRNGKey(0), 4, label=jnp.zeros(4, jnp.int32))  # raises before using params


@pytest.fixture(scope='module')
def conditional_smoke_run(tmp_path_factory):
  """configs/vae/mnist5k_conditional.py:smoke through the real train loop (its evaluators at step 6 only)."""
  from jaxgen import train
  config = load_config('mnist5k_conditional', 'smoke')
  for name in ('nll', 'samples', 'reconstructions'):
    config.evals[name].every = config.train.steps
  config.train.checkpoint_every = config.train.steps
  workdir = tmp_path_factory.mktemp('cvae_smoke')
  state = train.train_and_evaluate(config, str(workdir), devices=jax.devices()[:1])
  method = VAE(config, CONFIGS['mnist5k_conditional'])
  return method, state, workdir, jax.jit(method.sample, static_argnums=2)


def test_conditional_smoke_config_trains_through_the_loop(conditional_smoke_run):
  from jaxgen.logging import read_metrics
  method, state, workdir, _ = conditional_smoke_run
  assert int(state.step) == 6 and method.conditional
  records = read_metrics(str(workdir))
  assert records[0]['param_count'] > 0
  assert [r['step'] for r in records if r['split'] == 'train' and 'loss' in r] == [3, 6]
  evals = [r for r in records if r['split'] == 'eval']
  assert len(evals) == 1 and evals[0]['step'] == 6 and np.isfinite(evals[0]['nll_bpd'])
  # The samples evaluator calls sample() without a label: the balanced cycle of classes.
  samples = np.load(workdir / 'samples' / 'samples_0000006.npy')
  assert samples.shape == (16, 28, 28, 1) and np.all((samples >= 0) & (samples <= 1))
  assert (workdir / 'samples' / 'reconstructions_0000006.png').exists()


def test_conditional_conv_sample_with_label_shape(conditional_smoke_run):
  method, state, _, sample = conditional_smoke_run
  samples = np.asarray(sample(state.params, jax.random.PRNGKey(0), 23, label=jnp.full(23, 3)))
  assert samples.shape == (23, 28, 28, 1) and np.all((samples >= 0) & (samples <= 1))


def test_conditional_sample_default_labels_cycle_through_classes(conditional_smoke_run):
  method, state, _, sample = conditional_smoke_run
  key = jax.random.PRNGKey(4)
  default = np.asarray(sample(state.params, key, 23))
  cycle = jnp.arange(23) % 10                      # 0..9, 0..9, 0, 1, 2: each class 2 or 3 times
  np.testing.assert_allclose(default, np.asarray(sample(state.params, key, 23, label=cycle)), atol=1e-6)
  all_threes = np.asarray(sample(state.params, key, 23, label=jnp.full(23, 3)))
  assert np.abs(default - all_threes).max() > 1e-4
  np.testing.assert_allclose(default[3], all_threes[3], atol=1e-6)  # example 3 has label 3 in both
  with pytest.raises(ValueError, match='shape'):
    sample(state.params, key, 23, label=jnp.zeros(5, jnp.int32))


def test_mnist5k_conditional_parameter_count_by_hand():
  config = load_config('mnist5k_conditional')
  assert config.model.num_classes == 10 and config.train.steps == 1500
  conv = lambda c_in, c_out: 3 * 3 * c_in * c_out + c_out
  dense = lambda n_in, n_out: n_in * n_out + n_out
  # The one-hot label adds 10 input channels to the first conv and 10 inputs to the first decoder layer.
  extra = (conv(1 + 10, 32) - conv(1, 32)) + (dense(32 + 10, 256) - dense(32, 256))
  assert param_count(VAE(config, CONFIGS['mnist5k_conditional']), config) == 1_671_778 + extra == 1_677_218
