"""The GAN method: penalties against their formulas, packing, minibatch stddev, EMA of the
generator only, sharded == single-device steps, and the toy configs' smoke runs."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import train
from jaxgen.logging import read_metrics
from jaxgen.methods import gan
from jaxgen.models import gan_nets
from test_train import assert_trees_close, config_file, load_config


def test_gradient_penalty_equals_its_formula_on_a_linear_critic():
  """D(x) = <w, x> has input gradient w everywhere, so the penalty is (||w|| - 1)^2 exactly."""
  kw, kr, kf, ke = jax.random.split(jax.random.PRNGKey(0), 4)
  w = jax.random.normal(kw, (3, 4, 2))
  real, fake = jax.random.normal(kr, (6, 3, 4, 2)), jax.random.normal(kf, (6, 3, 4, 2))
  critic = lambda x: jnp.einsum('bhwc,hwc->b', x, w)
  gp = gan.gradient_penalty(critic, real, fake, ke)
  np.testing.assert_allclose(gp, (jnp.linalg.norm(w) - 1.0) ** 2, rtol=1e-5)
  # Packed by 2: output j = <w1, x_2j> + <w2, x_2j+1>, whose gradient norm is ||(w1, w2)||.
  w2 = jax.random.normal(ke, (3, 4, 4))
  packed_critic = lambda x: jnp.einsum('bhwc,hwc->b', gan.pack(x, 2), w2)
  gp2 = gan.gradient_penalty(packed_critic, real, fake, ke, group=2)
  np.testing.assert_allclose(gp2, (jnp.linalg.norm(w2) - 1.0) ** 2, rtol=1e-5)


def test_r1_penalty_equals_its_formula():
  """D(x) = ||x||^2 / 2 has input gradient x: R1 = E ||x||^2."""
  x = jax.random.normal(jax.random.PRNGKey(1), (5, 7))
  r1 = gan.r1_penalty(lambda v: 0.5 * jnp.sum(v ** 2, axis=-1), x)
  np.testing.assert_allclose(r1, jnp.mean(jnp.sum(x ** 2, axis=-1)), rtol=1e-5)


def test_losses_equal_their_formulas():
  real, fake = jnp.array([2.0, -1.0]), jnp.array([0.5, -3.0])
  sig = jax.nn.sigmoid
  np.testing.assert_allclose(gan.discriminator_loss('nonsaturating', real, fake),
                             -jnp.mean(jnp.log(sig(real))) - jnp.mean(jnp.log(1 - sig(fake))), rtol=1e-6)
  np.testing.assert_allclose(gan.generator_loss('nonsaturating', fake), -jnp.mean(jnp.log(sig(fake))), rtol=1e-6)
  np.testing.assert_allclose(gan.discriminator_loss('hinge', real, fake), (0 + 2) / 2 + (1.5 + 0) / 2)
  np.testing.assert_allclose(gan.discriminator_loss('wasserstein', real, fake), -1.25 - 0.5)
  np.testing.assert_allclose(gan.generator_loss('hinge', fake), 1.25)


def test_pack_concatenates_consecutive_examples_on_the_last_axis():
  x = jnp.arange(4 * 2 * 3, dtype=jnp.float32).reshape(4, 2, 3)
  packed = gan.pack(x, 2)
  assert packed.shape == (2, 2, 6)
  np.testing.assert_array_equal(packed[1, :, :3], x[2])
  np.testing.assert_array_equal(packed[1, :, 3:], x[3])


def test_minibatch_stddev_is_the_group_standard_deviation():
  x = jax.random.normal(jax.random.PRNGKey(2), (8, 3, 3, 4))
  out = gan_nets.minibatch_stddev(x, group_size=4)
  assert out.shape == (8, 3, 3, 5)
  np.testing.assert_array_equal(out[..., :4], x)
  # Group members of example i are i, i+2, i+4, i+6 (group index leading, as Karras et al.).
  for i in range(8):
    members = x[i % 2::2]
    expected = jnp.mean(jnp.sqrt(jnp.var(members, axis=0) + 1e-8))
    np.testing.assert_allclose(out[i, :, :, 4], expected, rtol=1e-5)
  collapsed = gan_nets.minibatch_stddev(jnp.ones((8, 5)), group_size=4)
  np.testing.assert_allclose(collapsed[:, 5], 1e-4, rtol=1e-3)   # sqrt(0 + 1e-8): no spread at all


def test_ema_averages_the_generator_and_copies_its_state():
  params = {'generator': jnp.ones(3), 'discriminator': jnp.ones(2), 'generator_state': jnp.full(3, 7.0)}
  ema = {'generator': jnp.zeros(3), 'generator_state': jnp.zeros(3)}
  new = train.update_ema(ema, params, 0.9, copy_keys=('generator_state',))
  assert set(new) == {'generator', 'generator_state'}
  np.testing.assert_allclose(new['generator'], 0.1)
  np.testing.assert_array_equal(new['generator_state'], 7.0)


def _toy(variant, **overrides):
  config = load_config('gan/mlp_toy2d.py', f'grid25,{variant},smoke', **overrides)
  return config


def test_sharded_and_single_device_gan_steps_agree(tmp_path):
  """One step function with everything that couples examples or steps: WGAN-GP's 5 critic updates on
  micro-batches with the gradient penalty, PacGAN packing by 2, minibatch stddev, generator BatchNorm
  and the EMA generator; on 1 device and with the batch split over 8. Both networks use SGD: Adam
  divides by sqrt(v), so where a gradient is ~0 a last-bit difference in the summation order turns into
  a difference of a whole learning-rate-sized step, which says nothing about the sharding."""
  states = {}
  for name, devices in (('single', 1), ('data8', 8)):
    config = _toy('wgan_gp', **{'train.steps': 3, 'train.batch_size': 5 * 32, 'train.ema_decay': 0.9,
                                'method.pack': 2, 'model.mbstd': 2, 'model.g_batchnorm': True,
                                'optim.name': 'sgd', 'optim_d.name': 'sgd', 'optim.lr': 0.05, 'optim_d.lr': 0.05})
    states[name] = train.train_and_evaluate(config, str(tmp_path / name), devices=jax.devices()[:devices])
  assert_trees_close(states['single'].params, states['data8'].params, rtol=1e-4, atol=1e-5)
  assert_trees_close(states['single'].ema_params, states['data8'].ema_params, rtol=1e-4, atol=1e-5)
  assert set(states['single'].ema_params) == {'generator', 'generator_state', 'schedule'}
  # The EMA generator lags the trained one; BatchNorm statistics are copied, not averaged.
  g, g_ema = jax.tree.leaves(states['single'].params['generator']), jax.tree.leaves(states['single'].ema_params['generator'])
  assert any(not np.allclose(a, b) for a, b in zip(g, g_ema))
  assert_trees_close(states['single'].params['generator_state'], states['single'].ema_params['generator_state'])


def test_conditional_generator_follows_the_label():
  from jaxgen.data import get_info
  config = _toy('vanilla', **{'model.num_classes': 25})
  config.data.name = 'toy2d/grid25'
  method = gan.GAN(config, get_info(config.data))
  batch = {'x': jnp.zeros((16, 2)), 'label': jnp.arange(16, dtype=jnp.int32) % 25}
  import flax.linen as nn
  state = nn.unbox(method.init(jax.random.PRNGKey(0), batch))
  key = jax.random.PRNGKey(3)
  a = method.sample(state.params, key, 16, label=jnp.zeros(16, jnp.int32))
  b = method.sample(state.params, key, 16, label=jnp.full(16, 7, jnp.int32))
  assert not np.allclose(a, b)


# wgan_gp and pacgan train in test_sharded_and_single_device_gan_steps_agree.
@pytest.mark.parametrize('variant', ['vanilla', 'mbstd'])
def test_toy_smoke_configs_train_evaluate_and_sample(tmp_path, variant):
  config = config_file('gan/mlp_toy2d.py', f'ring8,{variant},smoke')
  config.evals.mode_coverage.num_samples = 500
  train.train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:1])
  evals = [r for r in read_metrics(str(tmp_path)) if 'modes' in r]
  assert evals and 0 <= evals[-1]['modes'] <= 8 and 0 <= evals[-1]['hq_fraction'] <= 1
  assert any(f.endswith('.png') for f in os.listdir(tmp_path / 'samples'))


def test_pggan_resume_is_exact_through_a_stage_change(tmp_path, monkeypatch):
  """Progressive growing: 4 steps straight == preempted after step 1 (stage 0), resumed into the fade-in of
  stage 1 (alpha rising at steps 1-2), 3 more steps: parameters, optimizer, EMA generator, schedule.
  The straight run also evaluates (sample grids at the final stage)."""
  from test_train import assert_trees_equal, train_until

  def config():
    c = config_file('gan/pggan_mnist5k.py', 'smoke')
    c.model.channels, c.model.stage_steps = (4, 4), 1
    c.train.steps = c.train.checkpoint_every = c.evals.samples.every = 4
    c.method.loss, c.method.gp_weight = 'nonsaturating', 0.0  # no double backprop: a third of the compile time
    return c

  straight = train.train_and_evaluate(config(), str(tmp_path / 'straight'), devices=jax.devices()[:1])
  assert any(p.endswith('.png') for p in os.listdir(tmp_path / 'straight' / 'samples'))
  train_until(config(), str(tmp_path / 'resumed'), 1, monkeypatch, devices=jax.devices()[:1])
  resumed = train.train_and_evaluate(config(), str(tmp_path / 'resumed'), devices=jax.devices()[:1])
  assert int(resumed.params['schedule']['stage']) == 1 and float(resumed.params['schedule']['alpha']) == 1.0
  assert_trees_equal(resumed.params, straight.params)
  assert_trees_equal(resumed.opt_state, straight.opt_state)
  assert_trees_equal(resumed.ema_params, straight.ema_params)


def test_lazy_regularization_adjusts_adam_as_stylegan2():
  import ml_collections
  optim = ml_collections.ConfigDict({'lr': 0.0025, 'b1': 0.0, 'b2': 0.99})
  d = gan.lazy_regularization_optim(optim, 16)
  np.testing.assert_allclose((d.lr, d.b1, d.b2), (0.0025 * 16 / 17, 0.0, 0.99 ** (16 / 17)))
  assert optim.lr == 0.0025   # the config itself is unchanged


@pytest.mark.slow
def test_stylegan2_mnist5k_generator_stays_diverse():
  """configs/gan/stylegan2_ada_mnist5k.py for 600 steps: the generator keeps producing different digits.
  With the official linear output (output_activation='linear') it had mode-collapsed by then
  (experiments/results/gan.md: per-pixel std over z 0.18, 92% of the samples one class; the real
  data's per-pixel std is 0.39); with the config's tanh it stays diverse."""
  from test_preference_data import load_script
  config = config_file('gan/stylegan2_ada_mnist5k.py', arg=None)
  *_, (step, _, (raw_std, raw_shares), (ema_std, ema_shares)) = load_script('gan_diversity.py').train_with_reports(
      config, steps=600, every=600, num=1000)
  assert step == 600
  assert raw_std > 0.25 and ema_std > 0.25, (raw_std, ema_std)
  assert raw_shares.max() < 0.6 and ema_shares.max() < 0.6, (raw_shares, ema_shares)
  assert np.sum(ema_shares >= 0.02) >= 6, ema_shares
