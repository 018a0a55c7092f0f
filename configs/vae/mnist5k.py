"""Convolutional VAE on mnist5k (8-bit MNIST subset) with a discretized logistic decoder.

    python -m jaxgen.main --config=configs/vae/mnist5k.py --workdir=runs/vae

About four minutes of training on 2 CPU cores, plus a minute for the K=1000 bound.
Reports the 1000-sample IWAE bound on the test split as `nll_nats` / `nll_bpd`
(an upper bound on the true NLL).

Expected result: test nll_bpd 1.484 (806.4 nats, IWAE K=1000) after 1,500 steps, ~5 min on 2 CPU cores;
see experiments/results/vae.md
"""

import ml_collections

from jaxgen.core.config import base_config


def get_config(arg=None):
  config = base_config()
  config.method.name = 'vae'
  config.method.beta = 1.0
  config.method.eval_samples = 1000
  config.method.eval_chunk = 100

  config.model.arch = 'conv'
  config.model.latent_dim = 32
  config.model.channels = (32, 64)          # 28 -> 14 -> 7
  config.model.hidden = (256,)
  config.model.decoder = 'discretized_logistic'
  config.model.decoder_fixed_std = 0.0

  config.data.name = 'mnist5k'

  config.train.steps = 1500
  config.train.batch_size = 128
  config.train.log_every = 50
  config.train.eval_every = 750
  config.train.checkpoint_every = 750
  config.train.eval_batch_size = 100
  config.optim.lr = 1e-3
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 100
  config.optim.final_lr_ratio = 0.1

  config.evals.nll = ml_collections.ConfigDict({'every': 1500})
  config.evals.samples = ml_collections.ConfigDict({'every': 750, 'num': 64})
  config.evals.reconstructions = ml_collections.ConfigDict({'every': 750, 'num': 32})
  # FD/KID/precision/recall/IS in the features of the offline LeNet (trained once into the cache).
  config.evals.sample_quality = ml_collections.ConfigDict({'every': 1500, 'features': 'classifier',
                                                           'num_samples': 10000})

  if arg == 'smoke':
    config.model.latent_dim = 4
    config.model.channels = (4, 8)
    config.model.hidden = (16,)
    config.method.eval_samples = 8
    config.method.eval_chunk = 4
    config.data.max_eval_examples = 32
    config.train.steps = 6
    config.train.batch_size = 16
    config.train.eval_batch_size = 16
    config.train.log_every = 3
    config.train.eval_every = 3
    config.train.checkpoint_every = 3
    config.optim.warmup_steps = 0
    del config.evals['sample_quality']  # its feature classifier takes minutes to train
    for name in ('nll', 'samples', 'reconstructions'):
      config.evals[name].every = 3
    config.evals.samples.num = 16
    config.evals.reconstructions.num = 8
  return config
