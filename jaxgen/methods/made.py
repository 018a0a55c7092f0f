"""MADE: masked autoencoder for distribution estimation (Germain et al., 2015), for discrete data.

The network (`jaxgen.models.masked.MADE`) maps x [B, D] to per-dimension
parameters of p(x_d | x_{<d}) in one pass, output d seeing only the inputs
before d in the mask set's ordering:

  levels == 2   one Bernoulli logit per dimension (binarized data).
  levels > 2    a `levels`-way softmax per dimension (x = k / (levels - 1); digits: 17,
                8-bit: 256). The network's input is x itself (one value per dimension).

Order/connectivity-agnostic training (the paper's "mask sampling"): the network
holds `method.num_masks` precomputed mask sets and each training step uses the
one picked by the step's rng. With `model.ordering='random'` each set also has its
own input ordering; with 'natural' only the hidden connectivity changes.

At test time `nll` averages p(x) over the first `method.eval_masks` mask sets (the
paper's ensemble): -log (1/E sum_m p_m(x)) = -(logsumexp_m log p_m(x) - log E), an
exact likelihood of the mixture. `sample` draws from mask set 0 (the first
member) with a `jax.lax.fori_loop` over the dimensions in its ordering, one
network pass per dimension (compiled once).

Config keys:
  model.hidden         widths of the masked hidden layers
  model.ordering       'natural' | 'random' (input ordering per mask set)
  model.direct         True: add the masked direct input -> output connection
  model.mask_seed      seed of the mask sets
  method.num_masks     mask sets used in training (1 = a single fixed MADE)
  method.eval_masks    mask sets averaged by `nll` (<= num_masks)
"""

import math

import jax
import jax.numpy as jnp

from jaxgen import distributions
from jaxgen.core.optim import make_optimizer
from jaxgen.core.state import step_rng
from jaxgen.errors import ConfigError
from jaxgen.methods import register
from jaxgen.methods.base import Method
from jaxgen.models import masked


@register('made')
class MADEMethod(Method):
  """Bernoulli / categorical MADE; see the module docstring."""

  has_likelihood = True

  def __init__(self, config, info):
    super().__init__(config, info)
    m = config.model
    if info.levels is None or info.dequantized:
      raise ConfigError(
          f'MADE models discrete data (a Bernoulli or `levels`-way softmax per dimension), but dataset '
          f'{info.name!r} has levels={info.levels}, dequantized={info.dequantized}. Turn off '
          "config.data.dequantize, or use method 'maf' for continuous data.")
    self.shape = tuple(info.shape)
    self.dim = math.prod(self.shape)
    self.levels = int(info.levels)
    self.binary = self.levels == 2
    self.num_masks = int(config.method.get('num_masks', 1))
    self.eval_masks = int(config.method.get('eval_masks', 1))
    ordering = m.get('ordering', 'natural')
    if ordering not in masked.ORDERINGS:
      raise ConfigError(f'config.model.ordering={ordering!r} is not one of {", ".join(masked.ORDERINGS)}.')
    if self.num_masks < 1 or not 1 <= self.eval_masks <= self.num_masks:
      raise ConfigError(f'config.method.num_masks={self.num_masks} must be >= 1 and config.method.eval_masks='
                        f'{self.eval_masks} in [1, num_masks].')
    self.net = masked.MADE(dim=self.dim, hidden=tuple(m.hidden), n_params=1 if self.binary else self.levels,
                           num_masks=self.num_masks, ordering=ordering, seed=int(m.get('mask_seed', 0)),
                           direct=bool(m.get('direct', False)))
    self.orderings = masked.orderings(self.dim, self.num_masks, ordering, int(m.get('mask_seed', 0)))
    self.tx = make_optimizer(config.optim, config.train.steps)

  def outputs(self, params, x, mask_index=0):
    """Per-dimension conditional parameters [B, D, n_params] under mask set `mask_index`."""
    return self.net.apply({'params': params['made']}, x.reshape(x.shape[0], -1), mask_index)

  def log_prob(self, params, x, mask_index=0):
    """Exact log p(x) per example under mask set `mask_index`: [B]."""
    x_BD = x.reshape(x.shape[0], -1)
    out_BDP = self.outputs(params, x_BD, mask_index)
    if self.binary:
      return distributions.bernoulli_log_prob(out_BDP[..., 0], x_BD).sum(-1)
    index = jnp.round(x_BD * (self.levels - 1)).astype(jnp.int32)
    logp = jax.nn.log_softmax(out_BDP, axis=-1)
    return jnp.take_along_axis(logp, index[..., None], axis=-1)[..., 0].sum(-1)

  def ensemble_log_prob(self, params, x, num_masks=None):
    """log (1/E sum_{m<E} p_m(x)), E = num_masks (default method.eval_masks): [B]."""
    e = int(num_masks or self.eval_masks)
    lp_EB = jax.lax.map(lambda m: self.log_prob(params, x, m), jnp.arange(e))
    return jax.nn.logsumexp(lp_EB, axis=0) - math.log(e)

  def init(self, rng, batch):
    k_net, k_state = jax.random.split(rng)
    params = {'made': self.net.init(k_net, batch['x'][:1].reshape(1, -1))['params']}
    return self.initial_state(params, k_state)

  def train_step(self, state, batch):
    mask_index = jax.random.randint(step_rng(state), (), 0, self.num_masks)
    loss, grads = jax.value_and_grad(
        lambda p: -jnp.mean(self.log_prob(p, batch['x'], mask_index)))(state.params)
    new_state = self.apply_gradients(state, grads)
    return new_state, {'loss': loss}

  def nll(self, params, batch, rng):
    """Exact -log p(x) per example in nats of the `eval_masks`-member ensemble (one mask set: that MADE)."""
    return -self.ensemble_log_prob(params, batch['x'])

  def sample(self, params, rng, num, mask_index=0):
    """Ancestral samples [num, *shape] on the grid k / (levels - 1), from mask set `mask_index` (static int).

    A lax.fori_loop over positions t = 0..D-1 draws dimension orderings[mask_index][t]
    from one network pass on the partially generated x.
    """
    order = jnp.asarray(self.orderings[mask_index])
    keys = jax.random.split(rng, self.dim)

    def body(t, x_ND):
      d = order[t]
      out_NP = jax.lax.dynamic_index_in_dim(self.outputs(params, x_ND, mask_index), d, axis=1, keepdims=False)
      if self.binary:
        value = jax.random.bernoulli(keys[t], jax.nn.sigmoid(out_NP[:, 0])).astype(x_ND.dtype)
      else:
        value = jax.random.categorical(keys[t], out_NP, axis=-1).astype(x_ND.dtype) / (self.levels - 1)
      return x_ND.at[:, d].set(value)

    x_ND = jax.lax.fori_loop(0, self.dim, body, jnp.zeros((num, self.dim), jnp.float32))
    return x_ND.reshape(num, *self.shape)
