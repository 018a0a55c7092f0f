"""PixelCNN++: autoregressive property, exact normalisation of the logistic mixture, sampler, conditioning,
the paper config's parameter count, and the smoke config through the train loop.

Every property is checked against mathematics on tiny images with random parameters: Jacobians of the
network output w.r.t. the input (jax.jacrev), sums of p over every value of a pixel, a float64 numpy
re-derivation of the mixture, and sample frequencies against exact probabilities.
"""

import copy
import functools
import itertools
import math
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxgen import distributions, train
from jaxgen.core.config import base_config
from jaxgen.errors import ConfigError
from jaxgen.logging import read_metrics
from jaxgen.methods import get as get_method
from jaxgen.methods.pixelcnnpp import PixelCNNPPMethod
from tests.test_train import config_file


def make_info(shape, levels, num_classes=None, dequantized=False):
  return types.SimpleNamespace(name='test', kind='image', shape=tuple(shape), levels=levels,
                               num_classes=num_classes, num_examples={'train': 10, 'test': 10},
                               dequantized=dequantized)


def model_config(**model):
  c = base_config()
  c.method.name = 'pixelcnnpp'
  c.model = ml_collections.ConfigDict({**dict(nr_resnet=1, nr_filters=8, nr_logistic_mix=3, dropout=0.0,
                                              weight_norm=True, num_classes=0), **model})
  return c


def make_method(shape, levels, seed=0, num_classes=0, **model):
  """A PixelCNN++ method and random params (numpy draws in the init's shapes; biases nonzero)."""
  method = PixelCNNPPMethod(model_config(num_classes=num_classes, **model),
                            make_info(shape, levels, num_classes or None))
  shapes = jax.eval_shape(lambda: nn.unbox(method.init(jax.random.PRNGKey(0), {'x': jnp.zeros((1,) + shape)})))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if name.endswith("['scale']"):  # weight-norm gains
      return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), jnp.float32)
    if len(leaf.shape) == 1:  # biases: small, nonzero
      return jnp.asarray(0.1 * rng.standard_normal(leaf.shape), jnp.float32)
    fan_in = math.prod(leaf.shape[:-1])
    return jnp.asarray(rng.standard_normal(leaf.shape) / math.sqrt(fan_in), jnp.float32)

  return method, jax.tree_util.tree_map_with_path(draw, shapes.params)


# Compiling these networks dominates this file's runtime on CPU, so the tests share a few models and
# jitted functions (the method is a static argument: the same method reuses one compilation).
@functools.lru_cache(maxsize=None)
def grey_model():
  return make_method((4, 4, 1), 256, seed=3, nr_filters=4, nr_logistic_mix=2, dropout=0.5)


@functools.lru_cache(maxsize=None)
def rgb_conditional_model():
  return make_method((4, 4, 3), 256, seed=4, nr_filters=4, nr_logistic_mix=2, num_classes=5)


@functools.partial(jax.jit, static_argnums=0)
def output_and_jacobian(method, params, x_HWC, label):
  """(network output [H, W, n_out], d output / d x [H, W, n_out, H, W, C]) of one image, dropout off."""
  def f(x):
    out = method.logits(params, x[None], None if label is None else label[None])[0]
    return out, out
  jac, out = jax.jacrev(f, has_aux=True)(x_HWC)
  return out, jac


def pixel_jacobian(method, params, shape, levels, seeds=(0, 1), label=None):
  """sum over random inputs of |d out[pixel i, :] / d x[pixel j, :]| summed over outputs and channels: [HW, HW]."""
  lab = None if label is None else jnp.asarray(label, jnp.int32)
  h, w, c = shape
  total = 0.0
  for s in seeds:
    x = jax.random.randint(jax.random.PRNGKey(s), shape, 0, levels) / (levels - 1)
    j = np.abs(np.asarray(output_and_jacobian(method, params, x, lab)[1]))       # [H, W, n_out, H, W, C]
    total = total + j.sum(axis=(2, 5)).reshape(h * w, h * w)
  return total


