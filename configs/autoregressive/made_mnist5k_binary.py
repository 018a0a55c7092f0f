"""MADE (Germain et al., 2015) on dynamically binarized mnist5k: connectivity-agnostic training, mask ensemble.

    python -m jaxgen.main --config=configs/autoregressive/made_mnist5k_binary.py --workdir=runs/made_binary

One masked hidden layer of 500 ReLU units with a direct input -> output
connection; each step trains one of 32 mask sets (natural ordering, resampled
hidden connectivity), and `nll_nats` is the exact test NLL of the ensemble that
averages p(x) over all 32 (the paper's mask sampling; full binarized MNIST, 12x
more training data: MADE 86.6 nats with 32 masks, 88.4 with one).

Expected result: test NLL 103.3 nats (32-mask ensemble) after 5,000 steps, ~2 min on 2 CPU
cores (still under-fitted); `:cpu` (1,000 steps of 32): 148.1 nats; see
experiments/results/likelihood.md.
"""

import ml_collections

from jaxgen.core.config import cpu_comparison_budget, base_config, smoke_budget


def get_config(arg=None):
  config = base_config()
  config.method.name = 'made'
  config.method.num_masks = 32
  config.method.eval_masks = 32

  config.model.hidden = (500,)
  config.model.ordering = 'natural'
  config.model.direct = True
  config.model.mask_seed = 0

  config.data.name = 'mnist5k'
  config.data.binarize = 'dynamic'

  config.train.steps = 5000
  config.train.batch_size = 100
  config.train.log_every = 100
  config.train.eval_every = 2500
  config.train.checkpoint_every = 2500
  config.train.eval_batch_size = 100
  config.optim.lr = 1e-3
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 100
  config.optim.final_lr_ratio = 0.1

  config.evals.nll = ml_collections.ConfigDict({'every': 2500})
  config.evals.samples = ml_collections.ConfigDict({'every': 2500, 'num': 64})

  if arg == 'cpu':  # the equal-budget family comparison (experiments/results/likelihood.md)
    cpu_comparison_budget(config)
  if arg == 'smoke':
    config.model.hidden = (16,)
    config.method.num_masks = 4
    config.method.eval_masks = 2
    smoke_budget(config, steps=6, batch_size=16, eval_examples=32, samples=16)
  return config
