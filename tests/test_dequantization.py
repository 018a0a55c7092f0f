"""Variational dequantization (Flow++) for the image flows: a normalised q(u|x) and a true lower bound.

q(u|x) is checked against the change of variables of its own sampler (autodiff),
and the importance-weighted bound against log P(k) = log E_{u~U}[p((k + u)/L)] - D log L,
computed by quadrature for a one-pixel image with 8 levels.
"""

import functools
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import train
from jaxgen.logging import read_metrics
from jaxgen.methods.flows import RealNVPMethod
from jaxgen.models import flows

from test_flows import make_config, make_info, perturb
from test_train import config_file

LEVELS = 8


def tiny_method():
  """RealNVP on 1x1x1 images, so log P(k) is a 1-D integral that quadrature computes exactly."""
  config = make_config('realnvp', dict(num_scales=1, width=4, num_blocks=1, scale='tanh'),
                       dequantization='variational', dequantizer_width=4)
  return RealNVPMethod(config, make_info((1, 1, 1), dequantized=False, levels=LEVELS))


def all_images():
  return jnp.arange(LEVELS, dtype=jnp.float32).reshape(-1, 1, 1, 1) / (LEVELS - 1)


def trained_like_params(method, x):
  state = nn.unbox(jax.jit(method.init)(jax.random.PRNGKey(0), {'x': x}))
  return {k: (v if k == 'consts' else perturb(v, i, 0.5)) for i, (k, v) in enumerate(state.params.items())}


def test_dequantizer_log_density_is_the_change_of_variables_of_its_sampler():
  """log q(u|x) = log N(e) - log du/de per dimension (u is an elementwise monotone map of e)."""
  module = flows.VariationalDequantizer(width=4)
  x_in = 2.0 * jax.random.randint(jax.random.PRNGKey(0), (2, 4, 4, 1), 0, 256) / 255.0 - 1.0
  e = jax.random.normal(jax.random.PRNGKey(1), x_in.shape)
  params = perturb(module.init(jax.random.PRNGKey(2), x_in, e)["params"], 3, 0.1)
  u_of_e = lambda e: module.apply({'params': params}, x_in, e)[0]
  u, log_q = module.apply({'params': params}, x_in, e)
  du_de = jax.jvp(u_of_e, (e,), (jnp.ones_like(e),))[1]  # the diagonal Jacobian: u_d depends on e_d only
  expected = -0.5 * e ** 2 - 0.5 * math.log(2 * math.pi) - jnp.log(du_de)
  assert float(jnp.min(du_de)) > 0 and float(jnp.min(u)) > 0 and float(jnp.max(u)) < 1
  np.testing.assert_allclose(np.asarray(log_q), np.asarray(expected), rtol=1e-4, atol=1e-4)
  # The log-scale really depends on x (the net is not a constant).
  other = module.apply({'params': params}, -x_in, e)[1]
  assert float(jnp.max(jnp.abs(other - log_q))) > 1e-3


def test_importance_weighted_bound_tightens_towards_the_exact_discrete_likelihood():
  method = tiny_method()
  x = all_images()
  params = trained_like_params(method, x)
  n = x.shape[0]

  @jax.jit
  def exact_log_prob(params):
    """log P(k) = log int_0^1 p((k + u) / L) du / L by the trapezoid rule on 20001 points."""
    u = jnp.linspace(1e-7, 1.0 - 1e-7, 20001)
    y = (x[:, None] * (LEVELS - 1) + u.reshape(1, -1, 1, 1, 1)) / LEVELS     # [n, 20001, 1, 1, 1]
    p = jnp.exp(method.log_prob(params, y.reshape(-1, 1, 1, 1))).reshape(n, -1)
    return jnp.log(jnp.trapezoid(p, jnp.broadcast_to(u, p.shape), axis=1) / LEVELS)

  @functools.partial(jax.jit, static_argnums=(2, 3))
  def bound(params, key, k, repeats):
    """`repeats` independent K-sample bounds per image, averaged: an estimate of E[bound_K]."""
    x_rep = jnp.tile(x, (repeats, 1, 1, 1))
    return method.dequantized_log_likelihood(params, x_rep, None, key, k).reshape(repeats, n).mean(0)

  exact = np.asarray(exact_log_prob(params))
  # The discrete probabilities are a distribution, up to the mass the bounded logit range leaks.
  total = float(np.exp(exact).sum())
  assert 0.5 < total <= 1.0 + 1e-4, total
  elbo = np.asarray(bound(params, jax.random.PRNGKey(10), 1, 20_000))
  iw = np.asarray(bound(params, jax.random.PRNGKey(11), 64, 500))
  # E[bound_K] <= log P(k), and the gap shrinks with K.
  assert np.all(elbo <= exact + 0.01), np.max(elbo - exact)
  assert np.all(iw <= exact + 0.01), np.max(iw - exact)
  gap1, gap64 = np.mean(exact - elbo), np.mean(exact - iw)
  assert gap1 > 0.05 and gap64 < 0.5 * gap1, (gap1, gap64)


@pytest.mark.slow  # a full train/eval run; the bound and density tests above cover the mathematics
def test_variational_dequantization_trains_and_reports_discrete_bits_per_dim(tmp_path):
  config = config_file('flow/realnvp_mnist5k.py')
  config.data.dequantize = False
  config.method.dequantization = 'variational'
  config.method.eval_dequant_samples = 2
  config.evals.nll.every = config.evals.samples.every = config.train.checkpoint_every = config.train.steps
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
  final = [r for r in read_metrics(workdir) if 'nll_nats' in r][-1]
  assert np.isfinite(final['nll_nats'])
  # No uniform-dequantization correction: bits/dim is exactly the discrete NLL over D log 2.
  np.testing.assert_allclose(final['nll_bpd'], final['nll_nats'] / (784 * math.log(2)), rtol=1e-5)
  assert 0 < final['nll_bpd'] < 12
  assert any(f.endswith('.png') for f in os.listdir(os.path.join(workdir, 'samples')))
