"""StyleGAN2 networks (jaxgen/models/gan_stylegan2.py) and their configs: demodulation keeps unit
variance, truncation and style mixing do what they say, shapes for base resolutions 4 and 7,
conditioning, sharded jit, config errors, and the CIFAR-10 config's parameter counts equal the
official networks' (derived layer by layer below).

XLA:CPU compile time dominates: the tests share a few tiny networks initialised once, jit each
computation once, and draw their inputs with numpy (every new jax.random shape is a compile)."""

import functools
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxgen.core.config import load_config_file
from jaxgen.data.pipeline import DataInfo
from jaxgen.errors import ConfigError
from jaxgen.models import gan_nets
from jaxgen.models import gan_stylegan2 as sg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATENT = 8


def _info(shape, num_classes=None, name='toy', kind='image'):
  return DataInfo(name=name, kind=kind, shape=tuple(shape), levels=256, num_classes=num_classes,
                  num_examples={'train': 100}, dequantized=False)


def _config(**overrides):
  """A tiny StyleGAN2 (8 channels, latent 8)."""
  c = ml_collections.ConfigDict(dict(arch='stylegan2', latent_dim=LATENT, w_dim=8, mapping_layers=2, channel_base=64,
                                     channel_max=8, num_classes=0, style_mixing=0.9, mbstd_group=4,
                                     d_architecture='resnet', truncation_psi=1.0, w_avg_beta=0.995))
  c.update(overrides)
  return c


def _normal(seed, shape):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _count(tree) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))


def _init_g(generator, z, label=None):
  return generator.init({'params': jax.random.key(0), 'noise': jax.random.key(1)}, z, label, train=False)


@functools.lru_cache(maxsize=None)
def _tiny(shape=(8, 8, 3), num_classes=0):
  """(nets, generator variables, discriminator variables) of a tiny config, initialised once."""
  nets = sg.build(_config(num_classes=num_classes), _info(shape, num_classes=num_classes or None))
  label = jnp.arange(4) % num_classes if num_classes else None

  @jax.jit
  def init():
    return (_init_g(nets.generator, jnp.zeros((4, LATENT)), label),
            nets.discriminator.init(jax.random.key(2), jnp.zeros((4,) + shape), label))
  return (nets,) + init()


def _train_forward(nets):
  """(g_vars, d_vars, z, noise key) -> (images, new batch_stats, logits) with train=True."""
  def step(g_vars, d_vars, z, key):
    x, state = nets.generator.apply(g_vars, z, train=True, mutable=['batch_stats'], rngs={'noise': key})
    return x, state, nets.discriminator.apply(d_vars, x)
  return step


@functools.lru_cache(maxsize=None)
def _base4_forward():
  """The tiny 8x8x3 networks' train forward on a batch of 8, jitted on one device."""
  nets, g_vars, d_vars = _tiny()
  return jax.jit(_train_forward(nets))(g_vars, d_vars, _normal(0, (8, LATENT)), jax.random.key(3))


def test_modulated_conv_with_demodulation_keeps_unit_variance():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((8, 24, 24, 32)), jnp.float32)
  styles = jnp.asarray(rng.uniform(0.2, 3.0, (8, 32)), jnp.float32)
  weight = jnp.asarray(rng.standard_normal((3, 3, 32, 16)), jnp.float32)

  @jax.jit
  def run(x, styles, weight):
    y = sg.modulated_conv2d(x, weight, styles, demodulate=True, padding='VALID')
    # Without demodulation (equalized-lr scaling 1/sqrt(fan_in) only) the variance is E[s^2] ~ 3.4.
    y_plain = sg.modulated_conv2d(x, weight / math.sqrt(9 * 32), styles, demodulate=False, padding='VALID')
    # Reference: convolve each example with its own kernel w * s / ||w * s|| (the "fused" form).
    w_b = weight[None] * styles[:, None, None, :, None]
    w_b = w_b * jax.lax.rsqrt(jnp.sum(w_b ** 2, axis=(1, 2, 3), keepdims=True) + 1e-8)
    fused = jnp.stack([sg._conv(x[b:b + 1], w_b[b], 'VALID')[0] for b in range(2)])
    return y, y_plain, fused

  y, y_plain, fused = run(x, styles, weight)
  np.testing.assert_allclose(np.var(np.asarray(y), axis=(0, 1, 2)), 1.0, atol=0.1)
  assert np.all(np.var(np.asarray(y_plain), axis=(0, 1, 2)) > 2.0)
  np.testing.assert_allclose(y[:2], fused, rtol=1e-4, atol=1e-4)


