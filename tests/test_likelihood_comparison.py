"""The `:cpu` variants behind experiments/likelihood_comparison.py: one budget for every family.

The comparison ranks the families by test NLL at an equal budget, so every run must see
the same number of examples, evaluate its final parameters, and model the same data as
the family's default config (only model size and budget may differ).
"""

import importlib.util
import os

import pytest

from jaxgen.core.config import CPU_COMPARISON_BATCH, CPU_COMPARISON_STEPS, load_config_file, validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def comparison_runs():
  spec = importlib.util.spec_from_file_location('likelihood_comparison',
                                                os.path.join(ROOT, 'experiments', 'likelihood_comparison.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.RUNS


RUNS = comparison_runs()


@pytest.mark.parametrize('name', sorted(RUNS))
def test_cpu_variant_has_the_shared_budget_and_the_default_data(name):
  path, table = RUNS[name]
  cpu = load_config_file(os.path.join(ROOT, path) + ':cpu')
  default = load_config_file(os.path.join(ROOT, path))
  validate(cpu)
  assert (cpu.train.steps, cpu.train.batch_size) == (CPU_COMPARISON_STEPS, CPU_COMPARISON_BATCH)
  assert cpu.train.eval_every == cpu.train.checkpoint_every == CPU_COMPARISON_STEPS
  assert cpu.train.ema_decay == 0.0  # the evaluated parameters are the trained ones
  assert {key: ev.every for key, ev in cpu.evals.items()} == {key: CPU_COMPARISON_STEPS for key in default.evals}
  assert cpu.data.to_dict() == default.data.to_dict()
  assert (cpu.method.name, cpu.model.get('arch')) == (default.method.name, default.model.get('arch'))
  assert (table == 'binary') == (cpu.data.binarize == 'dynamic')


def test_comparison_covers_every_exact_likelihood_family_on_its_data():
  families = {}
  for path, table in RUNS.values():
    config = load_config_file(os.path.join(ROOT, path))
    families.setdefault(table, set()).add(config.model.get('arch') or config.method.name)
  assert families['binary'] == {'nade', 'made', 'pixelcnn', 'rowlstm'}
  assert families['8bit'] == {'pixelcnn', 'gated', 'rowlstm', 'pixelcnnpp', 'realnvp', 'glow', 'maf', 'ddpm'}
