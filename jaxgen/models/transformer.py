"""The Transformer networks of the language-model family: a GPT-style decoder and a BERT-style encoder.

One pre-norm stack serves both (`causal=True`: decoder, `causal=False`: bidirectional encoder for
masked-LM pre-training):

    x      = token_embed[tokens] (+ pos_embed[positions] with positions='learned')
    block  x = x + Attention(norm(x));  x = x + MLP(norm(x))          (num_layers times)
    hidden = final_norm(x)                                             float32
    logits = hidden @ token_embed.T (tie_embeddings) or hidden @ unembed   float32

    Attention  q, k, v = x W_q, x W_k, x W_v   ([D] -> [heads, head_dim], head_dim = embed_dim / num_heads),
               RoPE on q and k with positions='rope' (rotate-half form, base 10000),
               softmax(q k^T / sqrt(head_dim) [+ causal mask]) v through `jax.nn.dot_product_attention`
               (logits and softmax in float32), output projection [heads, head_dim] -> [D]
    MLP        gelu:   W_o gelu(x W_i)                     (tanh approximation, as GPT-2)
               swiglu: W_o (silu(x W_g) * x W_i)           (Shazeer 2020; Llama)
    norm       'layernorm' (scale and bias, epsilon 1e-5, as GPT-2) or 'rmsnorm' (scale, epsilon 1e-6)

GPT-2 small (vocab 50257, 12 layers, 12 heads, width 768, MLP 3072, context 1024, learned positions,
layernorm, gelu, tied embeddings, use_bias=True) has 124,439,808 parameters, as nanoGPT's count with
its position embedding (tests/test_transformer.py asserts it).

Initialisation (GPT-2 / nanoGPT): every kernel and embedding N(0, 0.02^2), the residual output
projections (attention `out`, MLP `wo`) N(0, (0.02 / sqrt(2 num_layers))^2), biases 0, norm scales 1.

Options:
  * `scan_layers`: the blocks run under `nn.scan` (one compiled block, a faster compile for deep
    models); every block parameter gets a leading axis of size num_layers (logical name 'layers',
    replicated). Parameters live under 'layers' instead of 'block_0', 'block_1', ...
  * `remat`: `nn.remat` per block (activations recomputed in the backward pass).
  * `dtype`: the compute dtype (jnp.bfloat16 for speed). Parameters are always float32; attention
    logits and softmax, norm statistics, the final norm, hidden and logits are float32.
  * `lora_rank > 0`: LoRA (Hu et al. 2021) adapters on q, k, v, the attention output and every MLP
    projection: W x + (lora_alpha / lora_rank) B(A x) with `lora_a` [in..., rank] ~ N(0, 1/fan_in)
    and `lora_b` [rank, out...] = 0, so the model at init equals its base model exactly.
    `merge_lora` folds trained adapters into the kernels (export); `is_lora_path` tells adapter
    leaves apart (training only adapters).

KV cache (`init_cache`): {'index': int32 scalar, 'k', 'v': [num_layers, batch, length, heads, head_dim]}
in the compute dtype. With a cache, the L tokens of a call sit at positions index .. index + L - 1
(the same for every row): their keys and values are written there (`lax.dynamic_update_slice`, so
`index` may be traced under jit), each attends to the cache positions up to its own, and the
returned cache has index + L. L > 1 is a prefill, L == 1 one decoding step. Only causal models
take a cache.

Intermediate gradients: outside `init`, the embedded input (after positions are added) passes
through `self.perturb('embeddings', ...)`: `model.apply({'params': p, 'perturbations':
{'embeddings': zeros [B, L, D]}}, tokens)` makes the model a function of an additive perturbation
of its input embeddings (Jacobians, saliency); without that collection it is a no-op.

Logical axes (jaxgen.core.config mesh rules: 'embed' -> fsdp, 'heads' / 'mlp' / 'vocab' -> tensor):
token embedding ('vocab', 'embed'); learned positions (None, 'embed'); q/k/v kernels
('embed', 'heads', 'kv') [D, H, head_dim] and biases ('heads', 'kv'); attention output
('heads', 'kv', 'embed') and bias ('embed',); MLP wi/wg ('embed', 'mlp'), wo ('mlp', 'embed'), biases
('mlp',) / ('embed',); norm scales and biases ('embed',); unembed ('embed', 'vocab'); LoRA a / b the
base kernel's input / output names with None for the rank axis; a leading 'layers' under scan_layers.
"""

import dataclasses
import functools
import math
from typing import Any, Mapping, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

