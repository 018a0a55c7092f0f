"""Annealed importance sampling: exact partition functions (enumeration, Gaussians), the spread's
decrease with more intermediate distributions, the RBM's likelihood through AIS, the evaluator, and
the Gaussian-Bernoulli digits config through the train loop."""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.errors import ConfigError
from jaxgen.evals import ais
from jaxgen.methods import rbm
from test_rbm import make_config, make_info, random_rbm, smoke_run


def test_salakhutdinov_murray_schedule():
  betas = ais.schedule((500, 4000, 10000), (0.5, 0.9))
  assert betas.shape == (14501,) and betas[0] == 0.0 and betas[-1] == 1.0
  assert np.all(np.diff(betas) > 0)
  inner = betas[:-1]
  assert [int(np.sum((inner >= a) & (inner < b))) for a, b in ((0, 0.5), (0.5, 0.9), (0.9, 1.0))] == [500, 4000, 10000]
  np.testing.assert_allclose(np.diff(betas[500:4500]), 0.4 / 4000, rtol=1e-3)
  with pytest.raises(ConfigError, match='one count per interval'):
    ais.schedule((500, 4000), (0.5, 0.9))


class GaussianPath(ais.AISProblem):
  """From N(0, 1) to c N(mu, sigma^2) (unnormalised, Z_1 = c) along the geometric path; T_beta draws
  exactly from p_beta (a Gaussian), which leaves it invariant. Nothing RBM-specific."""

  def __init__(self, mu=3.0, sigma=0.5, c=5.0):
    self.mu, self.sigma, self.c = mu, sigma, c

  def base_sample(self, rng, num):
    return jax.random.normal(rng, (num,))

  def base_log_z(self):
    return 0.5 * math.log(2 * math.pi)

  def log_f(self, beta, x):
    target = math.log(self.c) - 0.5 * ((x - self.mu) / self.sigma) ** 2 - math.log(self.sigma * math.sqrt(2 * math.pi))
    return (1 - beta) * (-0.5 * x ** 2) + beta * target

  def transition(self, rng, beta, x):
    precision = (1 - beta) + beta / self.sigma ** 2
    mean = beta * self.mu / self.sigma ** 2 / precision
    return mean + jax.random.normal(rng, x.shape) / jnp.sqrt(precision)


def test_generic_ais_estimates_a_known_normaliser():
  problem = GaussianPath()
  estimate = jax.jit(lambda r: ais.log_z(problem, r, ais.schedule((200,)), 500))(jax.random.PRNGKey(0))
  np.testing.assert_allclose(estimate, math.log(5.0), atol=0.02)


def ais_spread(problem, counts, repeats, chains, seed=0):
  """{K: summary of `repeats` runs of `chains` chains with K betas} for K in counts."""
  results = {}
  for k in counts:
    betas = ais.schedule((k,))
    log_w = jax.jit(lambda r, b=betas: ais.run(problem, r, b, repeats * chains))(jax.random.PRNGKey(seed))
    results[k] = ais.summarize(np.asarray(log_w).reshape(repeats, chains), problem.base_log_z())
  return results


@pytest.mark.parametrize('visible', ['binary', 'gaussian'])
def test_ais_matches_enumeration_and_its_spread_shrinks_with_more_betas(visible):
  if visible == 'binary':   # 24 visible, 14 hidden (enumerated); base: the zero-weight RBM with b_A = 0
    p = random_rbm(10, 24, 14, scale=0.5)
    problem = rbm.RBMAnnealing(p, 'binary', jnp.zeros((24,)))
  else:                     # 12 visible, 14 hidden; base N(b, I) x uniform h
    p = random_rbm(11, 12, 14, scale=0.3)
    problem = rbm.RBMAnnealing(p, 'gaussian')
  exact = float(rbm.exact_log_z(p, visible))
  results = ais_spread(problem, (10, 100, 1000), repeats=8, chains=16)
  assert abs(results[1000]['log_z'] - exact) < 0.1, (results[1000], exact)
  assert results[1000]['log_z_upper'] > exact - 0.1
  spreads = [results[k]['log_z_std'] for k in (10, 100, 1000)]
  assert spreads[0] > spreads[1] > spreads[2], spreads
  weights = [results[k]['ais_log_w_std'] for k in (10, 100, 1000)]
  assert weights[0] > weights[1] > weights[2], weights