def check_autoregressive(jac):
  n = jac.shape[0]
  before = np.tril(np.ones((n, n), bool), k=-1)      # j < i
  assert np.all(jac[~before] == 0.0), np.argwhere((jac != 0) & ~before)[:5]
  # No blind spot: every pixel's output sees every earlier pixel.
  assert np.all(jac[before] > 0), np.argwhere((jac == 0) & before)[:5]


# ---- (a) autoregressive property --------------------------------------------------------------


def test_output_of_pixel_i_depends_exactly_on_pixels_before_i_grey():
  check_autoregressive(pixel_jacobian(*grey_model(), (4, 4, 1), 256))


def test_output_of_pixel_i_depends_exactly_on_pixels_before_i_rgb_with_label():
  """4x4x3 (a class-conditional model, so this also shows that the label never leaks pixels: (d))."""
  method, params = rgb_conditional_model()
  for label in (0, 3):
    check_autoregressive(pixel_jacobian(method, params, (4, 4, 3), 256, label=label))


# ---- the mixture distribution alone -----------------------------------------------------------


def random_mix_params(rng, num, channels, num_mix):
  """Mixture parameters with far-from-uniform weights, means in and beyond [-1, 1], varied scales."""
  n = distributions.mix_logistic_num_params(channels, num_mix)
  p = rng.standard_normal((num, n))
  m, c = num_mix, channels
  p[:, :m] *= 2.0
  p[:, m:m + c * m] *= 0.8
  p[:, m + c * m:m + 2 * c * m] = rng.uniform(-6.0, 0.5, (num, c * m))
  return p


def reference_mix_prob(params, x_int, levels, num_mix, channels):
  """float64 numpy P(x) straight from the paper: sigma(upper edge) - sigma(lower edge) in [-1, 1] units."""
  m, c = num_mix, channels
  sig = lambda z: 1.0 / (1.0 + np.exp(-z))
  logits = params[:m]
  w = np.exp(logits - logits.max())
  w /= w.sum()
  means = params[m:m + c * m].reshape(c, m)
  log_s = np.maximum(params[m + c * m:m + 2 * c * m].reshape(c, m), -7.0)
  coeffs = np.tanh(params[m + 2 * c * m:].reshape(-1, m))
  xs = 2.0 * np.asarray(x_int, np.float64) / (levels - 1) - 1.0
  total = 0.0
  for k_mix in range(m):
    prob, pair = w[k_mix], 0
    for k in range(c):
      mean = means[k, k_mix]
      for j in range(k):
        mean += coeffs[pair, k_mix] * xs[j]
        pair += 1
      s = np.exp(log_s[k, k_mix])
      a = np.inf if x_int[k] == levels - 1 else (xs[k] + 1.0 / (levels - 1) - mean) / s
      b = -np.inf if x_int[k] == 0 else (xs[k] - 1.0 / (levels - 1) - mean) / s
      # sigma(a) - sigma(b), written as sigma(-b) - sigma(-a) right of the mean to avoid cancellation.
      prob *= sig(-b) - sig(-a) if b > 0 else sig(a) - sig(b)
    total += prob
  return total


@pytest.mark.parametrize('channels,levels', [(3, 4), (1, 5)])
def test_mixture_matches_a_float64_reference(channels, levels):
  rng = np.random.default_rng(0)
  num_mix = 3
  params = random_mix_params(rng, 2, channels, num_mix)
  values = np.array(list(itertools.product(range(levels), repeat=channels)))
  for p in params:
    got = np.asarray(distributions.discretized_mix_logistic_log_prob(
        jnp.asarray(p, jnp.float32), jnp.asarray(values / (levels - 1), jnp.float32), levels, num_mix))
    want = np.log([reference_mix_prob(p, v, levels, num_mix, channels) for v in values])
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)
    assert abs(np.exp(want).sum() - 1.0) < 1e-9