NORMS = ('rmsnorm', 'layernorm')
POSITIONS = ('rope', 'learned')
ACTIVATIONS = ('gelu', 'swiglu')
LORA_LEAVES = ('lora_a', 'lora_b')
INIT_STD = 0.02
ROPE_BASE = 10000.0


def _param_init(init, names):
  return nn.with_logical_partitioning(init, names)


class LoraDense(nn.Module):
  """y = x . W (+ b) (+ scale * (x . A) . B): contracts the last len(in_names) axes of x with W [in..., out...].

  `in_names` / `out_names` are the logical axis names of the contracted / produced axes; the kernel
  is N(0, kernel_std^2), the bias zero, lora_a [in..., rank] N(0, 1/fan_in), lora_b [rank, out...] zero.
  """
  features: Tuple[int, ...]
  in_names: Tuple[str, ...]
  out_names: Tuple[str, ...]
  use_bias: bool = False
  kernel_std: float = INIT_STD
  lora_rank: int = 0
  lora_scale: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    n_in = len(self.in_names)
    in_shape = tuple(x.shape[-n_in:])
    kernel = self.param('kernel', _param_init(nn.initializers.normal(self.kernel_std), self.in_names + self.out_names),
                        in_shape + self.features, jnp.float32)
    x = x.astype(self.dtype)
    y = jnp.tensordot(x, kernel.astype(self.dtype), axes=n_in)
    if self.lora_rank > 0:
      a = self.param('lora_a', _param_init(nn.initializers.normal(1.0 / math.sqrt(math.prod(in_shape))),
                                           self.in_names + (None,)), in_shape + (self.lora_rank,), jnp.float32)
      b = self.param('lora_b', _param_init(nn.initializers.zeros_init(), (None,) + self.out_names),
                     (self.lora_rank,) + self.features, jnp.float32)
      xa = jnp.tensordot(x, a.astype(self.dtype), axes=n_in)
      y = y + self.lora_scale * jnp.tensordot(xa, b.astype(self.dtype), axes=1)
    if self.use_bias:
      bias = self.param('bias', _param_init(nn.initializers.zeros_init(), self.out_names), self.features, jnp.float32)
      y = y + bias.astype(self.dtype).reshape((1,) * (y.ndim - bias.ndim) + bias.shape)
    return y


@dataclasses.dataclass(frozen=True)
class BlockSpec:
  """The hyper-parameters one block needs (a hashable module field)."""
  num_heads: int
  head_dim: int
  mlp_dim: int
  causal: bool
  norm: str
  activation: str
  use_bias: bool
  out_std: float
  lora_rank: int
  lora_scale: float
  dtype: Any
  attention_impl: Optional[str]


def make_norm(norm: str, dtype, name: str):
  """LayerNorm (scale and bias, epsilon 1e-5) or RMSNorm (scale, epsilon 1e-6); statistics in float32."""
  scale_init = _param_init(nn.initializers.ones_init(), ('embed',))
  if norm == 'layernorm':
    return nn.LayerNorm(epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32, scale_init=scale_init,
                        bias_init=_param_init(nn.initializers.zeros_init(), ('embed',)), name=name)
  return nn.RMSNorm(epsilon=1e-6, dtype=dtype, param_dtype=jnp.float32, scale_init=scale_init, name=name)


def rope_tables(positions_L, head_dim: int):
  """(cos, sin) [L, head_dim / 2] float32 of RoPE angles positions * base^(-2i / head_dim)."""
  half = head_dim // 2
  inv_freq_K = ROPE_BASE ** (-jnp.arange(half, dtype=jnp.float32) * 2.0 / head_dim)
  angles_LK = positions_L.astype(jnp.float32)[:, None] * inv_freq_K[None, :]
  return jnp.cos(angles_LK), jnp.sin(angles_LK)


def apply_rope(x_BLHK, cos_LK, sin_LK):
  """Rotate-half RoPE on [B, L, heads, head_dim], computed in float32, returned in x's dtype."""
  half = x_BLHK.shape[-1] // 2
  x = x_BLHK.astype(jnp.float32)
  x1, x2 = x[..., :half], x[..., half:]
  cos, sin = cos_LK[None, :, None, :], sin_LK[None, :, None, :]
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x_BLHK.dtype)


