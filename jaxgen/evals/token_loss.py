"""`token_loss`: mean cross-entropy per scored token of the eval split, and its perplexity.

Calls `method.token_loss(params, batch, rng) -> (summed nats [B], scored tokens [B])` over every eval
example once, with a fixed rng (a masked LM's masks are then the same at every evaluation). For a
causal LM every token is scored (the `nll` evaluator's numbers, per token instead of per byte); for a
masked LM only the selected positions are, so its perplexity is that of the masked tokens given the rest.
"""

import math

import jax.numpy as jnp

from jaxgen.errors import ConfigError
from jaxgen.evals import register
from jaxgen.evals.split_sums import SplitSums, eval_batch_size


@register('token_loss')
class TokenLossEvaluator:
  """Config: every, batch_size (default config.train.eval_batch_size), seed. Metrics: token_loss (nats), perplexity."""
  KEYS = ('batch_size', 'seed')

  def __init__(self, eval_config, ctx):
    if not hasattr(ctx.method, 'token_loss'):
      raise ConfigError(f'config.evals.token_loss needs a language model; {type(ctx.method).__name__} has no '
                        'token_loss. Remove config.evals.token_loss.')
    self.seed = int(eval_config.get('seed', 0))

    def summed(params, batch, rng):
      nats_B, count_B = ctx.method.token_loss(params, batch, rng)
      return jnp.sum(nats_B * batch['mask']), jnp.sum(count_B * batch['mask'])

    self._sums = SplitSums(ctx, summed, eval_batch_size(eval_config, ctx))

  def __call__(self, state, step):
    nats, tokens = self._sums(state.eval_params(), self.seed)
    loss = nats / max(tokens, 1.0)
    return {'token_loss': loss, 'perplexity': math.exp(min(loss, 700.0))}