def test_summarize_pools_runs_and_gives_the_three_sigma_interval():
  log_w = np.log([[1.0, 2.0], [3.0, 4.0]])
  out = ais.summarize(log_w, 0.5)
  np.testing.assert_allclose(out['log_z'], 0.5 + math.log(2.5))
  np.testing.assert_allclose(out['log_z_std'], np.std([0.5 + math.log(1.5), 0.5 + math.log(3.5)], ddof=1))
  stderr = np.std([1, 2, 3, 4], ddof=1) / 2
  np.testing.assert_allclose(out['log_z_upper'], 0.5 + math.log(2.5 + 3 * stderr))
  np.testing.assert_allclose(out['log_z_lower'], 0.5 + math.log(2.5 - 3 * stderr))
  # One dominant weight: the standard error exceeds a third of the mean, and there is no lower end.
  assert 'log_z_lower' not in ais.summarize(np.array([[0.0, 0.0], [0.0, 10.0]]), 0.0)


def test_rbm_nll_through_ais_is_the_exact_nll():
  config = make_config(hidden=6)
  config.method.ais_betas, config.method.ais_chains = (1000,), 100
  method = rbm.RBM(config, make_info((2, 4, 1)))
  p = random_rbm(12, 8, 6)
  stats = {'mean': jnp.full((8,), 0.3), 'sq_mean': jnp.full((8,), 0.3), 'count': jnp.float32(50)}
  params = {'rbm': p, 'data': stats}
  x = (jax.random.uniform(jax.random.PRNGKey(1), (5, 2, 4, 1)) < 0.4).astype(jnp.float32)
  exact = rbm.free_energy(p, x.reshape(5, -1), 'binary') + rbm.exact_log_z(p, 'binary')
  got = jax.jit(method.nll)(params, {'x': x}, jax.random.PRNGKey(2))
  np.testing.assert_allclose(got, exact, atol=0.1)
  # The base-rate RBM of the statistics: visible biases logit((0.3 * 50 + 1) / 52).
  np.testing.assert_allclose(method.ais_problem(params).base_b, math.log(16 / 36), rtol=1e-5)


def test_gaussian_rbm_density_of_unstandardised_data_normalises():
  """exp(-nll) over x, with the standardisation x -> (x - m) / s and its Jacobian, integrates to 1."""
  method = rbm.RBM(make_config(visible='gaussian', hidden=3), make_info((2,), levels=None, kind='vector'))
  p = random_rbm(13, 2, 3, scale=0.7)
  mean, std = np.array([0.3, -0.2]), np.array([0.5, 2.0])
  stats = {'mean': jnp.asarray(mean, jnp.float32), 'sq_mean': jnp.asarray(std ** 2 + mean ** 2, jnp.float32),
           'count': jnp.float32(10)}
  axes = [np.linspace(m - 10 * s, m + 10 * s, 501) for m, s in zip(mean, std)]
  x = np.stack(np.meshgrid(*axes, indexing='ij'), -1).reshape(-1, 2)
  nll = method.nll_given_log_z({'rbm': p, 'data': stats}, {'x': jnp.asarray(x, jnp.float32)}, None,
                               rbm.exact_log_z(p, 'gaussian'))
  cell = (axes[0][1] - axes[0][0]) * (axes[1][1] - axes[1][0])
  np.testing.assert_allclose(np.sum(np.exp(-np.asarray(nll, np.float64))) * cell, 1.0, rtol=1e-3)


def test_ais_evaluator_needs_an_energy_model():
  ctx = types.SimpleNamespace(method=object(), config=None, info=None, mesh=None, workdir='', is_main=True)
  with pytest.raises(ConfigError, match='ais needs a method with ais_problem'):
    ais.AISEvaluator({}, ctx)
  with pytest.raises(ConfigError, match='gibbs_chain needs a method with gibbs_progression'):
    ais.GibbsChainEvaluator({}, ctx)


def test_gaussian_digits_smoke_config_trains_evaluates_and_samples(tmp_path):
  config, _, _, samples, _ = smoke_run(tmp_path, 'ebm/rbm_digits_gaussian.py', 'smoke')
  assert config.method.visible == 'gaussian' and config.data.dequantize
  assert samples.shape == (16, 8, 8, 1) and samples.min() >= 0 and samples.max() <= 1
  assert len(np.unique(samples)) > 2          # Gaussian means, not binary states
