"""Multi-layer LSTM / GRU language models over tokens (char/byte-level RNN LMs).

Network (tokens [B, L] int -> logits [B, L, V] of the *next* token at every position):

  x_0 = Embed(tokens)                                        [B, L, E]
  for layer l = 1 .. num_layers:  x_l = RNN_l(x_{l-1})       [B, L, H]  (the layer's outputs h_t)
  logits = Dense(x_num_layers)                               [B, L, V]  (untied from the embedding)

Cells (the equations of Flax's `nn.LSTMCell` and `nn.GRUCell`, with the same gate order and biases;
tests/test_rnn_lm.py checks one step against those cells fed the same weights):

  LSTM (Hochreiter & Schmidhuber 1997; forget gate of Gers et al. 2000):
    [i, f, g, o] = x_t W + b + h_{t-1} U                     W [in, 4H], U [H, 4H], b [4H]
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g),   h_t = sigmoid(o) * tanh(c_t)
    b's forget block starts at 1 (Jozefowicz et al. 2015), the rest at 0.
  GRU (Cho et al. 2014):
    [r, z, n_x] = x_t W + b,   [r_h, z_h, n_h] = h_{t-1} U   W [in, 3H], U [H, 3H], b [3H]
    r = sigmoid(r + r_h),  z = sigmoid(z + z_h),  n = tanh(n_x + r * (n_h + b_n))   b_n [H]
    h_t = (1 - z) * n + z * h_{t-1}

Only the recurrent half depends on the previous step, so each layer computes the input
projection x W + b for all L positions as one matmul and then runs the recurrence as one
`nn.scan` over time (a single compiled cell step: h U, the gates, the state update). Layers are
stacked in Python (num_layers is small for RNN LMs).

Parameter counts (tests/test_rnn_lm.py): with in_1 = E and in_l = H for l > 1,
  LSTM  V E + sum_l (in_l 4H + 4H + H 4H) + H V + V
  GRU   V E + sum_l (in_l 3H + 3H + H 3H + H) + H V + V

Precision: parameters are float32; `dtype` is the compute dtype of the matmuls (e.g. bfloat16).
The gate nonlinearities, the cell state c and the hidden state h (the scan's carry and the cache)
are float32, as are the returned logits and hidden outputs.

Sharding: parameters carry logical axis names for `config.mesh.rules`: the embedding
('vocab', 'embed'), input and recurrent kernels ('embed', 'mlp') with biases ('mlp',), the
output projection ('embed', 'vocab') with bias ('vocab',). A dimension the mesh axis does not
divide stays replicated (jaxgen.core.mesh.state_shardings).

Incremental decoding: `init_cache(model, B, length)` gives zero states; `model.apply(params, t, cache)`
starts from the cache's states and returns the states after t's last token, so a prompt can be fed
as one prefill call (L > 1) and then one token at a time (L == 1), the protocol of the Transformer's
KV cache. The result equals one call on the whole sequence (float rounding only).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

CELLS = {'lstm': 4, 'gru': 3}  # cell name -> number of gate blocks of width H


def _partitioned(init, names):
  return nn.with_logical_partitioning(init, names)


def _lstm_bias_init(key, shape, dtype=jnp.float32):
  """[4H] bias in gate order [i, f, g, o]: the forget block 1, the rest 0."""
  del key
  hidden = shape[0] // 4
  return jnp.zeros(shape, dtype).at[hidden:2 * hidden].set(1.0)


def _gatewise_orthogonal(key, shape, dtype=jnp.float32):
  """[H, G * H] recurrent kernel: an independent orthogonal [H, H] block per gate, as Flax's cells
  (Haar-distributed: QR of a Gaussian matrix with the signs of R's diagonal moved into Q).

  One unbatched QR per block, not one batched QR: jaxlib 0.10's batched CPU LAPACK kernels can
  deadlock on machines with few cores when two of them run at once (two layers' initializers in
  one jitted init hung forever on 2 cores; tests/test_rnn_lm.py initialises a full-size network)."""
  hidden, width = shape

  def block(block_key):
    q_HH, r_HH = jnp.linalg.qr(jax.random.normal(block_key, (hidden, hidden), jnp.float32))
    return q_HH * jnp.sign(jnp.diagonal(r_HH))[None, :]

  return jnp.concatenate([block(k) for k in jax.random.split(key, width // hidden)], axis=-1).astype(dtype)


def lstm_step(carry, pre_BG, U_HG, dtype):
  """One LSTM update. carry (c, h) [B, H] float32; pre_BG = x W + b [B, 4H]; -> ((c, h), h)."""
  c_BH, h_BH = carry
  gates_BG = pre_BG.astype(jnp.float32) + jnp.dot(h_BH.astype(dtype), U_HG.astype(dtype)).astype(jnp.float32)
  i, f, g, o = jnp.split(gates_BG, 4, axis=-1)
  c_BH = jax.nn.sigmoid(f) * c_BH + jax.nn.sigmoid(i) * jnp.tanh(g)
  h_BH = jax.nn.sigmoid(o) * jnp.tanh(c_BH)
  return (c_BH, h_BH), h_BH


def gru_step(carry, pre_BG, U_HG, b_n_H, dtype):
  """One GRU update. carry (h,) [B, H] float32; pre_BG = x W + b [B, 3H]; -> ((h,), h)."""
  (h_BH,) = carry
  rec_BG = jnp.dot(h_BH.astype(dtype), U_HG.astype(dtype)).astype(jnp.float32)
  r_x, z_x, n_x = jnp.split(pre_BG.astype(jnp.float32), 3, axis=-1)
  r_h, z_h, n_h = jnp.split(rec_BG, 3, axis=-1)
  r = jax.nn.sigmoid(r_x + r_h)
  z = jax.nn.sigmoid(z_x + z_h)
  n = jnp.tanh(n_x + r * (n_h + b_n_H[None]))
  h_BH = (1.0 - z) * n + z * h_BH
  return (h_BH,), h_BH


class _Recurrence(nn.Module):
  """The time step of one layer (scanned over L): owns the recurrent kernel U (and the GRU's b_n)."""
  hidden_dim: int
  cell: str
  dtype: Any

  @nn.compact
  def __call__(self, carry, pre_BG):
    H, G = self.hidden_dim, CELLS[self.cell] * self.hidden_dim
    U_HG = self.param('recurrent_kernel', _partitioned(_gatewise_orthogonal, ('embed', 'mlp')),
                      (H, G))
    if self.cell == 'lstm':
      return lstm_step(carry, pre_BG, U_HG, self.dtype)
    b_n_H = self.param('recurrent_bias', _partitioned(nn.initializers.zeros_init(), ('mlp',)), (H,))
    return gru_step(carry, pre_BG, U_HG, b_n_H, self.dtype)


class RNNLayer(nn.Module):
  """[B, L, in] -> [B, L, H] outputs and the final carry: input projection for all steps, then nn.scan."""
  hidden_dim: int
  cell: str = 'lstm'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BLI, carry):
    G = CELLS[self.cell] * self.hidden_dim
    bias_init = _lstm_bias_init if self.cell == 'lstm' else nn.initializers.zeros_init()
    pre_BLG = nn.Dense(G, dtype=self.dtype, name='input',
                       kernel_init=_partitioned(nn.initializers.lecun_normal(), ('embed', 'mlp')),
                       bias_init=_partitioned(bias_init, ('mlp',)))(x_BLI)
    scan = nn.scan(_Recurrence, variable_broadcast='params', split_rngs={'params': False}, in_axes=1, out_axes=1)
    carry, h_BLH = scan(self.hidden_dim, self.cell, self.dtype, name='recurrence')(carry, pre_BLG)
    return h_BLH, carry


def zero_carry(cell: str, batch_size: int, hidden_dim: int):
  """The zero state of one layer: (c, h) for the LSTM, (h,) for the GRU, each [B, H] float32."""
  zeros = jnp.zeros((batch_size, hidden_dim), jnp.float32)
  return (zeros, zeros) if cell == 'lstm' else (zeros,)


class RNNLM(nn.Module):
  """tokens [B, L] -> (logits [B, L, V] f32, last layer's outputs [B, L, H] f32, new cache or None)."""
  vocab_size: int
  embed_dim: int
  hidden_dim: int
  num_layers: int
  cell: str = 'lstm'  # 'lstm' | 'gru'
  dtype: Any = jnp.float32  # compute dtype; parameters are float32

  def setup(self):
    if self.cell not in CELLS:
      raise ValueError(f"RNNLM cell must be one of {sorted(CELLS)}, got '{self.cell}'.")
    if self.num_layers < 1:
      raise ValueError(f'RNNLM needs num_layers >= 1, got {self.num_layers}.')
    self.embed = nn.Embed(self.vocab_size, self.embed_dim,
                          embedding_init=_partitioned(nn.initializers.normal(1.0), ('vocab', 'embed')))
    self.layers = [RNNLayer(self.hidden_dim, self.cell, self.dtype) for _ in range(self.num_layers)]
    self.head = nn.Dense(self.vocab_size, dtype=self.dtype,
                         kernel_init=_partitioned(nn.initializers.lecun_normal(), ('embed', 'vocab')),
                         bias_init=_partitioned(nn.initializers.zeros_init(), ('vocab',)))

  def __call__(self, tokens_BL, cache=None):
    """Logits of the next token at each position. cache=None: start from zero states, return None as
    the cache; otherwise start from the cache's states and return the states after the last token."""
    return self.from_embeddings(self.embed(tokens_BL).astype(self.dtype), cache)

  def from_embeddings(self, x_BLE, cache=None):
    """The network above the embedding lookup (for gradients with respect to the inputs)."""
    B, L = x_BLE.shape[:2]
    carries = cache['layers'] if cache is not None else [zero_carry(self.cell, B, self.hidden_dim)] * self.num_layers
    h_BLH, new_carries = x_BLE, []
    for layer, carry in zip(self.layers, carries):
      h_BLH, carry = layer(h_BLH.astype(self.dtype), tuple(carry))
      new_carries.append(carry)
    logits_BLV = self.head(h_BLH.astype(self.dtype)).astype(jnp.float32)
    new_cache = None if cache is None else {'index': cache['index'] + L, 'layers': new_carries}
    return logits_BLV, h_BLH.astype(jnp.float32), new_cache


def init_cache(model: RNNLM, batch_size: int, length: int) -> dict:
  """Zero states for every layer: {'index': int32 0 (tokens fed so far), 'layers': [carry per layer]}.

  A layer's carry is (c, h) for the LSTM and (h,) for the GRU, each [batch_size, hidden_dim] float32.
  `length` is unused (the state does not grow with the sequence); it keeps the Transformer cache's signature.
  """
  del length
  return {'index': jnp.zeros((), jnp.int32),
          'layers': [zero_carry(model.cell, batch_size, model.hidden_dim) for _ in range(model.num_layers)]}
