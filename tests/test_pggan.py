"""PGGAN networks (jaxgen.models.gan_pggan): the fade-in continuity of both networks, exact pooling
of upsampled images, the equalized learning rate, pixel norm, the stage schedule, one compiled
program for every stage (traced stage, sharded batch), and the config.

Everything runs on one tiny conditional model (8x8x1 images, three stages 2 -> 4 -> 8, width 4,
3 classes), initialised once per module.
"""

import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxgen.core.config import base_config, load_config_file
from jaxgen.core.mesh import batch_sharding, make_mesh
from jaxgen.data.pipeline import DataInfo
from jaxgen.errors import ConfigError
from jaxgen.models import gan_nets, gan_pggan

CONFIG = os.path.join(os.path.dirname(__file__), '..', 'configs', 'gan', 'pggan_mnist5k.py')
B, L, CLASSES = 8, 8, 3
INFO = DataInfo('tiny', 'image', (8, 8, 1), 256, CLASSES, {'train': 10}, False)
MODEL = ml_collections.ConfigDict(dict(arch='pggan', latent_dim=L, channels=(4, 4, 4), stage_steps=3,
                                       num_classes=CLASSES, mbstd_group=4))
N = len(MODEL.channels)


def image_info(shape, classes=None, kind='image'):
  return DataInfo('data', kind, shape, 256, classes, {'train': 10}, False)


def numpy_params(abstract, rng):
  """Parameters of the traced (not compiled) init's shapes: kernels and embeddings N(0, 1) as the
  init draws them, biases N(0, 0.1^2) instead of 0 so that they take part in every check."""
  def draw(path, leaf):
    std = 0.1 if jax.tree_util.keystr(path).endswith("['bias']") else 1.0
    return jnp.asarray(std * rng.standard_normal(leaf.shape), jnp.float32)
  return jax.tree_util.tree_map_with_path(draw, nn.unbox(abstract['params']))


@pytest.fixture(scope='module')
def tiny():
  """(nets, G params, D params, z, labels, real images) of the tiny conditional model."""
  nets = gan_nets.build(MODEL, INFO)
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.standard_normal((B, L)), jnp.float32)
  label = jnp.arange(B, dtype=jnp.int32) % CLASSES
  x = jnp.asarray(rng.uniform(-1.0, 1.0, (B, 8, 8, 1)), jnp.float32)
  key = jax.random.PRNGKey(0)
  params_g = numpy_params(jax.eval_shape(lambda: nets.generator.init(key, z, label, train=False)), rng)
  params_d = numpy_params(jax.eval_shape(lambda: nets.discriminator.init(key, x, label, train=False)), rng)
  return nets, params_g, params_d, z, label, x


@pytest.fixture(scope='module')
def apply_g(tiny):
  nets = tiny[0]
  return jax.jit(lambda p, z, y, stage, alpha: nets.generator.apply(
      {'params': p}, z, y, train=False, stage=stage, alpha=alpha))


@pytest.fixture(scope='module')
def apply_d(tiny):
  nets = tiny[0]
  return jax.jit(lambda p, x, y, stage, alpha: nets.discriminator.apply(
      {'params': p}, x, y, train=False, stage=stage, alpha=alpha))


def upsample(x_BHWC, factor):
  """Nearest-neighbour upsampling in numpy."""
  return x_BHWC.repeat(factor, axis=1).repeat(factor, axis=2)


def stage_image(image_BHWC, stage):
  """The full-resolution image pooled to `stage`'s resolution by the discriminator's own pooling."""
  for _ in range(N - 1 - stage):
    image_BHWC = gan_pggan.pool2(image_BHWC)
  return image_BHWC


def test_schedule_at_phase_boundaries():
  t = 5
  schedule = gan_pggan.schedule_fn(t, 3)
  # step: (stage, alpha). Stage 0: [0, T); stage 1 fades in [T, 2T), stabilises [2T, 3T);
  # stage 2 fades in [3T, 4T), then stays with alpha 1.
  expected = {0: (0, 1.0), t - 1: (0, 1.0), t: (1, 0.0), t + 1: (1, 0.2), 2 * t - 1: (1, 0.8),
              2 * t: (1, 1.0), 3 * t - 1: (1, 1.0), 3 * t: (2, 0.0), 3 * t + 2: (2, 0.4),
              4 * t - 1: (2, 0.8), 4 * t: (2, 1.0), 5 * t: (2, 1.0), 6 * t: (2, 1.0), 1000 * t: (2, 1.0)}
  steps = np.array(sorted(expected), np.int32)
  traced = jax.jit(jax.vmap(schedule))(steps)
  assert traced['stage'].dtype == jnp.int32 and traced['alpha'].dtype == jnp.float32
  for i, step in enumerate(steps):
    stage, alpha = expected[int(step)]
    assert int(traced['stage'][i]) == stage, step
    assert float(traced['alpha'][i]) == pytest.approx(alpha, abs=1e-7), step
  assert {k: float(v) for k, v in schedule(3 * t + 2).items()} == {'stage': 2, 'alpha': pytest.approx(0.4)}
  # One stage: always stage 0 with alpha 1.
  single = jax.vmap(gan_pggan.schedule_fn(t, 1))(steps)
  assert np.all(np.asarray(single['stage']) == 0) and np.all(np.asarray(single['alpha']) == 1.0)


