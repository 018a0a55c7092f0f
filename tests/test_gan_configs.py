"""Every GAN config's `:smoke` variant trains, evaluates and samples through the real train loop,
and the families' config-level contracts hold (EMA keys, ADA state, the pix2pix restoration)."""

import os

import jax
import numpy as np
import pytest

from jaxgen import train
from jaxgen.logging import read_metrics
from test_train import config_file

# (config file, variant): the toy MLP variants are in tests/test_gan.py.
SMOKE = [
    ('gan/dcgan_mnist5k.py', 'dcgan,smoke'),
    ('gan/dcgan_mnist5k.py', 'wgan_gp,smoke'),
    ('gan/sngan_mnist5k.py', 'cnn,smoke'),
    ('gan/sngan_mnist5k.py', 'resnet,smoke'),
    ('gan/stylegan2_ada_mnist5k.py', 'smoke'),
    ('gan/pix2pix_mnist5k_superres.py', 'smoke'),
]


@pytest.mark.parametrize('name,arg', SMOKE)
def test_smoke_config_trains_evaluates_and_samples(tmp_path, name, arg):
  config = config_file(name, arg)
  assert config.train.steps <= 10
  for evaluator in config.evals.values():  # one evaluation, at the end
    evaluator.every = config.train.steps
  config.train.checkpoint_every = config.train.steps
  state = train.train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:1])
  records = read_metrics(str(tmp_path))
  train_records = [r for r in records if r['split'] == 'train' and 'd_loss' in r]
  assert train_records and all(np.isfinite(r['d_loss']) for r in train_records)
  evals = [r for r in records if r['split'] == 'eval']
  pngs = os.listdir(tmp_path / 'samples')
  if config.method.name == 'pix2pix':
    assert np.isfinite(evals[-1]['superres_mse']) and any(p.startswith('restoration_superres') for p in pngs)
  else:
    samples = np.load(sorted((tmp_path / 'samples').glob('samples_*.npy'))[-1])
    assert samples.shape[1:] == (28, 28, 1) and samples.min() >= 0 and samples.max() <= 1
    assert any(p.endswith('.png') for p in pngs)
  if config.method.get('ada_target', 0) > 0:
    p = float(state.extra['ada']['p'])
    assert 0.0 <= p <= 1.0 and 'ada_p' in train_records[-1]
