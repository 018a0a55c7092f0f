"""The DDPM method (jaxgen/methods/diffusion.py): guidance, the likelihood bound and its estimator,
importance-sampled timesteps, restoration, and the configs through the real train loop."""

import os
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxgen import train
from jaxgen.core.config import base_config, load_config_file
from jaxgen.core.optim import make_optimizer
from jaxgen.data import DataInfo
from jaxgen.errors import ConfigError
from jaxgen.logging import read_metrics
from jaxgen.methods import diffusion_process as dp
from jaxgen.methods.diffusion import DDPM
from jaxgen.models.unet import downsample

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (8, 8, 1)


def make_method(num_classes=0, timesteps=10, **method_keys):
  config = base_config()
  config.method.name = 'ddpm'
  config.method.timesteps = timesteps
  for key, value in method_keys.items():
    config.method[key] = value
  # The smallest U-Net (one resolution, no attention): these tests are about the method, and the
  # U-Net's compile time dominates them (tests/test_unet.py tests the network).
  config.model = ml_collections.ConfigDict(dict(ch=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(),
                                                dropout=0.0, num_groups=4, num_classes=num_classes))
  config.data.name = 'tiny'
  info = DataInfo(name='tiny', kind='image', shape=SHAPE, levels=256, num_classes=10 if num_classes else None,
                  num_examples={'train': 1, 'test': 1}, dequantized=False)
  return DDPM(config, info)


def perturbed_params(method, seed=0, scale=0.1):
  """Initial parameters plus N(0, scale^2) noise on every leaf: the zero-initialised output layers
  would otherwise make every test below trivially true."""
  batch = {'x': jnp.zeros((1,) + SHAPE)}
  params = nn.meta.unbox(jax.jit(lambda rng: method.init(rng, batch).params)(jax.random.PRNGKey(seed)))
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
  return jax.tree.unflatten(tree, [leaf + scale * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)])


def images(num, seed=0):
  return jnp.asarray(np.random.RandomState(seed).randint(0, 256, (num,) + SHAPE) / 255.0, jnp.float32)


def test_guidance_scale_0_is_the_unconditional_model_and_1_the_conditional_one():
  method = make_method(num_classes=10, timesteps=4, label_dropout=0.1)
  params = perturbed_params(method)
  x = jax.random.normal(jax.random.PRNGKey(2), (4,) + SHAPE)
  t = jnp.asarray([0, 1, 2, 3])
  label = jnp.asarray([1, 2, 3, 4])
  null = jnp.full((4,), 10)

  @jax.jit
  def outputs(params, x):
    guided = [method._guided_fn(params, label, None, scale)(x, t) for scale in (0.0, 1.0, 3.0)]
    return method.apply(params, x, t, label), method.apply(params, x, t, null), method.apply(params, x, t), guided

  conditional, unconditional, no_label, (g0, g1, g3) = outputs(params, x)
  assert float(jnp.abs(conditional - unconditional).max()) > 1e-3
  np.testing.assert_allclose(no_label, unconditional, atol=1e-6)  # label=None is the null class
  np.testing.assert_allclose(g0, unconditional, atol=1e-5)
  np.testing.assert_allclose(g1, conditional, atol=1e-5)
  np.testing.assert_allclose(g3, unconditional + 3.0 * (conditional - unconditional), atol=1e-4)
  # Through the whole sampler: scale 0 samples are the null-label model's samples.
  rng = jax.random.PRNGKey(5)
  s0, s_null = jax.jit(lambda p: (
      method.sample(p, rng, 4, label=label, guidance_scale=0.0),
      method._to_data(dp.ddpm_sample(method.diffusion, lambda x, t: method.apply(p, x, t, null), rng, (4,) + SHAPE))
  ))(params)
  np.testing.assert_allclose(s0, s_null, atol=1e-6)


