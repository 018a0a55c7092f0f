"""Autoencoder family: the corruption's statistics, linear AE = PCA, the anomaly score, denoising on
mnist5k, the fitted code Gaussian, sharded == single-device steps, and the configs through the loop."""

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

from jaxgen import train
from jaxgen.core.config import base_config
from jaxgen.errors import ConfigError
from jaxgen.logging import read_metrics
from jaxgen.methods import get as get_method
from jaxgen.methods.autoencoder import Autoencoder
from test_train import assert_trees_close
from test_vae import init_unboxed, make_info

ROOT = pathlib.Path(__file__).resolve().parents[1]


def make_config(arch='mlp', latent_dim=2, hidden=(), channels=(), lr=1e-2, steps=100, **method):
  c = base_config()
  c.method.name = 'autoencoder'
  for key, value in method.items():
    c.method[key] = value
  c.model = ml_collections.ConfigDict(dict(arch=arch, latent_dim=latent_dim, hidden=hidden, channels=channels))
  c.data.name = 'synthetic'
  c.train.steps = steps
  c.optim.lr = lr
  return c


def load_config(name, arg=None):
  spec = importlib.util.spec_from_file_location(name, ROOT / 'configs' / 'classical' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  assert 'python -m jaxgen.main --config=configs/classical/' in module.__doc__
  assert 'Expected result:' in module.__doc__
  return module.get_config(arg)


# ---- the corruption ------------------------------------------------------------------------------


def test_gaussian_corruption_has_the_configured_std_and_is_deterministic():
  method = Autoencoder(make_config(noise='gaussian', noise_level=0.3), make_info((28, 28, 1), 256))
  x = jnp.full((500, 28, 28, 1), 0.5)                     # 392,000 noise values
  corrupt = jax.jit(method.corrupt)
  key = jax.random.PRNGKey(7)
  noise = np.asarray(corrupt(x, key) - x, np.float64)
  n = noise.size
  assert abs(noise.mean()) < 4 * 0.3 / math.sqrt(n)
  assert abs(noise.std() - 0.3) < 4 * 0.3 / math.sqrt(2 * n)  # std error of a sample std: sigma / sqrt(2n)
  np.testing.assert_allclose(np.mean(np.abs(noise) > 0.6), 0.0455, atol=0.002)  # Gaussian tails: P(|n| > 2 sigma)
  np.testing.assert_array_equal(corrupt(x, key), corrupt(x, key))
  assert not np.array_equal(corrupt(x, key), corrupt(x, jax.random.PRNGKey(8)))


def test_masking_corruption_drops_the_configured_fraction_and_keeps_the_rest():
  method = Autoencoder(make_config(noise='masking', noise_level=0.25), make_info((28, 28, 1), 256))
  x = jax.random.uniform(jax.random.PRNGKey(0), (500, 28, 28, 1), minval=0.1, maxval=1.0)  # no zeros of its own
  corrupt = jax.jit(method.corrupt)
  key = jax.random.PRNGKey(3)
  x_tilde = np.asarray(corrupt(x, key))
  dropped = x_tilde == 0
  n = dropped.size
  assert abs(dropped.mean() - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n)
  np.testing.assert_array_equal(x_tilde[~dropped], np.asarray(x)[~dropped])   # the rest untouched
  per_pixel = dropped.mean(0)                           # independent per component, not per image or pixel site
  assert 0.18 < per_pixel.min() and per_pixel.max() < 0.32
  np.testing.assert_array_equal(corrupt(x, key), x_tilde)
  assert not np.array_equal(corrupt(x, jax.random.PRNGKey(4)), x_tilde)
  plain = Autoencoder(make_config(), make_info((28, 28, 1), 256))
  np.testing.assert_array_equal(plain.corrupt(x, key), x)


# ---- a linear autoencoder trained with MSE finds the principal subspace --------------------------


def principal_angles(a_DL, b_DL):
  qa, qb = np.linalg.qr(a_DL)[0], np.linalg.qr(b_DL)[0]
  return np.arccos(np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), -1.0, 1.0))