@functools.partial(jax.jit, static_argnums=1)
def _rgb_total(params_PN, num_mix):
  """sum over all 256^3 RGB values of exp(log p) for each parameter vector: [P] (B summed inside)."""
  grid = jnp.arange(256, dtype=jnp.float32) / 255.0
  gb = jnp.stack(jnp.meshgrid(grid, grid, indexing='ij'), -1).reshape(-1, 2)        # [65536, 2] (G, B)

  def for_red(r):
    x = jnp.concatenate([jnp.full((gb.shape[0], 1), r), gb], axis=-1)              # [65536, 3]
    lp = distributions.discretized_mix_logistic_log_prob(params_PN[:, None], x[None], 256, num_mix)
    return jnp.exp(jax.nn.logsumexp(lp, axis=-1))                                   # [P]

  return jax.lax.map(for_red, grid)                                                  # [256, P]


@pytest.mark.slow  # long; the RGB one-pixel sum and the per-pixel draw tests cover this in the default suite
def test_mixture_sums_to_one_over_all_values():
  rng = np.random.default_rng(1)
  rgb = random_mix_params(rng, 2, 3, 3)
  # An extreme vector too: a mean far above the range, the smallest scale, saturated coefficients.
  extreme = rgb[0].copy()
  extreme[3:12] = 5.0
  extreme[12:21] = -9.0
  extreme[21:] = 10.0
  rgb = np.concatenate([rgb, extreme[None]])
  totals = np.asarray(_rgb_total(jnp.asarray(rgb, jnp.float32), 3), np.float64).sum(0)
  np.testing.assert_allclose(totals, 1.0, atol=1e-4)
  for levels in (2, 256):
    grey = jnp.asarray(random_mix_params(rng, 4, 1, 3), jnp.float32)
    x = jnp.arange(levels, dtype=jnp.float32)[:, None, None] / (levels - 1)
    lp = distributions.discretized_mix_logistic_log_prob(grey[None], x, levels, 3)          # [levels, 4]
    assert np.all(np.isfinite(np.asarray(lp)))
    np.testing.assert_allclose(np.exp(np.asarray(lp, np.float64)).sum(0), 1.0, atol=1e-5)


# ---- (b) normalisation of the model's conditionals -------------------------------------------


@pytest.mark.slow  # long; the RGB one-pixel sum and the per-pixel draw tests cover this in the default suite
def test_model_conditional_of_one_pixel_sums_to_one_grey_and_log_prob_uses_it():
  method, params = grey_model()
  levels = 256
  x = jax.random.randint(jax.random.PRNGKey(0), (4, 4, 1), 0, levels) / (levels - 1)
  out, _ = output_and_jacobian(method, params, x, None)
  # Pixel (1, 2)'s output does not depend on x[1, 2] (test (a)), so its conditional over all 256 values
  # with the other pixels fixed is the mixture at out[1, 2].
  values = jnp.arange(levels, dtype=jnp.float32)[:, None] / (levels - 1)
  lp = distributions.discretized_mix_logistic_log_prob(out[1, 2][None], values, levels, method.num_mix)
  assert abs(np.exp(np.asarray(lp, np.float64)).sum() - 1.0) < 1e-4
  # The method's exact log p(x) is the sum of these per-pixel conditionals; with dropout it is noisy.
  per_pixel = distributions.discretized_mix_logistic_log_prob(out, x, levels, method.num_mix)
  both = jnp.stack([x, x])
  exact, noisy = jax.jit(lambda p: (method.log_prob(p, both),
                                    method.log_prob(p, both, train=True, rng=jax.random.PRNGKey(1))))(params)
  np.testing.assert_allclose(np.asarray(exact), float(per_pixel.sum()), rtol=1e-5)
  # Dropout (rate 0.5) only with train=True, with its own mask per example.
  assert not np.allclose(noisy, exact) and not np.isclose(noisy[0], noisy[1])


