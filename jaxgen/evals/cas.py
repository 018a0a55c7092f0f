"""`cas`: classification accuracy score (Ravuri & Vinyals, 2019), and the classifier-fitting helper it shares.

CAS trains a fresh classifier on class-conditional *samples only* (balanced
labels, `num_samples` of them, generated with a fixed key) and reports its
accuracy on the *real* test split. A model whose samples carry the class
information of the data scores near the accuracy of the same classifier
trained on real data (reported by configs/classifier/<dataset>.py); a model
that ignores the label, or generates off-manifold images, scores far below.

The classifier is the architecture and optimiser of
configs/classifier/<dataset>.py (or `classifier_config`), trained for `steps`
steps (default that config's) with batches drawn by a fixed-seed permutation:
deterministic for a given checkpoint.

Config: every, num_samples (10000), steps, batch_size (sample generation),
seed, classifier_config.
"""

import os

import flax.linen as nn
import jax
import numpy as np

from jaxgen import methods
from jaxgen.core.config import load_config_file
from jaxgen.core.mesh import batch_sharding, gather_to_host, replicated, round_up_to_shards, shard_batch
from jaxgen.errors import ConfigError
from jaxgen.evals import features as features_lib
from jaxgen.evals import register, require_sampler
from jaxgen.evals.classification import accuracy_on_split
from jaxgen.evals.sample_quality import SampleGenerator, clean_data_config


def classifier_config(dataset: str, path: str = ''):
  """The classifier config used to judge samples of `dataset` (configs/classifier/<dataset>.py by default)."""
  path = path or features_lib.repo_classifier_config(dataset)
  if not os.path.exists(path):
    raise ConfigError(f'No classifier config for {dataset!r} at {path}; set classifier_config.')
  return load_config_file(path)


def fit_classifier(config, info, x: np.ndarray, y: np.ndarray, mesh, steps: int = 0, seed: int = 0):
  """(method, eval params): a classifier of `config` trained on host arrays x [N, ...], y [N].

  The step is the train loop's (`train.make_step_fn`: step count and EMA);
  batches are consecutive slices of epochs of permutations drawn from
  (seed, epoch); the global batch (config.train.batch_size, rounded up to split
  over the mesh) is divided among processes. The same inputs give the same
  parameters.
  """
  from jaxgen import train  # the train loop imports the evaluators: import it late
  config = config.copy_and_resolve_references()
  if steps:  # the learning-rate schedule spans the steps actually taken
    config.train.steps = int(steps)
  steps = int(config.train.steps)
  batch_size = round_up_to_shards(int(config.train.batch_size), mesh)
  method = methods.get('classifier')(config, info)
  share = batch_size // jax.process_count()
  step_fn = jax.jit(train.make_step_fn(method, float(config.train.ema_decay)),
                    in_shardings=(replicated(mesh), batch_sharding(mesh)),
                    out_shardings=(replicated(mesh), replicated(mesh)), donate_argnums=0)

  def batch(step):
    start = step * batch_size
    first, last = start // len(x), (start + batch_size - 1) // len(x)
    order = np.concatenate([np.random.default_rng((seed, e)).permutation(len(x)) for e in range(first, last + 1)])
    idx = order[start - first * len(x):][:batch_size]
    idx = idx[jax.process_index() * share:(jax.process_index() + 1) * share]
    return shard_batch({'x': x[idx], 'label': y[idx].astype(np.int32)}, mesh)

  init = jax.jit(method.init, out_shardings=replicated(mesh))
  state = nn.unbox(init(jax.random.PRNGKey(seed), batch(0)))
  for step in range(steps):
    # Bounded dispatch, as in the train loop: hundreds of queued steps over many (virtual) devices
    # can starve XLA:CPU's collectives into their rendezvous timeout.
    state = jax.block_until_ready(step_fn(state, batch(step))[0])
  return method, state.eval_params()


@register('cas')
class CASEvaluator:
  """See the module docstring."""
  KEYS = ('num_samples', 'steps', 'batch_size', 'seed', 'classifier_config')

  def __init__(self, eval_config, ctx):
    require_sampler(ctx.method, 'cas')
    if not getattr(ctx.method, 'conditional', False):
      raise ConfigError(f'config.evals.cas needs a class-conditional model; {ctx.config.method.name!r} with this '
                        'config is unconditional (e.g. set config.model.num_classes for the VAE).')
    self.ctx = ctx
    self.num = int(eval_config.get('num_samples', 10000))
    self.steps = int(eval_config.get('steps', 0))
    self.seed = int(eval_config.get('seed', 0))
    self.classifier_config = classifier_config(ctx.config.data.name, eval_config.get('classifier_config', ''))
    self.generator = SampleGenerator(ctx.method, ctx.mesh, int(eval_config.get('batch_size', 500)), self.seed)
    self.test_config = clean_data_config(ctx.config.data, ctx.config.data.eval_split, 0)

  def generate(self, params):
    """(samples [num, ...] clipped to [0, 1], labels [num]) on the host."""
    images = [gather_to_host(batch)[:keep] for batch, keep in self.generator.batches(params, self.num)]
    labels = np.arange(self.num) % self.ctx.info.num_classes  # the generator's balanced label cycle
    return np.clip(np.concatenate(images), 0.0, 1.0), labels

  def __call__(self, state, step):
    x, y = self.generate(state.eval_params())
    method, params = fit_classifier(self.classifier_config, self.ctx.info, x, y, self.ctx.mesh, self.steps,
                                    self.seed)
    result = accuracy_on_split(method.apply, params, self.test_config, self.ctx.mesh,
                               int(self.ctx.config.train.eval_batch_size))
    return {'cas': result['accuracy']}