def test_resampling_keeps_constants_and_interpolates_linearly():
  ramp = np.broadcast_to(np.arange(6, dtype=np.float32)[None, :, None, None], (1, 6, 6, 1))
  up, const, down = jax.jit(lambda r: (sg.upsample2x(r), sg.upsample2x(jnp.full((1, 3, 3, 2), 0.7)),
                                       sg.downsample2x(r)))(ramp)
  np.testing.assert_allclose(np.asarray(up)[0, 1:-1, 0, 0], np.arange(12)[1:-1] / 2 - 0.25)  # at (i + 0.5) / 2 - 0.5
  np.testing.assert_array_equal(const, np.full((1, 6, 6, 2), 0.7, np.float32))
  np.testing.assert_allclose(down[0, :, 0, 0], [0.5, 2.5, 4.5])


def test_w_avg_update_and_truncation_trick():
  nets, variables, _ = _tiny()
  g = nets.generator
  z, z2 = _normal(1, (4, LATENT)), _normal(2, (4, LATENT))
  np.testing.assert_array_equal(variables['batch_stats']['w_avg'], jnp.zeros(8))
  w_avg = jnp.linspace(-1.0, 1.0, 8)
  averaged = {**variables, 'batch_stats': {'w_avg': w_avg}}
  noise = {'noise': jax.random.key(4)}

  @jax.jit
  def run(variables, averaged):
    out = {}
    _, out['state'] = g.apply(variables, z, train=True, mutable=['batch_stats'], rngs={'noise': jax.random.key(3)})
    out['w'] = g.apply(variables, z, train=False, method='mapping')[:, 0]
    ws, ws2 = (g.apply(averaged, zz, train=False, method='mapping') for zz in (z, z2))
    synthesis = lambda w, mode='random': g.apply(averaged, w, train=False, noise_mode=mode, method='synthesis',  # noqa
                                                 rngs=noise)
    out['t0'], t0_2 = (g.apply(averaged, w, 0.0, method='truncate') for w in (ws, ws2))
    out['img0'], out['img0_2'], out['still'] = synthesis(out['t0']), synthesis(t0_2), synthesis(out['t0'], 'none')
    out['plain'] = synthesis(ws)
    out['psi1'], out['psi_half'] = (g.apply(averaged, z, train=False, truncation_psi=psi, rngs=noise)
                                    for psi in (1.0, 0.5))
    out['half_ref'] = synthesis(w_avg[None, None, :] + 0.5 * (ws - w_avg[None, None, :]))
    return out

  out = run(variables, averaged)
  # A train step moves w_avg from 0 by (1 - beta) * mean(w), w from the unmixed first z (style mixing on).
  np.testing.assert_allclose(out['state']['batch_stats']['w_avg'], (1 - 0.995) * out['w'].mean(axis=0),
                             rtol=1e-5, atol=1e-7)
  # psi = 0: every z gives w_avg, so the same image (with fixed noise: the same noise key; without noise).
  np.testing.assert_allclose(out['t0'], jnp.broadcast_to(w_avg, out['t0'].shape), atol=1e-7)
  np.testing.assert_allclose(out['img0'], out['img0_2'], rtol=1e-6, atol=1e-6)
  still = np.asarray(out['still'])
  np.testing.assert_allclose(still, np.broadcast_to(still[:1], still.shape), rtol=1e-6, atol=1e-6)
  # __call__ = synthesis(truncate(mapping)): psi = 1 is exactly the identity; psi = 0.5 halves the
  # distance to w_avg.
  np.testing.assert_array_equal(out['psi1'], out['plain'])
  np.testing.assert_allclose(out['psi_half'], out['half_ref'], rtol=1e-5, atol=1e-5)


