"""Benchmark: DDPM training steps/s and the sampling cost of DDPM vs DDIM steps, in one run.

  python experiments/diffusion_benchmark.py --samples=8 --train_steps=5
  python experiments/diffusion_benchmark.py --only=train --dtypes=float32,bfloat16   # on a GPU

Training: steps/s and examples/s of the jitted train step of configs/diffusion/ddpm_mnist5k.py
(its batch) and of configs/diffusion/ddpm_cifar10.py at the paper's batch 128 (--cifar_steps
steps, 1 by default: on a CPU one step of the 35.7M-parameter U-Net takes about a minute),
once per compute dtype in --dtypes, on tfds.testing.mock_data for CIFAR-10 (no download).
Sampling: images/s of the mnist5k model's sampler for --samples images with the ancestral
DDPM sampler (1000 steps) and DDIM with 100, 50 and 10 steps, from freshly initialised
parameters (the cost does not depend on training); the speed-up is relative to DDPM, from
the same process. Prints Markdown tables for experiments/results/diffusion.md.
"""

import copy
import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import time_sampling, time_steps  # noqa: E402

_SAMPLES = flags.DEFINE_integer('samples', 8, 'Images per timed sampling call.')
_TRAIN_STEPS = flags.DEFINE_integer('train_steps', 5, 'Timed train steps of the mnist5k config.')
_CIFAR_STEPS = flags.DEFINE_integer('cifar_steps', 1, 'Timed train steps of the CIFAR-10 config (batch 128).')
_DTYPES = flags.DEFINE_list('dtypes', ['float32'], 'Compute dtypes of the timed train steps.')
_ONLY = flags.DEFINE_enum('only', 'all', ['all', 'train', 'sample'], 'Which tables to measure.')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name):
  from jaxgen.core.config import load_config_file
  config = load_config_file(os.path.join(ROOT, 'configs', 'diffusion', name))
  config.evals = {}
  return config


def train_rows(devices):
  import tensorflow_datasets as tfds
  rows = []
  for name, steps in (('ddpm_mnist5k.py', _TRAIN_STEPS.value), ('ddpm_cifar10.py', _CIFAR_STEPS.value)):
    for dtype in _DTYPES.value:
      config = load(name)
      config.model.compute_dtype = dtype
      if 'cifar10' in name:
        with tfds.testing.mock_data(num_examples=config.train.batch_size * (steps + 1)):
          row = time_steps(config, devices, steps)
      else:
        row = time_steps(config, devices, steps)
      rows.append((name, dtype, config.train.batch_size, row))
      print(rows[-1], flush=True)
  return rows


def sample_rows():
  rows = []
  for sampler, steps in (('ddpm', 1000), ('ddim', 100), ('ddim', 50), ('ddim', 10)):
    config = load('ddpm_mnist5k.py')
    config.method.sampler, config.method.sample_steps = sampler, steps
    images_per_sec, compile_s = time_sampling(copy.deepcopy(config), _SAMPLES.value)
    rows.append((f'{sampler.upper()} {steps}', images_per_sec, compile_s))
    print(rows[-1], flush=True)
  return rows


def main(argv):
  del argv
  import jax
  devices = jax.devices()[:1]
  print(f'backend {jax.default_backend()}  {devices[0].device_kind}  (1 device)')
  if _ONLY.value in ('all', 'train'):
    rows = train_rows(devices)
    print('\n| config | compute dtype | batch | train steps/s | examples/s | step compile s |')
    print('|---|---|---|---|---|---|')
    for name, dtype, batch, r in rows:
      print(f"| {name} | {dtype} | {batch} | {r['steps_per_sec']:.3g} | {r['examples_per_sec']:.3g} | "
            f"{r['compile_s']:.1f} |")
  if _ONLY.value in ('all', 'sample'):
    rows = sample_rows()
    base = rows[0][1]
    print(f'\nconfigs/diffusion/ddpm_mnist5k.py, {_SAMPLES.value} images per call')
    print('| sampler | images/s | speed-up vs DDPM 1000 | sampler compile s |')
    print('|---|---|---|---|')
    for name, ips, cs in rows:
      print(f'| {name} | {ips:.3g} | {ips / base:.1f}x | {cs:.1f} |')


if __name__ == '__main__':
  app.run(main)
