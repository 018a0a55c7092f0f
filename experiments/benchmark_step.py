"""Benchmark: training-step throughput of any config, on one device and on the whole mesh, in one run.

  python experiments/benchmark_step.py --config=configs/vae/mnist5k.py --steps=100

Times `--steps` jitted train steps (after compiling and one warm-up step) with
real batches from the data pipeline, fully synchronised (`block_until_ready`),
for a 1-device mesh and, when there are several devices, for a mesh over all of
them. Both figures come from the same process on the same machine, so their
ratio is meaningful even on a noisy, shared host. Prints a Markdown table.

Run it on real devices. XLA's virtual CPU devices
(--xla_force_host_platform_device_count) share the host's cores and, with many
steps in flight, their all-reduce rendezvous can exceed XLA's 40 s timeout on
a 2-core machine; they are for correctness tests, not for timing.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import time_steps  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
_STEPS = flags.DEFINE_integer('steps', 100, 'Timed steps per mesh.')
flags.mark_flags_as_required(['config'])


def main(argv):
  del argv
  import jax
  config = _CONFIG.value
  rows = []
  for devices in ([jax.devices()[:1]] + ([jax.devices()] if jax.device_count() > 1 else [])):
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = -1, 1, 1
    rows.append(time_steps(config, devices, _STEPS.value))
  print(f'config: {os.path.relpath(flags.FLAGS["config"].config_filename)}  batch {config.train.batch_size}  '
        f'backend {jax.default_backend()}  {jax.devices()[0].device_kind}')
  print('| devices | compile s | steps/s | examples/s | vs 1 device |')
  print('|---|---|---|---|---|')
  for row in rows:
    print(f'| {row["devices"]} | {row["compile_s"]:.1f} | {row["steps_per_sec"]:.2f} | '
          f'{row["examples_per_sec"]:.0f} | {row["steps_per_sec"] / rows[0]["steps_per_sec"]:.2f}x |')


if __name__ == '__main__':
  app.run(main)
