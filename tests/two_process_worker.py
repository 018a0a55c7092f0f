"""One of two local processes (4 CPU devices each) training the VAE smoke config together.

Run by tests/test_multiprocess.py: argv = coordinator_address process_id workdir out.npz
"""

import os
import re
import sys

# The test session's XLA flags (tests/conftest.py: the faster compiles, inherited through the
# environment) with 4 devices instead of 8.
os.environ['XLA_FLAGS'] = (re.sub(r'--xla_force_host_platform_device_count=\d+', '', os.environ.get('XLA_FLAGS', ''))
                           + ' --xla_force_host_platform_device_count=4').strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from jaxgen import train  # noqa: E402
from jaxgen.core import distributed  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from test_train import load_config  # noqa: E402


def main():
  coordinator, process_id, workdir, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
  distributed.initialize(coordinator, 2, process_id)
  assert jax.process_count() == 2 and jax.device_count() == 8 and jax.local_device_count() == 4
  config = load_config('vae/mnist5k.py', **{'train.steps': 3, 'train.log_every': 1, 'mesh.fsdp': 2, 'mesh.data': -1})
  state = train.train_and_evaluate(config, workdir)
  params = [np.asarray(multihost_utils.process_allgather(x, tiled=True)) for x in jax.tree.leaves(state.params)]
  if process_id == 0:
    np.savez(out, *params)


if __name__ == '__main__':
  main()
