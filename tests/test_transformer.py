"""The Transformer LM networks (jaxgen/models/transformer.py): causality (exactly zero dependence on
later positions; full dependence for the encoder), KV-cache prefill + token-by-token decoding equals
the full forward pass, LoRA (zero B is the base model, merged weights equal the adapter forward,
adapter leaves are told apart), GPT-2 small's 124,439,808 parameters and the other variants' counts
against their formulas, the initialisation and norms, bfloat16 compute, scan + remat equal the plain
layer loop, and a forward pass and gradient sharded on a (2, 2, 2) mesh equal the single-device ones.

Tiny models (2 layers, width 32, 4 heads, vocab 50, length 16). Compiles are most of the time, so
the properties are checked on random parameters drawn with numpy from the traced shapes
(`random_params`, no init compile); the real initialisation is compiled once, in its own test, and
GPT-2 small is only traced (jax.eval_shape).
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import traverse_util
from jax.sharding import PartitionSpec as P

from jaxgen.core.config import base_config
from jaxgen.core.mesh import batch_sharding, make_mesh, state_shardings
from jaxgen.models.transformer import Transformer, init_cache, is_lora_path, lora_delta, merge_lora

V, N, H, D, F, L = 50, 2, 4, 32, 64, 16
TINY = dict(vocab_size=V, num_layers=N, num_heads=H, embed_dim=D, mlp_dim=F, max_len=L)
KEY = jax.random.PRNGKey(0)


def tiny(**kw) -> Transformer:
  return Transformer(**{**TINY, **kw})


def count(tree) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def tokens_of(batch, seed=1):
  return jnp.asarray(np.random.default_rng(seed).integers(0, V, (batch, L)), jnp.int32)


def abstract_params(model):
  """Boxed parameter shapes, traced only (no compile, no real init)."""
  return jax.eval_shape(model.init, KEY, jnp.zeros((1, 8), jnp.int32))['params']


def leaf_name(path) -> str:
  return path[-1].key


def random_params(model, seed=0, std=0.1):
  """Parameters for `model` drawn with numpy: N(0, std^2) for every leaf (norm scales 1 + N(0, std^2))."""
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.asarray((leaf_name(path) == 'scale') + std * rng.standard_normal(x.shape), jnp.float32),
      nn.unbox(abstract_params(model)))


def stack_layers(params):
  """The loop model's block_i parameters stacked into the scanned model's 'layers'."""
  rest = {k: v for k, v in params.items() if not k.startswith('block_')}
  return {**rest, 'layers': jax.tree.map(lambda *xs: jnp.stack(xs), *[params[f'block_{i}'] for i in range(N)])}


@functools.partial(jax.jit, static_argnums=0)
def forward(model, params, tokens):
  logits, hidden, _ = model.apply({'params': params}, tokens)
  return logits, hidden


@functools.partial(jax.jit, static_argnums=0)
def dependence(model, params, tokens_1L):
  """[L_out, L_in]: |d (logits[i] . w) / d embeddings[j]| summed over the width, for a fixed random w
  [V] (the input embeddings perturbed through the model's 'perturbations' collection)."""
  w_V = jax.random.normal(jax.random.PRNGKey(7), (V,))

  def projected_logits(pert_1LD):
    logits_1LV = model.apply({'params': params, 'perturbations': {'embeddings': pert_1LD}}, tokens_1L)[0]
    return logits_1LV[0] @ w_V

  jac = jax.jacrev(projected_logits)(jnp.zeros((1, L, D)))  # [L, 1, L, D]
  return jnp.abs(jac).sum(axis=(1, 3))


# Every code path in two cases (compiles are the time): RoPE (applied inside the blocks) under nn.scan,
# the scanned cache; learned positions (added before the blocks) with the layer loop, the per-layer cache.
CAUSAL_CASES = [('rope', True), ('learned', False)]


@pytest.mark.parametrize('positions,scan', CAUSAL_CASES)
def test_causal_logits_do_not_depend_on_later_positions(positions, scan):
  """The Jacobian of position i's logits with respect to the input embeddings at positions j > i is
  exactly zero, and nonzero for j <= i."""
  model = tiny(positions=positions, scan_layers=scan)
  dep = np.asarray(dependence(model, random_params(model), tokens_of(1)))
  assert np.all(dep[np.triu_indices(L, 1)] == 0.0)
  assert np.all(dep[np.tril_indices(L)] > 0.0)


def test_encoder_sees_both_directions():
  """causal=False: every position's logits depend on every input position, earlier and later."""
  model = tiny(causal=False)
  assert np.all(np.asarray(dependence(model, random_params(model), tokens_of(1))) > 0.0)


@functools.partial(jax.jit, static_argnums=(0, 3))
def full_and_decoded(model, params, tokens_BL, prompt: int):
  """(full forward logits, prefill of `prompt` tokens then one token per step in a lax.scan (the cache
  index traced), their logits concatenated, the final cache index)."""
  full = model.apply({'params': params}, tokens_BL)[0]
  cache = init_cache(model, tokens_BL.shape[0], L)
  first, _, cache = model.apply({'params': params}, tokens_BL[:, :prompt], cache=cache)

  def step(cache, tokens_B1):
    logits, _, cache = model.apply({'params': params}, tokens_B1, cache=cache)
    return cache, logits[:, 0]

  cache, rest_TBV = jax.lax.scan(step, cache, jnp.swapaxes(tokens_BL[:, prompt:], 0, 1)[:, :, None])
  return full, jnp.concatenate([first, jnp.swapaxes(rest_TBV, 0, 1)], axis=1), cache['index']


@pytest.mark.parametrize('positions,scan', CAUSAL_CASES)
def test_kv_cache_decoding_equals_full_forward(positions, scan):
  """Jitted prefill of 5 tokens, then one token per step, gives the full forward pass's logits at
  every position; the cache index advances to 16."""
  model = tiny(positions=positions, scan_layers=scan)
  cache = init_cache(model, 2, L)
  assert cache['k'].shape == cache['v'].shape == (N, 2, L, H, D // H) and cache['k'].dtype == jnp.float32
  full, decoded, index = full_and_decoded(model, random_params(model), tokens_of(2), 5)
  assert int(index) == L
  np.testing.assert_allclose(np.asarray(decoded), np.asarray(full), rtol=0, atol=1e-5)


def test_lora_zero_b_is_base_model_and_merge_equals_adapter_forward():
  base, lora = tiny(use_bias=True, activation='swiglu'), tiny(use_bias=True, activation='swiglu', lora_rank=4,
                                                             lora_alpha=8.0)
  params = random_params(lora)
  flat = traverse_util.flatten_dict(params)
  adapters = {k for k in flat if k[-1] in ('lora_a', 'lora_b')}
  assert len(adapters) == N * (4 + 3) * 2  # q, k, v, out, wi, wg, wo; a and b each
  assert {k for k in flat if is_lora_path(k)} == adapters
  paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  assert {tuple(e.key for e in p) for p in paths if is_lora_path(p)} == adapters
  base_params = traverse_util.unflatten_dict({k: v for k, v in flat.items() if k not in adapters})
  assert jax.tree.structure(base_params) == jax.tree.structure(nn.unbox(abstract_params(base)))

  tokens = tokens_of(2)
  zero_b = jax.tree_util.tree_map_with_path(lambda p, x: jnp.zeros_like(x) if leaf_name(p) == 'lora_b' else x, params)
  base_logits, _ = forward(base, base_params, tokens)
  np.testing.assert_array_equal(np.asarray(forward(lora, zero_b, tokens)[0]), np.asarray(base_logits))

  adapted, _ = forward(lora, params, tokens)
  assert np.max(np.abs(np.asarray(adapted - base_logits))) > 1e-2  # the adapters matter
  merged = jax.jit(merge_lora, static_argnums=(1, 2))(params, 8.0, 4)
  assert jax.tree.structure(merged) == jax.tree.structure(base_params)
  np.testing.assert_allclose(np.asarray(forward(base, merged, tokens)[0]), np.asarray(adapted), rtol=0, atol=1e-5)


def test_merge_lora_with_a_leading_layers_axis():
  """merge_lora on scanned parameters (leading 'layers' axis) equals the per-layer merge stacked, and
  lora_delta is A @ B reshaped (checked in numpy)."""
  params = random_params(tiny(lora_rank=3, lora_alpha=2.0))
  for a, b in zip(jax.tree.leaves(merge_lora(stack_layers(params), 2.0, 3)),
                  jax.tree.leaves(stack_layers(merge_lora(params, 2.0, 3)))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  query = params['block_0']['attn']['query']
  want = np.asarray(query['kernel']) + 2.0 / 3 * np.einsum('dr,rhk->dhk', query['lora_a'], query['lora_b'])
  np.testing.assert_allclose(np.asarray(merge_lora(params, 2.0, 3)['block_0']['attn']['query']['kernel']), want,
                             rtol=1e-5, atol=1e-7)
  with pytest.raises(ValueError, match='do not fit'):
    lora_delta(query['lora_a'], query['lora_b'], (D, D))
  with pytest.raises(ValueError, match='lora_rank=4'):
    merge_lora(params, 2.0, 4)


def gpt2_small(**kw) -> Transformer:
  return Transformer(vocab_size=50257, num_layers=12, num_heads=12, embed_dim=768, mlp_dim=3072, max_len=1024,
                     positions='learned', norm='layernorm', activation='gelu', tie_embeddings=True, use_bias=True,
                     **kw)


@pytest.mark.parametrize('scan', [False, True])
def test_gpt2_small_has_124m_parameters(scan):
  """Per layer: 2 LayerNorms 4 * 768, q/k/v/out 4 * (768^2 + 768), MLP 2 * 768 * 3072 + 3072 + 768 =
  7,087,872; plus tokens 50257 * 768, positions 1024 * 768, the final LayerNorm 2 * 768."""
  boxed = abstract_params(gpt2_small(scan_layers=scan))
  per_layer = 4 * 768 + 4 * (768 * 768 + 768) + 2 * 768 * 3072 + 3072 + 768
  assert per_layer == 7_087_872
  assert count(boxed) == 50257 * 768 + 1024 * 768 + 12 * per_layer + 2 * 768 == 124_439_808
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(boxed))


def test_logical_axis_names():
  specs = nn.get_partition_spec(abstract_params(gpt2_small()))
  block = specs['block_3']
  assert specs['token_embed'] == P('vocab', 'embed') and specs['pos_embed'] == P(None, 'embed')
  assert specs['final_norm'] == {'scale': P('embed'), 'bias': P('embed')}
  for name in ('query', 'key', 'value'):
    assert block['attn'][name] == {'kernel': P('embed', 'heads', 'kv'), 'bias': P('heads', 'kv')}
  assert block['attn']['out'] == {'kernel': P('heads', 'kv', 'embed'), 'bias': P('embed')}
  assert block['mlp']['wi'] == {'kernel': P('embed', 'mlp'), 'bias': P('mlp')}
  assert block['mlp']['wo'] == {'kernel': P('mlp', 'embed'), 'bias': P('embed')}
  assert block['attn_norm']['scale'] == P('embed')

  specs = nn.get_partition_spec(abstract_params(tiny(scan_layers=True, lora_rank=2, tie_embeddings=False,
                                                     activation='swiglu')))
  layers = specs['layers']
  assert specs['unembed'] == P('embed', 'vocab')
  assert layers['attn']['query'] == {'kernel': P('layers', 'embed', 'heads', 'kv'),
                                     'lora_a': P('layers', 'embed', None), 'lora_b': P('layers', None, 'heads', 'kv')}
  assert layers['attn']['out'] == {'kernel': P('layers', 'heads', 'kv', 'embed'),
                                   'lora_a': P('layers', 'heads', 'kv', None), 'lora_b': P('layers', None, 'embed')}
  assert layers['mlp']['wg']['lora_b'] == P('layers', None, 'mlp')
  assert layers['mlp']['wo']['lora_a'] == P('layers', 'mlp', None)
  assert layers['mlp_norm']['scale'] == P('layers', 'embed')


def test_swiglu_rmsnorm_untied_counts_and_rmsnorm():
  """Counts equal their formulas; the untied logits are hidden @ unembed; with unit norm scales the
  final RMSNorm output has mean square x^2 / (x^2 + eps) ~ 1 per position (and, unlike LayerNorm,
  a nonzero mean)."""
  swiglu = tiny(activation='swiglu', tie_embeddings=False)
  per_layer = 2 * D + 4 * D * D + 3 * D * F
  assert count(abstract_params(swiglu)) == V * D + N * per_layer + D + D * V
  adapters = 4 * 3 * (D + D) + 2 * 3 * (D + F) + 3 * (F + D)
  assert count(abstract_params(tiny(activation='swiglu', lora_rank=3))) == V * D + N * (per_layer + adapters) + D
  per_layer = 4 * D + 4 * (D * D + D) + 2 * D * F + F + D
  assert count(abstract_params(tiny(norm='layernorm', use_bias=True))) == V * D + N * per_layer + 2 * D

  params = random_params(swiglu)
  params['final_norm']['scale'] = jnp.ones(D)
  logits, hidden = forward(swiglu, params, tokens_of(2))
  assert logits.shape == (2, L, V) and hidden.shape == (2, L, D)
  assert logits.dtype == hidden.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(logits)))
  np.testing.assert_allclose(np.mean(np.asarray(hidden) ** 2, axis=-1), 1.0, rtol=1e-3)
  assert np.max(np.abs(np.mean(np.asarray(hidden), axis=-1))) > 1e-2
  np.testing.assert_allclose(np.asarray(logits), np.einsum('bld,dv->blv', hidden, params['unembed']),
                             rtol=1e-5, atol=1e-5)


