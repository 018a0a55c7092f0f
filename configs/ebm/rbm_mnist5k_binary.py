"""Binary RBM, 500 hidden units, on dynamically binarized mnist5k: CD-1, CD-25 or PCD; test NLL by AIS.

    python -m jaxgen.main --config=configs/ebm/rbm_mnist5k_binary.py:cd25 --workdir=runs/rbm/cd25

Variants: `cd1` (default), `cd25` (Salakhutdinov & Murray's CD25(500)), `pcd` (PCD-1, Tieleman
2008, 100 persistent chains); `,smoke` (e.g. `:pcd,smoke`) is the seconds-long run of the tests.

Data as the NADE/MADE binary configs (configs/autoregressive/nade_mnist5k_binary.py):
config.data.binarize='dynamic', a fresh Bernoulli draw of every pixel each step and the test split
binarized once with a fixed seed, so the NLLs compare with theirs.

Training (Hinton's practical guide, 2010): batch 100, SGD with momentum 0.5 for the first 5 epochs
(225 steps) then 0.9, L2 weight decay 2e-4 on the weights, learning rate 0.05 (CD) or 0.01 (PCD),
decayed linearly to 0 over the run (PCD needs its learning rate annealed, Tieleman 2008). 3,000
steps = 67 epochs of the 4,500 training images for every variant (CD-25 is 25 times the Gibbs work
of CD-1 per step: ~6 min on the 2-core CPU, CD-1 and PCD ~1 min).

Evaluation (`ais`): log Z by AIS from the base-rate RBM with Salakhutdinov & Murray's 14,500 betas
(500 in [0, 0.5), 4,000 in [0.5, 0.9), 10,000 in [0.9, 1]), 2 independent runs of 50 chains
(pooled: their 100 chains), reported with the std over the runs and the +-3 std interval; test
NLL = mean free energy + log Z, and the train NLL on 500 training images; 64 samples after 1,000
Gibbs steps and the Gibbs chains' progression (`gibbs_chain`).

Expected result (seed 0; the table of experiments/rbm_ais.py): test NLL CD-1 182.9, CD-25 108.1,
PCD 110.7 nats; train NLL (500 training images) 176.5, 99.3, 109.7. The PCD model's AIS is
unreliable (log Z std 2.2 over the two runs, std of the log weights 8.7, against 0.01-0.1 and ~1
for CD): its NLL is higher. Ten times more betas (on a copy of the run's checkpoint: `--mode=eval "--config.method.ais_betas=(5000,40000,100000)"
--config.method.ais_chains=100`) give 122.7 (log Z 221.2, still rising about 12 nats per tenfold
betas; experiments/results/classical.md).
Full binarized MNIST (60k training images), for comparison: CD25(500) 86.34 nats (Salakhutdinov &
Murray 2008); mnist5k has 13x fewer training images. Wall time on the shared 2-core CPU, training
and evaluation: 283 s (CD-1), 793 s (CD-25), 278 s (PCD).
"""

import ml_collections

from jaxgen.core.config import base_config, smoke_budget

VARIANTS = ('cd1', 'cd25', 'pcd')


def get_config(arg=None):
  parts = (arg or 'cd1').split(',')
  if any(p not in VARIANTS + ('smoke',) for p in parts):
    raise ValueError(f'configs/ebm/rbm_mnist5k_binary.py takes "[cd1|cd25|pcd][,smoke]", got {arg!r}.')
  variant = next((p for p in parts if p in VARIANTS), 'cd1')
  config = base_config()
  config.method.name = 'rbm'
  config.method.visible = 'binary'
  config.method.cd_k = 25 if variant == 'cd25' else 1
  config.method.persistent = variant == 'pcd'
  config.method.chains = 100
  config.method.initial_momentum = 0.5
  config.method.momentum_steps = 225      # 5 epochs of 45 steps
  config.method.sample_steps = 1000
  config.method.ais_betas = (500, 4000, 10000)
  config.method.ais_breaks = (0.5, 0.9)
  config.method.ais_chains = 50

  config.model.hidden = 500

  config.data.name = 'mnist5k'
  config.data.binarize = 'dynamic'

  config.train.steps = 3000
  config.train.batch_size = 100
  config.train.log_every = 100
  config.train.eval_every = 3000
  config.train.checkpoint_every = 1000
  config.train.eval_batch_size = 100
  config.optim.name = 'sgd'
  config.optim.lr = 0.01 if variant == 'pcd' else 0.05
  config.optim.schedule = 'linear'
  config.optim.final_lr_ratio = 0.0
  config.optim.momentum = 0.9
  config.optim.weight_decay = 2e-4

  config.evals.ais = ml_collections.ConfigDict({'every': 3000, 'repeats': 2, 'train_examples': 500})
  config.evals.samples = ml_collections.ConfigDict({'every': 3000, 'num': 64})
  config.evals.gibbs_chain = ml_collections.ConfigDict({'every': 3000, 'num': 8})

  if 'smoke' in parts:
    config.model.hidden = 16
    config.method.chains = 16
    config.method.momentum_steps = 2
    config.method.sample_steps = 10
    config.method.ais_betas = (10, 10, 20)
    config.method.ais_chains = 8
    config.evals.ais.train_examples = 16
    config.evals.gibbs_chain.snapshots = (0, 1, 5)
    config.evals.gibbs_chain.num = 4
    smoke_budget(config, steps=6, batch_size=16, eval_examples=32, samples=16)
  return config
