"""`sample_quality`: Fréchet distance, KID, precision/recall and Inception Score of generated samples.

The protocol, identical for every family (so their numbers compare):

1. Reference features: every example of `reference_split` (default 'train';
   at most `num_reference` of them if > 0) of the run's dataset, as [0, 1]
   grayscale/colour images *without* binarization or dequantization noise, go
   through the feature network. They are computed once per (dataset, split,
   count, feature network + weights) and cached in
   $JAXGEN_CACHE_DIR/reference/ as .npz.
2. Samples: `num_samples` (default 10,000; 50,000 for paper comparisons) from
   `method.sample` on the evaluation (EMA) parameters, in batches of
   `batch_size`, batch i with key fold_in(PRNGKey(seed), i): the same
   checkpoint always gives the same samples and the same numbers.
   Class-conditional methods get balanced labels i % num_classes. Samples are
   clipped to [0, 1] (binary models give pixel probabilities).
3. Features of both sets are extracted in batches sharded over the mesh, and
   the metrics of jaxgen.evals.metrics are computed on the host in float64.

Reports fid, kid, kid_std, precision, recall, is, is_std and
sample_quality_seconds (wall time of steps 2-3).

Config: every, features ('classifier' | 'inception'), feature_workdir,
inception_weights, num_samples, num_reference, reference_split, batch_size,
seed, kid_subsets, kid_subset_size, pr_k, is_splits.
"""

import os
import time
import uuid

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core.mesh import batch_sharding, gather_to_host, replicated, round_up_to_shards, shard_batch, to_host
from jaxgen.data import eval_batches
from jaxgen.evals import features as features_lib
from jaxgen.evals import metrics, register, require_sampler


def clean_data_config(data_config, split: str, max_examples: int):
  """The data config with raw [0, 1] images of `split`: no binarization or dequantization."""
  clean = data_config.copy_and_resolve_references()
  with clean.unlocked():
    clean.binarize = ''
    clean.dequantize = False
    clean.eval_split = split
    clean.max_eval_examples = int(max_examples)
  return clean


class FeatureExtractor:
  """Batched, sharded feature extraction with one feature network."""

  def __init__(self, network: features_lib.FeatureNetwork, mesh):
    self.network, self.mesh = network, mesh
    self._apply = jax.jit(lambda params, x: network.apply(params, jnp.clip(x, 0.0, 1.0)),
                          in_shardings=(None, batch_sharding(mesh)),
                          out_shardings=(replicated(mesh), replicated(mesh)))

  def __call__(self, images) -> tuple:
    """(features, logits) as host float32 arrays for a batch sharded over the mesh."""
    feats, logits = self._apply(self.network.params, images)
    return to_host(feats), to_host(logits)

  def of_split(self, data_config, split: str, batch_size: int, max_examples: int = 0) -> np.ndarray:
    """Features of every (real) example of a split: [N, F]."""
    config = clean_data_config(data_config, split, max_examples)
    chunks = []
    for batch in eval_batches(config, batch_size, jax.process_index(), jax.process_count()):
      sharded = shard_batch(batch, self.mesh)
      feats, _ = self(sharded['x'])
      chunks.append(feats[gather_to_host(sharded['mask']) > 0])
    return np.concatenate(chunks)


def reference_features(extractor: FeatureExtractor, data_config, split: str, batch_size: int,
                       max_examples: int = 0, is_main: bool = True) -> np.ndarray:
  """Features of a dataset split, from the cache or computed and cached (module docstring, step 1)."""
  name = data_config.name.replace('/', '_')
  count = f'n{max_examples}' if max_examples else 'all'
  excluded = tuple(data_config.get('exclude_labels', ()))
  if excluded:
    count += '-without' + '_'.join(str(int(k)) for k in excluded)
  path = os.path.join(features_lib.cache_dir(), 'reference',
                      f'{name}-{split}-{count}-{extractor.network.name}.npz')
  if features_lib.all_processes_agree(os.path.exists(path)):
    with np.load(path) as stored:
      return stored['features']
  feats = extractor.of_split(data_config, split, batch_size, max_examples)
  if is_main:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f'{path}.{uuid.uuid4().hex}.npz'
    np.savez(temporary, features=feats)
    os.replace(temporary, path)  # atomic: a concurrent reader never sees half a file
  return feats


