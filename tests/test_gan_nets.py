"""The convolutional GAN networks: DCGAN (jaxgen.models.gan_dcgan), SNGAN (gan_sngan) and pix2pix (pix2pix).

Spectral normalisation against jnp.linalg.svd; shapes and ranges of every generator/discriminator pair at
every supported image size, PacGAN-packed inputs; BatchNorm's batch coupling in train mode only, its
running-average update, and its global statistics under a batch sharded over 8 devices; conditioning;
pix2pix's U-Net and the PatchGAN's 70x70 receptive field (by the gradient's support); the parameter
counts of the paper configurations (DCGAN 64x64 via configs/gan/dcgan_celeba64.py, pix2pix's 256x256
U-Net and 70x70 PatchGAN), written out layer by layer.

Compile time dominates on CPU and a real `init` compiles the random draw of every kernel, so most
networks here are only traced for their variable shapes (jax.eval_shape) and filled with numpy
values (`materialise`); only the spectral-norm modules and the initialisers are drawn for real.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxgen.data.pipeline import DataInfo
from jaxgen.errors import ConfigError
from jaxgen.models import gan_dcgan, gan_nets, gan_sngan, pix2pix
from tests.test_train import config_file

LATENT = 8


def info(size, channels, classes=10, name='toy'):
  return DataInfo(name=name, kind='image', shape=(size, size, channels), levels=256, num_classes=classes,
                  num_examples={'train': 100}, dequantized=False)


def count(tree):
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def materialise(abstract, seed=0):
  """Concrete variables for the abstract (eval_shape) ones: kernels N(0, 1/fan_in), biases N(0, 0.1^2),
  BN scales 1 + N(0, 0.1^2) and running var in [1, 1.5), spectral-norm u unit vectors and sigma 1."""
  rng = np.random.default_rng(seed)

  def leaf(path, s):
    name = path[-1].key
    if name == 'var':
      value = 1 + 0.5 * rng.random(s.shape)
    elif name == 'sigma':
      value = np.ones(s.shape)
    elif name == 'u':
      value = rng.standard_normal(s.shape)
      value /= np.linalg.norm(value)
    elif name == 'scale':
      value = 1 + 0.1 * rng.standard_normal(s.shape)
    elif len(s.shape) >= 2:
      value = rng.standard_normal(s.shape) / math.sqrt(math.prod(s.shape[:-1]))
    else:
      value = 0.1 * rng.standard_normal(s.shape)
    return jnp.asarray(value, jnp.float32)

  return jax.tree_util.tree_map_with_path(leaf, nn.unbox(abstract))


def normal(seed, *shape):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def uniform(seed, *shape):
  """U(-1, 1): images in the model range."""
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def abstract_vars(module, *args, **kwargs):
  rngs = {'params': jax.random.PRNGKey(0), 'dropout': jax.random.PRNGKey(1)}
  return jax.eval_shape(lambda: module.init(rngs, *args, **kwargs))


def assert_float32_with_logical_axes(params):
  """Every parameter is float32 and carries one logical axis name per dimension (for the mesh rules)."""
  leaves = jax.tree.leaves(nn.unbox(params))
  boxes = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  assert {leaf.dtype for leaf in leaves} == {jnp.dtype(jnp.float32)}
  assert len(boxes) == len(leaves) and all(len(b.names) == b.value.ndim for b in boxes)


def build(arch, size, channels, classes=0, **model):
  defaults = {'dcgan': dict(width=4), 'sngan_cnn': dict(width=16), 'sngan_resnet': dict(width=8)}[arch]
  config = ml_collections.ConfigDict(dict(arch=arch, latent_dim=LATENT, num_classes=classes, **{**defaults, **model}))
  return gan_nets.build(config, info(size, channels))


# ----------------------------------------------------------------------------- spectral normalisation

@pytest.mark.parametrize('layer', ['dense', 'conv'])
def test_power_iteration_converges_to_the_largest_singular_value_and_normalises_it_to_one(layer):
  rng = np.random.default_rng(0)
  if layer == 'dense':
    module = gan_sngan.SNDense(5, use_bias=False)
    basis = np.eye(12, dtype=np.float32)                     # rows of W: x = e_i
    kernel = rng.standard_normal((12, 5))
  else:
    module = gan_sngan.SNConv(5, kernel_size=3, padding='VALID', use_bias=False)
    basis = np.eye(36, dtype=np.float32).reshape(36, 3, 3, 4)   # a one-hot 3x3x4 patch picks a row of W [36, 5]
    kernel = rng.standard_normal((3, 3, 4, 5))
  variables = nn.unbox(jax.jit(lambda x: module.init(jax.random.PRNGKey(0), x, update_stats=False))(basis))
  assert variables['batch_stats']['u'].shape == (5,) and variables['params']['kernel'].shape == kernel.shape
  variables = {'params': {'kernel': jnp.asarray(kernel, jnp.float32)}, 'batch_stats': variables['batch_stats']}
  singular_values = np.asarray(jnp.linalg.svd(jnp.asarray(kernel.reshape(-1, 5)), compute_uv=False))
  assert singular_values[1] < 0.95 * singular_values[0]     # a spectral gap: power iteration converges

  @jax.jit
  def update(variables):
    _, state = module.apply(variables, basis, update_stats=True, mutable=['batch_stats'])
    return {'params': variables['params'], **state}

  sigmas = []
  for _ in range(60):
    variables = update(variables)
    sigmas.append(float(variables['batch_stats']['sigma']))
  sigmas = np.array(sigmas)
  # v^T W u <= sigma_max for unit u, v, and power iteration's estimate never decreases.
  assert np.all(sigmas <= singular_values[0] * (1 + 1e-5))
  assert np.all(np.diff(sigmas) >= -1e-5 * singular_values[0])
  np.testing.assert_allclose(sigmas[-1], singular_values[0], rtol=1e-3)
  # The layer computes with W / sigma: its matrix has spectral norm 1. Evaluation (update_stats=False)
  # leaves the stored u and sigma alone.
  out, state = module.apply(variables, basis, update_stats=False, mutable=['batch_stats'])
  normalised = np.asarray(out).reshape(-1, 5)
  np.testing.assert_allclose(np.linalg.svd(normalised, compute_uv=False)[0], 1.0, rtol=1e-3)
  np.testing.assert_allclose(normalised * sigmas[-1], kernel.reshape(-1, 5), rtol=1e-3, atol=1e-5)
  assert jax.tree.all(jax.tree.map(np.array_equal, state['batch_stats'], variables['batch_stats']))


def test_initialisers_draw_the_papers_distributions():
  @jax.jit
  def draw(key):
    k1, k2, k3 = jax.random.split(key, 3)
    return (gan_dcgan.normal_init(0.02)(k1, (5, 5, 64, 32)), gan_dcgan.normal_init(0.02, mean=1.0)(k2, (4096,)),
            gan_dcgan.glorot_uniform_init(2 ** 0.5)(k3, (3, 3, 32, 64)))

  w, scale, g = jax.tree.map(np.asarray, draw(jax.random.PRNGKey(0)))
  assert abs(w.std() - 0.02) < 0.02 * 0.02 and abs(w.mean()) < 1e-3
  assert abs(scale.mean() - 1) < 2e-3 and abs(scale.std() - 0.02) < 0.02 * 0.05
  # Glorot uniform with chainer's fans (fan_in = 3*3*32, fan_out = 3*3*64) and gain sqrt(2).
  limit = 2 ** 0.5 * math.sqrt(6 / (9 * 32 + 9 * 64))
  assert np.abs(g).max() <= limit and np.abs(g).max() > 0.99 * limit
  np.testing.assert_allclose(g.std(), limit / math.sqrt(3), rtol=0.02)


# ----------------------------------------------------------------------------- shapes, ranges, packing

CASES = [('dcgan', 64, 3), ('dcgan', 32, 3), ('dcgan', 28, 1), ('sngan_cnn', 32, 3), ('sngan_cnn', 28, 1),
         ('sngan_resnet', 32, 3), ('sngan_resnet', 28, 1)]


@pytest.mark.parametrize('arch,size,channels', CASES)
def test_generator_maps_latents_to_images_in_range_and_discriminator_returns_logits(arch, size, channels):
  nets = build(arch, size, channels)
  assert nets.latent_shape == (LATENT,) and nets.image_range
  z = normal(0, 4, LATENT)
  g_abstract = abstract_vars(nets.generator, z, train=True)
  assert_float32_with_logical_axes(g_abstract['params'])
  g_vars = materialise(g_abstract)
  x = jax.jit(lambda v, z: nets.generator.apply(v, z, train=False))(g_vars, z)
  assert x.shape == (4, size, size, channels) and x.dtype == jnp.float32
  x = np.asarray(x)
  assert np.all(np.isfinite(x)) and np.all(np.abs(x) <= 1) and not np.allclose(x[0], x[1])   # z changes the image
  for pack in (1, 2):   # PacGAN: pack examples concatenated on channels, [B / pack, H, W, pack * C]
    packed = x.reshape(4 // pack, pack, size, size, channels).transpose(0, 2, 3, 1, 4).reshape(
        4 // pack, size, size, pack * channels)
    logits, d_vars = jax.eval_shape(lambda: nets.discriminator.init_with_output(
        jax.random.PRNGKey(0), packed, train=True))
    assert logits.shape == (4 // pack,) and logits.dtype == jnp.float32
    assert_float32_with_logical_axes(d_vars['params'])
    kernels = [k for k in jax.tree.leaves(nn.unbox(d_vars['params'])) if k.ndim == 4]
    assert any(k.shape[2] == pack * channels for k in kernels)   # the input width is inferred, not fixed


# ----------------------------------------------------------------------------- BatchNorm

def test_batchnorm_uses_batch_statistics_in_train_mode_only_and_over_the_global_sharded_batch():
  nets = build('dcgan', 28, 1)
  x = uniform(1, 8, 28, 28, 1)
  d_vars = materialise(abstract_vars(nets.discriminator, x, train=True))

  @jax.jit
  def logits(v, x):
    train, state = nets.discriminator.apply(v, x, train=True, mutable=['batch_stats'])
    return train, nets.discriminator.apply(v, x, train=False), state

  other = x.copy()
  other[7] = -x[7]                                             # change example 7 only
  train_a, eval_a, state = jax.tree.map(np.asarray, logits(d_vars, x))
  train_b, eval_b, _ = jax.tree.map(np.asarray, logits(d_vars, other))
  assert not np.allclose(train_a[:7], train_b[:7], rtol=1e-4, atol=0)     # batch statistics couple examples
  np.testing.assert_allclose(eval_a[:7], eval_b[:7], rtol=1e-6)           # running averages do not
  assert not np.allclose(eval_a[7], eval_b[7])

  # The same step with the batch sharded over 8 devices: BatchNorm's statistics are the global batch's.
  mesh = jax.make_mesh((8,), ('data',))
  sharded = jax.device_put(x, NamedSharding(mesh, P('data')))
  train_s, eval_s, state_s = jax.tree.map(np.asarray, logits(d_vars, sharded))
  np.testing.assert_allclose(train_s, train_a, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(eval_s, eval_a, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), state_s, state)

  # Running averages: new = 0.9 old + 0.1 batch statistic (biased variance), for G's projection
  # BatchNorm, whose input is z @ K (no bias) with one statistic per unit.
  z = normal(2, 8, LATENT)
  g_vars = materialise(abstract_vars(nets.generator, z, train=True))
  _, g_state = jax.jit(lambda v, z: nets.generator.apply(v, z, train=True, mutable=['batch_stats']))(g_vars, z)
  h = np.asarray(z, np.float64) @ np.asarray(g_vars['params']['project']['kernel'], np.float64)
  old, new = g_vars['batch_stats']['project_bn'], g_state['batch_stats']['project_bn']
  np.testing.assert_allclose(new['mean'], 0.9 * old['mean'] + 0.1 * h.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new['var'], 0.9 * old['var'] + 0.1 * h.var(0), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- conditioning

@pytest.mark.parametrize('arch', ['dcgan', 'sngan_cnn', 'sngan_resnet'])
def test_conditional_nets_depend_on_the_label_unconditional_ones_ignore_it(arch):
  # Each net sees the batch twice, with labels y and then y2 (eval mode: examples are independent).
  # 8x8 images (base 4, one up/down-sampling stage) keep the compile short.
  z, x = normal(0, 4, LATENT), uniform(1, 4, 8, 8, 1)
  y, y2 = np.array([0, 1, 2, 3], np.int32), np.array([5, 1, 7, 3], np.int32)   # examples 1, 3 keep their label
  z2, x2, labels = np.concatenate([z, z]), np.concatenate([x, x]), np.concatenate([y, y2])
  nets = {'cond': build(arch, 8, 1, classes=10), 'uncond': build(arch, 8, 1, classes=0)}
  v = {(kind, net): materialise(abstract_vars(getattr(nets[kind], net), inp, y, train=True), seed=3)
       for kind in nets for net, inp in (('generator', z), ('discriminator', x))}

  @jax.jit
  def run(v):
    return {(kind, net): getattr(nets[kind], net).apply(v[kind, net], inp, labels, train=False)
            for kind in nets for net, inp in (('generator', z2), ('discriminator', x2))}

  for (kind, net), out in run(v).items():
    out_y, out_y2 = np.asarray(out[:4]), np.asarray(out[4:])
    if kind == 'uncond':   # equal up to float rounding (the same example at another batch position)
      np.testing.assert_allclose(out_y, out_y2, rtol=1e-6, atol=1e-7)
      continue
    assert not np.allclose(out_y[[0, 2]], out_y2[[0, 2]], rtol=1e-4, atol=0), (kind, net)
    np.testing.assert_allclose(out_y[[1, 3]], out_y2[[1, 3]], rtol=1e-6, atol=1e-7)   # a label acts on its example
  assert 'label_projection' in v['cond', 'discriminator']['params']
  assert 'label_projection' not in v['uncond', 'discriminator']['params']


# ----------------------------------------------------------------------------- pix2pix

def test_unet_generator_maps_source_to_target_with_dropout_as_its_noise():
  unet = pix2pix.UNetGenerator(out_channels=3, depth=2, width=4)
  source = uniform(0, 2, 28, 28, 1)
  variables = materialise(abstract_vars(unet, source, train=True))
  assert [k for k in variables['params'] if k.startswith(('down', 'up', 'to'))] == [
      'down_0', 'down_1', 'to_image', 'up_0', 'up_0_bn']       # 28 -> 14 -> 7 -> 14 (+ skip) -> 28
  assert variables['params']['to_image']['kernel'].shape == (4, 4, 8, 3)   # 4 up + 4 skip channels

  @jax.jit
  def run(v, key_a, key_b):
    apply = lambda key, dropout: unet.apply(v, source, train=True, dropout=dropout, rngs={'dropout': key},
                                            mutable=['batch_stats'])[0]
    return apply(key_a, True), apply(key_b, True), apply(key_a, False), apply(key_b, False)

  noisy_a, noisy_b, clean_a, clean_b = run(variables, jax.random.PRNGKey(1), jax.random.PRNGKey(2))
  assert noisy_a.shape == (2, 28, 28, 3) and np.all(np.abs(np.asarray(noisy_a)) <= 1)
  assert not np.allclose(noisy_a, noisy_b)                    # dropout (the 'dropout' rng) is the noise source
  np.testing.assert_array_equal(clean_a, clean_b)
  with pytest.raises(ConfigError, match='depth=3'):
    abstract_vars(pix2pix.UNetGenerator(out_channels=3, depth=3, width=4), source, train=True)


def test_patchgan_receptive_field_is_70x70():
  assert [pix2pix.receptive_field(n) for n in (1, 2, 3, 4)] == [16, 34, 70, 142]   # the official code's table
  disc = pix2pix.PatchDiscriminator(num_layers=3, width=2)
  source, target = uniform(0, 1, 96, 96, 1), uniform(1, 1, 96, 96, 1)
  variables = materialise(abstract_vars(disc, source, target, train=True))
  logits = jax.eval_shape(lambda v: disc.apply(v, source, target, train=False), variables)
  assert logits.shape == (1, 10, 10) and logits.dtype == jnp.float32   # 96 -> 48 -> 24 -> 12 -> 11 -> 10
  # The gradient of one output (eval mode: no batch statistics mixing positions) w.r.t. the input is
  # non-zero exactly on a 70x70 window, rows and columns 8p - 23 ... 8p + 46 for output p = 5.
  grad = jax.jit(jax.grad(lambda s, t: disc.apply(variables, s, t, train=False)[0, 5, 5], argnums=(0, 1)))(
      source, target)
  support = np.any(np.asarray(grad[0])[0] != 0, axis=-1) | np.any(np.asarray(grad[1])[0] != 0, axis=-1)
  expected = np.zeros((96, 96), bool)
  expected[17:87, 17:87] = True
  np.testing.assert_array_equal(support, expected)


def test_pix2pix_paper_networks_parameter_counts():
  """The 256x256 U-Net (depth 8) and 70x70 PatchGAN with 3-channel source and target, traced only.

  U-Net, conv k*k*cin*cout + cout (+ 2 cout BatchNorm):
    down_0 3->64 3,136; down_1 64->128 131,456; down_2 128->256 525,056; down_3 256->512 2,098,688;
    down_4..6 512->512 4,195,840 each; down_7 (no BN) 4,194,816                           19,540,672
    up_6 512->512 4,195,840; up_5..3 1024->512 8,390,144 each; up_2 1024->256 4,195,072;
    up_1 512->128 1,048,960; up_0 256->64 262,336; to_image 128->3 6,147                   34,878,787
  PatchGAN: conv_0 6->64 6,208; conv_1 64->128 131,456; conv_2 128->256 525,056;
    conv_3 (stride 1) 256->512 2,098,688; logit 512->1 8,193                                2,769,601
  (PyTorch's port drops the biases before BatchNorm and prints 54.414M and 2.769M.)
  """
  image = np.zeros((1, 256, 256, 3), np.float32)
  unet = abstract_vars(pix2pix.UNetGenerator(out_channels=3), image, train=True)['params']
  counts = {k: count(v) for k, v in nn.unbox(unet).items()}
  level = lambda prefix, i: counts[f'{prefix}_{i}'] + counts.get(f'{prefix}_{i}_bn', 0)
  assert [level('down', i) for i in range(8)] == [3_136, 131_456, 525_056, 2_098_688] + [4_195_840] * 3 + [
      4_194_816]
  assert [level('up', i) for i in range(7)] == [262_336, 1_048_960, 4_195_072] + [8_390_144] * 3 + [4_195_840]
  assert counts['to_image'] == 6_147 and count(unet) == 19_540_672 + 34_878_787 == 54_419_459
  patch = abstract_vars(pix2pix.PatchDiscriminator(), image, image, train=True)['params']
  assert count(patch) == 6_208 + 131_456 + 525_056 + 2_098_688 + 8_193 == 2_769_601


# ----------------------------------------------------------------------------- the DCGAN paper config

def test_dcgan_celeba64_config_is_the_papers_and_its_parameter_counts():
  config = config_file('gan/dcgan_celeba64.py', None)
  assert (config.method.name, config.method.loss, config.method.n_critic, config.method.pack) == (
      'gan', 'nonsaturating', 1, 1)
  for optim in (config.optim, config.optim_d):
    assert (optim.name, optim.lr, optim.b1, optim.b2, optim.weight_decay) == ('adam', 2e-4, 0.5, 0.999, 0.0)
  assert config.optim_d is not config.optim
  assert (config.model.arch, config.model.latent_dim, config.model.width, config.model.kernel_size,
          config.model.num_classes) == ('dcgan', 100, 128, 5, 0)
  assert (config.data.name, config.data.image_size, config.train.batch_size) == ('celeb_a', 64, 128)
  assert config.train.ema_decay == 0 and 'samples' in config.evals
  with pytest.raises(ConfigError):
    config_file('gan/dcgan_celeba64.py', 'smoke')

  nets = gan_nets.build(config.model, info(64, 3, classes=None, name='celeb_a'))
  g = abstract_vars(nets.generator, np.zeros((2, 100), np.float32), train=True)
  d = abstract_vars(nets.discriminator, np.zeros((2, 64, 64, 3), np.float32), train=True)
  g_counts = {k: count(v) for k, v in nn.unbox(g['params']).items()}
  d_counts = {k: count(v) for k, v in nn.unbox(d['params']).items()}
  # G: Dense 100 -> 4*4*1024 (no bias), BN over its 16,384 outputs (scale + offset), 5x5 transposed convs
  # 1024 -> 512 -> 256 -> 128 -> 3 (k*k*cin*cout, no bias), BN (2 * cout) after all but the last.
  assert g_counts == {'project': 100 * 16_384, 'project_bn': 2 * 16_384,
                      'up_1': 25 * 1024 * 512, 'up_1_bn': 2 * 512, 'up_2': 25 * 512 * 256, 'up_2_bn': 2 * 256,
                      'up_3': 25 * 256 * 128, 'up_3_bn': 2 * 128, 'to_image': 25 * 128 * 3}
  assert count(g['params']) == 1_638_400 + 32_768 + 13_107_200 + 1_024 + 3_276_800 + 512 + 819_200 + 256 + 9_600
  assert count(g['params']) == 18_885_760
  # D: 5x5 stride-2 convs 3 -> 128 -> 256 -> 512 -> 1024 (no bias), BN after all but the first, Dense
  # 4*4*1024 -> 1 (no bias).
  assert d_counts == {'down_0': 25 * 3 * 128, 'down_1': 25 * 128 * 256, 'down_1_bn': 2 * 256,
                      'down_2': 25 * 256 * 512, 'down_2_bn': 2 * 512, 'down_3': 25 * 512 * 1024,
                      'down_3_bn': 2 * 1024, 'logit': 16_384}
  assert count(d['params']) == 9_600 + 819_200 + 512 + 3_276_800 + 1_024 + 13_107_200 + 2_048 + 16_384
  assert count(d['params']) == 17_232_768
  assert_float32_with_logical_axes(g['params'])
  assert_float32_with_logical_axes(d['params'])
  assert set(g['batch_stats']['project_bn']) == {'mean', 'var'}   # BatchNorm statistics are state


def test_dcgan_kernel_size_4_variant_doubles_and_halves_exactly():
  """dcgan.torch's 4x4 kernels (padding 1) give the same sizes as the paper's 5x5 (padding 2)."""
  for kernel_size in (4, 5):
    nets = build('dcgan', 64, 3, width=8, kernel_size=kernel_size)
    z = np.zeros((2, LATENT), np.float32)
    x, g = jax.eval_shape(lambda: nets.generator.init_with_output(jax.random.PRNGKey(0), z, train=True))
    image = np.zeros(x.shape, np.float32)
    logits, d = jax.eval_shape(lambda: nets.discriminator.init_with_output(jax.random.PRNGKey(0), image, train=True))
    assert x.shape == (2, 64, 64, 3) and logits.shape == (2,)
    assert nn.unbox(g['params'])['up_1']['kernel'].shape == (kernel_size, kernel_size, 64, 32)
    assert nn.unbox(d['params'])['logit']['kernel'].shape == (4 * 4 * 64, 1)    # 64 -> 32 -> 16 -> 8 -> 4


# ----------------------------------------------------------------------------- config errors

@pytest.mark.parametrize('model,shape,match', [
    (dict(arch='dcgan', width=0), (28, 28, 1), 'width must be a positive integer'),
    (dict(arch='dcgan', kernel_size=3), (28, 28, 1), 'kernel_size'),
    (dict(arch='dcgan'), (6, 6, 1), 'cannot build a 6x6 image'),
    (dict(arch='dcgan'), (28, 32, 1), 'square images'),
    (dict(arch='sngan_cnn'), (2,), 'square images'),
    (dict(arch='sngan_cnn', width=12), (32, 32, 3), 'divisible by 8'),
    (dict(arch='sngan_resnet', power_iterations=0), (32, 32, 3), 'power_iterations'),
    (dict(arch='sngan_resnet', d_width=-2), (32, 32, 3), 'd_width'),
    (dict(arch='sngan_resnet', num_classes=7), (32, 32, 3), 'has 10 classes'),
])
def test_bad_model_config_values_raise_config_error(model, shape, match):
  data = DataInfo('toy', 'image' if len(shape) == 3 else 'vector', shape, 256, 10, {'train': 1}, False)
  with pytest.raises(ConfigError, match=match):
    gan_nets.build(ml_collections.ConfigDict(model), data)
