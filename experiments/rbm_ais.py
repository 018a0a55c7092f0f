"""RBMs (CD-1, CD-25, PCD) and a DBN on binarized mnist5k: test NLL by annealed importance sampling.

  python experiments/rbm_ais.py                       # train what is missing, print the table
  python experiments/rbm_ais.py --only=cd1,pcd        # some of the runs
  python experiments/rbm_ais.py --train=false --out=results.md   # only the table, also into a file

Each run is `python -m jaxgen.main --config=<config> --workdir=<runs>/<name>` (one at a time: the
CPU is shared), timed; a run whose final AIS evaluation is already in its metrics.jsonl is not
repeated, an interrupted one resumes from its checkpoint. The table gives, per run, the training
budget, the AIS settings (betas x independent runs x chains), log Z with the std over the runs and
Salakhutdinov & Murray's +-3 std interval, the std of the log importance weights (large: the
estimate is unreliable, and log Z most likely too low), the test NLL (the DBN's: minus its variational lower
bound, an upper bound on the NLL), the train NLL on 500 training images, and the wall time of
training plus evaluation, with the command that reproduces the row.
"""

import json
import os
import subprocess
import sys
import time

from absl import app, flags

_TRAIN = flags.DEFINE_bool('train', True, 'Train (and evaluate) the runs that have no final evaluation yet.')
_ROOT = flags.DEFINE_string('runs', 'runs/rbm', 'Directory of the runs.')
_ONLY = flags.DEFINE_list('only', [], 'Names (from RUNS) to train (default: all).')
_OUT = flags.DEFINE_string('out', '', 'Also write the table (Markdown) to this file.')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = {  # name -> config (with its variant)
    'cd1': 'configs/ebm/rbm_mnist5k_binary.py:cd1',
    'cd25': 'configs/ebm/rbm_mnist5k_binary.py:cd25',
    'pcd': 'configs/ebm/rbm_mnist5k_binary.py:pcd',
    'dbn': 'configs/ebm/dbn_mnist5k_binary.py',
}
TRAIN_IMAGES = 4500   # mnist5k's training split (test: every 10th of the 5,000)


def command(name):
  return [sys.executable, '-m', 'jaxgen.main', f'--config={RUNS[name]}', f'--workdir={os.path.join(_ROOT.value, name)}']


def final_eval(workdir):
  """(config dict, the last eval record with an AIS NLL, seconds) of a finished run, else None."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return None
  records = [json.loads(line) for line in open(path) if line.strip()]
  evals = [r for r in records if r.get('split') == 'eval' and 'log_z' in r]
  config = json.load(open(os.path.join(workdir, 'config.json')))
  if not evals or evals[-1]['step'] != config['train']['steps']:
    return None
  timing = os.path.join(workdir, 'seconds.txt')
  seconds = float(open(timing).read()) if os.path.exists(timing) else float('nan')
  return config, evals[-1], seconds


def train(name):
  workdir = os.path.join(_ROOT.value, name)
  os.makedirs(workdir, exist_ok=True)
  print(f'training {name}: {" ".join(command(name)[1:])}', flush=True)
  start = time.perf_counter()
  with open(os.path.join(workdir, 'train.log'), 'a') as log:
    code = subprocess.call(command(name), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
  seconds = time.perf_counter() - start
  print(f'{name}: exit {code} after {seconds:.0f} s (log: {workdir}/train.log)', flush=True)
  if code == 0:
    with open(os.path.join(workdir, 'seconds.txt'), 'w') as f:
      f.write(f'{seconds:.0f}')


def table():
  lines = ['| run | model | training | AIS: betas x runs x chains | log Z (std over runs) [+-3 std] | '
           'std of log w | test NLL (nats) | train NLL (nats) | wall s | command |',
           '|---|---|---|---|---|---|---|---|---|---|']
  for name in RUNS:
    result = final_eval(os.path.join(_ROOT.value, name))
    if result is None:
      continue
    config, ev, seconds = result
    m, t = config['method'], config['train']
    updates = ('PCD-' if m['persistent'] else 'CD-') + str(m['cd_k'])
    if m['name'] == 'dbn':
      model = (f'DBN 784-{"-".join(str(h) for h in config["model"]["hidden"])}, {updates} layers; '
               f'bound with {m["bound_samples"]} samples of q(h1|v)')
      nll = f'<= {ev["nll_nats"]:.2f} (bound)'
    else:
      model = f'RBM 784-{config["model"]["hidden"]}, {updates}'
      nll = f'{ev["nll_nats"]:.2f}'
    if m['name'] == 'dbn':  # every layer trains for stage_steps
      stages = len(config['model']['hidden'])
      epochs = m['stage_steps'] * t['batch_size'] / TRAIN_IMAGES
      training = f'{stages} stages x {m["stage_steps"]:,} steps x {t["batch_size"]} ({epochs:.0f} epochs each)'
    else:
      epochs = t['steps'] * t['batch_size'] / TRAIN_IMAGES
      training = f'{t["steps"]:,} steps x {t["batch_size"]} ({epochs:.0f} epochs)'
    training += f', lr {config["optim"]["lr"]}'
    betas = sum(m['ais_betas'])
    lower = f'{ev["log_z_lower"]:.2f}' if 'log_z_lower' in ev else '-'
    interval = f'[{lower}, {ev["log_z_upper"]:.2f}]'
    runs = config['evals']['ais'].get('repeats', 4)
    log_z = f'{ev["log_z"]:.2f} ({ev.get("log_z_std", float("nan")):.2f}) {interval}'
    lines.append(f'| {name} | {model} | {training} | {betas:,} x {runs} x {m["ais_chains"]} | {log_z} | '
                 f'{ev["ais_log_w_std"]:.2f} | {nll} | {ev["train_nll_nats"]:.2f} | {seconds:.0f} | '
                 f'`python -m jaxgen.main --config={RUNS[name]} --workdir=runs/rbm/{name}` |')
  return '\n'.join(lines)


def main(argv):
  del argv
  names = _ONLY.value or list(RUNS)
  unknown = sorted(set(names) - set(RUNS))
  if unknown:
    raise app.UsageError(f'--only names {unknown} are not among {sorted(RUNS)}.')
  if _TRAIN.value:
    for name in names:
      if final_eval(os.path.join(_ROOT.value, name)) is None:
        train(name)
  text = table()
  print(text)
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      f.write(text + '\n')


if __name__ == '__main__':
  app.run(main)