class SampleGenerator:
  """`num` samples in fixed-key batches (module docstring, step 2), kept sharded over the mesh.

  Batch i holds samples i*batch_size ... with key fold_in(PRNGKey(seed), i).
  When batch_size does not split over the mesh, each draw is padded to the
  next multiple and only its first batch_size rows are kept; with JAX's
  partitionable threefry (the default) those rows are the very draws of an
  unpadded batch, so the samples do not depend on the number of devices.
  """

  def __init__(self, method, mesh, batch_size: int, seed: int):
    self.method, self.mesh, self.seed = method, mesh, seed
    self.batch_size = int(batch_size)
    self.padded = padded = round_up_to_shards(self.batch_size, mesh)
    self.num_classes = method.info.num_classes if getattr(method, 'conditional', False) else 0
    sharded = batch_sharding(mesh)
    if self.num_classes:
      self._sample = jax.jit(lambda p, rng, label: method.sample(p, rng, padded, label=label),
                             in_shardings=(None, None, sharded), out_shardings=sharded)
    else:
      self._sample = jax.jit(lambda p, rng: method.sample(p, rng, padded), out_shardings=sharded)

  def batches(self, params, num: int):
    """Yields (images [padded, ...] sharded over the mesh, how many leading rows to keep)."""
    key = jax.random.PRNGKey(self.seed)
    for i, start in enumerate(range(0, num, self.batch_size)):
      rng = jax.random.fold_in(key, i)
      if self.num_classes:
        labels = (start + np.arange(self.padded)) % self.num_classes
        label = jax.device_put(labels.astype(np.int32), batch_sharding(self.mesh))
        images = self._sample(params, rng, label)
      else:
        images = self._sample(params, rng)
      yield images, min(self.batch_size, num - start)


def sample_metrics(real_feats, fake_feats, fake_logits, eval_config) -> dict:
  """The metrics of the module docstring from real and generated features."""
  mu_r, sigma_r = metrics.gaussian_stats(real_feats)
  mu_f, sigma_f = metrics.gaussian_stats(fake_feats)
  kid_mean, kid_std = metrics.kid(real_feats, fake_feats, num_subsets=int(eval_config.get('kid_subsets', 100)),
                                  subset_size=int(eval_config.get('kid_subset_size', 1000)),
                                  seed=int(eval_config.get('seed', 0)))
  precision, recall = metrics.precision_recall(real_feats, fake_feats, k=int(eval_config.get('pr_k', 3)))
  out = {'fid': metrics.frechet_distance(mu_r, sigma_r, mu_f, sigma_f), 'kid': kid_mean, 'kid_std': kid_std,
         'precision': precision, 'recall': recall}
  if fake_logits is not None:
    is_mean, is_std = metrics.inception_score(logits=fake_logits, splits=int(eval_config.get('is_splits', 10)))
    out.update({'is': is_mean, 'is_std': is_std})
  return {k: float(v) for k, v in out.items()}


@register('sample_quality')
class SampleQualityEvaluator:
  """See the module docstring."""

  KEYS = ('features', 'feature_workdir', 'inception_weights', 'num_samples', 'num_reference', 'reference_split',
          'batch_size', 'seed', 'kid_subsets', 'kid_subset_size', 'pr_k', 'is_splits')

  def __init__(self, eval_config, ctx):
    require_sampler(ctx.method, 'sample_quality')
    self.ctx, self.eval_config = ctx, eval_config
    self.num_samples = int(eval_config.get('num_samples', 10000))
    self.batch_size = int(eval_config.get('batch_size', 500))
    self.generator = SampleGenerator(ctx.method, ctx.mesh, self.batch_size, int(eval_config.get('seed', 0)))
    self.extractor = self.real = None  # prepared on first use: may train a classifier and read a split

  def prepare(self):
    """Feature network and reference features (module docstring, step 1)."""
    if self.extractor is None:
      ctx, eval_config = self.ctx, self.eval_config
      self.extractor = FeatureExtractor(features_lib.get(eval_config, ctx), ctx.mesh)
      self.real = reference_features(self.extractor, ctx.config.data, eval_config.get('reference_split', 'train'),
                                     round_up_to_shards(self.batch_size, ctx.mesh),
                                     int(eval_config.get('num_reference', 0)), ctx.is_main)

  def __call__(self, state, step):
    return self.measure(state.eval_params())[0]

  def measure(self, params, keep_images: int = 0):
    """(the metrics of `num_samples` samples from `params`, their first `keep_images` images on
    the host): module docstring, steps 2-3."""
    self.prepare()
    t0 = time.perf_counter()
    feats, logits, kept = [], [], []
    for images, keep in self.generator.batches(params, self.num_samples):
      f, lg = self.extractor(images)
      feats.append(f[:keep])
      logits.append(lg[:keep])
      if sum(len(k) for k in kept) < keep_images:
        kept.append(gather_to_host(images)[:keep])
    out = sample_metrics(self.real, np.concatenate(feats), np.concatenate(logits), self.eval_config)
    out['sample_quality_seconds'] = time.perf_counter() - t0
    return out, (np.concatenate(kept)[:keep_images] if kept else None)
