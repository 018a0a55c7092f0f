"""PixelRNN Row LSTM (jaxgen/models/pixelrnn.py): its exact triangular receptive field, conditioning, smoke config.

The autoregressive property (C = 1 and RGB), exact normalisation and the sampler
against the exact distribution are covered by tests/test_pixelcnn.py, which runs
its ARCHS-parametrized tests for 'rowlstm' too.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.models.pixelcnn import ARCHS
from jaxgen.models.pixelrnn import RowLSTM, lstm_hidden
from tests import test_pixelcnn as tp


def mask_a_deps(h, w, p0):
  """[H*W, H*W] bool: a (2 p0 + 1)^2 mask-A conv's output (r, c) reads input (r', c') (C = 1)."""
  r, c = np.divmod(np.arange(h * w), w)
  dr, dc = r[None, :] - r[:, None], c[None, :] - c[:, None]  # input minus output
  return ((dr >= -p0) & (dr < 0) & (np.abs(dc) <= p0)) | ((dr == 0) & (dc >= -p0) & (dc < 0))


def row_lstm_layer_deps(h, w, p):
  """[H*W, H*W] bool: a residual Row LSTM layer's output (r, c) reads its input stream at (a, b).

  The residual reads (r, c); the LSTM state at (r, c) reads the input-to-state outputs at (r - j, c')
  for |c' - c| <= j p (j >= 0: each row step the width-k state-to-state conv widens by p; clipping to
  the image never cuts a path), and the 1 x k mask-B input-to-state conv at (a, c') reads (a, c' - p .. c').
  So row r - j is read at columns c - (j + 1) p .. c + j p: a triangle.
  """
  r, c = np.divmod(np.arange(h * w), w)
  j = r[:, None] - r[None, :]
  dc = c[None, :] - c[:, None]
  return (j >= 0) & (dc >= -(j + 1) * p) & (dc <= j * p) | np.eye(h * w, dtype=bool)


def analytic_deps(h, w, first_kernel, kernel, num_layers):
  deps = mask_a_deps(h, w, first_kernel // 2)
  for _ in range(num_layers):
    deps = (row_lstm_layer_deps(h, w, kernel // 2).astype(int) @ deps.astype(int)) > 0
  return deps  # the 1x1 mask-B head is pointwise


@pytest.mark.parametrize('first_kernel,num_layers', [(3, 1), (3, 2), (5, 1)])
def test_receptive_field_is_exactly_the_triangle(first_kernel, num_layers):
  shape, levels = (5, 8, 1), 4
  h, w, _ = shape
  method, params = tp.make_method('rowlstm', shape, levels, channels=8, num_layers=num_layers,
                                  first_kernel=first_kernel)
  jac = tp.abs_jacobian(method, params, shape, levels).reshape(h * w, h * w)
  expected = analytic_deps(h, w, first_kernel, 3, num_layers)
  assert not np.any(expected & ~tp.allowed(shape))  # the analytic set is causal ...
  np.testing.assert_array_equal(jac > 0, expected)  # ... and is exactly what the network reads
  if (first_kernel, num_layers) == (3, 1):
    seen = lambda r, c, r2, c2: bool(jac[r * w + c, r2 * w + c2] > 0)
    r, c = 3, 2
    assert seen(r, c, r - 1, c + 1) and not any(seen(r, c, r - 1, c + k) for k in range(2, w - c))
    assert seen(r, c, r - 2, c + 2) and not any(seen(r, c, r - 2, c + k) for k in range(3, w - c))
    assert seen(r, c, r, c - 1) and not seen(r, c, r, c) and not seen(r, c, r, c + 1)
    # The triangle misses context above that the Gated PixelCNN would see (the paper's property).
    assert not np.all(jac[tp.allowed(shape)] > 0)


def test_registered_and_hidden_width_keeps_channel_groups():
  assert ARCHS['rowlstm'] is RowLSTM
  assert lstm_hidden(24, 3) == 12 and lstm_hidden(6, 3) == 3 and lstm_hidden(3, 3) == 3 and lstm_hidden(8, 1) == 4
  for f in (3, 6, 12, 24, 48):
    assert lstm_hidden(f, 3) % 3 == 0  # so gate block b, feature j (index b * h + j) is in group j % 3


def test_conditional_row_lstm_normalises_for_every_label_and_uses_the_label():
  shape, levels = (2, 2, 1), 3
  method, params = tp.make_method('rowlstm', shape, levels, channels=6, num_classes=3)
  assert {'label_in', 'label0'} <= set(params['pixelcnn'])
  x = tp.all_images(shape, levels)
  nll_fn = jax.jit(method.nll)
  totals, nlls = [], []
  for y in range(3):
    nll = nll_fn(params, {'x': x, 'label': jnp.full((len(x),), y)}, None)
    totals.append(float(jnp.sum(jnp.exp(-nll))))
    nlls.append(np.asarray(nll))
  np.testing.assert_allclose(totals, 1.0, atol=1e-5)
  assert np.max(np.abs(nlls[0] - nlls[1])) > 1e-3


@pytest.mark.parametrize('name', ['pixelrnn_mnist5k_binary.py', 'pixelrnn_mnist5k.py'])
def test_smoke_config_trains_evaluates_and_samples(name, tmp_path):
  full = tp.config_file(f'autoregressive/{name}', None)
  assert full.model.arch == 'rowlstm' and full.data.binarize == ('dynamic' if 'binary' in name else '')
  # The shared check: trains 4 steps through jaxgen.train, finite eval nll below the uniform model, and
  # 28x28 samples on the data's grid saved as .npy and .png.
  tp.test_smoke_config_trains_evaluates_and_samples(name, tmp_path)