@functools.partial(jax.jit, static_argnums=0)
def init_and_forward(model, key, tokens):
  params = nn.unbox(model.init(key, tokens)['params'])
  return params, forward(model, params, tokens)[1]


def test_initialisation_and_layernorm():
  """The real init: kernels and embeddings N(0, 0.02^2), the residual output projections
  N(0, (0.02 / sqrt(2 N))^2), biases 0, norm scales 1, float32; the final LayerNorm output has mean
  0 and variance v / (v + eps) ~ 1 per position."""
  model = tiny(norm='layernorm', use_bias=True, positions='learned')
  params, hidden = init_and_forward(model, KEY, tokens_of(2))
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
  np.testing.assert_allclose(np.mean(np.asarray(hidden), axis=-1), 0.0, atol=1e-5)
  np.testing.assert_allclose(np.var(np.asarray(hidden), axis=-1), 1.0, rtol=0.05)  # activations ~ 0.02: eps 1e-5
  blocks = [params[f'block_{i}'] for i in range(N)]
  leaves = lambda *names: np.concatenate([np.ravel(functools.reduce(dict.get, names, b)) for b in blocks])
  out_std = 0.02 / math.sqrt(2 * N)
  for names, std in ((('attn', 'query', 'kernel'), 0.02), (('attn', 'value', 'kernel'), 0.02),
                     (('mlp', 'wi', 'kernel'), 0.02), (('attn', 'out', 'kernel'), out_std),
                     (('mlp', 'wo', 'kernel'), out_std)):
    assert abs(np.std(leaves(*names)) / std - 1) < 0.1, names
  for table in ('token_embed', 'pos_embed'):
    assert abs(np.std(np.asarray(params[table])) / 0.02 - 1) < 0.1, table
  assert not np.any(leaves('attn', 'query', 'bias')) and not np.any(leaves('mlp', 'wo', 'bias'))
  assert np.all(leaves('attn_norm', 'scale') == 1.0) and not np.any(leaves('mlp_norm', 'bias'))


