"""DDPM super-resolution on 8-bit mnist5k: 14x14 -> 28x28.

    python -m jaxgen.main --config=configs/diffusion/ddpm_mnist5k_superres.py --workdir=runs/ddpm_superres

configs/diffusion/ddpm_mnist5k.py with method.superres_factor = 2: the U-Net also sees the image
average-pooled to 14x14 and upsampled back (nearest) as extra input channels, so it learns
p(x | low-resolution x). The `restoration` evaluator super-resolves test images and reports
superres_mse beside the nearest-neighbour upsampling's upsampled_mse; `nll_bpd` is the bound
on -log p(x | low-res x). There is no unconditional `samples` evaluator (a super-resolution
model needs its low-resolution input).

Expected result: `:cpu` (1,000 steps of 32): superres_mse 0.0043 vs upsampled_mse 0.016,
nll_bpd <= 2.180 given the 14x14 image. See experiments/results/diffusion.md.
"""

import os

from jaxgen.core.config import load_config_file


def get_config(arg=None):
  config = load_config_file(os.path.join(os.path.dirname(__file__), 'ddpm_mnist5k.py') + (f':{arg}' if arg else ''))
  config.method.superres_factor = 2
  del config.evals['samples']
  config.evals.restoration.tasks = ('superres',)
  return config
