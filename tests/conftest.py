"""Test setup: 8 virtual CPU devices, a per-session TFDS data dir, shared fixtures.

XLA_FLAGS must be set before jax is imported anywhere, hence at the top here.
Child processes (CLI and two-process tests) inherit these variables.
"""

import os
import shutil
import tempfile

# Without XLA's backend optimisations, compiles (most of the suite's time) take about half as long;
# the programs run slower, but the tests run small programs: tests/test_pixelcnn.py + test_flows.py
# took 297 s instead of 416 s on the 2-core machine. XLA:CPU's older elemental emitters
# (--xla_cpu_use_fusion_emitters=false) compile another third faster than its MLIR fusion emitters
# and run these small programs as fast: tests/test_diffusion.py took 88 s of CPU instead of 131 s.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
                           ' --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true'
                           ' --xla_cpu_use_fusion_emitters=false').strip()
# A persistent compilation cache for this test session only: tests (and the CLI and two-process
# tests' child processes, which inherit these variables) compile many identical programs, e.g. a
# resumed run's train step, or the same smoke config in several tests. A fresh directory per
# session, made by the first process (pytest, or pytest-xdist's controller before it starts its
# workers) and removed when it ends, so no compiled program outlives the run.
if not os.environ.get('JAXGEN_TEST_JIT_CACHE'):
  os.environ['JAXGEN_TEST_JIT_CACHE'] = tempfile.mkdtemp(prefix='jaxgen-test-jit-cache-')
  _OWNED_JIT_CACHE = os.environ['JAXGEN_TEST_JIT_CACHE']
else:
  _OWNED_JIT_CACHE = None
os.environ['JAX_COMPILATION_CACHE_DIR'] = os.environ['JAXGEN_TEST_JIT_CACHE']
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('JAXGEN_DATA_DIR', os.path.join(tempfile.gettempdir(), f'jaxgen-test-data-{os.getuid()}'))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
# TensorFlow (which jaxgen.data imports to parse the prepared examples) imports all of Keras 3 on
# import unless told to use the legacy tf_keras package, which is not installed, so then it imports
# no Keras: 5 s instead of 9.7 s of CPU in every process (the two workers, each CLI, two-process
# and notebook child). Nothing here uses tf.keras.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
# Feature classifiers and reference statistics: never the user's ~/.cache/jaxgen.
os.environ['JAXGEN_CACHE_DIR'] = os.path.join(tempfile.gettempdir(), f'jaxgen-test-cache-{os.getuid()}')

import jax  # noqa: E402

jax.config.update('jax_numpy_rank_promotion', 'raise')


# The files whose tests take longest (minutes of CPU each on 2 cores, from the suite's --durations).
# pytest-xdist's --dist loadfile hands files to free workers in collection order, so collecting these
# first lets the short files fill in at the end instead of one long file running alone on one worker.
_LONGEST_FILES = ('test_cli.py', 'test_pixelcnnpp.py', 'test_lm.py', 'test_multiprocess.py', 'test_diffusion.py',
                  'test_train.py', 'test_gan_configs.py', 'test_gan.py', 'test_eval_stack.py', 'test_notebooks.py')


def pytest_collection_modifyitems(session, config, items):
  """Longest files first (the order within a file is kept; see _LONGEST_FILES)."""
  rank = {name: i for i, name in enumerate(_LONGEST_FILES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_unconfigure(config):
  """Remove the session's compilation cache (only in the process that made it)."""
  if _OWNED_JIT_CACHE:
    shutil.rmtree(_OWNED_JIT_CACHE, ignore_errors=True)
