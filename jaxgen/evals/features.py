"""Feature networks for the sample-quality metrics, and the on-disk cache they share.

`config.evals.sample_quality.features` picks one:

  'classifier'  the penultimate layer of a jaxgen classifier run (LeNet-style for
                28x28, an MLP for 8x8; configs/classifier/<dataset>.py). With no
                `feature_workdir`, the run lives in
                $JAXGEN_CACHE_DIR/classifiers/<dataset>-<config hash> and is trained there
                from configs/classifier/<dataset>.py the first time it is needed
                (deterministic: same config, same seed), then reused.
  'inception'   the FID Inception-v3 (pool3 2048-d, 1008-way logits) with the
                pytorch-fid weights file (jaxgen/evals/inception.py, README).

A FeatureNetwork's `name` fingerprints the network *and its weights*, so cached
reference statistics can never be reused with different weights.
"""

import dataclasses
import fcntl
import hashlib
import os
from typing import Any, Callable

import jax
import numpy as np

import jaxgen
from jaxgen.core.mesh import gather_to_host
from jaxgen.errors import ConfigError, DataError


def cache_dir() -> str:
  """$JAXGEN_CACHE_DIR, else ~/.cache/jaxgen: classifiers, reference statistics, Inception weights."""
  return os.environ.get('JAXGEN_CACHE_DIR') or os.path.join(os.path.expanduser('~'), '.cache', 'jaxgen')


@dataclasses.dataclass
class FeatureNetwork:
  """apply(params, images in [0, 1], [B, H, W, C]) -> (features [B, F], logits [B, K])."""
  name: str
  apply: Callable
  params: Any
  feature_dim: int
  num_classes: int


def all_processes_agree(flag: bool) -> bool:
  """`flag` if it holds on every process, else False on all of them.

  Branches that lead into collectives (computing features, training) must be
  taken by every process or by none; per-host caches can disagree.
  """
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils
  return bool(np.all(multihost_utils.process_allgather(np.array([flag], np.bool_))))


def fingerprint(params) -> str:
  """A short hash of every parameter's bytes (in tree order)."""
  digest = hashlib.sha1()
  for leaf in jax.tree.leaves(params):
    digest.update(np.ascontiguousarray(gather_to_host(leaf)).tobytes())
  return digest.hexdigest()[:12]


def repo_classifier_config(dataset: str) -> str:
  return os.path.join(os.path.dirname(os.path.dirname(jaxgen.__file__)), 'configs', 'classifier', f'{dataset}.py')


def default_classifier_workdir(dataset: str, config) -> str:
  """$JAXGEN_CACHE_DIR/classifiers/<dataset>-<hash of the resolved config>: a changed config trains anew."""
  digest = hashlib.sha1(config.to_json(sort_keys=True).encode()).hexdigest()[:10]
  return os.path.join(cache_dir(), 'classifiers', f'{dataset.replace("/", "_")}-{digest}')


def ensure_classifier(dataset: str) -> str:
  """The cached classifier run for `dataset`, trained from configs/classifier/<dataset>.py if absent."""
  from jaxgen import train  # the train loop imports the evaluators: import it late
  from jaxgen.core.config import load_config_file
  config_path = repo_classifier_config(dataset)
  if not os.path.exists(config_path):
    raise DataError(f'No feature classifier config for dataset {dataset!r}: there is no {config_path} (the configs/ '
                    'folder comes with the source tree: install jaxgen with `pip install -e .`). Train a '
                    'classifier run (config.method.name=classifier) and pass its workdir as '
                    "feature_workdir, or use features='inception'.")
  config = load_config_file(config_path)
  workdir = default_classifier_workdir(dataset, config)
  os.makedirs(workdir, exist_ok=True)
  lock = open(os.path.join(workdir, '.train.lock'), 'w') if jax.process_count() == 1 else None
  try:
    if lock:  # another single-process run may be training it right now: wait for it
      fcntl.flock(lock, fcntl.LOCK_EX)
    if not all_processes_agree(not _unfinished(workdir, config)):
      print(f'Training the feature classifier for {dataset!r} once into {workdir} '
            f'(configs/classifier/{dataset}.py) ...', flush=True)
      train.write_run_info(workdir, os.path.relpath(config_path, os.path.dirname(os.path.dirname(jaxgen.__file__))),
                           ['jaxgen.evals.features.ensure_classifier', dataset])
      train.train_and_evaluate(config, workdir)
  finally:
    if lock:
      lock.close()
  return workdir


def _unfinished(workdir: str, config) -> bool:
  """True when the cached run stopped before its last step (e.g. killed): training resumes it."""
  from jaxgen.checkpoint import Checkpointer
  if not os.path.exists(os.path.join(workdir, 'checkpoints')):
    return True
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'), async_save=False)
  try:
    return (checkpointer.latest_step() or 0) < int(config.train.steps)
  finally:
    checkpointer.close()


def classifier_features(workdir: str, mesh, image_shape) -> FeatureNetwork:
  """The FeatureNetwork of the classifier run in `workdir`."""
  from jaxgen import train
  config, method, params = train.load_trained(workdir, mesh)
  if config.method.name != 'classifier':
    raise ConfigError(f'feature_workdir {workdir} holds a {config.method.name!r} run, not a classifier.')
  if tuple(method.info.shape) != tuple(image_shape):
    raise ConfigError(f'The classifier in {workdir} was trained on {config.data.name!r} images of shape '
                      f'{tuple(method.info.shape)}; this run\'s data are {tuple(image_shape)}.')
  name = f'classifier-{config.data.name.replace("/", "_")}-{fingerprint(params)}'
  return FeatureNetwork(name=name, apply=method.apply, params=params, feature_dim=method.feature_dim,
                        num_classes=method.num_classes)


def inception_features(weights_path=None) -> FeatureNetwork:
  """The FID Inception-v3 with the pytorch-fid weights (see jaxgen/evals/inception.py)."""
  from jaxgen.evals import inception
  variables = inception.load_pytorch_fid_weights(weights_path or None)

  def apply(variables, images):
    out = inception.apply_features(variables, images)
    return out['pool3'], out['logits']

  return FeatureNetwork(name=f'inception-pt2015-{fingerprint(variables)}', apply=apply, params=variables,
                        feature_dim=2048, num_classes=1008)


def get(eval_config, ctx) -> FeatureNetwork:
  """The feature network an evaluator's config names (see the module docstring)."""
  kind = eval_config.get('features', 'classifier')
  if kind == 'inception':
    return inception_features(eval_config.get('inception_weights', ''))
  if kind != 'classifier':
    raise ConfigError(f"features={kind!r} is not one of 'classifier', 'inception'.")
  if ctx.info.kind != 'image':
    raise ConfigError(f'feature-based metrics need images; {ctx.info.name!r} is {ctx.info.kind} data.')
  workdir = eval_config.get('feature_workdir', '') or ensure_classifier(ctx.config.data.name)
  return classifier_features(workdir, ctx.mesh, ctx.info.shape)
