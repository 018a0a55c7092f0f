"""MADE (Germain et al., 2015) on scikit-learn's 8x8 digits: a 17-way softmax per pixel, order-agnostic training.

    python -m jaxgen.main --config=configs/autoregressive/made_digits.py --workdir=runs/made_digits

Two masked hidden layers of 256 ReLU units with a direct input -> output
connection; each step trains one of 8 mask sets, each with its own random pixel
ordering and hidden connectivity, and `nll_nats` / `nll_bpd` are the exact test
NLL of the ensemble averaging p(x) over the 8.

Expected result: not yet measured (the :smoke variant trains 6 steps in seconds; see
tests/test_autoregressive_vectors.py).
"""

import ml_collections

from jaxgen.core.config import base_config, smoke_budget


def get_config(arg=None):
  config = base_config()
  config.method.name = 'made'
  config.method.num_masks = 8
  config.method.eval_masks = 8

  config.model.hidden = (256, 256)
  config.model.ordering = 'random'
  config.model.direct = True
  config.model.mask_seed = 0

  config.data.name = 'digits'

  config.train.steps = 3000
  config.train.batch_size = 64
  config.train.log_every = 100
  config.train.eval_every = 1500
  config.train.checkpoint_every = 1500
  config.train.eval_batch_size = 180
  config.optim.lr = 1e-3
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 100
  config.optim.final_lr_ratio = 0.1

  config.evals.nll = ml_collections.ConfigDict({'every': 1500})
  config.evals.samples = ml_collections.ConfigDict({'every': 1500, 'num': 64})

  if arg == 'smoke':
    config.model.hidden = (16,)
    config.method.num_masks = 4
    config.method.eval_masks = 2
    smoke_budget(config, steps=6, batch_size=16, eval_examples=32, samples=16)
  return config