def test_style_mixing_probability_zero_is_no_mixing_and_one_switches_to_a_second_w_at_a_crossover():
  nets, variables, _ = _tiny()
  z = _normal(3, (16, LATENT))
  info = _info((8, 8, 3))
  g0, g1 = sg.build(_config(style_mixing=0.0), info).generator, sg.build(_config(style_mixing=1.0), info).generator

  @jax.jit
  def run(variables):
    mapped = [g.apply(variables, z, train=True, method='mapping', rngs={'noise': jax.random.key(1)},
                      mutable=['batch_stats'])[0] for g in (g0, g1)]
    return nets.generator.apply(variables, z, train=False, method='mapping'), *mapped

  plain, unmixed, mixed = run(variables)
  np.testing.assert_array_equal(unmixed, plain)
  mixed, num_ws = np.asarray(mixed), g1.num_ws
  assert mixed.shape == (16, num_ws, 8) and num_ws == 4
  cutoffs = set()
  for b in range(16):
    same = np.all(mixed[b] == np.asarray(plain[b]), axis=-1)
    cutoff = int(np.argmin(same))              # the first style taken from the second z
    assert 1 <= cutoff < num_ws and same[:cutoff].all() and not same[cutoff:].any()
    np.testing.assert_array_equal(mixed[b, cutoff:], np.broadcast_to(mixed[b, cutoff], (num_ws - cutoff, 8)))
    cutoffs.add(cutoff)
  assert len(cutoffs) > 1  # drawn per example


def test_shapes_and_ranges_for_base_4_and_base_7():
  nets = gan_nets.build(_config(), _info((8, 8, 3)))
  assert nets.latent_shape == (LATENT,) and nets.sample_kwargs == {'truncation_psi': 1.0} and nets.image_range
  img, state, logits = _base4_forward()
  assert nets.generator.num_ws == 4 and img.shape == (8, 8, 8, 3) and img.dtype == jnp.float32
  # Linear toRGB outputs summed over the blocks: finite, varying, of order one at initialisation.
  assert np.all(np.isfinite(img)) and 0.05 < float(jnp.std(img)) < 10.0
  assert logits.shape == (8,) and logits.dtype == jnp.float32 and np.all(np.isfinite(logits))
  # Base 7 (28 = 7 * 2^2: 3 blocks, 6 styles), shapes only (the computation is base 4's).
  nets7 = gan_nets.build(_config(), _info((28, 28, 1)))
  assert (nets7.generator.base, nets7.generator.num_blocks, nets7.generator.num_ws) == (7, 3, 6)
  z = jax.ShapeDtypeStruct((4, LATENT), jnp.float32)
  g_vars = jax.eval_shape(lambda z: _init_g(nets7.generator, z), z)
  img7 = jax.eval_shape(lambda v, z: nets7.generator.apply(v, z, train=False, rngs={'noise': jax.random.key(0)}),
                        g_vars, z)
  d_vars = jax.eval_shape(lambda x: nets7.discriminator.init(jax.random.key(0), x), img7)
  logits7 = jax.eval_shape(nets7.discriminator.apply, d_vars, img7)
  assert (img7.shape, img7.dtype, logits7.shape, logits7.dtype) == ((4, 28, 28, 1), jnp.float32, (4,), jnp.float32)
  assert g_vars['params']['synthesis_network']['const'].value.shape == (7, 7, 8)
  assert d_vars['params']['b7_fc']['weight'].value.shape == (7 * 7 * 8, 8)
  # PacGAN packing: the discriminator takes the channel count it is given.
  packed = jax.ShapeDtypeStruct((2, 8, 8, 6), jnp.float32)
  d_packed = jax.eval_shape(lambda x: nets.discriminator.init(jax.random.key(0), x), packed)
  assert d_packed['params']['b8']['fromrgb']['weight'].value.shape == (1, 1, 6, 8)
  assert jax.eval_shape(nets.discriminator.apply, d_packed, packed).shape == (2,)


