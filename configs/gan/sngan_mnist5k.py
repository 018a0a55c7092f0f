"""SNGAN (Miyato et al. 2018) on mnist5k: spectrally normalised discriminator, hinge loss.

    python -m jaxgen.main --config=configs/gan/sngan_mnist5k.py --workdir=runs/gan/sngan
    python -m jaxgen.main --config=configs/gan/sngan_mnist5k.py:resnet --workdir=runs/gan/sngan_resnet

`cnn` (default): the paper's standard CNN (jaxgen/models/gan_sngan.py; Table 3) at 28x28
(base 7), width 128 (the paper: 512; G 64 -> 32 -> 16 channels, D 16-16-32-32-64), every
discriminator weight divided by its largest singular value, estimated by one power iteration per
step (the vectors live in TrainState.extra). `resnet`: the paper's CIFAR ResNet at width 128
(the paper: 256). At width 64 (G 32 -> 16 -> 8, D 8-8-16-16-32: 215,793 / 12,601 parameters) the
standard CNN did not train: by step 250 the generator had collapsed to one grey image, the hinge
discriminator's loss was exactly 0 (D(real) 5.5, D(fake) -1.06, both past the margin) and the
generator's gradients were too small and too noisy for Adam to move it (experiments/results/gan.md).
Hinge loss, Adam 2e-4 (b1 0.5, b2 0.999), one discriminator update per generator update
(the paper's setting C), batch 64. `,smoke` gives the seconds-long test run.

Evaluation: sample_quality (LeNet features, 10,000 samples) and 64-sample grids.
Expected result: see experiments/results/gan.md.
"""

import ml_collections

from jaxgen.core.config import base_config, smoke_budget


def get_config(arg=None):
  parts = (arg or 'cnn').split(',')
  if any(p not in ('cnn', 'resnet', 'smoke') for p in parts):
    raise ValueError(f'configs/gan/sngan_mnist5k.py takes "[cnn|resnet][,smoke]", got {arg!r}.')
  config = base_config()
  config.method.name = 'gan'
  config.method.loss = 'hinge'
  config.method.n_critic = 1
  config.method.pack = 1

  config.model.arch = 'sngan_resnet' if 'resnet' in parts else 'sngan_cnn'
  config.model.latent_dim = 128
  config.model.width = 128
  config.model.power_iterations = 1
  config.model.num_classes = 0

  config.data.name = 'mnist5k'

  config.train.steps = 3000
  config.train.batch_size = 64
  config.train.log_every = 50
  config.train.eval_every = 3000
  config.train.checkpoint_every = 1000
  config.optim.lr = 2e-4
  config.optim.b1 = 0.5
  config.optim.b2 = 0.999
  config.optim_d = config.optim.copy_and_resolve_references()

  config.evals.samples = ml_collections.ConfigDict({'every': 3000, 'num': 64})
  config.evals.sample_quality = ml_collections.ConfigDict({'every': 3000, 'features': 'classifier',
                                                           'num_samples': 10000})
  if 'smoke' in parts:
    config.model.width = 8
    config.model.latent_dim = 8
    del config.evals['sample_quality']  # its feature classifier takes minutes to train
    smoke_budget(config, steps=4, batch_size=8, eval_examples=16, samples=8)
  return config
