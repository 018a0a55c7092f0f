"""The equal-budget comparison of the exact-likelihood families on mnist5k (experiments/results/likelihood.md).

  python experiments/likelihood_comparison.py --jobs=2          # train what is missing, print the tables
  python experiments/likelihood_comparison.py --jobs=0          # only print the tables from runs/cpu/*

Every family trains its config's `:cpu` variant (jaxgen.core.config.cpu_comparison_budget:
the same number of steps and batch size for all, models sized so that a step takes at most
about a second on 2 CPU cores) with `python -m jaxgen.main` into runs/cpu/<name>. A run whose
final evaluation is already in its metrics.jsonl is not repeated; an interrupted one resumes
from its last checkpoint (the train loop does that). `--jobs` runs that many trainings at
once. The tables give, per family, the parameter count, the last logged training loss, the
exact test NLL of the final parameters and the wall-clock training time. DDPM's row is its
variational bound (an upper bound on the NLL) and its L_simple training loss is not in nats.
"""

import json
import math
import os
import subprocess
import sys
import time

from absl import app, flags

_JOBS = flags.DEFINE_integer('jobs', 1, 'Trainings run at once (0: only print the tables).')
_ROOT = flags.DEFINE_string('runs', 'runs/cpu', 'Directory of the comparison runs.')
_ONLY = flags.DEFINE_list('only', [], 'Names (from RUNS) to train (default: all).')

MNIST_DIMS = 28 * 28
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name -> (config file, table): ordered cheapest-last within the tables.
RUNS = {
    'nade_binary': ('configs/autoregressive/nade_mnist5k_binary.py', 'binary'),
    'made_binary': ('configs/autoregressive/made_mnist5k_binary.py', 'binary'),
    'pixelcnn_binary': ('configs/autoregressive/pixelcnn_mnist5k_binary.py', 'binary'),
    'pixelrnn_binary': ('configs/autoregressive/pixelrnn_mnist5k_binary.py', 'binary'),
    'pixelcnn': ('configs/autoregressive/pixelcnn_mnist5k.py', '8bit'),
    'gated_pixelcnn': ('configs/autoregressive/gated_pixelcnn_mnist5k.py', '8bit'),
    'pixelrnn': ('configs/autoregressive/pixelrnn_mnist5k.py', '8bit'),
    'pixelcnnpp': ('configs/autoregressive/pixelcnnpp_mnist5k.py', '8bit'),
    'realnvp': ('configs/flow/realnvp_mnist5k.py', '8bit'),
    'glow': ('configs/flow/glow_mnist5k.py', '8bit'),
    'maf': ('configs/flow/maf_mnist5k.py', '8bit'),
    'ddpm': ('configs/diffusion/ddpm_mnist5k.py', '8bit'),  # an upper bound on the NLL (the VLB)
}


def read_metrics(workdir):
  """(param_count, last logged train loss in nats of the discrete data, final eval record, train
  seconds) of a finished run, else None. The final eval record is the last one in metrics.jsonl."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return None
  records = [json.loads(line) for line in open(path) if line.strip()]
  evals = [r for r in records if r.get('split') == 'eval' and 'nll_nats' in r]
  if not evals:
    return None
  train = [r for r in records if r.get('split') == 'train' and 'loss' in r]
  params = next(r['param_count'] for r in records if 'param_count' in r)
  with open(os.path.join(workdir, 'config.json')) as f:
    config = json.load(f)
  # Flows train on -log p of the dequantized x in [0, 1]^D; on the discrete data that is + D log 256.
  offset = MNIST_DIMS * math.log(256) if config['data']['dequantize'] else 0.0
  loss_in_nats = config['method'].get('loss') != 'simple'  # diffusion's L_simple is a weighted MSE
  loss = train[-1]['loss'] + offset if train and loss_in_nats else float('nan')
  timing = os.path.join(workdir, 'comparison_seconds.txt')
  seconds = float(open(timing).read()) if os.path.exists(timing) else float('nan')
  return int(params), loss, evals[-1], seconds


def train(name):
  config, _ = RUNS[name]
  workdir = os.path.join(_ROOT.value, name)
  os.makedirs(workdir, exist_ok=True)
  command = [sys.executable, '-m', 'jaxgen.main', f'--config={config}:cpu', f'--workdir={workdir}']
  log = open(os.path.join(workdir, 'comparison.log'), 'a')
  start = time.perf_counter()
  return subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT), workdir, start


def run_missing(names, jobs):
  pending = [n for n in names if read_metrics(os.path.join(_ROOT.value, n)) is None]
  running = []
  while pending or running:
    while pending and len(running) < jobs:
      name = pending.pop(0)
      print(f'training {name} ({RUNS[name][0]}:cpu)', flush=True)
      running.append((name, *train(name)))
    time.sleep(5)
    for item in list(running):
      name, process, workdir, start = item
      if process.poll() is not None:
        running.remove(item)
        if process.returncode == 0:
          with open(os.path.join(workdir, 'comparison_seconds.txt'), 'w') as f:
            f.write(f'{time.perf_counter() - start:.0f}')
        print(f'{name}: exit {process.returncode} after {time.perf_counter() - start:.0f} s '
              f'(log: {workdir}/comparison.log)', flush=True)


def print_tables():
  for table, title, unit in (('binary', 'Binarized mnist5k', 'nll_nats'), ('8bit', '8-bit mnist5k', 'nll_bpd')):
    print(f'\n{title} (`:cpu` variants)\n')
    print('| run | config | params | last train loss (nats) | test NLL (nats) | test bits/dim | train+eval s |')
    print('|---|---|---|---|---|---|---|')
    rows = []
    for name, (config, kind) in RUNS.items():
      result = read_metrics(os.path.join(_ROOT.value, name))
      if kind != table or result is None:
        continue
      params, loss, record, seconds = result
      rows.append((record[unit], f'| {name} | `{config}:cpu` | {params:,} | {loss:.1f} | {record["nll_nats"]:.2f} | '
                   f'{record.get("nll_bpd", float("nan")):.4f} | {seconds:.0f} |'))
    for _, row in sorted(rows):
      print(row)


def main(argv):
  del argv
  names = _ONLY.value or list(RUNS)
  unknown = sorted(set(names) - set(RUNS))
  if unknown:
    raise app.UsageError(f'--only names {unknown} are not among {sorted(RUNS)}.')
  if _JOBS.value > 0:
    run_missing(names, _JOBS.value)
  print_tables()


if __name__ == '__main__':
  app.run(main)