def test_full_bound_is_prior_plus_every_term_and_the_stratified_estimate_is_unbiased(monkeypatch):
  """With a known per-timestep term L_t = f(t) (the network replaced), nll_timesteps=0 returns
  prior + sum_t f(t) exactly, and the stratified estimate averages to the same sum."""
  batch = {'x': images(3)}
  f = lambda t: (1.0 + t) ** 1.5 + 0.1 * t * jnp.arange(3)   # per example, varies within strata
  fake_term = lambda self, params, x0, label, cond, t, key: f(t.astype(jnp.float32))
  monkeypatch.setattr(DDPM, '_term', fake_term)
  exact_method, strat = make_method(timesteps=12, nll_timesteps=0), make_method(timesteps=12, nll_timesteps=3)
  prior = np.asarray(exact_method.diffusion.prior_kl(2.0 * batch['x'] - 1.0))
  expected = prior + sum(np.asarray(f(jnp.full((3,), float(t)))) for t in range(12))
  np.testing.assert_allclose(exact_method.nll(None, batch, jax.random.PRNGKey(0)), expected, rtol=1e-6)
  estimate = jax.jit(lambda key: strat.nll(None, batch, key))
  draws = np.stack([np.asarray(estimate(jax.random.PRNGKey(i))) for i in range(2000)])
  assert draws.std(0).min() > 0.5   # it is an estimate: the strata are sampled
  standard_error = draws.std(0) / np.sqrt(len(draws))
  assert np.all(np.abs(draws.mean(0) - expected) < 4 * standard_error), (draws.mean(0), expected, standard_error)


def test_importance_sampling_draws_t_proportional_to_root_mean_square_loss():
  method = make_method(timesteps=4, loss='vlb', importance_sampling=True)
  state = jax.eval_shape(method.init, jax.random.PRNGKey(0), {'x': images(1)})
  assert {k: (v.shape, v.dtype) for k, v in state.extra.items()} == {'loss_sq': ((4,), jnp.float32),
                                                                     'seen': ((4,), jnp.int32)}
  state = types.SimpleNamespace(extra={'loss_sq': jnp.zeros(4), 'seen': jnp.zeros(4, jnp.int32)})
  t, w = method._timesteps(state, jax.random.PRNGKey(1), 1000)  # nothing seen yet: uniform
  np.testing.assert_allclose(np.bincount(np.asarray(t), minlength=4) / 1000, 0.25, atol=0.05)
  np.testing.assert_allclose(w, 1.0)
  state = types.SimpleNamespace(extra={'loss_sq': jnp.asarray([1.0, 4.0, 9.0, 16.0]), 'seen': jnp.ones(4, jnp.int32)})
  t, w = method._timesteps(state, jax.random.PRNGKey(1), 40_000)
  p = np.asarray([1, 2, 3, 4]) / 10
  np.testing.assert_allclose(np.bincount(np.asarray(t), minlength=4) / 40_000, p, atol=0.01)
  np.testing.assert_allclose(w, 1.0 / (4 * p[np.asarray(t)]), rtol=1e-5)  # E[w L_t] = mean_t L_t
  extra = method._update_importance(state.extra, jnp.asarray([0, 0, 2]), jnp.asarray([1.0, 3.0, 2.0]))
  np.testing.assert_allclose(extra['loss_sq'], [0.99 * 1 + 0.01 * 5.0, 4.0, 0.99 * 9 + 0.01 * 4.0, 16.0], rtol=1e-6)
  np.testing.assert_array_equal(extra['seen'], [2, 1, 2, 1])