def test_linear_autoencoder_recovers_the_pca_subspace():
  """Baldi & Hornik (1989): the optimum of a linear AE with L < D codes spans the top-L principal
  subspace of the centred data, and its error is the variance of the discarded components."""
  d, latent, n = 8, 2, 256
  rng = np.random.RandomState(0)
  basis, _ = np.linalg.qr(rng.randn(d, 3))
  # Off-centre rank-3 data (std 3, 2, 0.5 along three directions in R^8): the AE must pick the top 2 of 3.
  x = (rng.randn(n, 3) * np.array([3.0, 2.0, 0.5])) @ basis.T + rng.randn(d)
  x = jnp.asarray(x, jnp.float32)
  method = Autoencoder(make_config(latent_dim=latent, lr=1e-2, steps=2500), make_info((d,), None, kind='vector'))
  state = init_unboxed(method, x)
  centred = np.asarray(x, np.float64) - np.asarray(x, np.float64).mean(0)
  _, sv, vt = np.linalg.svd(centred, full_matrices=False)
  top_DL = vt[:latent].T
  decoder_DL = lambda s: np.asarray(s.params['autoencoder']['decoder']['Dense_0']['kernel']).T
  assert principal_angles(top_DL, decoder_DL(state)).max() > 0.3          # not there at initialisation
  batch = {'x': x}
  state = jax.jit(lambda s: jax.lax.fori_loop(0, 2500, lambda i, s: method.train_step(s, batch)[0], s))(state)
  angles = principal_angles(top_DL, decoder_DL(state))
  assert angles.max() < 1e-3, angles                                       # measured: 6e-5 rad
  # The reconstructions are the rank-2 PCA reconstructions (the projection onto the subspace).
  pca = np.asarray(x, np.float64).mean(0) + centred @ top_DL @ top_DL.T
  recon = np.asarray(jax.jit(method.reconstruct)(state.params, batch))
  assert np.abs(recon - pca).max() < 1e-3   # the residuals it leaves are ~0.1 on average
  # Error = the discarded eigenvalues' share, per dimension.
  pca_mse = (sv[latent:] ** 2).sum() / (n * d)
  _, metrics = jax.jit(method.train_step)(state, batch)
  np.testing.assert_allclose(float(metrics['mse']), pca_mse, rtol=1e-3)
  np.testing.assert_allclose(float(metrics['loss']), pca_mse * d, rtol=1e-3)   # summed over dimensions


# ---- anomaly score, reconstruction, denoising ----------------------------------------------------


