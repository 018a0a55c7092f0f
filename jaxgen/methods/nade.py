"""NADE: neural autoregressive distribution estimator (Larochelle & Murray, 2011), for binary data.

For binary x in {0, 1}^D in the natural (raster) order,

  h_i = sigmoid(c + W[:, :i] x_{<i})        [H], shared weights W [D, H] (row j = x_j's column)
  p(x_i = 1 | x_{<i}) = sigmoid(b_i + V_i . h_i)

The pre-activations of all D conditionals are one exclusive cumulative sum,
a_i = c + sum_{j<i} x_j W_j, so the exact log-likelihood costs O(DH) per
example. Sampling is a `jax.lax.fori_loop` over the dimensions that carries
a_i and adds x_i W_i after drawing x_i (compiled once, O(DH) per sample).

Data: `levels == 2` (e.g. config.data.binarize='dynamic'). `nll` is the exact
-log p(x) in nats.

Config keys:
  model.hidden   H, the number of hidden units (500 in the paper)
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen import distributions
from jaxgen.core.optim import make_optimizer
from jaxgen.errors import ConfigError
from jaxgen.methods import register
from jaxgen.methods.base import Method


class NADENet(nn.Module):
  """[B, D] binary -> [B, D] logits of p(x_i = 1 | x_{<i}) (natural order)."""
  dim: int
  hidden: int

  def setup(self):
    init = nn.initializers.normal(0.01)
    self.W = self.param('W', nn.with_logical_partitioning(init, ('embed', 'mlp')), (self.dim, self.hidden))
    self.V = self.param('V', nn.with_logical_partitioning(init, ('embed', 'mlp')), (self.dim, self.hidden))
    self.b = self.param('b', nn.with_logical_partitioning(nn.initializers.zeros_init(), ('embed',)), (self.dim,))
    self.c = self.param('c', nn.with_logical_partitioning(nn.initializers.zeros_init(), ('mlp',)), (self.hidden,))

  def __call__(self, x_BD):
    a_BDH = self.c[None, None] + exclusive_cumsum(x_BD[:, :, None] * self.W[None])
    return self.b[None] + jnp.einsum('bdh,dh->bd', jax.nn.sigmoid(a_BDH), self.V)


def exclusive_cumsum(v_BDH, block=None):
  """sum_{j<i} v[:, j] for every i: [B, D, H], in O(B D H (K + D/K)) matmul work, K = block.

  Blocked: within each block of K positions a [K, K] strictly-lower-triangular
  matmul, across blocks a cumsum of the block sums. On the project's 2-core CPU the NADE
  train step (B=100, D=784, H=500) ran at 1.47 s with it against 1.76 s with a shifted
  jnp.cumsum (measured 2026-11-29, two runs of one timing script).
  """
  batch, dim, hidden = v_BDH.shape
  block = block or max(1, math.isqrt(dim - 1) + 1)
  n = -(-dim // block)
  v_BNKH = jnp.pad(v_BDH, ((0, 0), (0, n * block - dim), (0, 0))).reshape(batch, n, block, hidden)
  tri_LK = jnp.tril(jnp.ones((block, block), v_BDH.dtype), -1)       # [l, k] = 1 iff k < l
  within_BNLH = jnp.einsum('lk,bnkh->bnlh', tri_LK, v_BNKH)
  sums_BNH = v_BNKH.sum(2)
  prefix_BNH = jnp.cumsum(sums_BNH, axis=1) - sums_BNH
  return (within_BNLH + prefix_BNH[:, :, None]).reshape(batch, n * block, hidden)[:, :dim]


@register('nade')
class NADE(Method):
  """Binary NADE; see the module docstring."""

  has_likelihood = True

  def __init__(self, config, info):
    super().__init__(config, info)
    if info.levels != 2 or info.dequantized:
      raise ConfigError(
          f"NADE models binary data, but dataset {info.name!r} has levels={info.levels} "
          f"(dequantized={info.dequantized}). Set config.data.binarize='dynamic' (or 'threshold'), "
          "or use method 'made' for data with more levels.")
    self.shape = tuple(info.shape)
    self.dim = math.prod(self.shape)
    self.net = NADENet(self.dim, int(config.model.hidden))
    self.tx = make_optimizer(config.optim, config.train.steps)

  def logits(self, params, x):
    """Logits of p(x_i = 1 | x_{<i}) for every i: [B, D]."""
    return self.net.apply({'params': params['nade']}, x.reshape(x.shape[0], -1))

  def log_prob(self, params, x):
    """Exact log p(x) per example: [B]."""
    x_BD = x.reshape(x.shape[0], -1)
    return distributions.bernoulli_log_prob(self.logits(params, x), x_BD).sum(-1)

  def init(self, rng, batch):
    k_net, k_state = jax.random.split(rng)
    params = {'nade': self.net.init(k_net, batch['x'][:1].reshape(1, -1))['params']}
    return self.initial_state(params, k_state)

  def train_step(self, state, batch):
    loss, grads = jax.value_and_grad(lambda p: -jnp.mean(self.log_prob(p, batch['x'])))(state.params)
    new_state = self.apply_gradients(state, grads)
    return new_state, {'loss': loss}

  def nll(self, params, batch, rng):
    """Exact -log p(x) per example in nats."""
    return -self.log_prob(params, batch['x'])

  def sample(self, params, rng, num):
    """Ancestral samples [num, *shape] in {0, 1}: a lax.fori_loop over the D dimensions."""
    p = params['nade']
    W, V, b, c = p['W'], p['V'], p['b'], p['c']
    keys = jax.random.split(rng, self.dim)

    def body(i, carry):
      x_ND, a_NH = carry
      logit_N = b[i] + jax.nn.sigmoid(a_NH) @ V[i]
      x_N = jax.random.bernoulli(keys[i], jax.nn.sigmoid(logit_N)).astype(a_NH.dtype)
      return x_ND.at[:, i].set(x_N), a_NH + x_N[:, None] * W[i][None]

    init = (jnp.zeros((num, self.dim), W.dtype), jnp.broadcast_to(c, (num, c.shape[0])))
    x_ND, _ = jax.lax.fori_loop(0, self.dim, body, init)
    return x_ND.reshape(num, *self.shape)
