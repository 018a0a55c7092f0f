"""Glow on CIFAR-10, the paper's configuration (Kingma & Dhariwal, 2018, Table/Appendix: L=3, K=32, 512 channels).

    python -m jaxgen.main --config=configs/flow/glow_cifar10.py --workdir=runs/glow_cifar10

3 levels x depth 32 of (actnorm, invertible 1x1 conv in LU form, affine coupling with
sigmoid scale), coupling nets conv3x3(512) -> actnorm -> ReLU -> conv1x1(512) -> actnorm ->
ReLU -> zero-init conv3x3, learned split priors and learned top prior; uniform
dequantization of the 8-bit data, modelled as x - 0.5 as in the paper's code
(method.preprocess='center': no logit map). Needs CIFAR-10
prepared by the user (`tfds build cifar10`). Parameter count asserted in tests/test_flows.py.

Expected result: not yet measured. Paper: 3.35 bits/dim on the CIFAR-10 test set.
"""

import ml_collections

from jaxgen.core.config import base_config, smoke_budget


def get_config(arg=None):
  config = base_config()
  config.method.name = 'glow'
  config.method.preprocess = 'center'    # the paper's code models x - 0.5 (no logit)

  config.model.levels = 3
  config.model.depth = 32
  config.model.width = 512
  config.model.scale = 'sigmoid'
  config.model.learn_top = True
  config.model.num_classes = 0

  config.data.name = 'cifar10'
  config.data.dequantize = True

  config.train.steps = 1_000_000
  config.train.batch_size = 512          # the paper's minibatch for CIFAR-10
  config.train.log_every = 100
  config.train.eval_every = 10_000
  config.train.checkpoint_every = 5000
  config.train.eval_batch_size = 500
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 5000        # the paper's code: linear warm-up of the Adam lr over 10 epochs
  config.optim.grad_clip = 0.0

  config.evals.nll = ml_collections.ConfigDict({'every': 10_000})
  config.evals.samples = ml_collections.ConfigDict({'every': 10_000, 'num': 64})

  if arg == 'smoke':
    config.model.levels = 2
    config.model.depth = 2
    config.model.width = 8
    smoke_budget(config, steps=6, batch_size=16, eval_examples=32, samples=16)
  return config