def test_model_conditional_of_one_pixel_sums_to_one_rgb():
  method, params = rgb_conditional_model()
  x = jax.random.randint(jax.random.PRNGKey(1), (4, 4, 3), 0, 256) / 255
  out, _ = output_and_jacobian(method, params, x, jnp.asarray(2, jnp.int32))
  total = np.asarray(_rgb_total(out[2, 1][None], method.num_mix), np.float64).sum()   # pixel (2, 1), all 256^3 values
  assert abs(total - 1.0) < 1e-4


# ---- (c) sampler ------------------------------------------------------------------------------


@pytest.mark.parametrize('channels', [3, 1])
def test_pixel_draws_match_mixture_probabilities(channels):
  levels, num_mix, num = 4, 3, 40000
  params = jnp.asarray(random_mix_params(np.random.default_rng(5), 1, channels, num_mix)[0], jnp.float32)
  values = np.array(list(itertools.product(range(levels), repeat=channels)))
  probs = np.exp(np.asarray(distributions.discretized_mix_logistic_log_prob(
      params, jnp.asarray(values / (levels - 1), jnp.float32), levels, num_mix), np.float64))
  draws = np.asarray(distributions.discretized_mix_logistic_sample(
      jax.random.PRNGKey(0), jnp.broadcast_to(params, (num, params.shape[0])), levels, num_mix))
  assert draws.shape == (num, channels)
  ints = np.round(draws * (levels - 1)).astype(int)
  np.testing.assert_allclose(ints, draws * (levels - 1), atol=1e-5)  # on the grid
  freq = np.bincount(ints @ (levels ** np.arange(channels)[::-1]), minlength=levels ** channels) / num
  tol = 4.5 * np.sqrt(probs * (1 - probs) / num) + 1e-3
  assert np.all(np.abs(freq - probs) < tol), np.max(np.abs(freq - probs) / tol)
  assert probs.max() > 2.0 / levels ** channels    # far from uniform, so the test has teeth


def test_outputs_on_a_top_crop_equal_the_whole_image_outputs():
  """The work-reusing sampler's premise: rows [0, R) of the output, for R a multiple of 4, are the
  network's output on rows [0, R) of the input alone (no row below R reaches them, at any resolution)."""
  method, params = make_method((12, 8, 3), 256, seed=8, nr_filters=4, nr_logistic_mix=2)
  x = jax.random.randint(jax.random.PRNGKey(0), (2, 12, 8, 3), 0, 256) / 255
  whole = np.asarray(jax.jit(method.logits)(params, x))
  for rows in (4, 8):
    crop = np.asarray(jax.jit(method.logits)(params, x[:, :rows]))
    np.testing.assert_allclose(crop, whole[:, :rows], atol=1e-5)
    assert np.abs(whole[:, :rows]).max() > 0.1          # outputs far from zero: the comparison has teeth


@pytest.mark.parametrize('shape,num_classes', [((8, 4, 1), 0),
                                               pytest.param((8, 4, 3), 5, marks=pytest.mark.slow)])
def test_reusing_sampler_equals_plain_sampler(shape, num_classes):
  """Top-crop loops (method.sample_reuse) draw exactly what the whole-image loop draws from one key."""
  method, params = make_method(shape, 256, seed=9, nr_filters=4, nr_logistic_mix=2, num_classes=num_classes)
  plain = copy.copy(method)
  plain.sample_reuse = False
  assert method.sample_reuse
  label = jnp.arange(3) % num_classes if num_classes else None
  key = jax.random.PRNGKey(2)
  fast = np.asarray(jax.jit(method.sample, static_argnums=2)(params, key, 3, label))
  slow = np.asarray(jax.jit(plain.sample, static_argnums=2)(params, key, 3, label))
  np.testing.assert_array_equal(fast, slow)
  assert len(np.unique(fast.reshape(3, -1), axis=0)) == 3 and len(np.unique(fast)) > 10  # not degenerate


