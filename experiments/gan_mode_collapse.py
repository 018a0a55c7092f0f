"""The mode-collapse benchmark of experiments/results/gan.md: GAN variants on toy2d/ring8 and grid25.

  python experiments/gan_mode_collapse.py --jobs=2      # train what is missing, print the table
  python experiments/gan_mode_collapse.py --jobs=0      # only print the table from runs/gan_modes/*

Each (data, variant, seed) trains `configs/gan/mlp_toy2d.py:<data>,<variant>` with
`--config.train.seed=<seed>` through `python -m jaxgen.main` into runs/gan_modes/<data>_<variant>_s<seed>.
The protocol of the mode-collapse papers (VEEGAN, PacGAN), as the `mode_coverage` evaluator
implements it: 2,500 samples of the final generator (EMA off: these configs have none); a
sample is high quality within 3 standard deviations of its nearest mode; a mode is covered
with >= 20 high-quality samples. A finished run (its final evaluation in metrics.jsonl) is not
repeated; an interrupted one resumes from its checkpoint.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

_JOBS = flags.DEFINE_integer('jobs', 1, 'Trainings run at once (0: only print the table).')
_ROOT = flags.DEFINE_string('runs', 'runs/gan_modes', 'Directory of the runs.')
_DATA = flags.DEFINE_list('data', ['ring8', 'grid25'], 'toy2d mixtures.')
_VARIANTS = flags.DEFINE_list('variants', ['vanilla', 'wgan_gp', 'pacgan', 'mbstd'],
                              'Variants of configs/gan/mlp_toy2d.py.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Training seeds.')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = 'configs/gan/mlp_toy2d.py'
MODES = {'ring8': 8, 'grid25': 25}


def final_record(workdir):
  """The last evaluation with `modes` of a finished run (None if unfinished) and its train seconds."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  with open(os.path.join(workdir, 'config.json')) as f:
    config = json.load(f)
  evals = [r for r in records if 'modes' in r and r['step'] == config['train']['steps']]
  return evals[-1] if evals else None


def launch(data, variant, seed):
  workdir = os.path.join(_ROOT.value, f'{data}_{variant}_s{seed}')
  os.makedirs(workdir, exist_ok=True)
  command = [sys.executable, '-m', 'jaxgen.main', f'--config={CONFIG}:{data},{variant}', f'--workdir={workdir}',
             f'--config.train.seed={seed}']
  log = open(os.path.join(workdir, 'benchmark.log'), 'a')
  return subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                          env=dict(os.environ, JAX_PLATFORMS='cpu'))


def table():
  lines = ['| data | variant | modes (per seed) | modes mean ± std | hq_fraction (per seed) | hq_fraction mean ± std |',
           '|---|---|---|---|---|---|']
  for data in _DATA.value:
    for variant in _VARIANTS.value:
      records = [final_record(os.path.join(_ROOT.value, f'{data}_{variant}_s{s}')) for s in _SEEDS.value]
      if any(r is None for r in records):
        lines.append(f'| {data} | {variant} | (missing) | | | |')
        continue
      modes = np.array([r['modes'] for r in records])
      hq = np.array([r['hq_fraction'] for r in records])
      lines.append(f'| {data} | {variant} | {", ".join(f"{m:.0f}" for m in modes)} of {MODES[data]} | '
                   f'{modes.mean():.1f} ± {modes.std(ddof=1):.1f} | {", ".join(f"{h:.3f}" for h in hq)} | '
                   f'{hq.mean():.3f} ± {hq.std(ddof=1):.3f} |')
  return '\n'.join(lines)


def main(argv):
  del argv
  todo = [(d, v, s) for d in _DATA.value for v in _VARIANTS.value for s in _SEEDS.value
          if final_record(os.path.join(_ROOT.value, f'{d}_{v}_s{s}')) is None]
  running = []
  while _JOBS.value > 0 and (todo or running):
    while todo and len(running) < _JOBS.value:
      job = todo.pop(0)
      print('training', job, flush=True)
      running.append((job, launch(*job)))
    time.sleep(2)
    for entry in list(running):
      if entry[1].poll() is not None:
        running.remove(entry)
        if entry[1].returncode:
          print(f'{entry[0]} failed (exit {entry[1].returncode}); see its benchmark.log', flush=True)
  print(f'(std over seeds {", ".join(_SEEDS.value)}, ddof=1)')
  print(table())


if __name__ == '__main__':
  app.run(main)
