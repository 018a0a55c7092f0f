"""Benchmark: training steps/s and sampling images/s of the exact-likelihood families, in one run.

  python experiments/likelihood_benchmark.py --steps=20 --samples=16

For each config below (on one device, its default model and batch size): the
train-step rate over `--steps` jitted steps on real batches (as
experiments/benchmark_step.py measures it), and the rate of `method.sample` for
`--samples` images after compiling, from freshly initialised parameters (the
cost of sampling does not depend on training). PixelCNN-family models are timed
twice: with the work-reusing sampler (method.sample_reuse, the default) and with
the plain one that re-runs the whole network for every sub-pixel; both come from
the same process, so their ratio is meaningful on a noisy shared host. Prints a
Markdown table for experiments/results/likelihood.md.
"""

import copy
import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import time_sampling, time_steps  # noqa: E402

_STEPS = flags.DEFINE_integer('steps', 20, 'Timed train steps per config.')
_SAMPLES = flags.DEFINE_integer('samples', 16, 'Images per timed sampling call.')
_ONLY = flags.DEFINE_list('only', [], 'Config paths to run (default: all).')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = [
    'configs/autoregressive/nade_mnist5k_binary.py',
    'configs/autoregressive/made_mnist5k_binary.py',
    'configs/autoregressive/pixelcnn_mnist5k.py',
    'configs/autoregressive/gated_pixelcnn_mnist5k.py',
    'configs/autoregressive/pixelrnn_mnist5k_binary.py',
    'configs/autoregressive/pixelcnnpp_mnist5k.py',
    'configs/flow/realnvp_mnist5k.py',
    'configs/flow/glow_mnist5k.py',
    'configs/flow/maf_ring8.py',
    'configs/flow/realnvp_ring8.py',
]


def load(path):
  from jaxgen.core.config import load_config_file
  return load_config_file(os.path.join(ROOT, path))


def main(argv):
  del argv
  import jax
  rows = []
  for path in (_ONLY.value or CONFIGS):
    config = load(path)
    config.evals = {}
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = -1, 1, 1
    train_row = time_steps(copy.deepcopy(config), jax.devices()[:1], _STEPS.value)
    variants = [('', config)]
    if config.method.name in ('pixelcnn', 'pixelcnnpp'):
      plain = copy.deepcopy(config)
      plain.method.sample_reuse = False
      variants = [(' (re-use)', config), (' (plain)', plain)]
    for tag, cfg in variants:
      images_per_sec, compile_s = time_sampling(cfg, _SAMPLES.value)
      rows.append((os.path.relpath(path, 'configs') + tag, config.train.batch_size, train_row['steps_per_sec'],
                   images_per_sec, compile_s))
      print(rows[-1], flush=True)
  print(f'\nbackend {jax.default_backend()}  {jax.devices()[0].device_kind}  (1 device; '
        f'{_STEPS.value} train steps, {_SAMPLES.value} images per sampling call)')
  print('| config | batch | train steps/s | sampling images/s | sampler compile s |')
  print('|---|---|---|---|---|')
  for name, batch, sps, ips, cs in rows:
    print(f'| {name} | {batch} | {sps:.2f} | {ips:.3g} | {cs:.1f} |')


if __name__ == '__main__':
  app.run(main)
