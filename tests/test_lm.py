"""The language-model method: likelihood normalisation, sampling, the masked objective, LoRA, fine-tuning,
sharded equivalence over (data, fsdp, tensor) meshes, and every configs/lm smoke variant."""

import itertools
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxgen import train
from jaxgen.data import get_info
from jaxgen.logging import read_metrics
from jaxgen.methods import lm
from tests.test_train import assert_trees_close, assert_trees_equal, config_file, load_config


def _method(config_name='lm/transformer_pysource.py', arg='smoke', **overrides):
  config = load_config(config_name, arg, **overrides)
  return lm.LanguageModel(config, get_info(config.data)), config


def _init(method, length=None, batch=2):
  length = length or method.seq_len
  init = jax.jit(lambda rng, x: nn.unbox(method.init(rng, {'x': x})))
  return init(jax.random.PRNGKey(0), jnp.zeros((batch, length), jnp.int32))


@pytest.mark.parametrize('arch', ['transformer', 'lstm'])
def test_causal_likelihood_sums_to_one_over_every_sequence(arch):
  """sum_x p(x) = 1 over all 256^2 byte windows of length 2: `nll` is an exact, normalised likelihood."""
  if arch == 'transformer':
    method, _ = _method(**{'data.seq_len': 2})
  else:
    method, _ = _method('lm/rnn_pysource.py', 'lstm,smoke', **{'data.seq_len': 2})
  state = _init(method)
  x = jnp.asarray(list(itertools.product(range(256), repeat=2)), jnp.int32)
  nll = jax.jit(lambda p, x: method.nll(p, {'x': x}, None))(state.params, x)
  total = jax.scipy.special.logsumexp(-nll)
  np.testing.assert_allclose(float(total), 0.0, atol=1e-4)


def test_filter_logits_matches_a_numpy_top_k_and_nucleus():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 20)).astype(np.float32) * 2
  for top_k, top_p in [(5, 1.0), (0, 0.7), (8, 0.5), (0, 0.0001)]:
    kept = np.isfinite(np.asarray(lm.filter_logits(jnp.asarray(logits), top_k, top_p)))
    for row, keep in zip(logits, kept):
      order = np.argsort(-row)
      allowed = set(order[:top_k]) if top_k else set(order)
      probs = np.exp(row[order] - row.max())
      probs /= probs.sum()
      nucleus = set(order[:int(np.searchsorted(np.cumsum(probs), top_p) + 1)]) if top_p < 1 else set(order)
      # The nucleus is taken after top-k, over the renormalised top-k distribution.
      if top_k and top_p < 1:
        sub = [i for i in order if i in allowed]
        p = np.exp(row[sub] - row[sub].max())
        p /= p.sum()
        nucleus = set(sub[:int(np.searchsorted(np.cumsum(p), top_p) + 1)])
      assert set(np.flatnonzero(keep)) == allowed & nucleus


def test_prompt_file_is_the_same_prompt_as_the_string_and_bad_settings_are_config_errors(tmp_path):
  from jaxgen.errors import ConfigError
  text = 'def f(x):\n    return "é" '
  (tmp_path / 'prompt.txt').write_text(text, encoding='utf-8')
  from_string, _ = _method(**{'method.prompt': text})
  from_file, _ = _method(**{'method.prompt_file': str(tmp_path / 'prompt.txt')})
  tokens = from_file.prompt_tokens(3)
  np.testing.assert_array_equal(tokens, from_string.prompt_tokens(3))
  assert bytes(np.asarray(tokens[0], np.uint8)) == text.encode('utf-8')  # byte tokens: the file's UTF-8 bytes
  with pytest.raises(ConfigError, match='not both'):
    _method(**{'method.prompt': 'x', 'method.prompt_file': str(tmp_path / 'prompt.txt')})
  with pytest.raises(ConfigError, match='cannot be read'):
    _method(**{'method.prompt_file': str(tmp_path / 'missing.txt')})


def test_kv_cache_sampling_equals_recomputing_the_prefix_and_greedy_is_deterministic():
  method, _ = _method(**{'method.prompt': 'def '})
  state = _init(method)
  key = jax.random.PRNGKey(3)
  sample = jax.jit(method.sample, static_argnames=('num', 'kv_cache', 'temperature'))
  cached = sample(state.params, key, num=4, kv_cache=True)
  full = sample(state.params, key, num=4, kv_cache=False)
  np.testing.assert_array_equal(cached, full)
  assert cached.shape == (4, method.seq_len) and cached.dtype == jnp.int32
  np.testing.assert_array_equal(cached[:, :4], np.tile(np.frombuffer(b'def ', np.uint8), (4, 1)))
  assert len({bytes(np.asarray(r, np.uint8)) for r in cached}) > 1  # random draws differ between rows
  greedy = [sample(state.params, jax.random.PRNGKey(k), num=2, temperature=0.0) for k in (0, 1)]
  np.testing.assert_array_equal(greedy[0], greedy[1])
  # Greedy decoding picks the argmax of the model's own next-token distribution at every position.
  logits, _, _ = method.apply(state.params, method.inputs(greedy[0]))
  np.testing.assert_array_equal(np.argmax(logits, -1)[:, 4:], greedy[0][:, 4:])