@pytest.mark.slow  # long; the RGB one-pixel sum and the per-pixel draw tests cover this in the default suite
def test_sampler_matches_exact_image_distribution():
  """4x4 binary images: the first row's joint and the most likely images' frequencies vs exact p(x)."""
  shape, levels, num = (4, 4, 1), 2, 4000
  method, params = make_method(shape, levels, nr_filters=4, nr_logistic_mix=2, seed=6)
  images = np.array(list(itertools.product(range(2), repeat=16)), np.float32).reshape(-1, *shape)
  probs = np.exp(-np.asarray(jax.jit(method.nll)(params, {'x': jnp.asarray(images)}, None), np.float64))
  assert abs(probs.sum() - 1.0) < 1e-4                    # the whole model normalises over 2^16 images
  samples = np.asarray(jax.jit(method.sample, static_argnums=2)(params, jax.random.PRNGKey(3), num))
  assert samples.shape == (num,) + shape and set(np.unique(samples)) <= {0.0, 1.0}
  index = samples.reshape(num, -1).astype(int) @ (2 ** np.arange(16)[::-1])
  first_row = probs.reshape(16, -1).sum(1)
  emp_row = np.bincount(index >> 12, minlength=16) / num
  assert np.all(np.abs(emp_row - first_row) < 4.5 * np.sqrt(first_row * (1 - first_row) / num) + 1e-3)
  top = np.argsort(probs)[-10:]
  emp = np.bincount(index, minlength=2 ** 16)[top] / num
  assert np.all(np.abs(emp - probs[top]) < 4.5 * np.sqrt(probs[top] * (1 - probs[top]) / num) + 1e-3)


# ---- (d) class-conditional --------------------------------------------------------------------


def test_conditional_label_changes_outputs_and_samples():
  method, params = rgb_conditional_model()
  assert method.conditional
  x = jax.random.randint(jax.random.PRNGKey(0), (4, 4, 3), 0, 256) / 255
  a, _ = output_and_jacobian(method, params, x, jnp.asarray(0, jnp.int32))
  b, _ = output_and_jacobian(method, params, x, jnp.asarray(3, jnp.int32))
  assert float(jnp.max(jnp.abs(a[0, 0] - b[0, 0]))) > 1e-3   # even the first pixel sees the label
  sample = jax.jit(method.sample, static_argnums=2)
  key = jax.random.PRNGKey(1)
  zeros = np.asarray(sample(params, key, 4, label=jnp.zeros(4, jnp.int32)))
  cycle = np.asarray(sample(params, key, 4, label=jnp.arange(4) % 5))
  np.testing.assert_array_equal(zeros[0], cycle[0])         # same key and label: same image
  assert all(not np.array_equal(zeros[i], cycle[i]) for i in (1, 2, 3))
  np.testing.assert_allclose(zeros * 255, np.round(zeros * 255), atol=1e-4)
  np.testing.assert_array_equal(np.asarray(method.sample_labels(7)), [0, 1, 2, 3, 4, 0, 1])
  with pytest.raises(ConfigError, match='label'):
    method.nll(params, {'x': x[None]}, None)
  grey, grey_params = grey_model()
  with pytest.raises(ValueError, match='unconditional'):
    grey.sample(grey_params, jax.random.PRNGKey(0), 2, label=jnp.zeros(2, jnp.int32))


@pytest.mark.parametrize('model,info,match', [
    ({}, make_info((4, 4, 1), 256, dequantized=True), 'dequantize'),
    ({}, make_info((4, 4, 1), None), 'discrete'),
    ({}, make_info((6, 6, 1), 256), 'divisible by 4'),
    (dict(num_classes=10), make_info((4, 4, 1), 256), 'classes'),
    (dict(nr_logistic_mix=0), make_info((4, 4, 1), 256), 'nr_logistic_mix'),
    (dict(dropout=1.0), make_info((4, 4, 1), 256), 'dropout'),
])
def test_invalid_configs_raise_config_error(model, info, match):
  with pytest.raises(ConfigError, match=match):
    PixelCNNPPMethod(model_config(**model), info)


