"""Class-conditional DDPM with classifier-free guidance on 8-bit mnist5k.

    python -m jaxgen.main --config=configs/diffusion/ddpm_mnist5k_guided.py --workdir=runs/ddpm_guided

configs/diffusion/ddpm_mnist5k.py with a class embedding (model.num_classes = 10); the label is
replaced by the null class with probability 0.1 in training (method.label_dropout), so one
network is both the conditional and the unconditional model, and sampling uses guidance
scale 3 (method.guidance_scale: 0 = unconditional, 1 = conditional, > 1 = guided; override
with --config.method.guidance_scale=...). Sample grids cycle through the ten classes.

Expected result: see experiments/results/diffusion.md.
"""

import os

from jaxgen.core.config import load_config_file


def get_config(arg=None):
  config = load_config_file(os.path.join(os.path.dirname(__file__), 'ddpm_mnist5k.py') + (f':{arg}' if arg else ''))
  config.model.num_classes = 10
  config.method.label_dropout = 0.1
  config.method.guidance_scale = 3.0
  return config