@pytest.mark.parametrize('loss,shape,kind,noise', [
    ('mse', (5,), 'vector', 'none'),
    ('bernoulli', (6, 6, 1), 'image', 'gaussian'),
    ('mse', (6, 6, 1), 'image', 'masking'),
])
def test_anomaly_score_is_the_per_example_squared_reconstruction_error(loss, shape, kind, noise):
  level = {'none': 0.0, 'gaussian': 0.4, 'masking': 0.3}[noise]
  method = Autoencoder(make_config(latent_dim=3, hidden=(16,), loss=loss, noise=noise, noise_level=level),
                       make_info(shape, 256 if kind == 'image' else None, kind=kind))
  x = jax.random.uniform(jax.random.PRNGKey(1), (12,) + shape)
  if kind == 'vector':
    x = 3.0 * x - 1.0                                    # outside [0, 1]: nothing may be clipped
  params = init_unboxed(method, x).params
  # Directly from the networks, without the method's helpers (and never the training corruption).
  flat = np.asarray(x).reshape(12, -1)
  z = method.encoder.apply({'params': params['autoencoder']['encoder']}, jnp.asarray(flat))
  out = np.asarray(method.decoder.apply({'params': params['autoencoder']['decoder']}, z), np.float64)
  if loss == 'bernoulli':
    recon = 1.0 / (1.0 + np.exp(-out))
  else:
    recon = np.clip(out, 0.0, 1.0) if kind == 'image' else out
  expected = ((recon - flat) ** 2).sum(-1)
  score = jax.jit(method.anomaly_score)
  got = np.asarray(score(params, {'x': x}, jax.random.PRNGKey(0)))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(got, score(params, {'x': x}, jax.random.PRNGKey(5)))   # no randomness
  recon_method = np.asarray(jax.jit(method.reconstruct)(params, {'x': x}, jax.random.PRNGKey(0)))
  np.testing.assert_allclose(recon_method.reshape(12, -1), recon, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # ~20 s: trains a DAE for 300 steps; the results table (classical.md) measures the full run
def test_dae_denoises_mnist5k():
  """A small MLP DAE (Gaussian noise 0.3), 300 steps of 32 on mnist5k: its output is much closer to the
  clean test images than the noisy input is."""
  from jaxgen.data import TrainLoader
  config = make_config(latent_dim=32, hidden=(128,), lr=2e-3, steps=300, noise='gaussian', noise_level=0.3)
  config.data.name = 'mnist5k'
  loader = TrainLoader(config.data, 4480, seed=0)           # the training split (4,500) in a random order
  method = Autoencoder(config, loader.info)
  train_x = jnp.asarray(loader.batch(0)['x'])
  state = init_unboxed(method, train_x[:32])

  def step(i, state):  # batches of 32, 140 per epoch
    return method.train_step(state, {'x': jax.lax.dynamic_slice_in_dim(train_x, (i % 140) * 32, 32)})[0]

  state = jax.jit(lambda s: jax.lax.fori_loop(0, 300, step, s))(state)
  x = jnp.asarray(TrainLoader(config.data, 256, seed=1, split='test').batch(0)['x'])
  noisy = x + 0.3 * jax.random.normal(jax.random.PRNGKey(11), x.shape)
  denoised = jax.jit(method.denoise, static_argnums=3)(state.params, jax.random.PRNGKey(0), noisy, 0.3)
  noisy_mse, denoised_mse = float(jnp.mean((noisy - x) ** 2)), float(jnp.mean((denoised - x) ** 2))
  np.testing.assert_allclose(noisy_mse, 0.09, rtol=0.02)
  assert denoised_mse < 0.4 * noisy_mse, (denoised_mse, noisy_mse)   # measured: 0.026 vs 0.090
  # Untrained, the same network does not denoise: the improvement is learnt.
  fresh = init_unboxed(method, x)
  assert float(jnp.mean((method.denoise(fresh.params, None, noisy, 0.3) - x) ** 2)) > noisy_mse


# ---- sampling from the Gaussian fitted to the codes ----------------------------------------------


def test_code_statistics_are_the_running_gaussian_of_the_training_codes():
  method = Autoencoder(make_config(latent_dim=3, code_decay=0.9), make_info((5,), None, kind='vector'))  # linear
  batches = [jax.random.normal(jax.random.PRNGKey(i), (64, 5)) * 2.0 + 1.0 for i in range(4)]
  state = init_unboxed(method, batches[0])
  encode, code_distribution = jax.jit(method.encode), jax.jit(method.code_distribution)
  mean0, cov0 = code_distribution(state.params)
  np.testing.assert_array_equal(mean0, np.zeros(3))
  np.testing.assert_array_equal(cov0, np.eye(3))         # before training: N(0, I)
  codes, weights = [], []
  step = jax.jit(method.train_step)
  for i, x in enumerate(batches):
    codes.append(np.asarray(encode(state.params['autoencoder'], x), np.float64))  # this step's encoder
    weights.append(0.1 * 0.9 ** (len(batches) - 1 - i))
    state, _ = step(state, {'x': x})
  # Bias-corrected exponential weighting of the batches: weight (1 - d) d^(age), normalised.
  w = np.repeat(np.asarray(weights) / np.sum(weights), 64) / 64
  z = np.concatenate(codes)
  mean = (w[:, None] * z).sum(0)
  cov = (w[:, None, None] * np.einsum('bi,bj->bij', z - mean, z - mean)).sum(0)
  got_mean, got_cov = code_distribution(state.params)
  np.testing.assert_allclose(got_mean, mean, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(got_cov, cov, rtol=1e-3, atol=1e-5)
  # `sample` decodes z ~ N(mu, Sigma): through the linear decoder the samples are N(W mu + b, W Sigma W^T).
  mu, sigma = np.asarray(got_mean, np.float64), np.asarray(got_cov, np.float64)
  dec = state.params['autoencoder']['decoder']['Dense_0']
  W, b = np.asarray(dec['kernel'], np.float64).T, np.asarray(dec['bias'], np.float64)
  draws = np.asarray(jax.jit(method.sample, static_argnums=2)(state.params, jax.random.PRNGKey(0), 20_000))
  scale = np.sqrt(np.diag(W @ sigma @ W.T))
  np.testing.assert_allclose(draws.mean(0), W @ mu + b, atol=float(5 * scale.max() / math.sqrt(20_000)))
  np.testing.assert_allclose(np.cov(draws.T), W @ sigma @ W.T, atol=float(0.05 * scale.max() ** 2))


# ---- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize('kwargs, info, match', [
    (dict(loss='l1'), make_info((6, 6, 1), 256), "loss='l1'"),
    (dict(noise='salt'), make_info((6, 6, 1), 256), "noise='salt'"),
    (dict(noise_level=0.2), make_info((6, 6, 1), 256), "noise='none'"),
    (dict(noise='gaussian'), make_info((6, 6, 1), 256), 'std .* must be > 0'),
    (dict(noise='masking', noise_level=1.0), make_info((6, 6, 1), 256), r'\(0, 1\)'),
    (dict(beta=1.0), make_info((6, 6, 1), 256), 'unknown key.*beta'),
    (dict(loss='bernoulli'), make_info((5,), None, kind='vector'), 'in \\[0, 1\\]'),
    (dict(code_decay=1.0), make_info((6, 6, 1), 256), 'code_decay'),
    (dict(arch='conv', channels=(4, 8, 16)), make_info((28, 28, 1), 256), 'divisible'),
    (dict(arch='rnn'), make_info((6, 6, 1), 256), 'arch'),
])
def test_invalid_settings_raise_config_error(kwargs, info, match):
  model = {k: kwargs.pop(k) for k in ('arch', 'channels') if k in kwargs}
  with pytest.raises(ConfigError, match=match):
    Autoencoder(make_config(**model, **kwargs), info)


