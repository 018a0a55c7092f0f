"""NADE (Larochelle & Murray, 2011) on dynamically binarized mnist5k, 500 sigmoid hidden units.

    python -m jaxgen.main --config=configs/autoregressive/nade_mnist5k_binary.py --workdir=runs/nade_binary

Training sees a fresh binarization each step; the test split is binarized once
with a fixed seed. `nll_nats` is the exact test NLL (full binarized MNIST, 12x
more training data: NADE 88.3 nats in the paper).

Expected result: `:cpu` (1,000 steps of 32): test 139.7 nats (far from trained). A step of 100
takes ~1.4 s on 2 CPU cores (the [B, D, H] pre-activations are memory-bound), so the default
budget is ~2 h there and was not run; see experiments/results/likelihood.md.
"""

import ml_collections

from jaxgen.core.config import cpu_comparison_budget, base_config, smoke_budget


def get_config(arg=None):
  config = base_config()
  config.method.name = 'nade'

  config.model.hidden = 500

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
    config.model.hidden = 16
    smoke_budget(config, steps=6, batch_size=16, eval_examples=32, samples=16)
  return config
