"""Test setup: 8 virtual CPU devices, a per-session TFDS data dir, shared fixtures.

XLA_FLAGS must be set before jax is imported anywhere, hence at the top here.
Child processes (CLI and two-process tests) inherit these variables.
"""

import os
import tempfile

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('JAXGEN_DATA_DIR', os.path.join(tempfile.gettempdir(), f'jaxgen-test-data-{os.getuid()}'))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
# Feature classifiers and reference statistics: never the user's ~/.cache/jaxgen.
os.environ['JAXGEN_CACHE_DIR'] = os.path.join(tempfile.gettempdir(), f'jaxgen-test-cache-{os.getuid()}')

import jax  # noqa: E402

jax.config.update('jax_numpy_rank_promotion', 'raise')
