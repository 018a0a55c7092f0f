"""Two local processes (jax.distributed, gloo CPU collectives, 4 devices each) = one 8-device process."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np

from jaxgen import train
from jaxgen.logging import read_metrics
from test_train import load_config

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
  coordinator = f'127.0.0.1:{free_port()}'
  workdir, out = str(tmp_path / 'two'), str(tmp_path / 'params.npz')
  env = dict(os.environ, PYTHONPATH=HERE)
  procs = [subprocess.Popen([sys.executable, os.path.join(HERE, 'two_process_worker.py'), coordinator, str(i),
                             workdir, out], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  outputs = [p.communicate(timeout=400)[0] for p in procs]
  for p, output in zip(procs, outputs):
    assert p.returncode == 0, output[-4000:]

  config = load_config('vae/mnist5k.py', **{'train.steps': 3, 'train.log_every': 1, 'mesh.fsdp': 2,
                                            'mesh.data': -1})
  single = train.train_and_evaluate(config, str(tmp_path / 'one'), devices=jax.devices()[:8])
  two = np.load(out)
  ref = [np.asarray(x) for x in jax.tree.leaves(single.params)]
  assert len(two.files) == len(ref)
  for i, r in enumerate(ref):
    np.testing.assert_allclose(two[f'arr_{i}'], r, rtol=1e-5, atol=1e-6)
  losses = lambda d: [r['loss'] for r in read_metrics(d) if 'loss' in r]
  np.testing.assert_allclose(losses(workdir), losses(str(tmp_path / 'one')), rtol=1e-6)
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '3'))  # both processes wrote one checkpoint