# ---- the restoration evaluator's reconstruct task and PSNR ---------------------------------------


def test_psnr_is_the_mean_of_per_image_psnr():
  from jaxgen.evals.restoration import psnr
  original = np.zeros((2, 4, 4, 1), np.float32)
  restored = np.stack([np.full((4, 4, 1), 0.1), np.full((4, 4, 1), 0.01)]).astype(np.float32)  # MSE 1e-2, 1e-4
  np.testing.assert_allclose(psnr(restored, original), (20.0 + 40.0) / 2, rtol=1e-5)
  assert psnr(original, original) == 100.0


def test_reconstruct_task_needs_a_reconstruct_method():
  from jaxgen.evals.restoration import RestorationEvaluator
  from jaxgen.methods.base import Method
  ctx = types.SimpleNamespace(method=Method(make_config(), make_info((28, 28, 1), 256)))
  with pytest.raises(ConfigError, match="task 'reconstruct' needs Method.reconstruct"):
    RestorationEvaluator(ml_collections.ConfigDict({'tasks': ('reconstruct',)}), ctx)


# ---- configs through the loop --------------------------------------------------------------------


def run_smoke(config, workdir, devices=1):
  """Train `config` (a :smoke variant) with one evaluation, at the end; returns (final state, metrics records)."""
  for evaluator in config.evals.values():
    evaluator.every = config.train.steps
  config.train.checkpoint_every = config.train.steps
  state = train.train_and_evaluate(config, str(workdir), devices=jax.devices()[:devices])
  return state, read_metrics(str(workdir))


def check_smoke_run(config, workdir, records):
  """The :smoke run trained (finite losses), evaluated (MSE, PSNR, AUROCs) and wrote samples and PNGs."""
  steps = config.train.steps
  losses = [r['loss'] for r in records if r['split'] == 'train' and 'loss' in r]
  assert losses and all(np.isfinite(losses))
  (evals,) = [r for r in records if r['split'] == 'eval']
  for key in ('reconstruct_mse', 'denoise_mse', 'noisy_mse'):
    assert 0 <= evals[key] < 1, (key, evals[key])
  np.testing.assert_allclose(evals['reconstruct_psnr'], 10 * np.log10(1 / evals['reconstruct_mse']), atol=1.5)
  for ood in config.evals.get('ood_auroc', {}).get('ood', ()):
    assert 0 <= evals[f'ood_auroc_{ood}'] <= 1
  samples = np.load(workdir / 'samples' / f'samples_{steps:07d}.npy')
  assert samples.shape == (16, 28, 28, 1) and samples.min() >= 0 and samples.max() <= 1
  for png in ('samples', 'reconstructions', 'restoration_denoise', 'restoration_reconstruct'):
    assert (workdir / 'samples' / f'{png}_{steps:07d}.png').exists(), png
  return evals


