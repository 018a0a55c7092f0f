"""The DDPM U-Net (jaxgen.models.unet): the paper's CIFAR-10 parameter count, shapes, zero output at init,
per-example independence, the timestep embedding, conditioning, dropout and bfloat16 compute.

Everything runs on one tiny model (ch 8, two levels, 8x8 images, 3 classes, 2 conditioning channels); the
CIFAR-10 model and the shape checks are only traced (jax.eval_shape: no compile, no real init). The tiny
model is initialised once; properties that its zero-initialised layers would hide are checked with
"perturbed" parameters, the initial ones plus numpy noise on every leaf.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.models.unet import UNet, timestep_embedding

NUM_CLASSES = 3
COND_CHANNELS = 2
TINY = dict(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.1, out_channels=3,
            num_groups=4, num_classes=NUM_CLASSES)
SHAPE = (2, 8, 8, 3)


def count(tree):
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def abstract_params(model, shape, cond_channels=0, label=False):
  """Boxed parameter shapes of `model` for inputs of `shape`, traced only (no compile, no real init)."""
  x = jnp.zeros(shape)
  t = jnp.zeros(shape[:1], jnp.int32)
  cond = jnp.zeros(shape[:3] + (cond_channels,)) if cond_channels else None
  y = jnp.zeros(shape[:1], jnp.int32) if label else None
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, t, y, cond))['params']


def perturb(params, seed=1):
  """params + noise: kernels N(0, 1/fan_in), vectors (biases, GroupNorm scales/offsets) N(0, 0.1^2)."""
  rng = np.random.default_rng(seed)

  def noise(leaf):
    std = 0.1 if leaf.ndim == 1 else 1.0 / math.sqrt(math.prod(leaf.shape[:-1]))
    return leaf + jnp.asarray(std * rng.standard_normal(leaf.shape), leaf.dtype)

  return jax.tree.map(noise, params)


@functools.partial(jax.jit, static_argnames=('model', 'train'))
def forward(model, params, x, t, label, cond, train=False, dropout_rng=None):
  rngs = {'dropout': dropout_rng} if dropout_rng is not None else None
  return model.apply({'params': params}, x, t, label, cond, train=train, rngs=rngs)


@jax.jit
def init_params(key, x, t, cond):
  """The tiny model's real initial parameters."""
  return nn.meta.unbox(UNet(**TINY).init(key, x, t, None, cond)['params'])


@pytest.fixture(scope='module')
def tiny():
  """The tiny model, its initial parameters, their output on the batch, the batch (x, t, label, cond)."""
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.standard_normal(SHAPE), jnp.float32)
  cond = jnp.asarray(rng.standard_normal(SHAPE[:3] + (COND_CHANNELS,)), jnp.float32)
  t = jnp.array([3, 700], jnp.int32)
  label = jnp.array([0, 2], jnp.int32)
  model = UNet(**TINY)
  params = init_params(jax.random.PRNGKey(0), x, t, cond)
  return model, params, forward(model, params, x, t, None, cond), (x, t, label, cond)


def test_cifar10_paper_config_parameter_count():
  model = UNet(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1,
               out_channels=3)
  boxed = abstract_params(model, (1, 32, 32, 3))
  params = nn.meta.unbox(boxed)
  # 35,746,307 (paper: "35.7M"). The same number comes out of a layer-by-layer count of the official
  # diffusion_tf/models/unet.py graph (conv k*k*in*out + out, NIN/dense in*out + out, GroupNorm 2C):
  #   timestep embedding  Dense(128->512) + Dense(512->512)                        328,704
  #   conv_in             3x3, 3 -> 128                                              3,584
  #   down path           levels 0..3: 870,272 + 3,480,320 + 3,215,104 + 2,625,024  10,190,720
  #   middle              ResnetBlock, AttnBlock, ResnetBlock at 256 channels      2,888,704
  #   up path             levels 0..3: 1,789,952 + 7,155,712 + 6,692,608 + 6,692,608 22,330,880
  #   norm_out, conv_out  GroupNorm(128) 256 + 3x3, 128 -> 3 3,459                    3,715
  # e.g. down_0 = 2 ResnetBlocks 128->128 of 2*256 (GN) + 2*147,584 (3x3 convs) + 65,664 (temb_proj);
  # level 1 holds the 16x16 attention blocks (2 down, 3 up) of 256*2 + 4*(256*256 + 256) = 263,680 each.
  per_group = {}
  for name, sub in params.items():
    parts = name.split('_')
    key = '_'.join(parts[:2]) if parts[0] in ('down', 'up') else parts[0]
    per_group[key] = per_group.get(key, 0) + count(sub)
  assert per_group == {'temb': 328_704, 'conv': 3_584 + 3_459, 'norm': 256, 'mid': 2_888_704,
                       'down_0': 870_272, 'down_1': 3_480_320, 'down_2': 3_215_104, 'down_3': 2_625_024,
                       'up_0': 1_789_952, 'up_1': 7_155_712, 'up_2': 6_692_608, 'up_3': 6_692_608}
  assert count(params['down_1_attn_0']) == 263_680
  assert count(params) == 35_746_307
  assert sorted(k for k in params if 'attn' in k) == ['down_1_attn_0', 'down_1_attn_1', 'mid_attn_1',
                                                       'up_1_attn_0', 'up_1_attn_1', 'up_1_attn_2']
  # float32 parameters, every one with logical axes (one name per dimension).
  assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  boxes = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  assert len(boxes) == len(jax.tree.leaves(params))
  assert all(isinstance(b, nn.LogicallyPartitioned) and len(b.names) == b.value.ndim for b in boxes)
  assert boxed['conv_in']['kernel'].names == (None, None, 'conv_in', 'conv_out')
  assert boxed['temb_dense0']['kernel'].names == ('embed', 'mlp')
  assert boxed['mid_attn_1']['q']['kernel'].names == ('conv_in', 'conv_out')