def test_inpainting_keeps_known_pixels_and_superres_sees_the_low_resolution_image():
  method = make_method(timesteps=4, repaint_resamples=2)
  params = perturbed_params(method)
  x = images(2)
  mask = jnp.zeros_like(x).at[:, :4].set(1.0)
  out = jax.jit(method.inpaint)(params, jax.random.PRNGKey(0), x, mask)
  np.testing.assert_array_equal(np.asarray(out)[:, :4], np.asarray(x)[:, :4])
  assert float(jnp.abs(out[:, 4:] - x[:, 4:]).max()) > 0.05
  sr = make_method(timesteps=4, superres_factor=2)
  sr_params = perturbed_params(sr)
  low_a, low_b = downsample(images(2, 1), 2), downsample(images(2, 2), 2)
  rng = jax.random.PRNGKey(3)
  super_resolve = jax.jit(sr.super_resolve)
  a, b = super_resolve(sr_params, rng, low_a), super_resolve(sr_params, rng, low_b)
  assert a.shape == (2,) + SHAPE and float(jnp.abs(a - b).max()) > 0
  with pytest.raises(ValueError, match='low_res'):
    sr.sample(sr_params, rng, 2)


def test_config_errors_are_clear():
  with pytest.raises(ConfigError, match="variance='learned'"):
    make_method(loss='hybrid', variance='large')
  with pytest.raises(ConfigError, match='num_classes'):
    make_method(label_dropout=0.1)
  with pytest.raises(ConfigError, match='nll_timesteps'):
    make_method(timesteps=10, nll_timesteps=10)
  with pytest.raises(ConfigError, match='superres_factor'):
    make_method(superres_factor=3)
  with pytest.raises(ConfigError, match='sampler'):
    make_method(sampler='euler')


@pytest.mark.parametrize('loss', ['simple', pytest.param('vlb', marks=pytest.mark.slow), 'hybrid'])
def test_every_loss_trains_a_tiny_model(loss):
  """30 steps on one repeated batch lower the loss."""
  keys = dict(loss=loss, variance='learned' if loss == 'hybrid' else 'large', timesteps=10)
  method = make_method(**keys)
  method.config.optim.lr = 3e-3
  method.tx = make_optimizer(method.config.optim, 100)
  state = nn.meta.unbox(jax.jit(method.init)(jax.random.PRNGKey(0), {'x': images(1)}))
  batch = {'x': images(16)}
  step = jax.jit(method.train_step)
  losses = []
  for _ in range(30):
    state, metrics = step(state, batch)
    losses.append(float(metrics['loss']))
  assert np.isfinite(losses).all() and np.mean(losses[-5:]) < np.mean(losses[:5]), losses


# ~50 s each of compiling on 2 cores: the guided and super-resolution variants (the same method with
# labels or a low-resolution input, whose code paths the tests above cover) run in `make test-all`.
SMOKE = ['ddpm_mnist5k.py', pytest.param('ddpm_mnist5k_guided.py', marks=pytest.mark.slow),
         pytest.param('ddpm_mnist5k_superres.py', marks=pytest.mark.slow)]


@pytest.mark.parametrize('name', SMOKE)
def test_smoke_config_trains_evaluates_samples_and_restores(name, tmp_path):
  config = load_config_file(os.path.join(ROOT, 'configs', 'diffusion', name) + ':smoke')
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
  evals = [r for r in read_metrics(workdir) if r['split'] == 'eval']
  nll = [r for r in evals if 'nll_bpd' in r]
  assert nll and 0 < nll[-1]['nll_bpd'] < 16  # a bound; far from trained after 2 steps
  restored = {k for r in evals for k in r}
  if 'superres' in name:
    assert {'superres_mse', 'upsampled_mse'} <= restored
    assert not list((tmp_path / 'samples').glob('samples_*.png'))
  else:
    assert {'inpaint_mse', 'denoise_mse', 'noisy_mse'} <= restored
    assert [r['inpaint_known_max_err'] for r in evals if 'inpaint_known_max_err' in r][-1] == 0.0
    samples = np.load(sorted((tmp_path / 'samples').glob('samples_*.npy'))[-1])
    assert samples.shape == (config.evals.samples.num, 28, 28, 1)
    np.testing.assert_allclose(samples * 255, np.round(samples * 255), atol=1e-4)
  assert list((tmp_path / 'samples').glob('restoration_*.png'))
