"""StyleGAN2-ADA on mnist5k (5,000 28x28 digits): a CPU-sized StyleGAN2 with adaptive augmentation.

    python -m jaxgen.main --config=configs/gan/stylegan2_ada_mnist5k.py --workdir=runs/stylegan2_ada_mnist5k

The official `--cfg=auto` recipe for a new small dataset (stylegan2-ada-pytorch `train.py`), at
28x28 (base resolution 7: 7 -> 14 -> 28) with narrow layers: 2 mapping layers, style mixing 0.9,
path-length regularisation (weight 2 every 4 steps), the residual discriminator, minibatch-stddev
group min(batch, 4), R1 gamma 0.0002 * 28^2 / batch every 16 steps, Adam lr 0.0025 (betas 0, 0.99),
EMA half-life batch * 10 / 32 kimg, ADA target 0.6 ('bgc'). Widths: channel_base 896,
channel_max 64 (64, 64, 32 channels at 7, 14, 28), latent and w 128. Sample quality in the features
of the offline LeNet (features='classifier').

Arguments: `:smoke` (tiny widths, a few steps; the test suite trains it), `:noada` (ADA off:
ada_target 0, no augmentation), `:subset10` (train on a fixed 10% of the training split, 450
images: config.data.max_train_examples; the limited-data setting where ADA should help; 4,000
steps and ada_kimg 100 there, the budget of experiments/results/gan.md),
combinable as `:subset10,noada`.

One deviation from the official networks: the generator's output goes through tanh
(config.model.output_activation='tanh'). With the official linear output the generator
mode-collapsed within ~500 steps on this data in every setting tried (ADA, path length, style
mixing, R1 gamma, learning rate, minibatch-stddev group, mapping depth), while a DCGAN generator
trained against the same discriminator stayed diverse (experiments/gan_diversity.py).

Expected result: experiments/results/gan.md.
"""

import ml_collections

from jaxgen.core.config import base_config, smoke_budget
from jaxgen.errors import ConfigError

RESOLUTION = 28
ARGS = ('smoke', 'noada', 'subset10')


def get_config(arg=None):
  args = set(filter(None, (arg or '').split(',')))
  if args - set(ARGS):
    raise ConfigError(f'stylegan2_ada_mnist5k arguments are {", ".join(ARGS)} (comma-separated), got {arg!r}.')
  config = base_config()
  batch = 32
  config.method.name = 'gan'
  config.method.loss = 'nonsaturating'
  config.method.r1_gamma = 0.0002 * RESOLUTION ** 2 / batch
  config.method.r1_every = 16
  config.method.pl_weight = 2.0
  config.method.pl_every = 4
  config.method.ada_target = 0.6
  config.method.ada_interval = 4
  config.method.ada_kimg = 500
  config.method.augment = 'bgc'
  config.method.n_critic = 1
  config.method.pack = 1
  config.method.lazy_adam = True   # lr * c, betas ** c for lazy R1 (c = 16/17) and path length (c = 4/5)

  config.model.arch = 'stylegan2'
  config.model.latent_dim = 128
  config.model.w_dim = 128
  config.model.mapping_layers = 2
  config.model.channel_base = 896
  config.model.channel_max = 64
  config.model.num_classes = 0
  config.model.style_mixing = 0.9
  config.model.mbstd_group = min(batch, 4)
  config.model.d_architecture = 'resnet'
  config.model.d_mapping_layers = 8
  config.model.truncation_psi = 1.0
  config.model.w_avg_beta = 0.995
  # Not the official linear output (see the docstring): with it the generator mode-collapsed by step
  # ~500. A likely reason, not proven: MNIST's background is exactly -1, which tanh reaches by
  # saturating, while a linear output must cancel every style's contribution there.
  config.model.output_activation = 'tanh'

  config.data.name = 'mnist5k'

  config.train.batch_size = batch
  config.train.steps = 6000
  config.train.log_every = 50
  config.train.eval_every = 3000
  config.train.checkpoint_every = 1000
  config.train.eval_batch_size = 100
  ema_kimg = batch * 10 / 32
  config.train.ema_decay = 0.5 ** (batch / (ema_kimg * 1000))

  config.optim.name = 'adam'
  config.optim.lr = 0.0025
  config.optim.b1 = 0.0
  config.optim.b2 = 0.99
  config.optim.eps = 1e-8
  config.optim.schedule = 'constant'
  config.optim_d = config.optim.copy_and_resolve_references()

  config.evals.samples = ml_collections.ConfigDict({'every': 3000, 'num': 64})
  config.evals.sample_quality = ml_collections.ConfigDict({'every': 6000, 'features': 'classifier',
                                                           'num_samples': 10000})

  if 'noada' in args:
    config.method.ada_target = 0.0
  if 'subset10' in args:
    # The limited-data comparison at a CPU budget: 4,000 steps (128 kimg, 284 passes over the 450
    # images), and p adjusted 5x faster than the official 500 kimg per unit, so that it can reach
    # ~1 within the run (at 500 kimg it could rise by at most 0.26).
    config.data.max_train_examples = 450
    config.train.steps = 4000
    config.train.eval_every = 2000
    config.method.ada_kimg = 100
    config.evals.samples.every = 2000
    config.evals.sample_quality.every = 4000
  if 'smoke' in args:
    config.model.latent_dim = 8
    config.model.w_dim = 8
    config.model.channel_base = 56    # 8, 4, 2 channels at 7, 14, 28
    config.model.channel_max = 8
    config.model.d_mapping_layers = 2
    config.method.ada_interval = 2
    del config.evals['sample_quality']  # its feature classifier takes minutes to train
    smoke_budget(config, steps=4, batch_size=8, eval_examples=16, samples=4)
  return config