def test_rnn_sampling_with_its_state_cache_equals_recomputing_the_prefix():
  method, _ = _method('lm/rnn_pysource.py', 'gru,smoke')
  state = _init(method)
  key = jax.random.PRNGKey(1)
  a = method.sample(state.params, key, 3, kv_cache=True)
  b = method.sample(state.params, key, 3, kv_cache=False)
  np.testing.assert_array_equal(a, b)


def test_masked_lm_scores_only_the_selected_positions(monkeypatch):
  method, _ = _method('lm/mlm_pysource.py')
  x = jax.random.randint(jax.random.PRNGKey(0), (4, method.seq_len), 0, 256)
  rng = jax.random.PRNGKey(5)
  corrupted, selected = method.corrupt(rng, x)
  assert 0 < float(selected.mean()) < 0.5
  # Unselected positions keep their token; MASK appears only at selected ones.
  assert np.all(np.asarray(corrupted)[np.asarray(selected) == 0] == np.asarray(x)[np.asarray(selected) == 0])
  assert np.any(np.asarray(corrupted) == method.mask_id)
  logits = jax.random.normal(jax.random.PRNGKey(1), (4, method.seq_len, method.vocab_size + 1))
  monkeypatch.setattr(method, 'apply', lambda params, tokens, cache=None: (params, None, None))
  grad = jax.grad(lambda l: method.token_loss(l, {'x': x}, rng)[0].sum())(logits)
  scored = np.abs(np.asarray(grad)).sum(-1) > 0
  np.testing.assert_array_equal(scored, np.asarray(selected) > 0)
  _, count = method.token_loss(logits, {'x': x}, rng)
  np.testing.assert_array_equal(count, selected.sum(-1))


def test_lora_step_trains_only_adapters_and_merging_preserves_the_model():
  method, config = _method(**{'method.lora_rank': 4, 'method.lora_alpha': 8.0})
  state = _init(method, batch=16)
  assert set(jax.tree.leaves(jax.tree.map(lambda x: x.shape, state.opt_state))) != set()
  from jaxgen.models.transformer import is_lora_path
  x = jax.random.randint(jax.random.PRNGKey(0), (16, method.seq_len), 0, 256)
  new, metrics = jax.jit(train.make_step_fn(method, 0.0))(state, {'x': x})
  flat_old = dict(jax.tree_util.tree_flatten_with_path(state.params)[0])
  changed = {jax.tree_util.keystr(p): not np.array_equal(v, flat_old[p])
             for p, v in jax.tree_util.tree_flatten_with_path(new.params)[0]}
  lora_keys = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state.params)[0]
               if is_lora_path(tuple(k.key for k in p))}
  assert lora_keys and all(changed[k] for k in lora_keys if k.endswith("'lora_b']"))
  assert not any(v for k, v in changed.items() if k not in lora_keys)
  # The optimizer holds state for the adapters only.
  n_lora = sum(np.size(v) for p, v in jax.tree_util.tree_flatten_with_path(state.params)[0]
               if jax.tree_util.keystr(p) in lora_keys)
  assert sum(np.size(v) for v in jax.tree.leaves(state.opt_state)) <= 2 * n_lora + 8
  merged_method, _ = _method()
  merged = jax.jit(method.merged_params)(new.params)
  batch = {'x': x}
  merged_nll = jax.jit(lambda p: merged_method.nll(p, batch, None))(merged)
  np.testing.assert_allclose(merged_nll, jax.jit(lambda p: method.nll(p, batch, None))(new.params), rtol=1e-5)


def test_gpt2_small_has_124m_parameters():
  config = config_file('lm/gpt2_small.py', 'pysource')
  config.data.seq_len = 1024
  method = lm.LanguageModel(config, get_info(config.data))
  method.net = lm.build_network(lm.model_settings(config.model), 50257, 1024)
  abstract = jax.eval_shape(method.init, jax.random.PRNGKey(0), {'x': jax.ShapeDtypeStruct((1, 1024), jnp.int32)})
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(abstract).params))
  assert count == 124_439_808
  assert config_file('lm/gpt2_small.py', '').data.vocab_size == 50257


MESHES = {'single': ((1, 1, 1), 1), 'data8': ((8, 1, 1), 8), 'cube': ((2, 2, 2), 8), 'fsdp4_tensor2': ((1, 4, 2), 8)}