def test_tanh_output_is_tanh_of_the_linear_output_with_the_same_parameters():
  nets, g_vars, _ = _tiny()
  tanh_nets = sg.build(_config(output_activation='tanh'), _info((8, 8, 3)))
  z, key = _normal(1, (4, LATENT)), jax.random.key(4)

  @jax.jit
  def both(g_vars):
    sample = lambda g: g.apply(g_vars, z, train=False, rngs={'noise': key})  # noqa: E731
    return sample(nets.generator), sample(tanh_nets.generator)
  linear, bounded = both(g_vars)
  assert float(jnp.max(jnp.abs(linear))) > 1.0   # the official linear output leaves [-1, 1] at initialisation
  np.testing.assert_allclose(bounded, jnp.tanh(linear), rtol=1e-5, atol=1e-6)


def test_conditional_generator_and_discriminator_depend_on_the_label():
  nets, g_vars, d_vars = _tiny(num_classes=10)
  z = jnp.broadcast_to(_normal(4, (1, LATENT)), (4, LATENT))
  labels_a, labels_b = jnp.array([0, 1, 2, 3]), jnp.array([4, 5, 6, 7])

  @jax.jit
  def run(g_vars, d_vars):
    img_a, img_b = (nets.generator.apply(g_vars, z, labels, train=False, noise_mode='none')
                    for labels in (labels_a, labels_b))
    return img_a, img_b, nets.discriminator.apply(d_vars, img_a, labels_a), nets.discriminator.apply(d_vars, img_a,
                                                                                                      labels_b)

  img_a, img_b, logits_a, logits_b = run(g_vars, d_vars)
  assert not np.allclose(img_a[0], img_a[1]) and not np.allclose(img_a, img_b)  # same z, other classes
  assert logits_a.shape == (4,) and not np.allclose(logits_a, logits_b)       # same images, other classes
  with pytest.raises(ValueError, match='conditional'):
    jax.eval_shape(nets.discriminator.apply, d_vars, img_a)


