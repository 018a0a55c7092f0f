"""The Method contract: what every family implements (DESIGN.md).

A Method is a small object holding its config, networks and optimizers, whose
functions are pure in (params/state, batch, rng) so the train loop can `jit`
and shard them. It knows nothing of meshes or files.

    init(rng, batch) -> TrainState              all params, optimizer state, extra state
    train_step(state, batch) -> (state, metrics) one optimisation step; pure; jitted by train.py
    sample(params, rng, num, **cond) -> array    generated examples in data space
    nll(params, batch, rng) -> [B] nats          per-example NLL of batch['x'] (likelihood families)

Batches are dicts of arrays: 'x' (the data, float32, shaped like
`DataInfo.shape` per example), optionally 'label' (int32), and in evaluation
'mask' (1.0 for real examples, 0.0 for padding). `params` passed to sample/nll
is `state.eval_params()` (EMA when configured).

Parameters returned by `init` may carry logical-axis boxes
(`nn.with_logical_partitioning`); the train loop derives shardings from them
and unboxes before training, so `train_step`, `sample` and `nll` see plain arrays.
"""

from typing import Any, Dict, Optional

import jax

from jaxgen.core.state import TrainState


class Method:
  """Base class; see the module docstring for the contract."""

  #: Whether `nll` returns an exact/bounded per-example NLL (enables the `nll` evaluator).
  has_likelihood: bool = False

  def __init__(self, config, info):
    """`config` is the whole experiment config; `info` is the dataset's DataInfo."""
    self.config = config
    self.info = info

  def init(self, rng: jax.Array, batch: Dict[str, jax.Array]) -> TrainState:
    raise NotImplementedError

  def train_step(self, state: TrainState, batch: Dict[str, jax.Array]):
    raise NotImplementedError

  def sample(self, params: Any, rng: jax.Array, num: int, **cond) -> jax.Array:
    raise NotImplementedError

  def nll(self, params: Any, batch: Dict[str, jax.Array], rng: jax.Array) -> jax.Array:
    raise NotImplementedError(f'{type(self).__name__} defines no likelihood.')

  def reconstruct(self, params: Any, batch: Dict[str, jax.Array], rng: jax.Array) -> Optional[jax.Array]:
    """Reconstructions of batch['x'] for families with an encoder; None otherwise."""
    return None
