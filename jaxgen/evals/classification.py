"""`classification`: test accuracy and cross-entropy of a classifier run (config.method.name=classifier).

Config: every, batch_size (default config.train.eval_batch_size), split (default
config.data.eval_split). Reports `accuracy` and `xent_nats` over every example
of the split once.
"""

import jax
import jax.numpy as jnp
import optax

from jaxgen.core.mesh import replicated, round_up_to_shards, shard_batch, to_host
from jaxgen.data import eval_batches
from jaxgen.errors import ConfigError
from jaxgen.evals import register


def accuracy_on_split(apply_fn, params, data_config, mesh, batch_size: int, split=None) -> dict:
  """{'accuracy', 'xent_nats'} of `apply_fn(params, x) -> (features, logits)` over a whole split."""
  batch_size = round_up_to_shards(batch_size, mesh)

  def summed(params, batch):
    _, logits = apply_fn(params, batch['x'])
    correct = (jnp.argmax(logits, -1) == batch['label']) * batch['mask']
    xent = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']) * batch['mask']
    return jnp.stack([correct.sum(), xent.sum(), batch['mask'].sum()])

  summed = jax.jit(summed, out_shardings=replicated(mesh))
  totals = [summed(params, shard_batch(batch, mesh))
            for batch in eval_batches(data_config, batch_size, jax.process_index(), jax.process_count(), split)]
  correct, xent, count = to_host(sum(totals)).tolist()
  return {'accuracy': correct / count, 'xent_nats': xent / count}


@register('classification')
class ClassificationEvaluator:
  KEYS = ('batch_size', 'split')

  def __init__(self, eval_config, ctx):
    if not hasattr(ctx.method, 'apply') or not ctx.info.num_classes:
      raise ConfigError('config.evals.classification needs a classifier run on labelled data '
                        '(config.method.name=classifier).')
    self.ctx = ctx
    self.batch_size = int(eval_config.get('batch_size', 0) or ctx.config.train.eval_batch_size)
    self.split = eval_config.get('split', None)

  def __call__(self, state, step):
    return accuracy_on_split(self.ctx.method.apply, state.eval_params(), self.ctx.config.data, self.ctx.mesh,
                             self.batch_size, self.split)
