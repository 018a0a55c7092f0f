"""`preference_accuracy`: how often a preference method scores the chosen completion above the rejected one.

Over every pair of the eval split (a dataset of kind 'pairs'), with `method.pair_scores(params, batch)
-> (chosen [B], rejected [B])`: the reward model's rewards, or DPO's implicit rewards
beta (log pi - log pi_ref). Reports `preference_accuracy` (the fraction with chosen > rejected) and
`preference_margin` (the mean of chosen - rejected).
"""

import jax.numpy as jnp

from jaxgen.errors import ConfigError
from jaxgen.evals import register
from jaxgen.evals.split_sums import SplitSums, eval_batch_size


@register('preference_accuracy')
class PreferenceAccuracyEvaluator:
  """Config: every, batch_size (default config.train.eval_batch_size)."""
  KEYS = ('batch_size',)

  def __init__(self, eval_config, ctx):
    if not hasattr(ctx.method, 'pair_scores') or ctx.info.kind != 'pairs':
      raise ConfigError('config.evals.preference_accuracy needs a preference method (reward_model, dpo) trained '
                        f'on preference pairs; this run is {ctx.config.method.name!r} on {ctx.info.name!r}.')

    def summed(params, batch, rng):
      chosen_B, rejected_B = ctx.method.pair_scores(params, batch)
      mask_B = batch['mask']
      return (jnp.sum((chosen_B > rejected_B) * mask_B), jnp.sum((chosen_B - rejected_B) * mask_B),
              jnp.sum(mask_B))

    self._sums = SplitSums(ctx, summed, eval_batch_size(eval_config, ctx))

  def __call__(self, state, step):
    right, margin, count = self._sums(state.eval_params())
    return {'preference_accuracy': right / max(count, 1.0), 'preference_margin': margin / max(count, 1.0)}