def test_pixel_norm_gives_unit_mean_square():
  x = np.random.default_rng(1).standard_normal((3, 5, 5, 16)).astype(np.float32)
  x *= np.array([1e-2, 1.0, 30.0], np.float32)[:, None, None, None]
  y = np.asarray(jax.jit(gan_pggan.pixel_norm)(x), np.float64)
  ms = np.mean(np.asarray(x, np.float64) ** 2, axis=-1)
  np.testing.assert_allclose(np.mean(y ** 2, axis=-1), ms / (ms + 1e-8), rtol=1e-6)
  np.testing.assert_allclose(np.mean(y[1:] ** 2, axis=-1), 1.0, rtol=1e-6)   # ms >> eps: 1 to float precision


def test_equalized_learning_rate():
  rng = np.random.default_rng(2)
  x = rng.standard_normal((2, 5, 5, 64)).astype(np.float32)
  h = rng.standard_normal((4, 100)).astype(np.float32)
  conv_bias, dense_bias = np.linspace(-1.0, 1.0, 128), np.linspace(-1.0, 1.0, 7)
  conv = gan_pggan.EqualizedConv(128, kernel_size=3)
  denses = [gan_pggan.EqualizedDense(7, gain=gain) for gain in (math.sqrt(2.0), 1.0)]

  @jax.jit
  def layers(key):
    """(initial params, output with the initial kernel and the biases above) of each layer."""
    out = []
    for layer, inputs, bias in ((conv, x, conv_bias), *((d, h, dense_bias) for d in denses)):
      params = layer.init(key, inputs)['params']
      applied = {'kernel': params['kernel'].value, 'bias': jnp.asarray(bias, jnp.float32)}
      out.append((params, layer.apply({'params': applied}, inputs)))
    return out

  (params, y), *dense_outputs = layers(jax.random.PRNGKey(3))
  kernel, bias = np.asarray(params['kernel'].value, np.float64), np.asarray(params['bias'].value)
  assert kernel.shape == (3, 3, 64, 128) and params['kernel'].names == (None, None, 'conv_in', 'conv_out')
  # Stored N(0, 1) (73,728 draws: std within ~0.5% of 1), biases 0.
  assert abs(kernel.mean()) < 0.02 and abs(kernel.std() - 1.0) < 0.01 and np.all(bias == 0)
  # Output = conv with the kernel times sqrt(2 / fan_in), fan_in = 3 * 3 * 64, zero 'SAME' padding.
  xp = np.pad(np.asarray(x, np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  effective = kernel * math.sqrt(2.0 / (3 * 3 * 64))
  explicit = sum(np.einsum('bhwc,cd->bhwd', xp[:, i:i + 5, j:j + 5], effective[i, j])
                 for i in range(3) for j in range(3)) + conv_bias
  np.testing.assert_allclose(y, explicit, atol=2e-5)

  # Dense with gain sqrt(2), and the gain-1 layers (toRGB, D's output): x @ (W * gain / sqrt(fan_in)) + b.
  for (params, y), gain in zip(dense_outputs, (math.sqrt(2.0), 1.0)):
    w = np.asarray(params['kernel'].value, np.float64)
    np.testing.assert_allclose(y, np.asarray(h, np.float64) @ w * gain / 10.0 + dense_bias, atol=1e-5)


def test_rgb_layers_are_1x1_with_he_gain_in_d_and_gain_one_in_g(tiny):
  nets, params_g, params_d = tiny[:3]
  g = nets.generator.bind({'params': params_g})
  d = nets.discriminator.bind({'params': params_d})
  assert [(m.kernel_size, m.gain) for m in g.to_rgb] == [(1, 1.0)] * N
  assert [(m.kernel_size, m.gain) for m in d.from_rgb] == [(1, math.sqrt(2.0))] * N


def test_generator_fade_in_starts_at_previous_stage(tiny, apply_g):
  _, params_g, _, z, label, _ = tiny
  for s in range(1, N):
    previous = apply_g(params_g, z, label, s - 1, 1.0)
    faded0 = apply_g(params_g, z, label, s, 0.0)
    full = apply_g(params_g, z, label, s, 1.0)
    half = apply_g(params_g, z, label, s, 0.5)
    assert faded0.shape == full.shape == (B, 8, 8, 1)
    np.testing.assert_allclose(faded0, previous, atol=1e-6)
    np.testing.assert_allclose(half, 0.5 * (faded0 + full), atol=1e-6)   # linear blend in alpha
    assert np.max(np.abs(full - previous)) > 1e-3                        # the new block does something


def test_generator_image_is_the_stage_resolution_upsampled(tiny, apply_g):
  _, params_g, _, z, label, _ = tiny
  for s in range(N):
    image = np.asarray(apply_g(params_g, z, label, s, 1.0))
    low = stage_image(image, s)
    assert low.shape[1] == 2 * 2 ** s
    # Nearest-upsampled exactly, and the discriminator's pooling gives back the low-resolution image bit for bit.
    np.testing.assert_array_equal(image, upsample(low, 2 ** (N - 1 - s)))


def test_pooling_of_upsampled_images_is_exact():
  y = np.random.default_rng(6).standard_normal((2, 3, 5, 2)).astype(np.float32) * 7.3

  @jax.jit
  def round_trips(y):
    out = []
    for k in (1, 2, 3):
      x = gan_pggan.upsample(y, 2 ** k)
      for _ in range(k):
        x = gan_pggan.pool2(x)
      out.append(x)
    return out

  for x in round_trips(y):
    np.testing.assert_array_equal(x, y)


def test_discriminator_fade_in_starts_at_previous_stage(tiny, apply_d):
  _, _, params_d, _, label, x = tiny
  for s in range(1, N):
    previous = apply_d(params_d, x, label, s - 1, 1.0)
    faded0 = apply_d(params_d, x, label, s, 0.0)
    full = apply_d(params_d, x, label, s, 1.0)
    assert faded0.shape == (B,) and faded0.dtype == jnp.float32
    np.testing.assert_allclose(faded0, previous, atol=1e-6)
    assert np.max(np.abs(full - previous)) > 1e-4


def test_discriminator_sees_only_the_stage_resolution(tiny, apply_d):
  """At stage s, D(x) depends on x only through x pooled to the stage's resolution."""
  _, _, params_d, _, label, x = tiny
  for s in range(N - 1):
    blocky = upsample(stage_image(np.asarray(x), s), 2 ** (N - 1 - s))
    np.testing.assert_array_equal(apply_d(params_d, blocky, label, s, 1.0), apply_d(params_d, x, label, s, 1.0))
  # At stage 0 the input gradient is constant on each 4x4 block (pooling's gradient), and the layers
  # of the higher stages get exactly zero gradient (their branch does not run).
  grads, grad_x = jax.jit(jax.grad(lambda p, v: apply_d(p, v, label, 0, 1.0).sum(), argnums=(0, 1)))(params_d, x)
  grad_x = np.asarray(grad_x)
  np.testing.assert_array_equal(grad_x, upsample(grad_x[:, ::4, ::4], 4))
  assert np.all(grad_x != 0)
  for name, leaves in grads.items():
    higher = int(name.rsplit('_', 1)[1]) > 0
    assert all(np.all(np.asarray(g) == 0) == higher for g in jax.tree.leaves(leaves)), name


def test_projection_term_is_linear_in_the_class_embedding(tiny, apply_d):
  _, _, params_d, _, label, x = tiny

  def with_embedding(scale):
    p = jax.tree_util.tree_map_with_path(
        lambda path, v: v * scale if 'label_projection' in jax.tree_util.keystr(path) else v, params_d)
    return np.asarray(apply_d(p, x, label, N - 1, 1.0), np.float64)

  unconditional = with_embedding(0.0)
  np.testing.assert_allclose(with_embedding(2.0) - unconditional, 2 * (with_embedding(1.0) - unconditional),
                             atol=1e-5)
  other = apply_d(params_d, x, (label + 1) % CLASSES, N - 1, 1.0)
  assert np.max(np.abs(other - with_embedding(1.0))) > 1e-4


def test_one_program_serves_every_stage(tiny, apply_g, apply_d):
  """A traced stage: one trace and one compile, batch sharded over the 8 devices, equal to the per-stage results."""
  nets, params_g, params_d, z, label, x = tiny
  traces = []

  @jax.jit
  def step(pg, pd, z, y, x, stage, alpha):
    traces.append(stage)
    fake = nets.generator.apply({'params': pg}, z, y, train=False, stage=stage, alpha=alpha)
    return fake, nets.discriminator.apply({'params': pd}, x, y, train=False, stage=stage, alpha=alpha)

  batch = batch_sharding(make_mesh(base_config().mesh))
  assert batch.num_devices == 8
  sharded = [jax.device_put(a, batch) for a in (z, label, x)]
  outputs = {}
  for stage, alpha in ((0, 1.0), (1, 0.25), (2, 0.0), (2, 1.0)):
    fake, d_real = step(params_g, params_d, *sharded, jnp.int32(stage), jnp.float32(alpha))
    assert fake.sharding.is_equivalent_to(batch, 4) and d_real.sharding.is_equivalent_to(batch, 1)
    np.testing.assert_allclose(fake, apply_g(params_g, z, label, stage, alpha), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_real, apply_d(params_d, x, label, stage, alpha), rtol=1e-5, atol=1e-5)
    outputs[stage, alpha] = d_real
  assert len(traces) == 1
  assert np.max(np.abs(outputs[0, 1.0] - outputs[2, 1.0])) > 1e-4   # the stages are different networks


def test_parameter_shapes_and_count_do_not_depend_on_the_stage():
  config = load_config_file(CONFIG)
  nets = gan_nets.build(config.model, image_info((28, 28, 1), 10))
  z, x = jnp.zeros((4, 128)), jnp.zeros((4, 28, 28, 1))
  shapes = {}
  for stage in (0, 2):
    g = jax.eval_shape(lambda: nets.generator.init(jax.random.PRNGKey(0), z, train=False, stage=stage))
    d = jax.eval_shape(lambda: nets.discriminator.init(jax.random.PRNGKey(0), x, train=False, stage=stage))
    shapes[stage] = (g, d)
  assert jax.tree.map(lambda a: a.shape, shapes[0]) == jax.tree.map(lambda a: a.shape, shapes[2])
  count = lambda tree: sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))
  c0, c1, c2 = 128, 64, 32
  conv = lambda k, i, o: k * k * i * o + o
  g_count = (128 * 49 * c0 + 49 * c0 + conv(3, c0, c0) + conv(3, c0, c1) + conv(3, c1, c1) + conv(3, c1, c2)
             + conv(3, c2, c2) + conv(1, c0, 1) + conv(1, c1, 1) + conv(1, c2, 1))
  d_count = (conv(1, 1, c0) + conv(1, 1, c1) + conv(1, 1, c2) + conv(3, c2, c2) + conv(3, c2, c1)
             + conv(3, c1, c1) + conv(3, c1, c0) + conv(3, c0 + 1, c0) + 49 * c0 * c0 + c0 + c0 + 1)
  assert count(shapes[0][0]) == g_count and count(shapes[0][1]) == d_count