@pytest.fixture(scope='module')
def lm_mesh_runs(tmp_path_factory):
  """Two Transformer steps on each mesh: {name: (final state, workdir)}."""
  runs = {}
  for name, ((d, f, t), n) in MESHES.items():
    config = load_config('lm/transformer_pysource.py', 'smoke', **{
        'train.steps': 2, 'train.log_every': 1, 'train.checkpoint_every': 2, 'mesh.data': d, 'mesh.fsdp': f,
        'mesh.tensor': t, 'model.num_heads': 4, 'model.mlp_dim': 64})
    workdir = str(tmp_path_factory.mktemp(name))
    runs[name] = (train.train_and_evaluate(config, workdir, devices=jax.devices()[:n]), workdir, config)
  return runs


@pytest.mark.parametrize('name', ['data8', 'cube', 'fsdp4_tensor2'])
def test_sharded_transformer_steps_equal_the_single_device_step(lm_mesh_runs, name):
  state, workdir, _ = lm_mesh_runs[name]
  ref, ref_dir, _ = lm_mesh_runs['single']
  assert_trees_close(state.params, ref.params, rtol=1e-4, atol=1e-5)
  losses = [r['loss'] for r in read_metrics(workdir) if 'loss' in r]
  ref_losses = [r['loss'] for r in read_metrics(ref_dir) if 'loss' in r]
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
  if name != 'data8':  # the model axes really split the kernels
    assert any(not x.sharding.is_fully_replicated for x in jax.tree.leaves(state.params))


def test_checkpoint_saved_on_a_2x2x2_mesh_restores_on_8x1x1(lm_mesh_runs):
  state, workdir, config = lm_mesh_runs['cube']
  config = config.copy_and_resolve_references()
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 8, 1, 1
  run = train.setup(config, workdir, devices=jax.devices()[:8])
  run.checkpointer.close()
  assert run.resumed
  assert_trees_equal(run.state.params, state.params)
  assert all(x.sharding.is_fully_replicated for x in jax.tree.leaves(run.state.params))


def test_init_from_starts_a_lora_fine_tune_from_the_pretrained_parameters(lm_mesh_runs, tmp_path):
  source, source_dir, source_config = lm_mesh_runs['single']
  config = load_config('lm/finetune_pysource.py', 'lora,smoke', **{
      'init_from': source_dir, 'train.steps': 1, 'model.num_heads': 4, 'model.mlp_dim': 64})
  config.data.path_prefix = ''
  run = train.setup(config, str(tmp_path / 'setup'), devices=jax.devices()[:1])
  run.checkpointer.close()
  run.writer.close()
  flat = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(run.state.params)[0]}
  src = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(source.params)[0]}
  assert set(src) < set(flat)
  for key, value in src.items():
    np.testing.assert_array_equal(flat[key], value)
  assert all('lora' in k for k in set(flat) - set(src))

  # train.eval_at_start (on in the fine-tune configs): the step-0 evaluation is the pre-trained model's
  # ("before"); LoRA's B starts at zero, so it equals the source run's own NLL on the same data.
  assert config.train.eval_at_start
  config.evals = ml_collections.ConfigDict({'nll': {'every': 1}})
  train.train_and_evaluate(config, str(tmp_path / 'ft'), devices=jax.devices()[:1])
  evals = [r for r in read_metrics(str(tmp_path / 'ft')) if r['split'] == 'eval']
  assert [r['step'] for r in evals] == [0, 1]
  reference = source_config.copy_and_resolve_references()
  reference.evals = ml_collections.ConfigDict({'nll': {}})
  source_run = train.setup(reference, source_dir, devices=jax.devices()[:1], eval_names=('nll',))
  source_run.checkpointer.close()
  source_run.writer.close()
  assert source_run.resumed
  before = source_run.evaluators['nll'][1](source_run.state, 2)
  np.testing.assert_allclose(evals[0]['nll_nats'], before['nll_nats'], rtol=1e-5)
  assert evals[1]['nll_nats'] != evals[0]['nll_nats']


@pytest.mark.parametrize('name,arg', [('lm/transformer_pysource.py', 'smoke'), ('lm/rnn_pysource.py', 'lstm,smoke'),
                                      ('lm/rnn_pysource.py', 'gru,smoke'), ('lm/mlm_pysource.py', 'smoke'),
                                      ('lm/gpt2_small.py', 'smoke'), ('lm/finetune_pysource.py', 'lora,smoke')])
def test_smoke_configs_train_evaluate_and_sample(tmp_path, name, arg):
  config = config_file(name, arg)
  train.train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:1])
  evals = [r for r in read_metrics(str(tmp_path)) if r['split'] == 'eval']
  assert evals
  if 'mlm' in name:
    assert np.isfinite(evals[-1]['token_loss']) and evals[-1]['perplexity'] > 1
  else:
    assert 0 < evals[-1]['nll_bpd'] < 9
    texts = [f for f in os.listdir(tmp_path / 'samples') if f.endswith('.txt')]
    assert texts
  assert os.path.exists(tmp_path / 'tokenizer.model') or os.path.exists(tmp_path / 'tokenizer.json')
  json.load(open(tmp_path / 'config.json'))
