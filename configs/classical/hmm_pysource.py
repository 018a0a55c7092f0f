"""A hidden Markov model over the bytes of `pysource` (the Python standard library's source), 128 states.

    python -m jaxgen.main --config=configs/classical/hmm_pysource.py:em --workdir=runs/hmm_pysource_em
    python -m jaxgen.main --config=configs/classical/hmm_pysource.py:gradient --workdir=runs/hmm_pysource_gradient

Variants (comma-separated): `em` (default; stepwise Baum-Welch, eta_k = (k + 1)^-0.7) or
`gradient` (Adam on the exact log-likelihood), and `smoke` (a few steps of a tiny model).
Sequences are non-overlapping windows of 256 bytes of the split's byte stream (files joined
by 0 bytes); `nll_bpd` is the exact test bits per byte.

Expected result (2-core CPU shared with other jobs, no accelerator; Python 3.11.7's stdlib): test
3.123 bits per byte for `em` after 1,000 steps of 64 (3.195 at 500), 3.128 for `gradient` after
2,000 steps (3.150 at 1,000); an add-one-smoothed unigram byte model gives 4.706 on the same
windows. About 2.3 min (em) and 2.0 min (gradient) of CPU time.
"""

import ml_collections

from jaxgen.core.config import base_config, smoke_budget


def get_config(arg=None):
  args = set((arg or '').split(',')) - {''}
  unknown = args - {'em', 'gradient', 'smoke'}
  if unknown or {'em', 'gradient'} <= args:
    raise ValueError(f'configs/classical/hmm_pysource.py takes em or gradient, optionally with smoke; got {arg!r}.')
  training = 'gradient' if 'gradient' in args else 'em'

  config = base_config()
  config.method.name = 'hmm'
  config.method.training = training
  config.method.em_stepsize_power = 0.7
  config.method.em_pseudocount = 1e-4

  config.model.states = 128
  config.model.emission = 'categorical'
  config.model.init_scale = 1.0

  config.data.name = 'pysource'
  config.data.seq_len = 256

  config.train.steps = 1000 if training == 'em' else 2000
  config.train.batch_size = 64
  config.train.log_every = 50
  config.train.eval_every = 500
  config.train.checkpoint_every = 500
  config.train.eval_batch_size = 256
  config.optim.lr = 3e-2 if training == 'gradient' else 0.0
  config.optim.schedule = 'cosine' if training == 'gradient' else 'constant'
  config.optim.final_lr_ratio = 0.1

  config.evals.nll = ml_collections.ConfigDict({'every': 500})
  config.evals.samples = ml_collections.ConfigDict({'every': 500, 'num': 8})

  if 'smoke' in args:
    config.model.states = 8
    config.data.seq_len = 32
    smoke_budget(config, steps=4, batch_size=16, eval_examples=32, samples=4)
  return config
