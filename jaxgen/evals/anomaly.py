"""`ood_auroc`: anomaly detection, i.e. how well a model's score separates its test data from other inputs.

Score: `method.anomaly_score` (the NLL for likelihood families, the squared
reconstruction error for autoencoders; higher = more anomalous). For each
out-of-distribution set named in `ood`, the evaluator reports
`ood_auroc_<set>`: the AUROC of that score for telling the OOD inputs
(positives) from the in-distribution eval split (negatives); 1 = perfect, 0.5 =
chance. Sets (images):

  noise      i.i.d. uniform pixels on the data's grid (fair coins for binary data)
  inverted   1 - x (negative images)
  flipped    x upside down
  heldout    eval-split examples of the classes in config.data.exclude_labels,
             which the model never saw in training (train with exclude_labels set)

Each set is built from the same fixed random subset of `max_examples` (default
500) eval examples (jaxgen.data.eval_subset), with noise keyed per example on
(`seed`, set, example index), so the number is deterministic and independent
of the mesh. The score's own randomness (e.g. an IWAE bound) uses
fold_in(seed, batch), so keep `batch_size` fixed when comparing runs.

Config: every, ood (default ('noise', 'inverted', 'flipped'), plus 'heldout'
when exclude_labels is set), max_examples, batch_size, seed.
"""

import jax
import numpy as np

from jaxgen.core.mesh import gather_to_host, replicated, round_up_to_shards, shard_batch, to_host
from jaxgen.data import eval_batches
from jaxgen.errors import ConfigError
from jaxgen.evals import metrics, register, require_score

_SETS = ('noise', 'inverted', 'flipped', 'heldout')


def uniform_noise_like(x: np.ndarray, info, keys) -> np.ndarray:
  """Uniform inputs in the same representation as x (grid values, dequantized, or binary); row i from keys[i]."""
  levels, out = info.levels, np.empty_like(x)
  for i, key in enumerate(keys):
    rng = np.random.default_rng(key)
    k = rng.integers(0, levels, size=x.shape[1:]).astype(np.float32)
    out[i] = (k + rng.random(x.shape[1:], dtype=np.float32)) / levels if info.dequantized else k / (levels - 1)
  return out


def transform(name: str, x: np.ndarray, info, keys) -> np.ndarray:
  """The OOD version of a batch; `keys[i]` seeds example i's noise (per example, so the mesh cannot change it)."""
  if name == 'noise':
    return uniform_noise_like(x, info, keys)
  if name == 'inverted':
    return 1.0 - x
  if name == 'flipped':
    return x[:, ::-1].copy()
  raise ValueError(name)


@register('ood_auroc')
class AnomalyEvaluator:
  """See the module docstring."""
  KEYS = ('ood', 'max_examples', 'batch_size', 'seed')

  def __init__(self, eval_config, ctx):
    require_score(ctx.method, 'ood_auroc')
    self.ctx = ctx
    data = ctx.config.data
    excluded = tuple(int(k) for k in data.get('exclude_labels', ()))
    default = ('noise', 'inverted', 'flipped') + (('heldout',) if excluded else ())
    self.sets = tuple(eval_config.get('ood', default))
    unknown = [s for s in self.sets if s not in _SETS]
    if unknown:
      raise ConfigError(f'config.evals.ood_auroc.ood: {unknown} not among {", ".join(_SETS)}.')
    if ctx.info.kind != 'image':
      raise ConfigError(f'config.evals.ood_auroc builds image OOD sets; {ctx.info.name!r} is {ctx.info.kind} data.')
    if 'heldout' in self.sets and not excluded:
      raise ConfigError("ood_auroc set 'heldout' needs config.data.exclude_labels: the classes held out "
                        'of training, whose test examples are the OOD set.')
    self.max_examples = int(eval_config.get('max_examples', 500))
    self.batch_size = round_up_to_shards(
        int(eval_config.get('batch_size', 0) or ctx.config.train.eval_batch_size), ctx.mesh)
    self.seed = int(eval_config.get('seed', 0))
    self.in_config = self._data_config(excluded)
    self.heldout_config = self._data_config(tuple(k for k in range(ctx.info.num_classes or 0)
                                                  if k not in excluded)) if excluded else None
    self._score = jax.jit(ctx.method.anomaly_score, out_shardings=replicated(ctx.mesh))

  def _data_config(self, exclude):
    config = self.ctx.config.data.copy_and_resolve_references()
    with config.unlocked():
      config.exclude_labels = tuple(exclude)
      config.max_eval_examples = self.max_examples
    return config

  def _scores(self, params, data_config, name=None) -> np.ndarray:
    """Scores of every example of the eval split (optionally transformed by `name`)."""
    key = jax.random.PRNGKey(self.seed)
    out = []
    for i, batch in enumerate(eval_batches(data_config, self.batch_size, jax.process_index(),
                                           jax.process_count(), with_index=True)):
      index = batch.pop('index')
      if name:
        keys = [(self.seed, _SETS.index(name), int(j)) for j in index]
        batch = dict(batch, x=transform(name, batch['x'], self.ctx.info, keys))
      sharded = shard_batch(batch, self.ctx.mesh)
      scores = to_host(self._score(params, sharded, jax.random.fold_in(key, i)))
      mask = gather_to_host(sharded['mask'])
      out.append(scores[mask > 0])
    return np.concatenate(out)

  def __call__(self, state, step):
    params = state.eval_params()
    inside = self._scores(params, self.in_config)
    result = {}
    for name in self.sets:
      if name == 'heldout':
        outside = self._scores(params, self.heldout_config)
      else:
        outside = self._scores(params, self.in_config, name)
      result[f'ood_auroc_{name}'] = float(metrics.auroc(inside, outside))
    return result
