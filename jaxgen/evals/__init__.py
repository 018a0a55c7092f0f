"""Evaluator registry with per-evaluator cadence.

`config.evals.<name>` is one ConfigDict per evaluator: its settings and `every`
(steps between runs; default `config.train.eval_every`). An evaluator is built
once per run from (its config, an EvalContext) and called with (state, step);
it returns a dict of scalar metrics (written to metrics.jsonl with split
'eval') and may write files under WORKDIR/samples.
"""

import dataclasses
from typing import Any

from jaxgen.errors import ConfigError
from jaxgen.registry import Registry

EVALUATORS = Registry('config.evals entry', {
    'nll': 'jaxgen.evals.nll',
    'samples': 'jaxgen.evals.samples',
    'reconstructions': 'jaxgen.evals.samples',
    'classification': 'jaxgen.evals.classification',
    'sample_quality': 'jaxgen.evals.sample_quality',
    'mode_coverage': 'jaxgen.evals.mode_coverage',
    'ood_auroc': 'jaxgen.evals.anomaly',
    'cas': 'jaxgen.evals.cas',
    'restoration': 'jaxgen.evals.restoration',
    'ais': 'jaxgen.evals.ais',
    'gibbs_chain': 'jaxgen.evals.ais',
    'token_loss': 'jaxgen.evals.token_loss',
    'preference_accuracy': 'jaxgen.evals.preference_accuracy',
    'syntax': 'jaxgen.evals.syntax',
})
register = EVALUATORS.register
get = EVALUATORS.get


@dataclasses.dataclass
class EvalContext:
  """What every evaluator may use: the run's method, config, data info, mesh and workdir."""
  method: Any
  config: Any
  info: Any
  mesh: Any
  workdir: str
  is_main: bool


def build_all(config, ctx: EvalContext, names=None) -> dict:
  """{name: (every, evaluator)} for every entry of config.evals (or only `names`).

  An evaluator class may list its config keys in `KEYS`; any other key (a typo
  such as `num_sample`) is a ConfigError rather than a silently used default.
  """
  evaluators = {}
  for name, eval_config in config.evals.items():
    if names is not None and name not in names:
      continue
    cls = get(name)
    if hasattr(cls, 'KEYS'):
      unknown = sorted(set(eval_config.keys()) - set(cls.KEYS) - {'every'})
      if unknown:
        raise ConfigError(f'config.evals.{name} has unknown key(s) {", ".join(unknown)}; valid keys: '
                          f'{", ".join(("every",) + tuple(cls.KEYS))}.')
    every = int(eval_config.get('every', 0) or config.train.eval_every)
    evaluators[name] = (every, cls(eval_config, ctx))
  return evaluators


def _overrides(method, name: str) -> bool:
  from jaxgen.methods.base import Method
  return getattr(type(method), name) is not getattr(Method, name)


def require_sampler(method, evaluator: str) -> None:
  """ConfigError at build time (not after training) when the family cannot generate samples."""
  if not _overrides(method, 'sample'):
    raise ConfigError(f'config.evals.{evaluator} needs samples, but {type(method).__name__} does not generate '
                      f'any; remove config.evals.{evaluator}.')


def require_score(method, evaluator: str) -> None:
  """ConfigError at build time when the family has no anomaly score (no likelihood, reconstruction or score)."""
  if not (method.has_likelihood or _overrides(method, 'reconstruct') or _overrides(method, 'anomaly_score')):
    raise ConfigError(f'config.evals.{evaluator} needs an anomaly score, but {type(method).__name__} has no '
                      f'likelihood, reconstruction or anomaly_score; remove config.evals.{evaluator}.')