def test_sharded_step_matches_single_device(tmp_path):
  """configs/classical/dae_mnist5k.py:gaussian,smoke (Gaussian noise drawn inside the step) with EMA, on 1
  device (with its evaluators: the config's smoke run) and with the batch over 8: the same parameters."""
  states = {}
  for name, devices in (('single', 1), ('data8', 8)):
    config = load_config('dae_mnist5k', 'gaussian,smoke')
    config.train.ema_decay = 0.9
    if devices > 1:
      config.evals = {}
    states[name], records = run_smoke(config, tmp_path / name, devices)
    if devices == 1:
      check_smoke_run(config, tmp_path / name, records)
  single, data8 = states['single'], states['data8']
  assert float(single.params['codes']['weight']) > 0
  assert_trees_close(single.params, data8.params, rtol=1e-4, atol=1e-5)
  assert_trees_close(single.opt_state, data8.opt_state, rtol=1e-4, atol=1e-6)
  assert_trees_close(single.ema_params, data8.ema_params, rtol=1e-4, atol=1e-5)
  # EMA: the autoencoder is averaged, the code statistics are copied.
  assert_trees_close(single.ema_params['codes'], single.params['codes'], rtol=0, atol=0)
  ae, ae_ema = (jax.tree.leaves(p['autoencoder']) for p in (single.params, single.ema_params))
  assert any(not np.allclose(a, b) for a, b in zip(ae, ae_ema))


# dae_mnist5k:gaussian,smoke runs in test_sharded_step_matches_single_device; every other config's :smoke here.
SMOKE = [('autoencoder_mnist5k', 'smoke'), ('dae_mnist5k', 'masking,smoke'), ('autoencoder_mnist5k_anomaly', 'smoke')]


@pytest.mark.parametrize('name,arg', SMOKE)
def test_smoke_config_trains_evaluates_and_samples(tmp_path, name, arg):
  config = load_config(name, arg)
  assert config.train.steps <= 10 and config.method.name == 'autoencoder'
  _, records = run_smoke(config, tmp_path)
  evals = check_smoke_run(config, tmp_path, records)
  if 'anomaly' in name:
    assert set(config.data.exclude_labels) == {0}
    assert {k for k in evals if k.startswith('ood_auroc_')} == {f'ood_auroc_{s}' for s in
                                                                 ('heldout', 'noise', 'inverted', 'flipped')}


@pytest.mark.parametrize('name,arg', [('autoencoder_mnist5k', None), ('dae_mnist5k', None),
                                      ('dae_mnist5k', 'masking'), ('autoencoder_mnist5k_anomaly', None)])
def test_full_configs_build(name, arg):
  config = load_config(name, arg)
  assert config.method.noise == ((arg or 'gaussian') if name == 'dae_mnist5k' else 'none')
  assert config.method.noise_level == {'none': 0.0, 'gaussian': 0.3, 'masking': 0.25}[config.method.noise]
  assert config.evals.restoration.tasks == ('reconstruct', 'denoise') and config.evals.restoration.noise_std == 0.3
  assert config.evals.restoration.num == (450 if 'anomaly' in name else 500)   # the whole test split
  method = get_method('autoencoder')(config, make_info((28, 28, 1), 256, name='mnist5k'))
  shapes = jax.eval_shape(method.init, jax.random.PRNGKey(0), {'x': jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32)})
  count = sum(math.prod(p.shape) for p in jax.tree.leaves(nn.meta.unbox(shapes.params['autoencoder'])))
  conv = lambda c_in, c_out: 3 * 3 * c_in * c_out + c_out
  dense = lambda n_in, n_out: n_in * n_out + n_out
  encoder = conv(1, 32) + conv(32, 64) + dense(7 * 7 * 64, 256) + dense(256, 32)
  decoder = dense(32, 256) + dense(256, 7 * 7 * 64) + conv(64, 32) + conv(32, 1)
  assert count == encoder + decoder
  with pytest.raises(ValueError, match='takes'):
    load_config(name, 'gaussian,masking' if name == 'dae_mnist5k' else 'masking')
