"""Leaderboard: one Markdown table of the final evaluation metrics of many runs.

  python experiments/leaderboard.py 'runs/*' [--out experiments/results/leaderboard.md]

Each RUN_DIR (globs are expanded here too, so quoting them keeps the command
short) is a training workdir (DESIGN.md, "Outputs of a run"): `config.json`
gives the family (method.name), dataset (data.name) and budget
(train.steps x train.batch_size); `metrics.jsonl` gives the parameter count
(step-0 train line) and the eval metrics. A `run.json` beside them, if present,
names the config file under its "config" key.

Every metric cell is the value from the last eval line that has the metric. The
'eval step' column is the run's latest eval step; a cell whose value comes from
an earlier eval is marked '(step N)'. `kid` shows `kid_std` beside it when the
same eval line has both. Metrics a run never reported are '—'. The file starts
with the command that regenerates it and the machine it was generated on (not
necessarily the machine the runs trained on).

Directories without config.json are skipped with a warning; no runs at all is
an error (exit status 1). Needs only the standard library (jax, if installed,
for the device line of the hardware note).
"""

import argparse
import glob
import importlib.util
import json
import math
import os
import platform
import shlex
import sys

DEFAULT_OUT = os.path.join('experiments', 'results', 'leaderboard.md')
# The shared metrics, in column order; `ood_auroc_*` columns follow, sorted.
CANONICAL_METRICS = ('nll_bpd', 'nll_nats', 'fid', 'kid', 'precision', 'recall', 'is', 'modes', 'hq_fraction',
                     'cas', 'accuracy')
OOD_PREFIX = 'ood_auroc_'
MISSING = '—'
FIXED_COLUMNS = ('run', 'family', 'dataset', 'config', 'params', 'budget (steps x batch)', 'eval step',
                 'sample features (n)')


def _warn(message: str) -> None:
  print(f'warning: {message}', file=sys.stderr)


def expand(patterns):
  """Run directories named by `patterns` (paths or globs), in order, each once.

  Plain files a glob matches (logs beside the runs) are dropped silently; paths
  named explicitly are kept, so that `collect` warns about them.
  """
  dirs, seen = [], set()
  for pattern in patterns:
    if glob.has_magic(pattern):
      matches = [path for path in sorted(glob.glob(pattern)) if os.path.isdir(path)]
    else:
      matches = [pattern]
    if not matches:
      _warn(f'{pattern!r} matches no directory.')
    for path in matches:
      key = os.path.realpath(path)
      if key not in seen:
        seen.add(key)
        dirs.append(path)
  return dirs


def _is_metric(key, value) -> bool:
  return key not in ('step', 'split') and isinstance(value, (int, float)) and not isinstance(value, bool)


def dataset_name(data: dict) -> str:
  """data.name, qualified when the pipeline changes what the likelihood is of (binarized, dequantized, classes left out)."""
  name = data.get('name') or MISSING
  if data.get('binarize'):
    name += f' (binarize={data["binarize"]})'
  if data.get('dequantize'):
    name += ' (dequantized)'
  if data.get('exclude_labels'):
    name += ' (without labels ' + ', '.join(str(k) for k in data['exclude_labels']) + ')'
  return name


def sample_features(evals: dict) -> str:
  """'classifier (10000)': the feature network and sample count behind fid/kid/precision/recall/is.

  FD and KID values are only comparable between rows with the same entry.
  """
  quality = evals.get('sample_quality')
  if not isinstance(quality, dict):
    return MISSING
  return f"{quality.get('features', 'classifier')} ({quality.get('num_samples', 10000)})"


def read_run(run_dir: str) -> dict:
  """One run's row: identity, budget, parameter count and {metric: (value, step)} of its last evals."""
  with open(os.path.join(run_dir, 'config.json')) as f:
    config = json.load(f)
  section = lambda name: config.get(name) or {}
  config_file = MISSING
  run_json = os.path.join(run_dir, 'run.json')
  if os.path.exists(run_json):
    with open(run_json) as f:
      config_file = json.load(f).get('config') or MISSING
  row = {
      'run': os.path.basename(os.path.normpath(run_dir)),
      'path': run_dir,
      'family': section('method').get('name') or MISSING,
      'dataset': dataset_name(section('data')),
      'config': config_file,
      'params': None,
      'steps': section('train').get('steps'),
      'batch_size': section('train').get('batch_size'),
      'eval_step': None,
      'sample_features': sample_features(section('evals')),
      'metrics': {},
  }
  metrics_path = os.path.join(run_dir, 'metrics.jsonl')
  if not os.path.exists(metrics_path):
    _warn(f'{run_dir}: no metrics.jsonl; its row has no metrics.')
    return row
  with open(metrics_path) as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
        step = int(record.get('step', 0))
      except (ValueError, TypeError, AttributeError):
        _warn(f'{metrics_path}:{number}: not a JSON metrics record; skipped.')
        continue
      if record.get('split') == 'train' and 'param_count' in record:
        row['params'] = int(record['param_count'])
      elif record.get('split') == 'eval':
        values = {k: float(v) for k, v in record.items() if _is_metric(k, v)}
        if values:  # lines are in time order, so later ones overwrite earlier ones
          row['eval_step'] = step
          row['metrics'].update({k: (v, step) for k, v in values.items()})
  return row


