"""Test setup: 8 virtual CPU devices, a per-session TFDS data dir, shared fixtures.

XLA_FLAGS must be set before jax is imported anywhere, hence at the top here.
Child processes (CLI and two-process tests) inherit these variables.
"""

import os
import tempfile

# Without XLA's backend optimisations, compiles (most of the suite's time) take about half as long;
# the programs run slower, but the tests run small programs: tests/test_pixelcnn.py + test_flows.py
# took 297 s instead of 416 s on the 2-core machine.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
                           ' --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('JAXGEN_DATA_DIR', os.path.join(tempfile.gettempdir(), f'jaxgen-test-data-{os.getuid()}'))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
# Feature classifiers and reference statistics: never the user's ~/.cache/jaxgen.
os.environ['JAXGEN_CACHE_DIR'] = os.path.join(tempfile.gettempdir(), f'jaxgen-test-cache-{os.getuid()}')

import jax  # noqa: E402

jax.config.update('jax_numpy_rank_promotion', 'raise')


# The files whose tests take longest (minutes of CPU each on 2 cores, from the suite's --durations).
# pytest-xdist's --dist loadfile hands files to free workers in collection order, so collecting these
# first lets the short files fill in at the end instead of one long file running alone on one worker.
_LONGEST_FILES = ('test_cli.py', 'test_pixelcnnpp.py', 'test_multiprocess.py', 'test_diffusion.py', 'test_train.py',
                  'test_gan_configs.py', 'test_gan.py', 'test_eval_stack.py', 'test_notebooks.py')


def pytest_collection_modifyitems(session, config, items):
  """Longest files first (the order within a file is kept; see _LONGEST_FILES)."""
  rank = {name: i for i, name in enumerate(_LONGEST_FILES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
