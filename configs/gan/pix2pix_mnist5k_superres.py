"""pix2pix (Isola et al. 2017) on a paired task built from mnist5k: 14x14 -> 28x28 super-resolution.

    python -m jaxgen.main --config=configs/gan/pix2pix_mnist5k_superres.py --workdir=runs/pix2pix_superres

The source is the digit average-pooled to 14x14 and upsampled back (nearest neighbour); a
U-Net generator (depth 2: 28 -> 14 -> 7, ngf 64) translates it to the 28x28 digit, a PatchGAN
(2 stride-2 layers: 34x34 receptive field, so the whole digit) judges (source, target) pairs;
generator loss = non-saturating GAN loss + 100 x L1, Adam 2e-4 (b1 0.5), as the paper.
The `restoration` evaluator's 'superres' task reports `superres_mse` of the generator's
outputs against `upsampled_mse` of the nearest-neighbour input (lower is better), with PNGs.

Expected result: see experiments/results/gan.md.
"""

import ml_collections

from jaxgen.core.config import base_config, smoke_budget


def get_config(arg=None):
  config = base_config()
  config.method.name = 'pix2pix'
  config.method.task = 'superres'
  config.method.superres_factor = 2
  config.method.l1_weight = 100.0

  config.model.depth = 2
  config.model.width = 64
  config.model.d_layers = 2
  config.model.dropout = 0.5

  config.data.name = 'mnist5k'

  config.train.steps = 2000
  config.train.batch_size = 32
  config.train.log_every = 50
  config.train.eval_every = 1000
  config.train.checkpoint_every = 1000
  config.optim.lr = 2e-4
  config.optim.b1 = 0.5
  config.optim.b2 = 0.999
  config.optim_d = config.optim.copy_and_resolve_references()

  config.evals.restoration = ml_collections.ConfigDict({'every': 1000, 'num': 16, 'tasks': ('superres',)})

  if arg == 'smoke':
    config.model.width = 8
    smoke_budget(config, steps=4, batch_size=8, eval_examples=16, samples=8)
  return config
