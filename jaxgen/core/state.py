"""The TrainState pytree shared by every family.

`params` is a dict of named parameter trees (e.g. {'vae': ...} or
{'generator': ..., 'discriminator': ...}); `opt_state` is whatever the family's
optimizers need (a dict with the same names, usually); `ema_params` mirrors
`params` (or is None when the config has no EMA); `extra` holds non-trainable
state (batch statistics, persistent chains, ADA probability, ...); `rng` is the
run's base key. Randomness inside a step is `step_rng(state)`, never host numpy.
"""

from typing import Any

import flax.struct
import jax


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any = None
  extra: Any = flax.struct.field(default_factory=dict)
  rng: jax.Array = None

  def eval_params(self):
    """Parameters to evaluate and sample with: the EMA copy when there is one."""
    return self.ema_params if self.ema_params is not None else self.params


def step_rng(state: TrainState, *tags: int) -> jax.Array:
  """The key for this step: fold_in(state.rng, state.step), then any tags.

  A pure function of the run seed and the step, so a resumed run draws exactly
  the noise an uninterrupted run would have drawn.
  """
  key = jax.random.fold_in(state.rng, state.step)
  for tag in tags:
    key = jax.random.fold_in(key, tag)
  return key
