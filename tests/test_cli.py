"""The command line as a user runs it: train/eval/sample, overrides, error messages, SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from jaxgen.logging import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = 'configs/vae/mnist5k.py:smoke'


def cli(*args, timeout=300):
  return subprocess.run([sys.executable, '-m', 'jaxgen.main', *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout)


def test_train_eval_sample_and_override(tmp_path):
  workdir = str(tmp_path / 'run')
  done = cli(f'--config={SMOKE}', f'--workdir={workdir}', '--config.optim.lr=3e-4', '--config.train.steps=4')
  assert done.returncode == 0, done.stderr[-3000:]
  config = json.load(open(os.path.join(workdir, 'config.json')))
  assert config['optim']['lr'] == 3e-4 and config['train']['steps'] == 4

  done = cli(f'--config={SMOKE}', f'--workdir={workdir}', '--config.train.steps=4', '--mode=eval')
  assert done.returncode == 0, done.stderr[-3000:]
  assert 'nll_bpd:' in done.stdout
  evals = [r for r in read_metrics(workdir) if r['split'] == 'eval' and 'nll_bpd' in r]
  assert evals[-1]['step'] == 4

  os.remove(os.path.join(workdir, 'samples', 'samples_0000004.png'))
  done = cli(f'--config={SMOKE}', f'--workdir={workdir}', '--config.train.steps=4', '--mode=sample')
  assert done.returncode == 0, done.stderr[-3000:]
  assert os.path.exists(os.path.join(workdir, 'samples', 'samples_0000004.png'))


def test_unknown_override_key_lists_close_keys(tmp_path):
  done = cli(f'--config={SMOKE}', f'--workdir={tmp_path}', '--config.optim.lrr=3e-4')
  assert done.returncode == 1
  last = done.stderr.strip().splitlines()[-1]
  assert last.startswith('error: config.optim.lrr is not a valid config key. Did you mean: config.optim.lr')
  assert 'Traceback' not in done.stderr


def test_missing_dataset_message(tmp_path):
  done = cli(f'--config={SMOKE}', f'--workdir={tmp_path}', '--config.data.name=cifar10',
             f'--config.data.data_dir={tmp_path / "empty"}')
  assert done.returncode == 1
  assert "error: dataset 'cifar10' is not prepared" in done.stderr and 'Traceback' not in done.stderr


def test_eval_without_checkpoint_message(tmp_path):
  done = cli(f'--config={SMOKE}', f'--workdir={tmp_path}', '--mode=eval')
  assert done.returncode == 1
  assert 'error: No checkpoint in' in done.stderr and 'train first' in done.stderr


@pytest.mark.slow  # ~70 s (two interpreter launches); test_train covers the preemption path in-process
def test_sigterm_saves_a_restorable_checkpoint(tmp_path):
  workdir = str(tmp_path / 'run')
  args = [sys.executable, '-m', 'jaxgen.main', f'--config={SMOKE}', f'--workdir={workdir}',
          '--config.train.steps=100000', '--config.train.log_every=5', '--config.train.checkpoint_every=100000',
          '--config.evals.nll.every=100000', '--config.evals.samples.every=100000',
          '--config.evals.reconstructions.every=100000']
  proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  metrics = os.path.join(workdir, 'metrics.jsonl')
  deadline = time.time() + 240
  while time.time() < deadline:  # wait until it is really training
    if os.path.exists(metrics) and any(r.get('loss') for r in read_metrics(workdir)):
      break
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 0, stderr[-3000:]
  assert 'Preempted (SIGTERM) at step' in stderr
  steps = [int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit()]
  assert steps and max(steps) >= 5
  # The same command resumes from that checkpoint.
  done = cli(*args[3:5], f'--config.train.steps={max(steps) + 2}')
  assert done.returncode == 0, done.stderr[-3000:]
  assert f'Resumed at step {max(steps)}/' in done.stderr