class Attention(nn.Module):
  """Multi-head self-attention with optional RoPE and KV cache; returns (y [B, L, D], new (k, v) or None)."""
  spec: BlockSpec

  @nn.compact
  def __call__(self, x_BLD, rope, kv, index):
    s = self.spec
    dense = functools.partial(LoraDense, use_bias=s.use_bias, lora_rank=s.lora_rank, lora_scale=s.lora_scale,
                              dtype=s.dtype)
    heads = (s.num_heads, s.head_dim)
    q = dense(heads, ('embed',), ('heads', 'kv'), name='query')(x_BLD)
    k = dense(heads, ('embed',), ('heads', 'kv'), name='key')(x_BLD)
    v = dense(heads, ('embed',), ('heads', 'kv'), name='value')(x_BLD)
    if rope is not None:
      q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    if kv is None:
      o = jax.nn.dot_product_attention(q, k, v, is_causal=s.causal, implementation=s.attention_impl)
      new_kv = None
    else:
      k_cache, v_cache = kv
      start = (0, index, 0, 0)
      k_cache = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), start)
      v_cache = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), start)
      length, cache_len = x_BLD.shape[1], k_cache.shape[1]
      # Query t (at position index + t) sees the cache positions 0 .. index + t.
      mask_LS = jnp.arange(cache_len)[None, :] <= index + jnp.arange(length)[:, None]
      o = jax.nn.dot_product_attention(q.astype(k_cache.dtype), k_cache, v_cache, mask=mask_LS[None, None])
      new_kv = (k_cache, v_cache)
    y = dense((x_BLD.shape[-1],), ('heads', 'kv'), ('embed',), kernel_std=s.out_std, name='out')(o.astype(s.dtype))
    return y, new_kv


class Mlp(nn.Module):
  """GELU MLP W_o gelu(x W_i) or SwiGLU W_o (silu(x W_g) * x W_i)."""
  spec: BlockSpec

  @nn.compact
  def __call__(self, x_BLD):
    s = self.spec
    dense = functools.partial(LoraDense, use_bias=s.use_bias, lora_rank=s.lora_rank, lora_scale=s.lora_scale,
                              dtype=s.dtype)
    h = dense((s.mlp_dim,), ('embed',), ('mlp',), name='wi')(x_BLD)
    if s.activation == 'swiglu':
      h = nn.silu(dense((s.mlp_dim,), ('embed',), ('mlp',), name='wg')(x_BLD)) * h
    else:
      h = nn.gelu(h, approximate=True)
    return dense((x_BLD.shape[-1],), ('mlp',), ('embed',), kernel_std=s.out_std, name='wo')(h)


class Block(nn.Module):
  """Pre-norm block x + Attention(norm(x)), then + MLP(norm(x)); (x, kv, index, rope) -> (x, new kv)."""
  spec: BlockSpec

  @nn.compact
  def __call__(self, x_BLD, kv, index, rope):
    s = self.spec
    h, new_kv = Attention(s, name='attn')(make_norm(s.norm, s.dtype, 'attn_norm')(x_BLD), rope, kv, index)
    x_BLD = x_BLD + h
    x_BLD = x_BLD + Mlp(s, name='mlp')(make_norm(s.norm, s.dtype, 'mlp_norm')(x_BLD))
    return x_BLD, new_kv


