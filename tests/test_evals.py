"""Evaluators against closed forms: the dequantization correction, bits/dim, output files."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from jaxgen import evals
from jaxgen.core.config import base_config
from jaxgen.core.mesh import make_mesh
from jaxgen.core.state import TrainState
from jaxgen.data import get_info
from jaxgen.evals.samples import write_examples
from jaxgen.methods.base import Method


class UniformDensity(Method):
  """p(x) = 1 on [0, 1]^D: its continuous NLL is 0, so the discrete NLL is exactly the correction."""
  has_likelihood = True

  def nll(self, params, batch, rng):
    return jnp.zeros(batch['x'].shape[0])

  def sample(self, params, rng, num, **cond):
    return jax.random.uniform(rng, (num, *self.info.shape))


def context(tmp_path, **data):
  config = base_config()
  config.method.name = 'uniform'
  config.data.update(data)
  config.train.eval_batch_size = 30  # not a multiple of the 8 devices: rounded up to 32 and padded
  config.evals.nll = ml_collections.ConfigDict({'every': 1})
  info = get_info(config.data)
  ctx = evals.EvalContext(method=UniformDensity(config, info), config=config, info=info,
                          mesh=make_mesh(config.mesh), workdir=str(tmp_path), is_main=True)
  return config, ctx


def empty_state():
  return TrainState(step=jnp.zeros((), jnp.int32), params={}, opt_state=(), rng=jax.random.PRNGKey(0))


def test_dequantized_uniform_density_is_the_discrete_uniform(tmp_path):
  """A uniform density on dequantized digits (17 levels, 64 dims) = uniform over 17^64 values."""
  config, ctx = context(tmp_path, name='digits', dequantize=True)
  metrics = evals.get('nll')(config.evals.nll, ctx)(empty_state(), 0)
  np.testing.assert_allclose(metrics['nll_nats'], 64 * math.log(17), rtol=1e-6)
  np.testing.assert_allclose(metrics['nll_bpd'], math.log2(17), rtol=1e-6)


def test_nll_without_dequantization_has_no_correction(tmp_path):
  config, ctx = context(tmp_path, name='digits')
  metrics = evals.get('nll')(config.evals.nll, ctx)(empty_state(), 0)
  assert metrics['nll_nats'] == 0.0 and metrics['nll_bpd'] == 0.0


def test_continuous_data_reports_nats_only(tmp_path):
  config, ctx = context(tmp_path, name='toy2d/ring8', max_eval_examples=80)
  metrics = evals.get('nll')(config.evals.nll, ctx)(empty_state(), 0)
  assert metrics == {'nll_nats': 0.0}


def test_samples_are_written_as_grid_or_scatter(tmp_path):
  _, ctx = context(tmp_path, name='digits')
  images = np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype(np.float32)
  path = write_examples(ctx, 'samples', 7, images)
  assert Image.open(path).size == (8 * (4 * 9 + 1), 8 * (4 * 9 + 1))  # 4x4 grid, 1-pixel pads, scaled 8x
  np.testing.assert_array_equal(np.load(path.replace('.png', '.npy')), images)

  _, ctx = context(tmp_path / 'toy', name='toy2d/ring8', max_eval_examples=80)
  points = np.random.default_rng(0).normal(size=(100, 2))
  path = write_examples(ctx, 'samples', 7, points)
  canvas = np.asarray(Image.open(path))
  assert canvas.ndim == 2 and 0 < (canvas == 0).sum() <= 100  # one dark pixel per point at most
