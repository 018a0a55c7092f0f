"""Preference methods (reward model, DPO, PPO): what each scores, what each trains, sharded equivalence."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import methods, train
from jaxgen.core import mesh as mesh_lib
from jaxgen.data.pipeline import DataInfo
from jaxgen.data.tokenizers import ByteTokenizer
from jaxgen.methods import preference
from tests.test_train import assert_trees_close, assert_trees_equal, config_file

P, C = 16, 8  # short completions keep the compiled sampling loops small


def _method(name, **method_overrides):
  config = config_file('preference/syntax.py', f'{name},smoke')
  config.evals = {}
  config.data.seq_len = P + C + 1
  config.method.completion_len = C
  for key, value in method_overrides.items():
    config.method[key] = value
  info = DataInfo(name='toy', kind='prompts' if name == 'ppo' else 'pairs', shape=(P,), levels=256, num_classes=None,
                  num_examples={}, dequantized=False, tokenizer=ByteTokenizer())
  return methods.get(name)(config, info)


def _init(method):
  return jax.jit(lambda rng: nn.unbox(method.init(rng, None)))(jax.random.PRNGKey(0))


def _pairs(batch=8, seed=0):
  rng = np.random.default_rng(seed)
  prompt = rng.integers(32, 127, (batch, P))
  chosen = rng.integers(32, 127, (batch, C))
  rejected = rng.integers(32, 127, (batch, C))
  chosen_len = rng.integers(1, C + 1, batch)
  rejected_len = rng.integers(1, C + 1, batch)
  return {'x': jnp.asarray(prompt, jnp.int32), 'chosen': jnp.asarray(chosen, jnp.int32),
          'rejected': jnp.asarray(rejected, jnp.int32), 'chosen_len': jnp.asarray(chosen_len, jnp.int32),
          'rejected_len': jnp.asarray(rejected_len, jnp.int32)}


def test_completion_lengths_count_through_the_first_newline():
  completion = np.full((3, 6), ord('a'))
  completion[0, 2] = 10
  completion[0, 4] = 10
  completion[2, 5] = 10
  np.testing.assert_array_equal(preference.completion_lengths(jnp.asarray(completion)), [3, 6, 6])
  np.testing.assert_array_equal(preference.length_mask(jnp.asarray([0, 2]), 3), [[0, 0, 0], [1, 1, 0]])


def test_reward_reads_exactly_the_counted_part_of_a_completion():
  method = _method('reward_model')
  params = _init(method).params
  batch = _pairs()
  score = jax.jit(method.score)
  base = score(params, batch['x'], batch['chosen'], batch['chosen_len'])
  length = np.asarray(batch['chosen_len'])
  after = np.asarray(batch['chosen']).copy()
  before = np.asarray(batch['chosen']).copy()
  for i, n in enumerate(length):
    after[i, n:] = (after[i, n:] + 1) % 256      # beyond the counted part: no effect
    before[i, n - 1] = (before[i, n - 1] + 1) % 256  # the last counted token: an effect
  np.testing.assert_array_equal(score(params, batch['x'], jnp.asarray(after), batch['chosen_len']), base)
  assert np.all(np.asarray(score(params, batch['x'], jnp.asarray(before), batch['chosen_len'])) != np.asarray(base))


def test_reward_model_learns_the_pairs_and_only_trains_its_parts():
  method = _method('reward_model')
  state = _init(method)
  batch = _pairs()
  step = jax.jit(method.train_step)
  losses = []
  for _ in range(30):
    state, metrics = step(state, batch)
    losses.append(float(metrics['loss']))
  assert losses[-1] < 0.5 * losses[0] and float(metrics['accuracy']) == 1.0


def test_dpo_starts_at_log2_keeps_its_reference_and_raises_the_margin():
  method = _method('dpo', beta=0.5)
  state = _init(method)
  assert_trees_equal(state.params['lm'], state.params['reference'])
  batch = _pairs()
  step = jax.jit(method.train_step)
  new, metrics = step(state, batch)
  np.testing.assert_allclose(float(metrics['loss']), math.log(2), rtol=1e-6)
  assert float(metrics['reward_margin']) == 0.0
  reference = jax.tree.map(np.asarray, state.params['reference'])
  for _ in range(10):
    new, metrics = step(new, batch)
  assert float(metrics['loss']) < math.log(2) and float(metrics['reward_margin']) > 0
  assert_trees_equal(new.params['reference'], reference)
  size = lambda tree: sum(np.size(x) for x in jax.tree.leaves(tree))
  assert size(new.opt_state) <= 2 * size(new.params['lm']) + 16  # AdamW moments of the policy only
  chosen, rejected = jax.jit(method.pair_scores)(new.params, batch)
  assert float(jnp.mean(chosen - rejected)) > 0


def test_ppo_iteration_updates_policy_and_value_only_and_starts_at_zero_kl():
  method = _method('ppo')
  state = _init(method)
  prompts = jnp.asarray(np.random.default_rng(0).integers(32, 127, (8, P)), jnp.int32)
  step = jax.jit(method.train_step)
  new, metrics = step(state, {'x': prompts})
  assert float(metrics['kl']) == 0.0  # the rollout policy is the reference at the start
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert_trees_equal(new.params['reference'], state.params['reference'])
  assert_trees_equal(new.params['reward'], state.params['reward'])
  for part in ('lm', 'value_head'):
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new.params[part]),
                                                          jax.tree.leaves(state.params[part])))
  # A later iteration's rollouts come from the updated policy: KL to the reference is now positive.
  _, metrics = step(new, {'x': prompts})
  assert float(metrics['kl']) != 0.0


def test_ppo_value_loss_trains_the_value_head_only():
  """With zero advantages the policy term has no gradient, so the LM's gradient is exactly zero: the
  value loss reaches the value head but not the policy's trunk."""
  method = _method('ppo')
  params = _init(method).params
  prompts = jnp.asarray(np.random.default_rng(2).integers(32, 127, (4, P)), jnp.int32)
  data, _ = jax.jit(method.rollout)(params, prompts, jax.random.PRNGKey(0))
  data = dict(data, advantages=jnp.zeros_like(data['advantages']), returns=data['values'] + 1.0)
  grads = jax.grad(lambda t: method.ppo_loss(t, data)[0])(method.trainable(params))
  assert all(not np.any(g) for g in jax.tree.leaves(grads['lm']))
  assert any(np.any(g) for g in jax.tree.leaves(grads['value_head']))