class Transformer(nn.Module):
  """Decoder (causal) or encoder Transformer LM; see the module docstring.

  __call__(tokens_BL int, cache=None) -> (logits_BLV float32, hidden_BLD float32 after the final norm,
  new_cache or None).
  """
  vocab_size: int
  num_layers: int
  num_heads: int
  embed_dim: int
  mlp_dim: int
  max_len: int                  # longest sequence (positions / cache length)
  causal: bool = True           # False: bidirectional encoder (BERT-style masked LM)
  norm: str = 'rmsnorm'         # 'rmsnorm' | 'layernorm'  (pre-norm blocks + a final norm)
  positions: str = 'rope'       # 'rope' | 'learned'
  activation: str = 'gelu'      # 'gelu' | 'swiglu'
  tie_embeddings: bool = True   # logits = hidden @ embedding.T; else a separate 'unembed' kernel
  use_bias: bool = False        # biases in attention/MLP projections (GPT-2: True)
  scan_layers: bool = False     # nn.scan over the layers (params get a leading 'layers' axis)
  remat: bool = False           # nn.remat each block
  dtype: Any = jnp.float32      # compute dtype; parameters are always float32
  lora_rank: int = 0            # > 0: LoRA adapters on q, k, v, attention out and every MLP projection
  lora_alpha: float = 1.0       # adapter scale alpha / rank
  attention_impl: Optional[str] = None  # jax.nn.dot_product_attention implementation: None | 'xla' | 'cudnn'

  @property
  def head_dim(self) -> int:
    return self.embed_dim // self.num_heads

  def check(self):
    """ValueError naming the field to change when the hyper-parameters are inconsistent."""
    for field, value, valid in (('norm', self.norm, NORMS), ('positions', self.positions, POSITIONS),
                                ('activation', self.activation, ACTIVATIONS)):
      if value not in valid:
        raise ValueError(f'Transformer {field}={value!r} is not one of {valid}.')
    if min(self.vocab_size, self.num_layers, self.num_heads, self.embed_dim, self.mlp_dim, self.max_len) <= 0:
      raise ValueError('Transformer vocab_size, num_layers, num_heads, embed_dim, mlp_dim and max_len must be '
                       f'positive; got {self.vocab_size}, {self.num_layers}, {self.num_heads}, {self.embed_dim}, '
                       f'{self.mlp_dim}, {self.max_len}.')
    if self.embed_dim % self.num_heads:
      raise ValueError(f'Transformer embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}; '
                       'choose num_heads dividing embed_dim (head_dim = embed_dim / num_heads).')
    if self.positions == 'rope' and self.head_dim % 2:
      raise ValueError(f'RoPE rotates pairs of features, but head_dim = embed_dim / num_heads = {self.head_dim} is '
                       'odd; choose an even head_dim or positions="learned".')
    if self.lora_rank < 0:
      raise ValueError(f'Transformer lora_rank={self.lora_rank} must be >= 0 (0 = no adapters).')

  def block_spec(self) -> BlockSpec:
    return BlockSpec(num_heads=self.num_heads, head_dim=self.head_dim, mlp_dim=self.mlp_dim, causal=self.causal,
                     norm=self.norm, activation=self.activation, use_bias=self.use_bias,
                     out_std=INIT_STD / math.sqrt(2 * self.num_layers), lora_rank=self.lora_rank,
                     lora_scale=self.lora_alpha / self.lora_rank if self.lora_rank else 0.0, dtype=self.dtype,
                     attention_impl=self.attention_impl)

  def _check_inputs(self, tokens_BL, cache):
    if tokens_BL.ndim != 2:
      raise ValueError(f'Transformer takes tokens [batch, length], got shape {tokens_BL.shape}.')
    batch, length = tokens_BL.shape
    if length > self.max_len:
      raise ValueError(f'{length} tokens exceed the Transformer max_len={self.max_len}.')
    if cache is None:
      return
    if not self.causal:
      raise ValueError('A KV cache is for causal decoding; this Transformer has causal=False.')
    want = (self.num_layers, batch, None, self.num_heads, self.head_dim)
    for key in ('k', 'v'):
      shape = tuple(cache[key].shape)
      if len(shape) != 5 or any(w is not None and w != s for w, s in zip(want, shape)):
        raise ValueError(f"cache['{key}'] has shape {shape}, expected [num_layers={self.num_layers}, "
                         f'batch={batch}, length, heads={self.num_heads}, head_dim={self.head_dim}]; '
                         'build it with init_cache(model, batch, length).')

  @nn.compact
  def __call__(self, tokens_BL, cache=None):
    self.check()
    self._check_inputs(tokens_BL, cache)
    length = tokens_BL.shape[1]
    index = None if cache is None else jnp.asarray(cache['index'], jnp.int32)
    positions_L = jnp.arange(length, dtype=jnp.int32) + (0 if index is None else index)

    embedding_VD = self.param('token_embed', _param_init(nn.initializers.normal(INIT_STD), ('vocab', 'embed')),
                              (self.vocab_size, self.embed_dim), jnp.float32)
    x_BLD = jnp.take(embedding_VD, tokens_BL, axis=0)
    rope = None
    if self.positions == 'learned':
      pos_PD = self.param('pos_embed', _param_init(nn.initializers.normal(INIT_STD), (None, 'embed')),
                          (self.max_len, self.embed_dim), jnp.float32)
      x_BLD = x_BLD + jnp.take(pos_PD, positions_L, axis=0)[None]
    else:
      rope = rope_tables(positions_L, self.head_dim)
    if not self.is_initializing():
      x_BLD = self.perturb('embeddings', x_BLD)
    x_BLD = x_BLD.astype(self.dtype)

    spec = self.block_spec()
    block = nn.remat(Block, prevent_cse=not self.scan_layers) if self.remat else Block
    if self.scan_layers:
      layers = nn.scan(block, variable_axes={'params': 0}, split_rngs={'params': True},
                       in_axes=(0, nn.broadcast, nn.broadcast), length=self.num_layers,
                       metadata_params={nn.PARTITION_NAME: 'layers'})
      kv = None if cache is None else (cache['k'], cache['v'])
      x_BLD, new_kv = layers(spec, name='layers')(x_BLD, kv, index, rope)
    else:
      new = []
      for i in range(self.num_layers):
        kv = None if cache is None else (cache['k'][i], cache['v'][i])
        x_BLD, kv = block(spec, name=f'block_{i}')(x_BLD, kv, index, rope)
        new.append(kv)
      new_kv = None if cache is None else tuple(jnp.stack(t) for t in zip(*new))

    hidden_BLD = make_norm(self.norm, jnp.float32, 'final_norm')(x_BLD)
    if self.tie_embeddings:
      logits_BLV = jnp.einsum('bld,vd->blv', hidden_BLD.astype(self.dtype), embedding_VD.astype(self.dtype),
                              preferred_element_type=jnp.float32)
    else:
      unembed_DV = self.param('unembed', _param_init(nn.initializers.normal(INIT_STD), ('embed', 'vocab')),
                              (self.embed_dim, self.vocab_size), jnp.float32)
      logits_BLV = jnp.einsum('bld,dv->blv', hidden_BLD.astype(self.dtype), unembed_DV.astype(self.dtype),
                              preferred_element_type=jnp.float32)
    new_cache = None if cache is None else {'index': index + length, 'k': new_kv[0], 'v': new_kv[1]}
    return logits_BLV.astype(jnp.float32), hidden_BLD, new_cache


