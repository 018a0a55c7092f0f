"""MAF (Papamakarios et al., 2017) on dequantized 8-bit mnist5k, flattened to 784-dim vectors.

    python -m jaxgen.main --config=configs/flow/maf_mnist5k.py --workdir=runs/maf_mnist5k

Five Gaussian-MADE affine layers, each with one hidden layer of 1024 ReLU units, the
order reversed between layers, in the logit space y = logit(a + (1 - 2a) x), a = 0.05
(the paper's MNIST model: 5 layers, 1 hidden layer of 1024, batch norm between layers,
which we leave out). Each MADE's output weights start at 1/100 of LeCun's scale, so
every layer starts near the identity: at full scale the five layers' scales multiply
and the first steps' loss reaches 1e10 nats. Uniform dequantization comes from the pipeline; `nll_bpd` is the
bits/dim of the discrete data (the logit Jacobian and D log 256 are included).

Expected result: `:cpu` (1,000 steps of 32): test 3.256 bits/dim, over-fitted (training loss 1603
nats vs test 1769); see experiments/results/likelihood.md.
"""

import ml_collections

from jaxgen.core.config import base_config, cpu_comparison_budget, smoke_budget


def get_config(arg=None):
  config = base_config()
  config.method.name = 'maf'
  config.method.scale_clip = 3.0
  config.method.logit_alpha = 0.05

  config.model.num_layers = 5
  config.model.hidden = (1024,)
  config.model.out_init_scale = 0.01   # each layer starts near the identity (jaxgen/methods/maf.py)

  config.data.name = 'mnist5k'
  config.data.dequantize = True

  config.train.steps = 3000
  config.train.batch_size = 100
  config.train.log_every = 100
  config.train.eval_every = 1500
  config.train.checkpoint_every = 1500
  config.train.eval_batch_size = 100
  config.optim.lr = 3e-4   # 1e-3 spikes to 1e5 nats within 200 steps; 1e-4 learns slower (probes of 200 steps)
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 100
  config.optim.final_lr_ratio = 0.1
  config.optim.grad_clip = 100.0

  config.evals.nll = ml_collections.ConfigDict({'every': 1500})
  config.evals.samples = ml_collections.ConfigDict({'every': 1500, 'num': 64})

  if arg == 'cpu':  # the equal-budget family comparison (experiments/results/likelihood.md)
    cpu_comparison_budget(config)
  if arg == 'smoke':
    config.model.num_layers = 2
    config.model.hidden = (16,)
    smoke_budget(config, steps=6, batch_size=16, eval_examples=32, samples=16)
  return config