# ---- (e) the paper configuration's size -------------------------------------------------------


def reference_parameter_count(nr_resnet, f, num_mix, c=3):
  """Parameters of openai/pixel-cnn's pixel_cnn_pp/model.py (read from its model.py and nn.py).

  Every conv2d / deconv2d / nin there is weight-normalised with V [kh, kw, c_in, c_out], g [c_out] and
  b [c_out]: kh*kw*c_in*c_out + 2*c_out parameters. concat_elu doubles its input's features. The input
  has C + 1 channels (a channel of ones). gated_resnet(x, a): conv(concat_elu(x)) F -> F, optional
  nin(concat_elu(a)) -> F, conv(concat_elu(.)) F -> 2F; `u` uses 2x3 down-shifted convs, `ul` 2x2
  down-right-shifted ones.
  """
  def layer(k, c_in, c_out):
    return k * c_in * c_out + 2 * c_out

  def block(k, a_feat):
    skip = layer(1, 2 * a_feat, f) if a_feat else 0
    return layer(k, 2 * f, f) + skip + layer(k, 2 * f, 2 * f)

  first = layer(6, c + 1, f) + layer(3, c + 1, f) + layer(2, c + 1, f)     # u 2x3; ul 1x3 and 2x1
  down_half = 3 * nr_resnet * (block(6, 0) + block(4, f))                  # ul's skip: u
  resample = 2 * (layer(6, f, f) + layer(4, f, f))                         # stride-2 convs, and again deconvs
  n_up = nr_resnet + 2 * (nr_resnet + 1)
  up_half = n_up * (block(6, f) + block(4, 2 * f))                         # ul's skip: concat(u, stored ul)
  out = layer(1, f, (1 + 3 * c) * num_mix)                                 # 10 * nr_logistic_mix for RGB
  return first + down_half + 2 * resample + up_half + out


def test_cifar10_config_has_the_reference_parameter_count():
  config = config_file('autoregressive/pixelcnnpp_cifar10.py', None)
  assert (config.model.nr_resnet, config.model.nr_filters, config.model.nr_logistic_mix) == (5, 160, 10)
  assert config.model.dropout == 0.5 and config.train.ema_decay == 0.9995 and config.optim.lr == 1e-3
  method = get_method(config.method.name)(config, make_info((32, 32, 3), 256))
  shapes = jax.eval_shape(lambda: nn.unbox(method.init(jax.random.PRNGKey(0), {'x': jnp.zeros((1, 32, 32, 3))})))
  count = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes.params))
  assert reference_parameter_count(5, 160, 10) == 53_659_080
  assert count == 53_659_080
  assert method.n_out == 100


# ---- (f) configs through the real train loop ---------------------------------------------------

CONFIGS = ['pixelcnnpp_mnist5k.py']


@pytest.mark.parametrize('name', CONFIGS)
def test_smoke_config_trains_evaluates_and_samples(name, tmp_path):
  full = config_file(f'autoregressive/{name}', None)
  assert full.method.name == 'pixelcnnpp' and set(full.evals) >= {'nll', 'samples'}
  config = config_file(f'autoregressive/{name}')
  assert config.train.steps <= 10 and config.evals.samples.num <= 4
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
  records = read_metrics(workdir)
  assert any('loss' in r and np.isfinite(r['loss']) for r in records)
  nll = [r for r in records if 'nll_nats' in r]
  assert nll and all(np.isfinite(r['nll_nats']) and r['nll_nats'] > 0 for r in nll)
  assert all('nll_bpd' in r for r in nll)
  assert nll[-1]['nll_nats'] < 784 * math.log(256) * 1.2
  samples = np.load(tmp_path / 'samples' / f'samples_{config.train.steps:07d}.npy')
  assert (tmp_path / 'samples' / f'samples_{config.train.steps:07d}.png').exists()
  assert samples.shape == (config.evals.samples.num, 28, 28, 1)
  np.testing.assert_allclose(samples * 255, np.round(samples * 255), atol=1e-4)