def init_cache(model: Transformer, batch_size: int, length: int) -> dict:
  """A zero KV cache for `batch_size` sequences of up to `length` positions (see the module docstring):
  {'index': int32 0, 'k', 'v': [num_layers, batch_size, length, num_heads, head_dim] in model.dtype}."""
  model.check()
  if not model.causal:
    raise ValueError('A KV cache is for causal decoding; this Transformer has causal=False.')
  if not 0 < length <= model.max_len:
    raise ValueError(f'cache length {length} must be in 1 .. max_len={model.max_len}.')
  shape = (model.num_layers, batch_size, length, model.num_heads, model.head_dim)
  return {'index': jnp.zeros((), jnp.int32), 'k': jnp.zeros(shape, model.dtype), 'v': jnp.zeros(shape, model.dtype)}


def _key_name(entry) -> str:
  """The name in one key-path entry: a str, or jax's DictKey / GetAttrKey / SequenceKey / FlattenedIndexKey."""
  for attr in ('key', 'name', 'idx'):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def is_lora_path(path: tuple) -> bool:
  """Whether a parameter's key path (from jax.tree_util.tree_flatten_with_path, or a tuple of str)
  names a LoRA adapter leaf ('lora_a' / 'lora_b')."""
  return any(_key_name(entry) in LORA_LEAVES for entry in path)


def lora_delta(a, b, kernel_shape):
  """A @ B reshaped to kernel_shape: a [lead..., in..., r], b [lead..., r, out...] -> [lead..., in..., out...]
  (lead = the 'layers' axis of scanned blocks, or nothing)."""
  n_lead = a.ndim + b.ndim - 2 - len(kernel_shape)
  rank = a.shape[-1]
  if n_lead < 0 or b.shape[n_lead] != rank or a.shape[:-1] + b.shape[n_lead + 1:] != tuple(kernel_shape):
    raise ValueError(f'LoRA factors of shapes {a.shape} and {b.shape} do not fit a kernel of shape {kernel_shape}.')
  lead = math.prod(kernel_shape[:n_lead])
  delta = jnp.matmul(a.reshape(lead, -1, rank), b.reshape(lead, rank, -1), precision=jax.lax.Precision.HIGHEST)
  return delta.reshape(kernel_shape)


def merge_lora(params, lora_alpha: float, lora_rank: int):
  """Parameters of the same model with lora_rank=0: every adapted kernel W + (alpha / rank) A @ B
  (reshaped to W's shape), the lora leaves removed. Works on any nesting of dicts (e.g. with or
  without a top-level 'params'); returns plain dicts."""
  if lora_rank <= 0:
    raise ValueError(f'merge_lora needs the adapters\' lora_rank > 0, got {lora_rank}.')
  scale = lora_alpha / lora_rank

  def merge(tree):
    if not isinstance(tree, Mapping):
      return tree
    if 'lora_a' in tree or 'lora_b' in tree:
      a, b, kernel = tree['lora_a'], tree['lora_b'], tree['kernel']
      if a.shape[-1] != lora_rank:
        raise ValueError(f'LoRA factor lora_a has rank {a.shape[-1]}, but merge_lora was given lora_rank={lora_rank}.')
      merged = {k: merge(v) for k, v in tree.items() if k not in LORA_LEAVES}
      merged['kernel'] = kernel + scale * lora_delta(a, b, kernel.shape).astype(kernel.dtype)
      return merged
    return {k: merge(v) for k, v in tree.items()}

  return merge(params)
