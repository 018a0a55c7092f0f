"""MAF (Papamakarios et al., 2017) on toy2d/checkerboard (uniform on 8 unit squares of [-2, 2]^2).

    python -m jaxgen.main --config=configs/flow/maf_checkerboard.py --workdir=runs/maf_checkerboard

Five Gaussian-MADE affine layers (two hidden layers of 128 ReLU units each, soft-clipped
log-scales), the order reversed between layers, no batch norm. Reports the exact
test NLL in nats (`nll_nats`); the data's entropy is log 8 = 2.079 nats,
the best any model can reach.

Expected result: test NLL 2.256 nats after 5,000 steps (~4 min on 2 CPU cores), 0.18 above
log 8; see experiments/results/likelihood.md.
"""

import os

from jaxgen.core.config import load_config_file


def get_config(arg=None):
  """configs/flow/maf_ring8.py (same model, budget and smoke variant) on toy2d/checkerboard."""
  config = load_config_file(os.path.join(os.path.dirname(__file__), 'maf_ring8.py') + (f':{arg}' if arg else ''))
  config.data.name = 'toy2d/checkerboard'
  return config