def test_nets_under_jit_with_the_batch_sharded_over_devices_match_one_device():
  assert len(jax.devices()) == 8
  nets, g_vars, d_vars = _tiny()
  mesh = Mesh(np.array(jax.devices()), ('data',))
  batch, replicated = NamedSharding(mesh, PartitionSpec('data')), NamedSharding(mesh, PartitionSpec())
  sharded = jax.jit(_train_forward(nets), in_shardings=(replicated, replicated, batch, replicated))
  x_s, state_s, logits_s = sharded(g_vars, d_vars, jax.device_put(_normal(0, (8, LATENT)), batch), jax.random.key(3))
  assert x_s.sharding.spec[0] == 'data'
  x_1, state_1, logits_1 = _base4_forward()
  np.testing.assert_allclose(x_s, x_1, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(logits_s, logits_1, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(state_s['batch_stats']['w_avg'], state_1['batch_stats']['w_avg'], rtol=1e-5, atol=1e-7)


def test_gradients_the_regularisers_need_are_finite():
  """R1 differentiates ||grad_x D(x)||^2 in D's parameters, the path-length penalty
  ||J_w^T y||^2 (J the Jacobian of synthesis in ws) in G's: both second order."""
  nets, g_vars, d_vars = _tiny()
  x, y = _normal(5, (4, 8, 8, 3)), _normal(6, (4, 8, 8, 3))

  @jax.jit
  def grads(g_vars, d_vars):
    def r1(d_params):
      grad_x = jax.grad(lambda xx: jnp.sum(nets.discriminator.apply({'params': d_params}, xx)))(x)
      return jnp.sum(grad_x ** 2)

    def path_length(g_params):
      v = {**g_vars, 'params': g_params}
      ws = nets.generator.apply(v, _normal(7, (4, LATENT)), train=False, method='mapping')
      synth = lambda w: nets.generator.apply(v, w, train=False, method='synthesis',  # noqa: E731
                                             rngs={'noise': jax.random.key(0)})
      _, vjp = jax.vjp(synth, ws)
      return jnp.sum(vjp(y)[0] ** 2)

    return jax.grad(r1)(d_vars['params']), jax.grad(path_length)(g_vars['params'])

  for tree in grads(g_vars, d_vars):
    leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]
    assert all(np.all(np.isfinite(leaf)) for leaf in leaves) and any(np.any(leaf != 0) for leaf in leaves)


def test_build_rejects_what_stylegan2_cannot_model():
  for shape in ((30, 30, 3), (12, 12, 3), (7, 7, 1), (4, 4, 3), (32, 16, 3)):
    with pytest.raises(ConfigError, match='square images'):
      sg.build(_config(), _info(shape))
  with pytest.raises(ConfigError, match='image data'):
    sg.build(_config(), _info((2,), kind='vector'))
  for key, value, match in (('d_architecture', 'skip', 'd_architecture'), ('style_mixing', 1.5, 'style_mixing'),
                            ('latent_dim', 0, 'latent_dim'), ('w_avg_beta', 1.0, 'w_avg_beta'),
                            ('channel_base', 16, 'channel_base'), ('num_classes', 10, 'no labels'),
                            ('output_activation', 'sigmoid', 'output_activation')):
    with pytest.raises(ConfigError, match=match):
      sg.build(_config(**{key: value}), _info((32, 32, 3)))


# The official networks of stylegan2-ada-pytorch `--cfg=cifar` (training/networks.py; fmaps 1:
# channel_base 32768, channel_max 512, so min(32768 // r, 512) = 512 channels at r = 4, 8, 16, 32;
# z_dim = w_dim = 512, 2 mapping layers; 32x32x3 images; conditional: c_dim = 10). Weights and biases:
#
# Generator (num_ws = 8; buffers w_avg and noise_const are not parameters):
#   mapping   embed FC 10 -> 512 (cond only)              10*512 + 512              =      5,632
#             fc0 (512 [+ 512 embed]) -> 512         uncond 262,656 | cond 1024*512 + 512 = 524,800
#             fc1 512 -> 512                               512*512 + 512             =    262,656
#   synthesis SynthesisLayer 512 -> 512 (3x3): affine 512*512 + 512 = 262,656, weight 512*512*9 =
#             2,359,296, noise_strength 1, bias 512                                   =  2,622,465
#             ToRGB 512 -> 3 (1x1): affine 262,656, weight 512*3 = 1,536, bias 3        =    264,195
#             b4: const 512*4*4 = 8,192 + conv1 + torgb                               =  2,894,852
#             b8, b16, b32: conv0 + conv1 + torgb = 2 * 2,622,465 + 264,195           =  5,509,125 each
#             synthesis total 2,894,852 + 3 * 5,509,125                               = 19,422,227
#   G total   uncond 19,422,227 + 2 * 262,656 = 19,947,539 | cond 19,422,227 + 5,632 + 524,800 + 262,656 = 20,215,315
#
# Discriminator ('orig': no skip convs; mbstd group 32, 1 channel):
#   b32       fromrgb 1x1 3 -> 512: 3*512 + 512 = 2,048; conv0, conv1 3x3 512 -> 512: 2,359,808 each = 4,721,664
#   b16, b8   conv0 + conv1                                                           =  4,719,616 each
#   b4        conv 3x3 513 -> 512: 513*512*9 + 512 = 2,364,416; fc 8192 -> 512: 8192*512 + 512 = 4,194,816;
#             out 512 -> 1: 513 (uncond) | 512 -> cmap_dim 512: 262,656 (cond)
#   mapping   (cond) embed FC 10 -> 512: 5,632; 8 layers 512 -> 512: 8 * 262,656 = 2,101,248 -> 2,106,880
#   D total   uncond 4,721,664 + 2 * 4,719,616 + 2,364,416 + 4,194,816 + 513              = 20,720,641
#             cond   4,721,664 + 2 * 4,719,616 + 2,364,416 + 4,194,816 + 262,656 + 2,106,880 = 23,089,664
OFFICIAL_CIFAR_COUNTS = {'': (20_215_315, 23_089_664), 'uncond': (19_947_539, 20_720_641)}


@pytest.mark.parametrize('arg', ['', 'uncond'])
def test_cifar10_config_is_the_papers_and_its_parameter_counts_equal_the_official(arg):
  path = os.path.join(ROOT, 'configs', 'gan', 'stylegan2_ada_cifar10.py')
  config = load_config_file(path + (f':{arg}' if arg else ''))
  m, method, train = config.model, config.method, config.train
  assert (config.data.name, train.batch_size, m.mapping_layers, m.mbstd_group, m.d_architecture) == \
      ('cifar10', 64, 2, 32, 'orig')
  assert (m.channel_base, m.channel_max, m.latent_dim, m.w_dim, m.style_mixing) == (32768, 512, 512, 512, 0.0)
  assert m.get('output_activation', 'linear') == 'linear'   # the official generator's output
  assert (method.r1_gamma, method.r1_every, method.pl_weight, method.ada_target, method.ada_kimg,
          method.ada_interval, method.augment) == (0.01, 16, 0.0, 0.6, 500, 4, 'bgc')
  assert train.steps * train.batch_size == 100_000_000                        # 100,000 kimg
  np.testing.assert_allclose(0.5 ** (train.batch_size / (1000 * 500)), train.ema_decay)  # ema_kimg 500
  for optim in (config.optim, config.optim_d):
    assert (optim.name, optim.lr, optim.b1, optim.b2, optim.eps) == ('adam', 0.0025, 0.0, 0.99, 1e-8)
  info = _info((32, 32, 3), num_classes=10, name='cifar10')
  nets = gan_nets.build(m, info)
  label = jnp.zeros((4,), jnp.int32) if m.num_classes else None
  g_vars = jax.eval_shape(lambda: _init_g(nets.generator, jnp.zeros((4, 512)), label))
  d_vars = jax.eval_shape(lambda: nets.discriminator.init(jax.random.key(0), jnp.zeros((4, 32, 32, 3)), label))
  assert set(g_vars) == {'params', 'batch_stats'} and set(d_vars) == {'params'}
  assert (_count(g_vars['params']), _count(d_vars['params'])) == OFFICIAL_CIFAR_COUNTS[arg]
  assert jax.tree_util.tree_map(lambda a: a.shape, g_vars['batch_stats']) == {'w_avg': (512,)}


def test_mnist5k_configs():
  path = os.path.join(ROOT, 'configs', 'gan', 'stylegan2_ada_mnist5k.py')
  full, smoke, noada = (load_config_file(path + suffix) for suffix in ('', ':smoke', ':noada'))
  assert full.data.name == smoke.data.name == 'mnist5k'
  assert full.evals.sample_quality.features == 'classifier' and full.evals.samples.num > 0
  assert full.method.ada_target == 0.6 and noada.method.ada_target == 0.0
  assert full.model.output_activation == 'tanh'   # see the config: the linear output mode-collapsed on MNIST
  assert load_config_file(path + ':smoke,noada').method.ada_target == 0.0
  np.testing.assert_allclose(full.method.r1_gamma, 0.0002 * 28 ** 2 / full.train.batch_size)
  assert full.train.ema_decay == 0.5 ** (full.train.batch_size / (full.train.batch_size * 10 / 32 * 1000))
  assert smoke.train.steps <= 4 and smoke.train.batch_size == 8 and 'sample_quality' not in smoke.evals
  nets = gan_nets.build(smoke.model, _info((28, 28, 1), num_classes=10, name='mnist5k'))
  assert (nets.generator.base, nets.generator.num_blocks) == (7, 3)
  assert [sg.channels_at(r, full.model.channel_base, full.model.channel_max) for r in (7, 14, 28)] == [64, 64, 32]
  limited = load_config_file(path + ':subset10,noada')
  assert limited.data.max_train_examples == 450 and limited.method.ada_target == 0.0
  assert full.data.max_train_examples == 0
  with pytest.raises(ConfigError, match='arguments'):
    load_config_file(path + ':subset20')
