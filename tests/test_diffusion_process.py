"""The diffusion process against its closed forms (jaxgen/methods/diffusion_process.py).

Forward marginals and posteriors, schedules, the boundary terms of the bound, and the
samplers driven by the exactly optimal denoiser of one-dimensional Gaussian data, for
which the reverse process must reproduce the data's mean and variance.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.errors import ConfigError
from jaxgen.methods import diffusion_process as dp


def linear(T=1000):
  return dp.GaussianDiffusion(dp.beta_schedule('linear', T, 1e-4, 0.02))


def test_schedules_are_monotone_and_the_cosine_one_matches_its_formula():
  T, s = 1000, 0.008
  for name in ('linear', 'cosine'):
    abar = np.cumprod(1 - dp.beta_schedule(name, T))
    assert np.all(np.diff(abar) < 0) and 0 < abar[-1] < abar[0] < 1
  betas = dp.beta_schedule('cosine', T)
  f = lambda t: np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2
  abar = np.cumprod(1 - betas)
  t = np.arange(1, T + 1)
  unclipped = betas < 0.999
  np.testing.assert_allclose(abar[unclipped], (f(t) / f(0))[unclipped], rtol=1e-10)
  np.testing.assert_allclose(dp.beta_schedule('linear', T)[[0, -1]], [1e-4, 0.02])
  with pytest.raises(ConfigError, match='cosine'):
    dp.beta_schedule('quadratic', T)


def test_q_sample_has_the_closed_form_mean_and_variance():
  d = linear()
  x0 = jnp.asarray([[0.7], [-0.3]])
  for t in (0, 10, 500, 999):
    t_B = jnp.full((2,), t)
    noise = jax.random.normal(jax.random.PRNGKey(t), (200_000, 2, 1))
    xt = jax.vmap(lambda n: d.q_sample(x0, t_B, n))(noise)
    abar = d.np['abar'][t]
    np.testing.assert_allclose(np.mean(xt, 0)[:, 0], np.sqrt(abar) * np.asarray(x0)[:, 0], atol=0.01)
    np.testing.assert_allclose(np.var(xt, 0)[:, 0], 1 - abar, rtol=0.02, atol=1e-6)
    mean, var = d.q_mean_variance(x0, t_B)
    np.testing.assert_allclose(mean, np.sqrt(abar) * x0, rtol=1e-6)
    np.testing.assert_allclose(var[:, 0], 1 - abar, rtol=1e-5)


def test_posterior_is_bayes_rule_on_the_gaussian_chain():
  """q(x_{t-1} | x_t, x_0) from the joint: x_{t-1} ~ N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1}),
  x_t | x_{t-1} ~ N(sqrt(alpha_t) x_{t-1}, beta_t) -- computed here in float64 by completing the square."""
  for name in ('linear', 'cosine'):
    betas = dp.beta_schedule(name, 1000)
    d = dp.GaussianDiffusion(betas)
    abar = np.cumprod(1 - betas)
    x0, xt = 0.4, -1.3
    for t in (1, 2, 100, 999):
      prior_mean, prior_var = np.sqrt(abar[t - 1]) * x0, 1 - abar[t - 1]
      alpha, beta = 1 - betas[t], betas[t]
      var = 1 / (1 / prior_var + alpha / beta)
      mean = var * (prior_mean / prior_var + np.sqrt(alpha) * xt / beta)
      m, v, log_v = d.posterior(jnp.full((1, 1), x0), jnp.full((1, 1), xt), jnp.asarray([t]))
      np.testing.assert_allclose(float(m[0, 0]), mean, rtol=2e-5, atol=1e-6)
      np.testing.assert_allclose(float(v[0, 0]), var, rtol=2e-5)
      np.testing.assert_allclose(float(log_v[0, 0]), np.log(var), rtol=1e-5, atol=1e-6)


def test_eps_x0_and_v_parameterisations_agree():
  d = linear()
  rng = np.random.RandomState(0)
  x0 = jnp.asarray(rng.uniform(-1, 1, (5, 3)), jnp.float32)
  eps = jnp.asarray(rng.randn(5, 3), jnp.float32)
  t = jnp.asarray([0, 1, 300, 700, 999])
  xt = d.q_sample(x0, t, eps)
  for prediction in dp.PREDICTIONS:
    dd = dp.GaussianDiffusion(d.np['betas'], prediction=prediction, clip_x0=False)
    e, x = dd.predict_eps_x0(dd.target(x0, t, eps), xt, t)
    # x0 from eps divides by sqrt(abar_t) ~ 6e-3 at t = 999: compare at float32's resolution of that.
    np.testing.assert_allclose(e, eps, atol=2e-3)
    np.testing.assert_allclose(x[:4], x0[:4], atol=2e-3)


def test_prior_kl_at_T_is_negligible_for_data_in_the_unit_box():
  d = linear()
  x0 = jnp.asarray(np.random.RandomState(0).uniform(-1, 1, (4, 28, 28, 1)), jnp.float32)
  kl = d.prior_kl(x0)
  assert np.all(np.asarray(kl) >= 0) and float(kl.max()) / 784 < 1e-4  # nats per dimension


def test_discrete_decoder_sums_to_one_over_the_256_values_of_a_pixel():
  values = jnp.linspace(-1.0, 1.0, 256)
  for mean, log_scale in ((0.0, -3.0), (0.93, -5.0), (-1.2, -1.0), (0.5, -9.0)):
    logp = dp.discretized_gaussian_log_likelihood(values, mean, jnp.asarray(log_scale), 256)
    np.testing.assert_allclose(float(jnp.sum(jnp.exp(logp))), 1.0, atol=1e-5)


def test_vlb_term_is_the_decoder_at_t0_and_zero_kl_for_the_true_posterior():
  d = dp.GaussianDiffusion(dp.beta_schedule('linear', 1000), prediction='x0', clip_x0=False)
  x0 = jnp.asarray(np.random.RandomState(1).randint(0, 256, (3, 4)) / 127.5 - 1.0, jnp.float32)
  xt = d.q_sample(x0, jnp.asarray([5, 5, 5]), jnp.ones_like(x0))
  # Predicting x0 exactly: the model's mean is the posterior's; the KL is only the variance mismatch
  # of 'large' (beta_t vs betatilde_t), which the formula gives in closed form.
  terms = d.vlb_term(x0, x0, xt, jnp.asarray([5, 5, 5]))
  beta, post = d.np['betas'][5], d.np['post_var'][5]
  expected = 4 * 0.5 * (-1 + np.log(beta) - np.log(post) + post / beta)
  np.testing.assert_allclose(terms, expected, rtol=1e-3)
  decoder = d.vlb_term(x0, x0, x0, jnp.zeros(3, jnp.int32))
  manual = -dp.discretized_gaussian_log_likelihood(x0, d.posterior(x0, x0, jnp.zeros(3, jnp.int32))[0],
                                                   0.5 * d.large_log_var[0], 256).sum(-1)
  np.testing.assert_allclose(decoder, manual, rtol=1e-6)


# ---- samplers with the exactly optimal denoiser of Gaussian data ----------------------------------

MU, STD = 0.3, 0.5


def optimal_eps(d):
  """E[eps | x_t] for x_0 ~ N(MU, STD^2): x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps is jointly Gaussian."""
  def model_fn(xt, t):
    abar = d.abar[t].reshape(-1, 1)
    return jnp.sqrt(1 - abar) * (xt - jnp.sqrt(abar) * MU) / (abar * STD ** 2 + 1 - abar)
  return model_fn


@pytest.mark.parametrize('sampler', ['ddpm', 'ddim_eta0', 'ddim_eta1'])
def test_samplers_with_the_optimal_denoiser_reproduce_gaussian_data(sampler):
  """Every step of the 1000: the reverse process is then exact up to O(1/T) (DDIM: Euler steps of
  the probability-flow ODE; with fewer steps the error is that of Euler's method, tested below)."""
  d = dp.GaussianDiffusion(dp.beta_schedule('linear', 1000), clip_x0=False, variance='small')
  shape, rng = (20_000, 1), jax.random.PRNGKey(0)
  if sampler == 'ddpm':
    x = jax.jit(lambda r: dp.ddpm_sample(d, optimal_eps(d), r, shape))(rng)
  else:
    eta = 0.0 if sampler == 'ddim_eta0' else 1.0
    x = jax.jit(lambda r: dp.ddim_sample(d, optimal_eps(d), r, shape, 1000, eta))(rng)
  x = np.asarray(x)
  assert abs(x.mean() - MU) < 0.01 and abs(x.std() - STD) < 0.01, (x.mean(), x.std())


def test_strided_ddim_is_euler_on_the_probability_flow_ode():
  """DDIM (eta = 0) in y = x / sqrt(abar), s = sqrt((1 - abar) / abar) is y' = y + (s' - s) eps(y):
  the 20-step sampler equals that recursion run in float64 on the same initial noise, and its
  output's spread is Euler's (smaller than the exact ODE's, which preserves Gaussianity exactly)."""
  d = dp.GaussianDiffusion(dp.beta_schedule('linear', 1000), clip_x0=False)
  x_T = jax.random.normal(jax.random.PRNGKey(3), (2000, 1))
  x = np.asarray(jax.jit(lambda r: dp.ddim_sample(d, optimal_eps(d), r, x_T.shape, 20, 0.0, x_start=x_T))(
      jax.random.PRNGKey(0)))[:, 0]
  abar = d.np['abar']
  seq = dp.ddim_timesteps(1000, 20)
  s_of = lambda t: np.sqrt((1 - abar[t]) / abar[t]) if t >= 0 else 0.0
  y = np.asarray(x_T, np.float64)[:, 0] / np.sqrt(abar[seq[0]])
  for t, t_prev in zip(seq, list(seq[1:]) + [-1]):
    s = s_of(t)
    eps = s * (y - MU) / (STD ** 2 + s ** 2)
    y = y + (s_of(t_prev) - s) * eps
  np.testing.assert_allclose(x, y, atol=2e-4)
  assert 0.4 < x.std() < STD


def test_ddim_eta0_is_deterministic_given_the_initial_noise():
  d = dp.GaussianDiffusion(dp.beta_schedule('linear', 1000), clip_x0=False)
  x_T = jax.random.normal(jax.random.PRNGKey(0), (64, 1))
  run = jax.jit(lambda r: dp.ddim_sample(d, optimal_eps(d), r, (64, 1), 20, 0.0, x_start=x_T))
  a, b = run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(2))
  np.testing.assert_array_equal(a, b)
  c = jax.jit(lambda r: dp.ddim_sample(d, optimal_eps(d), r, (64, 1), 20, 1.0, x_start=x_T))(jax.random.PRNGKey(1))
  assert float(jnp.abs(a - c).max()) > 1e-2
  # A deterministic map of Gaussian noise to the data: monotone in 1-D.
  order = np.argsort(np.asarray(x_T[:, 0]))
  assert np.all(np.diff(np.asarray(a)[order, 0]) > 0)