@pytest.mark.parametrize('hw,attn,resample_with_conv', [(8, (4,), True), (28, (14,), True), (28, (14,), False)])
def test_output_shape(hw, attn, resample_with_conv):
  model = UNet(ch=8, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=attn, num_groups=4,
               out_channels=6, resample_with_conv=resample_with_conv)
  x = jnp.zeros((2, hw, hw, 3))
  t = jnp.zeros((2,), jnp.int32)
  out, variables = jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), x, t))
  assert out.shape == (2, hw, hw, 6) and out.dtype == jnp.float32
  # Attention at the second level only (resolution hw / 2) and in the middle.
  assert sorted(k for k in variables['params'] if 'attn' in k) == [
      'down_1_attn_0', 'mid_attn_1', 'up_1_attn_0', 'up_1_attn_1']
  assert any('downsample' in k for k in variables['params']) == resample_with_conv


def test_indivisible_image_size_raises():
  model = UNet(ch=8, ch_mult=(1, 2, 2, 2), num_groups=4)
  with pytest.raises(ValueError, match=r'divisible by 8, got 28x28'):
    abstract_params(model, (1, 28, 28, 3))
  with pytest.raises(ValueError, match='not divisible into'):
    abstract_params(UNet(ch=12, ch_mult=(1,), num_groups=8), (1, 8, 8, 3))


def test_zero_output_at_init_and_not_after_perturbation(tiny):
  model, params, out_at_init, (x, t, label, cond) = tiny
  assert out_at_init.shape == SHAPE
  assert np.all(np.asarray(out_at_init) == 0.0)
  # Zero-initialised: every block's conv2, attention proj_out and conv_out; biases start at 0.
  assert not np.any(np.asarray(params['conv_out']['kernel']))
  assert not np.any(np.asarray(params['down_0_block_0']['conv2']['kernel']))
  assert not np.any(np.asarray(params['mid_attn_1']['proj_out']['kernel']))
  assert np.any(np.asarray(params['down_0_block_0']['conv1']['kernel']))
  out = np.asarray(forward(model, perturb(params), x, t, label, cond))
  assert out.shape == SHAPE and np.all(np.isfinite(out)) and np.mean(np.abs(out)) > 1e-2


def test_examples_are_independent(tiny):
  model, params, _, (x, t, label, cond) = tiny
  params = perturb(params)

  @jax.jit
  def jacobians(x0, x1):
    def out0(x0, x1):
      return model.apply({'params': params}, jnp.stack([x0, x1]), t, label, cond)[0]
    return jax.jacfwd(out0, argnums=(0, 1))(x0, x1)

  jac_self, jac_other = map(np.asarray, jacobians(x[0], x[1]))  # d out[0] / d x[0], d out[0] / d x[1]
  assert jac_other.shape == (8, 8, 3, 8, 8, 3)
  assert np.all(jac_other == 0.0)
  assert np.mean(np.abs(jac_self)) > 1e-4


def reference_embedding(t, dim):
  half = dim // 2
  freqs = np.exp(-math.log(10000) * np.arange(half, dtype=np.float64) / (half - 1))
  e = np.asarray(t, np.float64)[:, None] * freqs[None, :]
  emb = np.concatenate([np.sin(e), np.cos(e)], axis=1)
  return np.pad(emb, ((0, 0), (0, dim % 2)))


@pytest.mark.parametrize('dim', [8, 32, 128, 9])
def test_timestep_embedding_matches_formula(dim):
  t = np.array([0, 1, 2, 17, 250, 999])
  for t_in in (jnp.asarray(t, jnp.int32), jnp.asarray(t, jnp.float32)):
    emb = np.asarray(timestep_embedding(t_in, dim))
    assert emb.shape == (len(t), dim) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, reference_embedding(t, dim), atol=2e-4, rtol=0)
  # t = 0: sines 0, cosines 1; the first frequency is 1, the last 1/10000.
  half = dim // 2
  np.testing.assert_array_equal(np.asarray(timestep_embedding(jnp.zeros((1,)), dim))[0, :2 * half],
                                np.r_[np.zeros(half), np.ones(half)])
  np.testing.assert_allclose(np.asarray(timestep_embedding(jnp.ones((1,)), dim))[0, [0, half - 1]],
                             [math.sin(1.0), math.sin(1e-4)], rtol=1e-5)


