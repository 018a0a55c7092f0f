"""The train loop: sharded equivalence, exact resume, restore across meshes, outputs, errors.

These run the real loop (`train.train_and_evaluate`) on the VAE smoke configs,
on meshes of 1 and 8 virtual CPU devices.
"""

import importlib.util
import json
import os

import flax.linen as nn
import jax
import numpy as np
import pytest

from jaxgen import train
from jaxgen.core import mesh as mesh_lib
from jaxgen.errors import CheckpointError, ConfigError, DataError, NonFiniteError
from jaxgen.logging import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_file(name, arg='smoke'):
  """get_config(arg) of configs/<name>, as the CLI would load it."""
  spec = importlib.util.spec_from_file_location('cfg', os.path.join(ROOT, 'configs', name))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def load_config(name, arg='smoke', **overrides):
  """A config without evaluators (most tests only train), with dotted-key overrides."""
  config = config_file(name, arg)
  config.evals = {}
  for key, value in overrides.items():
    node = config
    *path, last = key.split('.')
    for part in path:
      node = node[part]
    node[last] = value
  return config


def leaves(tree):
  return [np.asarray(mesh_lib.to_host(x)) for x in jax.tree.leaves(tree)]


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
  la, lb = leaves(a), leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def assert_trees_equal(a, b):
  la, lb = leaves(a), leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(x, y)


MESHES = {  # name -> (data, fsdp, tensor), number of devices
    'single': ((1, 1, 1), 1),
    'data8': ((8, 1, 1), 8),
    'data2_fsdp4': ((2, 4, 1), 8),
    'data4_tensor2': ((4, 1, 2), 8),
}


@pytest.fixture(scope='module')
def sharded_runs(tmp_path_factory):
  """The same 4 VAE steps on each mesh: {mesh name: (final state, train losses)}."""
  results = {}
  for name, ((d, f, t), n) in MESHES.items():
    config = load_config('vae/mnist5k.py', **{'train.steps': 4, 'train.log_every': 1, 'mesh.data': d,
                                              'mesh.fsdp': f, 'mesh.tensor': t})
    workdir = str(tmp_path_factory.mktemp(name))
    state = train.train_and_evaluate(config, workdir, devices=jax.devices()[:n])
    losses = [r['loss'] for r in read_metrics(workdir) if r['split'] == 'train' and 'loss' in r]
    results[name] = (state, losses)
  return results


@pytest.mark.parametrize('name', [m for m in MESHES if m != 'single'])
def test_sharded_step_matches_single_device(sharded_runs, name):
  state, losses = sharded_runs[name]
  ref_state, ref_losses = sharded_runs['single']
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
  assert_trees_close(state.params, ref_state.params, rtol=1e-4, atol=1e-5)
  assert_trees_close(state.opt_state, ref_state.opt_state, rtol=1e-4, atol=1e-6)


def test_sharding_is_really_applied(sharded_runs):
  """FSDP and tensor meshes must actually split some kernels (not silently replicate)."""
  def split_count(state):
    return sum(1 for x in jax.tree.leaves(state.params) if not x.sharding.is_fully_replicated)
  assert split_count(sharded_runs['data2_fsdp4'][0]) > 0
  assert split_count(sharded_runs['data4_tensor2'][0]) > 0
  assert split_count(sharded_runs['data8'][0]) == 0


def train_until(config, workdir, stop_at, monkeypatch, devices=None):
  """Run `config` but stop at step `stop_at` through the preemption path (as SIGTERM does)."""
  with monkeypatch.context() as m:
    m.setattr(train._Preemption, 'should_stop', lambda self, step: step == stop_at)
    state = train.train_and_evaluate(config, workdir, devices=devices)
  assert int(state.step) == stop_at
  return state


def test_resume_is_bitwise_exact(tmp_path, monkeypatch):
  """20 steps straight == 10 steps, preempted, resumed, 10 more: params, optimizer, EMA, losses."""
  config = load_config('vae/mnist5k.py', **{'train.steps': 20, 'train.log_every': 5, 'train.checkpoint_every': 20,
                                            'train.ema_decay': 0.9})
  straight = train.train_and_evaluate(config, str(tmp_path / 'straight'))
  train_until(config, str(tmp_path / 'resumed'), 10, monkeypatch)
  resumed = train.train_and_evaluate(config, str(tmp_path / 'resumed'))
  assert int(resumed.step) == int(straight.step) == 20
  assert_trees_equal(resumed.params, straight.params)
  assert_trees_equal(resumed.opt_state, straight.opt_state)
  assert_trees_equal(resumed.ema_params, straight.ema_params)
  # The losses logged after the resume are those of the uninterrupted run, so the batches were the same.
  loss = lambda d: {r['step']: r['loss'] for r in read_metrics(str(tmp_path / d)) if 'loss' in r}
  assert loss('resumed')[15] == loss('straight')[15] and loss('resumed')[20] == loss('straight')[20]


