"""`nll`: per-example negative log-likelihood of the eval split, in nats and bits/dim.

Calls `method.nll(params, batch, rng)` (per-example nats of batch['x']) over
every eval example once, with a fixed rng so evaluating the same checkpoint
twice gives the same number. For uniformly dequantized data the model's
density is of x = (x_int + u) / L in [0, 1]^D, so the discrete NLL bound is
nll_continuous + D log L (each of the L^D bins has volume L^-D); bits/dim are
always reported on the discrete data.
"""

import math

import jax
import jax.numpy as jnp

from jaxgen.core.mesh import replicated, round_up_to_shards, shard_batch, to_host
from jaxgen.data import eval_batches
from jaxgen.errors import ConfigError
from jaxgen.evals import register


def dequantization_correction(info) -> float:
  """D log L nats for uniformly dequantized data with L levels per dimension; else 0."""
  if not info.dequantized:
    return 0.0
  return math.prod(info.shape) * math.log(info.levels)


@register('nll')
class NLLEvaluator:
  """Config: every, batch_size (default config.train.eval_batch_size; rounded up to split over the mesh), seed."""
  KEYS = ('batch_size', 'seed')

  def __init__(self, eval_config, ctx):
    if not ctx.method.has_likelihood:
      raise ConfigError(f'config.evals.nll needs a likelihood, but {type(ctx.method).__name__} defines none; '
                        'remove config.evals.nll.')
    self.ctx = ctx
    self.batch_size = round_up_to_shards(int(eval_config.get('batch_size', 0) or ctx.config.train.eval_batch_size),
                                         ctx.mesh)
    self.seed = int(eval_config.get('seed', 0))

    def summed(params, batch, rng):
      nll = ctx.method.nll(params, batch, rng)
      return jnp.sum(nll * batch['mask']), jnp.sum(batch['mask'])

    self._summed = jax.jit(summed, out_shardings=(replicated(ctx.mesh), replicated(ctx.mesh)))

  def __call__(self, state, step):
    ctx = self.ctx
    params = state.eval_params()
    rng = jax.random.PRNGKey(self.seed)
    totals = []
    for i, batch in enumerate(eval_batches(ctx.config.data, self.batch_size, jax.process_index(),
                                           jax.process_count())):
      totals.append(self._summed(params, shard_batch(batch, ctx.mesh), jax.random.fold_in(rng, i)))
    total = sum(float(to_host(s)) for s, _ in totals)
    count = sum(float(to_host(n)) for _, n in totals)
    nll = total / count + dequantization_correction(ctx.info)
    metrics = {'nll_nats': nll}
    if ctx.info.levels:  # bits/dim only make sense on discrete data
      metrics['nll_bpd'] = nll / (math.prod(ctx.info.shape) * math.log(2))
    return metrics