def test_ddim_timesteps_are_strided_and_end_at_zero():
  np.testing.assert_array_equal(dp.ddim_timesteps(1000, 10), np.arange(0, 1000, 100)[::-1])
  np.testing.assert_array_equal(dp.ddim_timesteps(10, 10), np.arange(10)[::-1])
  with pytest.raises(ConfigError, match='steps'):
    dp.ddim_timesteps(100, 101)


def test_inpainting_by_replacement_keeps_known_pixels_exactly():
  d = dp.GaussianDiffusion(dp.beta_schedule('linear', 100))
  known = jnp.asarray(np.random.RandomState(0).uniform(-1, 1, (4, 6, 6, 1)), jnp.float32)
  mask = jnp.zeros_like(known).at[:, :3].set(1.0)
  model_fn = lambda x, t: 0.1 * jnp.tanh(x)  # any network
  for x in (dp.ddpm_sample(d, model_fn, jax.random.PRNGKey(0), known.shape, known=known, mask=mask, resamples=2),
            dp.ddim_sample(d, model_fn, jax.random.PRNGKey(0), known.shape, 10, 0.5, known=known, mask=mask)):
    np.testing.assert_array_equal(np.asarray(x)[:, :3], np.asarray(known)[:, :3])
    assert float(jnp.abs(x[:, 3:] - known[:, 3:]).max()) > 0.05


def test_sdedit_start_matches_the_noise_level():
  d = linear()
  for std in (0.1, 0.5, 1.0):
    t = dp.sdedit_start(d, std)
    abar = d.np['abar']
    assert abs(math.sqrt((1 - abar[t]) / abar[t]) - std) < 0.01 * std + 1e-3