@jax.jit
def f32_and_bf16(params, tokens):
  return forward(tiny(), params, tokens), forward(tiny(dtype=jnp.bfloat16), params, tokens)


def test_bfloat16_compute_keeps_float32_parameters():
  bf16 = tiny(dtype=jnp.bfloat16)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(abstract_params(bf16)))
  (want, _), (got, hidden) = f32_and_bf16(random_params(bf16), tokens_of(2))
  assert got.dtype == hidden.dtype == jnp.float32
  err = np.max(np.abs(np.asarray(got - want)))
  assert 0.0 < err < 0.05 * np.max(np.abs(np.asarray(want)))  # computed in bf16, close to float32
  assert init_cache(bf16, 2, 8)['k'].dtype == jnp.bfloat16


@functools.partial(jax.jit, static_argnums=0)
def loss_logits_grad(model, params, tokens_BL):
  """(next-token cross-entropy, logits, d loss / d params)."""

  def loss_fn(p):
    logits, _, _ = model.apply({'params': p}, tokens_BL[:, :-1])
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, tokens_BL[:, 1:])), logits

  (loss, logits), grad = jax.value_and_grad(loss_fn, has_aux=True)(params)
  return loss, logits, grad


def test_scan_with_remat_computes_the_layer_loop():
  """scan_layers + remat (parameters stacked from the loop model's, LoRA adapters included) give the
  loop model's loss, logits and gradient."""
  loop, scanned = tiny(use_bias=True, lora_rank=2), tiny(use_bias=True, lora_rank=2, scan_layers=True, remat=True)
  params = random_params(loop)
  tokens = tokens_of(4)
  want_loss, want_logits, want_grad = loss_logits_grad(loop, params, tokens)
  loss, logits, grad = loss_logits_grad(scanned, stack_layers(params), tokens)
  np.testing.assert_allclose(float(loss), float(want_loss), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(want_logits), rtol=0, atol=1e-5)
  for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(stack_layers(want_grad))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_sharded_forward_and_gradient_equal_single_device():
  """With shardings from state_shardings on a (2, 2, 2) ('data', 'fsdp', 'tensor') mesh (embed -> fsdp,
  heads / mlp / vocab -> tensor) the jitted loss, logits and gradient equal the single-device ones."""
  model = tiny(use_bias=True, lora_rank=2)
  tokens = tokens_of(4)
  mesh = make_mesh(ml_collections.ConfigDict({'data': 2, 'fsdp': 2, 'tensor': 2}))
  shardings = state_shardings(abstract_params(model), mesh, base_config().mesh.rules)
  attn, mlp = shardings['block_0']['attn'], shardings['block_0']['mlp']
  assert shardings['token_embed'].spec == P('tensor', 'fsdp')
  assert attn['query']['kernel'].spec == P('fsdp', 'tensor', None)
  assert attn['out']['kernel'].spec == P('tensor', None, 'fsdp')
  assert mlp['wi']['kernel'].spec == P('fsdp', 'tensor') and mlp['wo']['kernel'].spec == P('tensor', 'fsdp')

  params = random_params(model)
  want = loss_logits_grad(model, params, tokens)
  placed = jax.device_put(params, shardings)
  assert not placed['block_1']['attn']['value']['kernel'].sharding.is_fully_replicated
  assert not placed['token_embed'].sharding.is_fully_replicated
  got = loss_logits_grad(model, placed, jax.device_put(tokens, batch_sharding(mesh)))
  assert len(got[1].sharding.device_set) == 8
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_invalid_hyper_parameters_raise():
  tokens = jnp.zeros((1, 4), jnp.int32)
  with pytest.raises(ValueError, match='not divisible by num_heads'):
    jax.eval_shape(tiny(num_heads=5).init, KEY, tokens)
  with pytest.raises(ValueError, match='odd'):
    jax.eval_shape(tiny(num_heads=32).init, KEY, tokens)
  with pytest.raises(ValueError, match='norm'):
    jax.eval_shape(tiny(norm='batchnorm').init, KEY, tokens)
  with pytest.raises(ValueError, match='max_len'):
    jax.eval_shape(tiny().init, KEY, jnp.zeros((1, L + 1), jnp.int32))
  with pytest.raises(ValueError, match='causal'):
    init_cache(tiny(causal=False), 1, 4)
  with pytest.raises(ValueError, match='max_len'):
    init_cache(tiny(), 1, L + 1)
  with pytest.raises(ValueError, match='init_cache'):
    jax.eval_shape(lambda: tiny().init(KEY, tokens, cache=init_cache(tiny(num_layers=3), 1, 4)))