def test_config_and_schedule():
  config = load_config_file(CONFIG)
  assert config.method.name == 'gan' and config.method.loss == 'wasserstein' and config.method.gp_weight == 10.0
  assert (config.optim.b1, config.optim.b2, config.optim.lr) == (0.0, 0.99, 1e-3)
  assert config.optim_d.to_dict() == config.optim.to_dict()
  assert config.train.steps == 2 * 3 * config.model.stage_steps
  nets = gan_nets.build(config.model, image_info((28, 28, 1), 10))
  assert nets.generator.base_hw == (7, 7) and nets.latent_shape == (128,)
  end = nets.schedule(config.train.steps - 1)
  assert int(end['stage']) == 2 and float(end['alpha']) == 1.0
  smoke = load_config_file(CONFIG + ':smoke')
  nets = gan_nets.build(smoke.model, image_info((28, 28, 1), 10))
  stages = [int(nets.schedule(step)['stage']) for step in range(smoke.train.steps)]
  assert stages[0] == 0 and stages[-1] == 2 and 'sample_quality' not in smoke.evals
  # 32x32 with four stages: 4, 8, 16, 32.
  cifar = ml_collections.ConfigDict(dict(arch='pggan', channels=(16, 16, 8, 8)))
  assert gan_nets.build(cifar, image_info((32, 32, 3))).generator.base_hw == (4, 4)


@pytest.mark.parametrize('change, info, match', [
    ({}, image_info((2,), kind='vector'), 'images'),
    ({'channels': (8, 8, 8, 8)}, image_info((28, 28, 1)), 'divisible by 2'),
    ({'channels': ()}, image_info((28, 28, 1)), 'channels'),
    ({'channels': (8, 0)}, image_info((28, 28, 1)), 'channels'),
    ({'stage_steps': 0}, image_info((28, 28, 1)), 'stage_steps'),
    ({'latent_dim': -1}, image_info((28, 28, 1)), 'latent_dim'),
    ({'mbstd_group': -2}, image_info((28, 28, 1)), 'mbstd_group'),
    ({'num_classes': 10}, image_info((28, 28, 1)), 'no labels'),
])
def test_bad_config_values_raise_config_error(change, info, match):
  config = ml_collections.ConfigDict(dict(arch='pggan', channels=(8, 8, 8)))
  config.update(change)
  with pytest.raises(ConfigError, match=match):
    gan_nets.build(config, info)
