"""PGGAN on mnist5k: progressive growing 7x7 -> 14x14 -> 28x28 with WGAN-GP, at a CPU size.

    python -m jaxgen.main --config=configs/gan/pggan_mnist5k.py --workdir=runs/pggan_mnist5k

The paper's training (Karras et al. 2018, "Progressive Growing of GANs", Sec. 4 and Appendix A)
on a small model: three stages (the base 7 = 28 / 2^2), widths (128, 64, 32) from the base up,
latent 128 (the paper: 512), equalized learning rate, pixel norm in G, minibatch stddev (groups of 4)
before D's last block, linear G output (jaxgen.models.gan_pggan). WGAN-GP loss with gp_weight 10,
one critic step per generator step and the drift term 0.001 * D(real)^2; Adam lr 1e-3,
beta1 0, beta2 0.99, eps 1e-8 for both networks; EMA of the generator with decay 0.999.

Schedule: stage_steps = 1000 steps per phase. Stage 0 trains for 1000 steps, stages 1 and 2
each fade in for 1000 steps (alpha 0 -> 1) and stabilise for 1000; train.steps =
2 * len(channels) * stage_steps = 6000 gives the last stage 1000 more steps at full resolution.
Overriding model.stage_steps needs train.steps changed with it.

Expected result: not measured yet (no run of this config has been recorded). sample_quality
reports FD/KID/precision/recall in the features of the offline mnist5k classifier.
"""

import ml_collections

from jaxgen.core.config import base_config, smoke_budget


def get_config(arg=None):
  config = base_config()
  config.method.name = 'gan'
  config.method.loss = 'wasserstein'
  config.method.gp_weight = 10.0
  config.method.n_critic = 1
  config.method.drift = 0.001
  config.method.pack = 1

  config.model.arch = 'pggan'
  config.model.latent_dim = 128
  config.model.channels = (128, 64, 32)     # 7x7, 14x14, 28x28
  config.model.stage_steps = 1000
  config.model.num_classes = 0
  config.model.mbstd_group = 4

  config.data.name = 'mnist5k'

  config.train.steps = 2 * len(config.model.channels) * config.model.stage_steps
  config.train.batch_size = 64
  config.train.log_every = 50
  config.train.eval_every = 2000
  config.train.checkpoint_every = 1000
  config.train.eval_batch_size = 100
  config.train.ema_decay = 0.999
  config.optim.name = 'adam'
  config.optim.lr = 1e-3
  config.optim.b1 = 0.0
  config.optim.b2 = 0.99
  config.optim.eps = 1e-8
  config.optim_d = config.optim.copy_and_resolve_references()

  config.evals.samples = ml_collections.ConfigDict({'every': 2000, 'num': 64})
  # FD/KID/precision/recall/IS in the features of the offline LeNet (trained once into the cache).
  config.evals.sample_quality = ml_collections.ConfigDict({'every': 6000, 'features': 'classifier',
                                                           'num_samples': 10000})

  if arg == 'smoke':  # tiny nets, 2 steps per phase: 10 steps cross both stage changes (stage 2 from step 6)
    config.model.latent_dim = 8
    config.model.channels = (4, 4, 4)
    config.model.stage_steps = 2
    del config.evals['sample_quality']  # its feature classifier takes minutes to train
    smoke_budget(config, steps=10, batch_size=8, eval_examples=16, samples=4)
  return config