def test_policy_samples_keep_their_prompts_and_kl_is_zero_for_the_reference():
  method = _method('dpo')
  params = _init(method).params
  prompts = jnp.asarray(np.random.default_rng(1).integers(32, 127, (4, P)), jnp.int32)
  tokens = jax.jit(lambda p, r: method.sample(p, r, 4, prompt=prompts))(params, jax.random.PRNGKey(0))
  assert tokens.shape == (4, P + C)
  np.testing.assert_array_equal(tokens[:, :P], prompts)
  completion = tokens[:, P:]
  kl = jax.jit(method.sequence_kl)(params, prompts, completion, preference.completion_lengths(completion))
  np.testing.assert_array_equal(kl, np.zeros(4))


def test_sharded_dpo_step_equals_the_single_device_step():
  method = _method('dpo', beta=0.5)
  state = _init(method)
  batch = _pairs()
  ref_state, ref_metrics = jax.jit(method.train_step)(state, batch)
  config = method.config
  mesh = mesh_lib.make_mesh({'data': 2, 'fsdp': 2, 'tensor': 2})
  abstract = jax.eval_shape(method.init, jax.random.PRNGKey(0), None)
  shardings = mesh_lib.state_shardings(abstract, mesh, config.mesh.rules)
  sharded = jax.device_put(state, shardings)
  step = jax.jit(method.train_step, in_shardings=(shardings, mesh_lib.batch_sharding(mesh)),
                 out_shardings=(shardings, mesh_lib.replicated(mesh)))
  new, metrics = step(sharded, batch)
  assert any(not x.sharding.is_fully_replicated for x in jax.tree.leaves(new.params['lm']))
  np.testing.assert_allclose(float(metrics['loss']), float(ref_metrics['loss']), rtol=1e-5)
  assert_trees_close(new.params, ref_state.params, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope='module')
def pairs_dataset(tmp_path_factory):
  """A small syntax_pairs dataset (random bytes; lengths as the task defines them) in its own data dir."""
  import tensorflow_datasets as tfds
  from tests.test_preference_data import load_script
  root = str(tmp_path_factory.mktemp('pairs_data'))
  rng = np.random.default_rng(0)

  def pair():
    chosen, rejected = rng.integers(32, 127, (2, 48)).astype(np.uint8)
    chosen[rng.integers(0, 48)] = 10
    return {'prompt': rng.integers(32, 127, 16).astype(np.uint8), 'chosen': chosen, 'rejected': rejected,
            'chosen_len': np.int32(int(np.argmax(chosen == 10)) + 1), 'rejected_len': np.int32(48)}

  tfds.dataset_builders.store_as_tfds_dataset(
      name='syntax_pairs', version='1.0.0', features=load_script().features(), config='smoke', data_dir=root,
      split_datasets={'train': [(i, pair()) for i in range(32)], 'test': [(i, pair()) for i in range(16)]},
      file_format='array_record', disable_shuffling=True)
  return root


@pytest.mark.parametrize('name', ['reward_model', 'dpo', 'ppo'])
def test_smoke_configs_train_and_evaluate_through_the_loop(tmp_path, pairs_dataset, name):
  from jaxgen.logging import read_metrics
  config = config_file('preference/syntax.py', f'{name},smoke')
  if name != 'ppo':
    config.data.name, config.data.data_dir = 'syntax_pairs/smoke', pairs_dataset
  train.train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:1])
  evals = [r for r in read_metrics(str(tmp_path)) if r['split'] == 'eval']
  assert evals
  if name in ('reward_model', 'dpo'):
    assert 0 <= evals[-1]['preference_accuracy'] <= 1
  if name in ('dpo', 'ppo'):
    assert 0 <= evals[-1]['syntax_valid'] <= 1 and np.isfinite(evals[-1]['kl_to_reference'])


def test_dpo_from_a_pretrained_run_trains_and_keeps_its_reference_frozen(tmp_path, pairs_dataset):
  """The policy and the frozen reference both start from one SFT run (regression: they shared buffers,
  and the train step, which donates the state, refused the same buffer twice)."""
  sft = config_file('lm/transformer_pysource.py', 'smoke')
  sft.evals, sft.train.steps = {}, 1
  train.train_and_evaluate(sft, str(tmp_path / 'sft'), devices=jax.devices()[:1])
  sft_params = train.load_trained(str(tmp_path / 'sft'), final_params=True)[2]
  config = config_file('preference/syntax.py', 'dpo,smoke')
  config.data.name, config.data.data_dir = 'syntax_pairs/smoke', pairs_dataset
  config.init_from, config.evals = str(tmp_path / 'sft'), {}
  state = train.train_and_evaluate(config, str(tmp_path / 'dpo'), devices=jax.devices()[:1])
  assert int(state.step) == config.train.steps
  assert_trees_equal(state.params['reference'], sft_params['lm'])
  moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state.params['lm']), jax.tree.leaves(sft_params['lm']))]
  assert any(moved)
