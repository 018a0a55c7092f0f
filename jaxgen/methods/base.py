"""The Method contract: what every family implements (DESIGN.md).

A Method is a small object holding its config, networks and optimizers, whose
functions are pure in (params/state, batch, rng) so the train loop can `jit`
and shard them. It knows nothing of meshes or files.

    init(rng, batch) -> TrainState              all params, optimizer state, extra state
    train_step(state, batch) -> (state, metrics) one optimisation step; pure; jitted by train.py
    sample(params, rng, num, **cond) -> array    generated examples in data space
                                                 conditional methods take label=int32 [num], the classes
                                                 to generate; label=None: jnp.arange(num) % num_classes
    nll(params, batch, rng) -> [B] nats          per-example NLL of batch['x'] (likelihood families)
    anomaly_score(params, batch, rng) -> [B]     higher = less typical; default: nll, else
                                                 squared reconstruction error

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
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen.core.state import TrainState
from jaxgen.errors import ConfigError


def require_discrete_images(info, family: str):
  """ConfigError unless the dataset is images [H, W, C] of discrete values (not dequantized), as the
  autoregressive image families (a distribution over `levels` values per sub-pixel) need."""
  if info.kind != 'image' or len(info.shape) != 3:
    raise ConfigError(f'{family} models images [H, W, C]; dataset {info.name!r} has kind={info.kind!r}, '
                      f'shape {tuple(info.shape)}. Use an image dataset (or MADE/NADE for vectors).')
  if info.levels is None or info.levels < 2 or info.dequantized:
    raise ConfigError(
        f'{family} needs discrete data (a distribution over `levels` values per sub-pixel), but dataset '
        f'{info.name!r} has levels={info.levels}, dequantized={info.dequantized}. Set '
        'config.data.dequantize=False.')


def method_settings(config, defaults: dict, family: str):
  """config.method's values over `defaults` (a ConfigDict of every key in `defaults`); ConfigError
  naming the valid keys when config.method holds one that `defaults` does not (besides 'name')."""
  m = config.method
  unknown = sorted(set(m.keys()) - set(defaults) - {'name'})
  if unknown:
    raise ConfigError(f'config.method has unknown key(s) {", ".join(unknown)} for the {family}; valid keys: '
                      f'{", ".join(sorted(defaults))}.')
  return ml_collections.ConfigDict({k: m.get(k, v) for k, v in defaults.items()})


class Method:
  """Base class; see the module docstring for the contract."""

  #: Whether `nll` returns an exact/bounded per-example NLL (enables the `nll` evaluator).
  has_likelihood: bool = False
  #: Whether the model is class-conditional: train/nll/reconstruct read batch['label'], sample takes `label=`.
  conditional: bool = False

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

  # ---- helpers for families with one optimizer `self.tx` over all of their parameters --------

  def initial_state(self, params: Any, rng: jax.Array) -> TrainState:
    """The step-0 TrainState: `params`, `self.tx`'s state for them, and a copy of them as the EMA
    parameters when config.train.ema_decay > 0 (the train loop updates those after each step)."""
    ema = jax.tree.map(jnp.copy, params) if self.config.train.ema_decay > 0 else None
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.tx.init(params),
                      ema_params=ema, extra={}, rng=rng)

  def apply_gradients(self, state: TrainState, grads: Any) -> TrainState:
    """`state` after one `self.tx` update of all its parameters with `grads`, the step advanced."""
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates), opt_state=opt_state)

  def reconstruct(self, params: Any, batch: Dict[str, jax.Array], rng: jax.Array) -> Optional[jax.Array]:
    """Reconstructions of batch['x'] for families with an encoder; None otherwise."""
    return None

  def anomaly_score(self, params: Any, batch: Dict[str, jax.Array], rng: jax.Array) -> jax.Array:
    """Per-example score, higher for less typical inputs (the `ood_auroc` evaluator's score).

    Likelihood families: the NLL in nats. Families with an encoder: the summed
    squared error of `reconstruct`. Others override it (e.g. an energy).
    """
    if self.has_likelihood:
      return self.nll(params, batch, rng)
    recon = self.reconstruct(params, batch, rng)
    if recon is None:
      raise NotImplementedError(f'{type(self).__name__} defines no anomaly score (no likelihood, no '
                                'reconstruction); remove config.evals.ood_auroc.')
    error = (recon - batch['x']) ** 2
    return error.reshape(error.shape[0], -1).sum(-1)
