"""Evaluator registry with per-evaluator cadence.

`config.evals.<name>` is one ConfigDict per evaluator: its settings and `every`
(steps between runs; default `config.train.eval_every`). An evaluator is built
once per run from (its config, an EvalContext) and called with (state, step);
it returns a dict of scalar metrics (written to metrics.jsonl with split
'eval') and may write files under WORKDIR/samples.
"""

import dataclasses
from typing import Any

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


def build_all(config, ctx: EvalContext) -> dict:
  """{name: (every, evaluator)} for every entry of config.evals."""
  evaluators = {}
  for name, eval_config in config.evals.items():
    every = int(eval_config.get('every', 0) or config.train.eval_every)
    evaluators[name] = (every, get(name)(eval_config, ctx))
  return evaluators
