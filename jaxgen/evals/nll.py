"""`nll`: per-example negative log-likelihood of the eval split, in nats and bits/dim.

Calls `method.nll(params, batch, rng)` (per-example nats of batch['x']) over
every eval example once, with a fixed rng so evaluating the same checkpoint
twice gives the same number. For uniformly dequantized data the model's
density is of x = (x_int + u) / L in [0, 1]^D, so the discrete NLL bound is
nll_continuous + D log L (each of the L^D bins has volume L^-D); bits/dim are
always reported on the discrete data.

Text batches carry 'num_bytes' (the UTF-8 bytes each window decodes to, jaxgen.data.pipeline): there
`nll_bpd` is bits per byte, total nats / (total num_bytes of the real examples * ln 2), comparable
across tokenizers (for the byte tokenizer num_bytes = seq_len, so it is bits per dimension as
before), and `perplexity` = exp(total nats / total tokens), seq_len tokens per window.
"""

import math

import jax.numpy as jnp

from jaxgen.errors import ConfigError
from jaxgen.evals import register
from jaxgen.evals.split_sums import SplitSums, eval_batch_size


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
    self.seed = int(eval_config.get('seed', 0))

    def summed(params, batch, rng):
      nll = ctx.method.nll(params, batch, rng)
      # A batch's bytes are integers below 2^24, so their float32 sum is exact; batches add up in float64.
      num_bytes = jnp.sum(batch['num_bytes'] * batch['mask']) if 'num_bytes' in batch else jnp.zeros(())
      return jnp.sum(nll * batch['mask']), jnp.sum(batch['mask']), num_bytes

    self._sums = SplitSums(ctx, summed, eval_batch_size(eval_config, ctx))

  def __call__(self, state, step):
    ctx = self.ctx
    total, count, num_bytes = self._sums(state.eval_params(), self.seed)
    nll = total / count + dequantization_correction(ctx.info)
    metrics = {'nll_nats': nll}
    dims = math.prod(ctx.info.shape)
    if ctx.info.kind == 'text' and num_bytes > 0:
      # nats per example / (bytes per example * ln 2): for bytes, bytes per example is exactly seq_len.
      metrics['nll_bpd'] = nll / (num_bytes / count * math.log(2))
      metrics['perplexity'] = math.exp(nll / dims)
    elif ctx.info.levels:  # bits/dim only make sense on discrete data
      metrics['nll_bpd'] = nll / (dims * math.log(2))
    return metrics