def collect(run_dirs) -> list:
  """Rows of the runs in `run_dirs` (paths or globs) that have a config.json, sorted by dataset, family, run."""
  rows = []
  for run_dir in expand(run_dirs):
    if not os.path.isfile(os.path.join(run_dir, 'config.json')):
      _warn(f'skipping {run_dir}: no config.json (not a run directory).')
      continue
    rows.append(read_run(run_dir))
  return sorted(rows, key=lambda r: (str(r['dataset']), str(r['family']), r['run'], r['path']))


def metric_columns(rows) -> list:
  """The metrics at least one row has: canonical ones in canonical order, then ood_auroc_* sorted."""
  present = set().union(*(r['metrics'] for r in rows)) if rows else set()
  return [m for m in CANONICAL_METRICS if m in present] + sorted(m for m in present if m.startswith(OOD_PREFIX))


def fmt(value) -> str:
  """A number to 4 significant figures ('—' for None)."""
  if value is None:
    return MISSING
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return f'{value:.4g}'


def _budget(row) -> str:
  steps, batch = row['steps'], row['batch_size']
  if steps is None or batch is None:
    return MISSING
  return f'{int(steps):,} x {int(batch):,}'


def _cell(row, metric: str) -> str:
  if metric not in row['metrics']:
    return MISSING
  value, step = row['metrics'][metric]
  text = fmt(value)
  if metric == 'kid' and 'kid_std' in row['metrics'] and row['metrics']['kid_std'][1] == step:
    text += f' ± {fmt(row["metrics"]["kid_std"][0])}'
  if step != row['eval_step']:
    text += f' (step {step})'
  return text


def table_cells(row, metrics) -> list:
  """The row's cells, in FIXED_COLUMNS + metrics order."""
  return [row['run'], row['family'], row['dataset'], row['config'],
          MISSING if row['params'] is None else f'{row["params"]:,}', _budget(row),
          MISSING if row['eval_step'] is None else str(row['eval_step']),
          row.get('sample_features', MISSING)] + [_cell(row, m) for m in metrics]


def _line(cells) -> str:
  return '| ' + ' | '.join(str(c).replace('|', '\\|') for c in cells) + ' |'


def render(rows, command: str, hardware: str) -> str:
  """The Markdown file: title, regeneration command, hardware note, table."""
  metrics = metric_columns(rows)
  columns = list(FIXED_COLUMNS) + metrics
  lines = ['# Leaderboard', '',
           'Regenerate with:', '', f'    {command}', '',
           f'Generated on: {hardware}', '',
           'Each metric is from the last eval line that reports it; "eval step" is the run\'s latest eval, and a '
           'value from an earlier one says "(step N)". Budget = training steps x global batch size. '
           'fid/kid/precision/recall/is compare only between rows with the same "sample features (n)". '
           f'{MISSING} = not reported.', '',
           _line(columns), _line(['---'] * len(columns))]
  lines += [_line(table_cells(row, metrics)) for row in rows]
  return '\n'.join(lines) + '\n'


def command_line(argv) -> str:
  """The command that reproduces this invocation (script path relative to the working directory if inside it)."""
  script = argv[0]
  relative = os.path.relpath(os.path.abspath(script))
  if not relative.startswith(os.pardir):
    script = relative
  return shlex.join(['python', script] + list(argv[1:]))


def _processor() -> str:
  """platform.processor(), or the CPU model from /proc/cpuinfo where that is empty (Linux)."""
  if platform.processor():
    return platform.processor()
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return 'unknown processor'


def hardware() -> str:
  """Processor, machine, CPU count and, when jax is installed, its backend devices."""
  processor = _processor()
  text = f'{platform.machine()} ({processor}), {os.cpu_count()} CPUs, {platform.system()}'
  if importlib.util.find_spec('jax') is not None:
    try:
      import jax  # pylint: disable=import-outside-toplevel  # only if available; slow to import
      kinds = {}
      for device in jax.devices():
        kinds[device.device_kind] = kinds.get(device.device_kind, 0) + 1
      text += f'; jax {jax.__version__} devices: ' + ', '.join(f'{n} x {kind}' for kind, n in kinds.items())
    except Exception as e:  # pylint: disable=broad-except  # the note is informational
      text += f'; jax devices unavailable ({type(e).__name__})'
  return text


def main(argv=None) -> int:
  argv = sys.argv if argv is None else argv
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('run_dirs', nargs='+', metavar='RUN_DIR', help='run directories or globs, e.g. "runs/*"')
  parser.add_argument('--out', default=DEFAULT_OUT, help=f'Markdown file to write (default {DEFAULT_OUT})')
  args = parser.parse_args(argv[1:])
  rows = collect(args.run_dirs)
  if not rows:
    print(f'error: no run directories (with a config.json) among {" ".join(args.run_dirs)}.', file=sys.stderr)
    return 1
  text = render(rows, command_line(argv), hardware())
  if os.path.dirname(args.out):
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    f.write(text)
  print(f'wrote {args.out}: {len(rows)} run(s), {len(metric_columns(rows))} metric column(s).')
  return 0


if __name__ == '__main__':
  sys.exit(main())