def test_different_timesteps_give_different_outputs(tiny):
  model, params, _, (x, _, label, cond) = tiny
  params = perturb(params)
  same_x, same_label, same_cond = jnp.stack([x[0], x[0]]), label[:1].repeat(2), cond[:1].repeat(2, 0)
  out = np.asarray(forward(model, params, same_x, jnp.array([5, 500], jnp.int32), same_label, same_cond))
  assert np.mean(np.abs(out[0] - out[1])) > 1e-3 * np.mean(np.abs(out[0]))


def test_label_conditioning(tiny):
  model, params, _, (x, t, _, cond) = tiny
  params = perturb(params)
  assert params['label_emb']['embedding'].shape == (NUM_CLASSES + 1, 4 * TINY['ch'])
  out_a = np.asarray(forward(model, params, x, t, jnp.array([0, 1], jnp.int32), cond))
  out_b = np.asarray(forward(model, params, x, t, jnp.array([2, 1], jnp.int32), cond))
  assert np.mean(np.abs(out_a[0] - out_b[0])) > 1e-3 * np.mean(np.abs(out_a[0]))
  np.testing.assert_array_equal(out_a[1], out_b[1])  # the other example keeps its label and its output
  null = np.asarray(forward(model, params, x, t, None, cond))
  explicit_null = np.asarray(forward(model, params, x, t, jnp.full((2,), NUM_CLASSES, jnp.int32), cond))
  np.testing.assert_array_equal(null, explicit_null)
  assert np.mean(np.abs(null[1] - out_a[1])) > 1e-3 * np.mean(np.abs(null[1]))


def test_unconditional_model_rejects_a_label():
  model = UNet(**{**TINY, 'num_classes': 0})
  abstract_params(model, SHAPE)  # fine without a label
  with pytest.raises(ValueError, match='num_classes=0'):
    abstract_params(model, SHAPE, label=True)


def test_image_conditioning(tiny):
  model, params, _, (x, t, label, cond) = tiny
  params = perturb(params)
  assert params['conv_in']['kernel'].shape == (3, 3, 3 + COND_CHANNELS, TINY['ch'])
  other = cond.at[0].set(jnp.asarray(np.random.default_rng(3).standard_normal(cond.shape[1:]), jnp.float32))
  out_a = np.asarray(forward(model, params, x, t, label, cond))
  out_b = np.asarray(forward(model, params, x, t, label, other))
  assert np.mean(np.abs(out_a[0] - out_b[0])) > 1e-3 * np.mean(np.abs(out_a[0]))
  np.testing.assert_array_equal(out_a[1], out_b[1])
  with pytest.raises(ValueError, match='cond_BHWC'):
    model.apply({'params': params}, x, t, label, cond[:, :4])


def test_dropout(tiny):
  model, params, _, (x, t, label, cond) = tiny
  params = perturb(params)
  eval_a = np.asarray(forward(model, params, x, t, label, cond))
  eval_b = np.asarray(forward(model, params, x, t, label, cond))
  np.testing.assert_array_equal(eval_a, eval_b)

  def train(seed):
    return np.asarray(forward(model, params, x, t, label, cond, train=True, dropout_rng=jax.random.PRNGKey(seed)))

  train_1, train_1b, train_2 = train(1), train(1), train(2)
  np.testing.assert_array_equal(train_1, train_1b)
  assert np.mean(np.abs(train_1 - train_2)) > 1e-3 * np.mean(np.abs(train_1))
  assert np.mean(np.abs(train_1 - eval_a)) > 1e-3 * np.mean(np.abs(eval_a))


def test_bfloat16_compute_float32_params(tiny):
  model, params, _, (x, t, label, cond) = tiny
  params = perturb(params)
  bf16 = UNet(**TINY, dtype=jnp.bfloat16)
  shapes = nn.meta.unbox(abstract_params(bf16, SHAPE, COND_CHANNELS))
  assert {leaf.dtype for leaf in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}
  assert jax.tree.structure(shapes) == jax.tree.structure(params)
  out = np.asarray(forward(bf16, params, x, t, label, cond))
  ref = np.asarray(forward(model, params, x, t, label, cond))
  assert out.dtype == np.float32 and np.all(np.isfinite(out))
  # bfloat16 has an 8-bit mantissa: close to the float32 output, not equal.
  assert 0 < np.mean(np.abs(out - ref)) < 0.1 * np.mean(np.abs(ref))
