"""Benchmark: what the two XLA:CPU workarounds of the GAN step are worth, A/B in one process.

  python experiments/gan_cpu_paths.py --steps=5

For each GAN config, steps/s of the jitted train step (one CPU device, the config's batch; the
timing of experiments/benchmark_step.py) three ways:

  current        as the code is: the critic updates unrolled, convolutions through
                 jaxgen.models.canonical_conv (StyleGAN2, PGGAN);
  lax conv       canonical_conv.conv replaced by lax.conv_general_dilated with its autodiff gradients;
  critic loop    the critic updates as a `lax.scan` loop (not unrolled).

Every row comes from the same process, so the ratios hold on a shared, noisy machine; in parentheses,
how many times faster the current code is than that variant. Prints a
Markdown table (experiments/results/gan.md, "Training speed").
"""

import contextlib
import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import time_steps  # noqa: E402

_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps per measurement.')
_CONFIGS = flags.DEFINE_list('configs', ['dcgan_mnist5k.py', 'dcgan_mnist5k.py:wgan_gp', 'sngan_mnist5k.py',
                                         'stylegan2_ada_mnist5k.py', 'pggan_mnist5k.py'],
                             'Configs under configs/gan/.')


@contextlib.contextmanager
def _lax_conv():
  import jax
  from jaxgen.models import canonical_conv
  original = canonical_conv.conv
  canonical_conv.conv = lambda x, w, padding='SAME': jax.lax.conv_general_dilated(
      x, w, (1, 1), padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  try:
    yield
  finally:
    canonical_conv.conv = original


@contextlib.contextmanager
def _critic_loop():
  import jax
  original = jax.lax.scan
  jax.lax.scan = lambda *args, unroll=1, **kwargs: original(*args, unroll=1, **kwargs)
  try:
    yield
  finally:
    jax.lax.scan = original


def main(argv):
  del argv
  import jax
  from jaxgen.core.config import load_config_file
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  variants = (('current', contextlib.nullcontext), ('lax conv', _lax_conv), ('critic loop', _critic_loop))
  print(f'backend {jax.default_backend()}, one device, {_STEPS.value} timed steps after compile + 1 warm-up\n')
  print('| config | batch | ' + ' | '.join(f'{name} steps/s' for name, _ in variants) + ' |')
  print('|---|---|' + '---|' * len(variants))
  for spec in _CONFIGS.value:
    cells = []
    for _, variant in variants:
      config = load_config_file(os.path.join(repo, 'configs', 'gan', spec))
      config.mesh.data, config.mesh.fsdp, config.mesh.tensor = -1, 1, 1
      with variant():
        cells.append(time_steps(config, jax.devices()[:1], _STEPS.value)['steps_per_sec'])
    # In parentheses: how many times faster the current code is than that variant.
    speedups = ' | '.join(f'{c:.2f} ({cells[0] / c:.2f}x)' if i else f'{c:.2f}' for i, c in enumerate(cells))
    print(f'| `{spec}` | {config.train.batch_size} | {speedups} |', flush=True)


if __name__ == '__main__':
  app.run(main)
