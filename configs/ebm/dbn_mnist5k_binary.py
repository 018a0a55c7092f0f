"""Deep belief network 784-500-500 on dynamically binarized mnist5k; the AIS lower bound on log p(v).

    python -m jaxgen.main --config=configs/ebm/dbn_mnist5k_binary.py --workdir=runs/dbn

Greedy layer-wise training as two stages of one run (jaxgen/methods/dbn.py): steps [0, 3000) train
the first RBM (784-500) on the data, steps [3000, 6000) the second (500-500) on binary samples of
the first one's posterior; each as the PCD RBM of configs/ebm/rbm_mnist5k_binary.py:pcd (PCD-1
with 100 persistent chains per layer, batch 100, momentum 0.5 for 5 epochs then 0.9, weight decay
2e-4, lr 0.01 decayed linearly to 0 over the stage): on mnist5k PCD gives a far better RBM than
CD-1 for the same Gibbs work, and CD-25 (as Salakhutdinov & Murray's CD25(500) RBM) would take
~12 min of the 2-core CPU for the two stages. Their DBN was 784-500-2000 (`:paper`); the top layer is 500 here
because AIS on a 500-2000 top RBM costs 4x that of a 500-500 one on the CPU. Data as the NADE/MADE
binary configs (dynamic binarization; the test split binarized once with a fixed seed).

Evaluation (`ais`): minus the variational lower bound of Salakhutdinov & Murray (2008), with log Z
of the top RBM by AIS (14,500 betas, 2 runs of 50 chains, from the base-rate RBM of its inputs)
and the expectation over q(h1|v) from 100 samples per example: an upper bound on the test NLL in
nats (literature, full binarized MNIST: DBN 500-2000 about 84.55 nats). Samples: 1,000 Gibbs steps
in the top RBM, then the top-down pass (binary images), and the chains' progression.
`:smoke` (`:paper,smoke` too) is the seconds-long run of the tests.

Expected result (seed 0; experiments/rbm_ais.py): test NLL <= 121.4 nats (minus the bound), train
<= 120.5; log Z of the top RBM 180.63 (std 0.11 over the two AIS runs); 347 s of training and
evaluation on the shared 2-core CPU.
"""

import os

import ml_collections

from jaxgen.core.config import load_config_file


def get_config(arg=None):
  parts = arg.split(',') if arg else []
  if any(p not in ('paper', 'smoke') for p in parts):
    raise ValueError(f'configs/ebm/dbn_mnist5k_binary.py takes "[paper][,smoke]", got {arg!r}.')
  smoke = 'smoke' in parts
  rbm = os.path.join(os.path.dirname(__file__), 'rbm_mnist5k_binary.py')
  config = load_config_file(rbm + (':pcd,smoke' if smoke else ':pcd'))
  config.method.name = 'dbn'
  del config.method['visible']
  config.method.stage_steps = 3 if smoke else 3000
  config.method.bound_samples = 4 if smoke else 100
  hidden = (16, 8) if smoke else (500, 2000) if 'paper' in parts else (500, 500)
  config.model = ml_collections.ConfigDict({'hidden': hidden})
  config.train.steps = 2 * config.method.stage_steps
  if not smoke:  # evaluate at the end of the run (the smoke run: at both stages' ends)
    config.train.eval_every = config.train.steps
    for evaluator in config.evals.values():
      evaluator.every = config.train.steps
  return config
