"""The CIFAR-10 paper configs run end to end on tfds.testing.mock_data (no download), and the optimizer
schedule PixelCNN++ uses has its closed form."""

import os

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxgen import train
from jaxgen.core.optim import learning_rate_schedule
from jaxgen.logging import read_metrics
from tests.test_train import config_file


# 30-70 s of compiling each on 2 cores: in `make test-all`. The same methods' mnist5k smoke configs run in the
# default suite, and tests/test_data.py covers the mock-data path of the pipeline.
@pytest.mark.slow
@pytest.mark.parametrize('name', ['flow/glow_cifar10.py', 'autoregressive/pixelcnnpp_cifar10.py',
                                  'diffusion/ddpm_cifar10.py'])
def test_cifar10_smoke_config_trains_evaluates_and_samples_on_mock_data(name, tmp_path):
  config = config_file(name)
  assert config.data.name == 'cifar10' and config.train.steps <= 6
  config.evals.nll.every = config.evals.samples.every = config.train.checkpoint_every = config.train.steps
  with tfds.testing.mock_data(num_examples=16):
    train.train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:1])
  final = [r for r in read_metrics(str(tmp_path)) if 'nll_bpd' in r][-1]
  assert np.isfinite(final['nll_bpd']) and final['nll_bpd'] > 0
  samples = [f for f in os.listdir(tmp_path / 'samples') if f.endswith('.npy')]
  assert samples and np.load(tmp_path / 'samples' / samples[-1]).shape[1:] == (32, 32, 3)


def test_exponential_schedule_multiplies_the_rate_every_step_after_warmup():
  optim = ml_collections.ConfigDict(dict(lr=1e-3, schedule='exponential', decay_rate=0.999995, warmup_steps=10))
  schedule = learning_rate_schedule(optim, total_steps=1000)
  np.testing.assert_allclose(float(schedule(5)), 0.5e-3, rtol=1e-6)
  for step in (10, 11, 500, 100_000):
    np.testing.assert_allclose(float(schedule(step)), 1e-3 * 0.999995 ** (step - 10), rtol=2e-3)  # float32 pow
  assert config_file('autoregressive/pixelcnnpp_cifar10.py', None).optim.decay_rate == 0.999995
