"""Multi-host initialisation: one process per host, `jax.distributed` between them.

Launches that need it:
  * explicit flags: --coordinator_address=host:port --num_processes=N --process_id=i
  * SLURM (srun with several tasks) and Cloud TPU pods: detected by JAX itself
    when `jax.distributed.initialize()` is called without arguments.
On CPU the collectives go through gloo, which is what the two-process tests use.
"""

import os

import jax


def _auto_detectable() -> bool:
  """True when the environment says this is one process of a multi-process launch."""
  if int(os.environ.get('SLURM_NTASKS', '1')) > 1 and 'SLURM_STEP_NODELIST' in os.environ:
    return True
  if os.environ.get('TPU_WORKER_HOSTNAMES', '').count(',') > 0:
    return True
  return False


def initialize(coordinator_address: str = '', num_processes: int = 0, process_id: int = -1) -> None:
  """Start jax.distributed if this is a multi-process launch; a no-op otherwise."""
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if coordinator_address:
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)
  elif _auto_detectable():
    jax.distributed.initialize()


def is_main_process() -> bool:
  return jax.process_index() == 0
