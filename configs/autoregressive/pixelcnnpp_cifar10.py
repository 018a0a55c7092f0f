"""PixelCNN++ on CIFAR-10: the paper's model (Salimans et al. 2017, Sec. 3; openai/pixel-cnn defaults).

    python -m jaxgen.main --config=configs/autoregressive/pixelcnnpp_cifar10.py --workdir=runs/pixelcnnpp_cifar10

Needs the TFDS 'cifar10' data prepared (network: `tfds build cifar10`, or set config.data.data_dir).

Architecture (the reference code's defaults): nr_resnet=5 gated resnet blocks per stage and
stream, nr_filters=160, a mixture of nr_logistic_mix=10 discretized logistics per pixel
(10 * 10 = 100 outputs), concat_elu, dropout 0.5, weight normalisation; 53,659,080 parameters
(asserted in tests/test_pixelcnnpp.py, derived there from the reference code's layers).
Optimisation: Adam with lr 1e-3 multiplied by 0.999995 after every step, b1 = 0.95, b2 = 0.9995
(the reference's adam_updates), batch 96 (12 per GPU x 8 GPUs), Polyak averaging 0.9995 used
for evaluation and sampling.

Expected result: test 2.92 bits/dim (the paper's number).

Deviations from the reference:
  * train.steps: the paper does not state a step count (the reference's max_epochs=5000 is a cap);
    we use 500k steps (~960 epochs of 50k images at batch 96). The number is not yet reproduced here.
  * No data-dependent initialisation of the weight-normalised layers (g = 1, or 0.1 for each
    block's second conv, b = 0).
  * Samples are drawn exactly on the 8-bit grid (the reference returns continuous draws).
"""

import ml_collections

from jaxgen.core.config import base_config, smoke_budget

STEPS = 500_000
LR_DECAY_PER_STEP = 0.999995


def get_config(arg=None):
  config = base_config()
  config.method.name = 'pixelcnnpp'

  config.model.nr_resnet = 5
  config.model.nr_filters = 160
  config.model.nr_logistic_mix = 10
  config.model.dropout = 0.5
  config.model.weight_norm = True
  config.model.num_classes = 0

  config.data.name = 'cifar10'

  config.train.steps = STEPS
  config.train.batch_size = 96
  config.train.log_every = 100
  config.train.eval_every = 10_000
  config.train.checkpoint_every = 5_000
  config.train.eval_batch_size = 500
  config.train.ema_decay = 0.9995
  config.optim.name = 'adam'
  config.optim.lr = 1e-3
  config.optim.b1 = 0.95
  config.optim.b2 = 0.9995
  config.optim.eps = 1e-8
  config.optim.schedule = 'exponential'
  config.optim.warmup_steps = 0
  config.optim.decay_rate = LR_DECAY_PER_STEP
  config.optim.grad_clip = 0.0

  config.evals.nll = ml_collections.ConfigDict({'every': 10_000})
  config.evals.samples = ml_collections.ConfigDict({'every': 50_000, 'num': 16})

  if arg == 'smoke':  # the code path on a tiny model (tests run it on tfds.testing.mock_data)
    config.model.nr_resnet = 1
    config.model.nr_filters = 8
    config.model.nr_logistic_mix = 2
    smoke_budget(config, steps=2, batch_size=8, eval_examples=8, samples=2, eval_every=2)
  return config
