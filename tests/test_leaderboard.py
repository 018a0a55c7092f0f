"""experiments/leaderboard.py on hand-written run directories (nothing is trained)."""

import importlib.util
import json
import os
import pathlib
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'experiments' / 'leaderboard.py'


def load_leaderboard():
  spec = importlib.util.spec_from_file_location('leaderboard', SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


leaderboard = load_leaderboard()


def write_run(directory, config, records, run_json=None):
  directory.mkdir(parents=True)
  (directory / 'config.json').write_text(json.dumps(config, indent=2))
  (directory / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
  if run_json is not None:
    (directory / 'run.json').write_text(json.dumps(run_json))


@pytest.fixture
def runs(tmp_path):
  """Two runs: a VAE with two evals (the later must win) and a GAN with FID/KID/OOD metrics only."""
  write_run(tmp_path / 'runs' / 'vae_a',
            {'method': {'name': 'vae'}, 'data': {'name': 'mnist5k'}, 'train': {'steps': 1500, 'batch_size': 128}},
            [{'step': 0, 'split': 'train', 'param_count': 1671778, 'compile_seconds': 3.7},
             {'step': 750, 'split': 'train', 'loss': 900.0, 'steps_per_sec': 7.1},
             {'step': 750, 'split': 'eval', 'nll_nats': 900.0, 'nll_bpd': 1.6561234},
             {'step': 1500, 'split': 'train', 'loss': 810.0, 'steps_per_sec': 7.0},
             {'step': 1500, 'split': 'eval', 'nll_nats': 806.4321, 'nll_bpd': 1.48398765}],
            run_json={'config': 'configs/vae/mnist5k.py'})
  write_run(tmp_path / 'runs' / 'gan_b',
            {'method': {'name': 'gan'}, 'data': {'name': 'mnist5k'}, 'train': {'steps': 2000, 'batch_size': 64},
             'evals': {'sample_quality': {'every': 1000, 'features': 'inception', 'num_samples': 50000}}},
            [{'step': 0, 'split': 'train', 'param_count': 250000, 'compile_seconds': 1.0},
             {'step': 1000, 'split': 'eval', 'fid': 45.67891, 'kid': 0.0123456, 'kid_std': 0.00098765,
              'precision': 0.5},
             {'step': 2000, 'split': 'eval', 'fid': 30.12345, 'kid': 0.00812345, 'kid_std': 0.000456,
              'ood_auroc_kmnist': 0.912345, 'ood_auroc_fashion': 0.87}])
  (tmp_path / 'runs' / 'not_a_run').mkdir()      # no config.json: skipped with a warning
  (tmp_path / 'runs' / 'train.log').write_text('a file beside the runs: ignored by globs')
  return tmp_path / 'runs'


HEADER = ('| run | family | dataset | config | params | budget (steps x batch) | eval step | sample features (n) '
          '| nll_bpd | nll_nats | fid '
          '| kid | precision | ood_auroc_fashion | ood_auroc_kmnist |')
GAN_ROW = ('| gan_b | gan | mnist5k | — | 250,000 | 2,000 x 64 | 2000 | inception (50000) | — | — | 30.12 '
           '| 0.008123 ± 0.000456 '
           '| 0.5 (step 1000) | 0.87 | 0.9123 |')
VAE_ROW = ('| vae_a | vae | mnist5k | configs/vae/mnist5k.py | 1,671,778 | 1,500 x 128 | 1500 | — | 1.484 | 806.4 '
           '| — | — | — | — | — |')


def test_collect_reads_the_last_eval_of_each_metric(runs):
  rows = leaderboard.collect([str(runs / '*')])
  assert [r['run'] for r in rows] == ['gan_b', 'vae_a']  # sorted by dataset, family, name
  gan, vae = rows
  assert vae['metrics'] == {'nll_nats': (806.4321, 1500), 'nll_bpd': (1.48398765, 1500)}
  assert (vae['params'], vae['steps'], vae['batch_size'], vae['eval_step']) == (1671778, 1500, 128, 1500)
  assert vae['config'] == 'configs/vae/mnist5k.py' and gan['config'] == '—'
  assert gan['metrics']['precision'] == (0.5, 1000) and gan['metrics']['fid'] == (30.12345, 2000)
  assert leaderboard.metric_columns(rows) == ['nll_bpd', 'nll_nats', 'fid', 'kid', 'precision',
                                              'ood_auroc_fashion', 'ood_auroc_kmnist']


def test_collect_warns_about_directories_without_config(runs, capsys):
  leaderboard.collect([str(runs / 'not_a_run'), str(runs / 'vae_a')])
  err = capsys.readouterr().err
  assert 'not_a_run' in err and 'config.json' in err


def test_render_exact_table(runs):
  rows = leaderboard.collect([str(runs / 'vae_a'), str(runs / 'gan_b')])
  text = leaderboard.render(rows, 'python experiments/leaderboard.py runs/x', 'test machine')
  lines = text.splitlines()
  assert '    python experiments/leaderboard.py runs/x' in lines
  assert 'Generated on: test machine' in lines
  start = lines.index(HEADER)
  assert lines[start + 1] == '|' + ' --- |' * 15
  assert lines[start + 2:] == [GAN_ROW, VAE_ROW]


def test_dataset_names_say_how_the_data_was_transformed():
  assert leaderboard.dataset_name({'name': 'mnist5k', 'binarize': '', 'dequantize': False}) == 'mnist5k'
  assert leaderboard.dataset_name({'name': 'mnist5k', 'binarize': 'dynamic'}) == 'mnist5k (binarize=dynamic)'
  assert leaderboard.dataset_name({'name': 'cifar10', 'dequantize': True}) == 'cifar10 (dequantized)'


def test_fmt_four_significant_figures():
  assert [leaderboard.fmt(v) for v in (1.48398765, 806.4321, 0.0123456, 123456.0, 3, None)] == [
      '1.484', '806.4', '0.01235', '1.235e+05', '3', '—']


def run_script(*args, cwd):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=120)


def test_script_writes_the_table(runs, tmp_path):
  out = tmp_path / 'results' / 'board.md'
  result = run_script(str(runs / '*'), '--out', str(out), cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  assert 'not_a_run' in result.stderr and 'wrote' in result.stdout
  text = out.read_text()
  lines = text.splitlines()
  assert '    ' + shlex.join(['python', str(SCRIPT), str(runs / '*'), '--out', str(out)]) in lines
  generated = next(line for line in lines if line.startswith('Generated on: '))
  assert f'{os.cpu_count()} CPUs' in generated and 'jax' in generated and 'devices' in generated
  assert lines[lines.index(HEADER) + 2:] == [GAN_ROW, VAE_ROW]


def test_script_without_runs_fails_clearly(tmp_path):
  (tmp_path / 'empty').mkdir()
  result = run_script(str(tmp_path / 'empty'), '--out', str(tmp_path / 'board.md'), cwd=tmp_path)
  assert result.returncode == 1
  assert 'no run directories' in result.stderr
  assert not (tmp_path / 'board.md').exists()
