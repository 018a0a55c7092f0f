"""MLP VAE on scikit-learn's 8x8 digits (17 grey levels) with a discretized logistic decoder.

    python -m jaxgen.main --config=configs/vae/digits.py --workdir=runs/vae_digits

About a minute on 2 CPU cores. Reports the 1000-sample IWAE bound on the test
split as `nll_nats` / `nll_bpd`.

Expected result: test nll_bpd 1.860 (82.5 nats, IWAE K=1000) after 3,000 steps, ~30 s on 2 CPU cores;
see experiments/results/vae.md
"""

import ml_collections

from jaxgen.core.config import base_config


def get_config(arg=None):
  config = base_config()
  config.method.name = 'vae'
  config.method.beta = 1.0
  config.method.eval_samples = 1000
  config.method.eval_chunk = 250

  config.model.arch = 'mlp'
  config.model.latent_dim = 8
  config.model.hidden = (256, 128)
  config.model.channels = ()
  config.model.decoder = 'discretized_logistic'
  config.model.decoder_fixed_std = 0.0

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
  config.evals.reconstructions = ml_collections.ConfigDict({'every': 1500, 'num': 32})
  config.evals.sample_quality = ml_collections.ConfigDict({'every': 3000, 'features': 'classifier',
                                                           'num_samples': 10000})

  if arg == 'smoke':
    del config.evals['sample_quality']  # its feature classifier is trained once, outside the smoke budget
    config.model.latent_dim = 2
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
    for name in ('nll', 'samples', 'reconstructions'):
      config.evals[name].every = 3
    config.evals.samples.num = 16
    config.evals.reconstructions.num = 8
  return config