# 8 -> 1 is slow (~20 s); 1 -> 8 stays in the default suite.
@pytest.mark.parametrize('first,second', [pytest.param(8, 1, marks=pytest.mark.slow), (1, 8)])
def test_restore_across_meshes(tmp_path, monkeypatch, first, second):
  """Save on `first` devices (FSDP when 8), resume on `second`, and match an uninterrupted 1-device run."""
  mesh = lambda n: {'mesh.fsdp': 2, 'mesh.data': -1} if n == 8 else {}
  config = lambda n: load_config('vae/mnist5k.py', **{'train.steps': 6, **mesh(n)})
  reference = train.train_and_evaluate(config(1), str(tmp_path / 'ref'), devices=jax.devices()[:1])
  train_until(config(first), str(tmp_path / 'run'), 3, monkeypatch, devices=jax.devices()[:first])
  resumed = train.train_and_evaluate(config(second), str(tmp_path / 'run'), devices=jax.devices()[:second])
  assert int(resumed.step) == 6
  assert len(jax.tree.leaves(resumed.params)[0].sharding.device_set) == second
  assert_trees_close(resumed.params, reference.params, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('name', ['vae/mnist5k.py', 'vae/mnist5k_binary.py', 'vae/digits.py'])
def test_smoke_config_writes_all_outputs(tmp_path, name):
  config = config_file(name)
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir)
  assert json.load(open(os.path.join(workdir, 'config.json')))['data']['name'] == config.data.name
  records = read_metrics(workdir)
  assert records[0]['step'] == 0 and records[0]['param_count'] > 0 and records[0]['compile_seconds'] > 0
  evals = [r for r in records if r['split'] == 'eval' and 'nll_bpd' in r]
  assert evals and all(np.isfinite(r['nll_bpd']) and r['nll_bpd'] > 0 for r in evals)
  # bits/dim and nats agree: nll_bpd = nll_nats / (D ln 2).
  dims = int(np.prod(np.load(sorted((tmp_path / 'samples').glob('samples_*.npy'))[0]).shape[1:]))
  np.testing.assert_allclose(evals[-1]['nll_bpd'], evals[-1]['nll_nats'] / (dims * np.log(2)), rtol=1e-6)
  train_records = [r for r in records if r['split'] == 'train' and 'loss' in r]
  assert train_records[-1]['steps_per_sec'] > 0
  pngs = sorted(p.name for p in (tmp_path / 'samples').glob('*.png'))
  assert any(p.startswith('samples_') for p in pngs) and any(p.startswith('reconstructions_') for p in pngs)
  assert list((tmp_path / 'tensorboard').glob('events.out.tfevents.*'))
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', str(config.train.steps)))


def test_evaluation_is_deterministic(tmp_path):
  config = config_file('vae/digits.py')
  train.train_and_evaluate(config, str(tmp_path))
  recorded = open(tmp_path / 'config.json').read()
  first = train.evaluate(config, str(tmp_path), names=('nll',))
  second = train.evaluate(config, str(tmp_path), names=('nll',))
  assert first == second and np.isfinite(first['nll_nats'])
  # Evaluating with an eval-time override never rewrites the record of how the run was trained.
  config.unlock()
  config.train.eval_batch_size = config.train.eval_batch_size // 2
  train.evaluate(config, str(tmp_path), names=('nll',))
  assert open(tmp_path / 'config.json').read() == recorded


def test_incompatible_checkpoint_is_refused_with_a_message(tmp_path):
  train.train_and_evaluate(load_config('vae/digits.py'), str(tmp_path))
  bigger = load_config('vae/digits.py', **{'model.latent_dim': 7})
  with pytest.raises(CheckpointError, match='(?s)does not match this config.*in the checkpoint but'):
    train.train_and_evaluate(bigger, str(tmp_path))


def test_nan_loss_stops_with_step_and_checkpoint(tmp_path):
  config = load_config('vae/digits.py', **{'train.steps': 8, 'train.checkpoint_every': 2, 'train.log_every': 4})
  train.train_and_evaluate(config, str(tmp_path))  # 8 good steps, checkpoints at 2..8
  config = load_config('vae/digits.py', **{'train.steps': 12, 'train.checkpoint_every': 2,
                                           'train.log_every': 4, 'optim.lr': float('nan')})
  with pytest.raises(NonFiniteError, match=r'at step 10\. The last good checkpoint is step 8'):
    train.train_and_evaluate(config, str(tmp_path))


def test_config_errors(tmp_path):
  with pytest.raises(ConfigError, match='batch_size=12 must be divisible by 8'):
    train.train_and_evaluate(load_config('vae/digits.py', **{'train.batch_size': 12}), str(tmp_path))
  with pytest.raises(ConfigError, match='does not divide the 8 available devices'):
    train.train_and_evaluate(load_config('vae/digits.py', **{'mesh.data': 3}), str(tmp_path))
  with pytest.raises(DataError, match='not prepared'):
    train.train_and_evaluate(load_config('vae/digits.py', **{'data.name': 'cifar10'}), str(tmp_path))


def test_state_shardings_follow_logical_rules():
  config = load_config('vae/mnist5k.py')
  mesh = mesh_lib.make_mesh(config.mesh.__class__({'data': 2, 'fsdp': 2, 'tensor': 2}))
  abstract = {'w': nn.LogicallyPartitioned(jax.ShapeDtypeStruct((6, 4), np.float32), ('embed', 'mlp')),
              'odd': nn.LogicallyPartitioned(jax.ShapeDtypeStruct((3, 5), np.float32), ('embed', 'mlp')),
              'count': jax.ShapeDtypeStruct((), np.int32)}
  shardings = mesh_lib.state_shardings(abstract, mesh, config.mesh.rules)
  assert shardings['w'].spec == jax.sharding.PartitionSpec('fsdp', 'tensor')
  assert shardings['odd'].spec == jax.sharding.PartitionSpec(None, None)  # 3 and 5 do not divide by 2
  assert shardings['count'].spec == jax.sharding.PartitionSpec()
