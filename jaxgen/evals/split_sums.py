"""Totals of per-batch sums over the whole eval split: the loop the likelihood-style evaluators share."""

import jax

from jaxgen.core.mesh import replicated, round_up_to_shards, shard_batch, to_host
from jaxgen.data import eval_batches


def eval_batch_size(eval_config, ctx) -> int:
  """config.evals.<name>.batch_size (default config.train.eval_batch_size), rounded up to split over the mesh."""
  return round_up_to_shards(int(eval_config.get('batch_size', 0) or ctx.config.train.eval_batch_size), ctx.mesh)


class SplitSums:
  """`summed(params, batch, rng) -> tuple of scalars` (masked sums over one batch), jitted once, added up
  over every eval batch (batch i gets rng fold_in(PRNGKey(seed), i)); returns the totals as floats."""

  def __init__(self, ctx, summed, batch_size: int):
    self.ctx = ctx
    self.batch_size = batch_size
    self._summed = jax.jit(summed, out_shardings=replicated(ctx.mesh))

  def __call__(self, params, seed: int = 0) -> tuple:
    rng = jax.random.PRNGKey(seed)
    sums = [self._summed(params, shard_batch(batch, self.ctx.mesh), jax.random.fold_in(rng, i))
            for i, batch in enumerate(eval_batches(self.ctx.config.data, self.batch_size, jax.process_index(),
                                                   jax.process_count()))]
    return tuple(sum(float(to_host(s[k])) for s in sums) for k in range(len(sums[0])))
