"""The work-reusing PixelCNN-family samplers give exactly what the plain sampler gives.

The plain sampler re-runs the whole network for each of the H*W*C sub-pixels; the
re-using ones (method.sample_reuse) run the `context` of the gated net (its vertical
stack) or of the Row LSTM (its scan: every layer's LSTM states of the row above) once
per row and then only one-row passes, or the PixelCNN on the window of rows an output
can see. Both draw sub-pixel t
with key fold_in(rng, t), so from the same key they must produce the same images.
"""

import copy
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.test_pixelcnn import make_method


def plain_copy(method):
  """The same model with method.sample_reuse off."""
  plain = copy.copy(method)
  plain.sample_reuse = False
  return plain


@pytest.mark.parametrize('arch,shape,levels,num_classes', [
    ('pixelcnn', (9, 3, 1), 4, 0),     # rows_above = 3: window 4 of 9 rows, clamped at top and bottom
    pytest.param('pixelcnn', (6, 2, 3), 2, 3, marks=pytest.mark.slow),  # RGB masks, binary, conditional
    pytest.param('gated', (5, 3, 1), 4, 0, marks=pytest.mark.slow),
    ('gated', (4, 2, 3), 3, 3),
    pytest.param('rowlstm', (5, 3, 1), 4, 0, marks=pytest.mark.slow),
    ('rowlstm', (4, 2, 3), 3, 3),      # RGB, conditional: label biases in every layer
])
def test_reusing_sampler_equals_plain_sampler(arch, shape, levels, num_classes):
  method, params = make_method(arch, shape, levels, channels=6, num_layers=2, first_kernel=3,
                               num_classes=num_classes)
  params = jax.tree.map(lambda p: 3.0 * p, params)
  if arch == 'pixelcnn':
    assert method.net.rows_above() + 1 < shape[0]  # the window really is smaller than the image
  else:  # 'gated', 'rowlstm': sampled by rows, from `context` once per row and one-row `rows` passes
    assert arch in ('gated', 'rowlstm')
    assert hasattr(method.net, 'context') and hasattr(method.net, 'rows')
  label = jnp.arange(8) % num_classes if num_classes else None
  key = jax.random.PRNGKey(7)
  fast = jax.jit(method.sample, static_argnums=2)(params, key, 8, label)
  slow = jax.jit(plain_copy(method).sample, static_argnums=2)(params, key, 8, label)
  np.testing.assert_array_equal(np.asarray(fast), np.asarray(slow))
  assert len(np.unique(np.asarray(fast).reshape(8, -1), axis=0)) > 1  # not a degenerate constant draw


def test_gated_context_of_a_row_sees_only_the_rows_above():
  """d context[row r] / d x[row r'] = 0 for every r' >= r, and rows(x, context(x)) is the network."""
  shape = (4, 3, 1)
  method, params = make_method('gated', shape, 4, channels=6, num_layers=1, first_kernel=3)
  variables = {'params': params['pixelcnn']}
  context = lambda x: method.net.apply(variables, x[None], method='context')
  x = jax.random.uniform(jax.random.PRNGKey(0), shape)
  for i, jac in enumerate(jax.jacrev(context)(x)):      # one link per layer: [1, H, W, 2F, H, W, C]
    dep = np.abs(np.asarray(jac[0])).sum(axis=(1, 2, 4, 5))  # [H (output row), H (input row)]
    assert np.all(np.triu(dep) == 0.0), (i, dep)
    assert np.any(np.tril(dep, -1) > 0.0)
  full = method.net.apply(variables, x[None])
  split = method.net.apply(variables, x[None], context(x), method='rows')
  np.testing.assert_allclose(np.asarray(full), np.asarray(split), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('shape,first_kernel,num_classes', [
    pytest.param((4, 3, 1), 3, 0, marks=pytest.mark.slow), ((4, 2, 3), 5, 3)])
def test_rowlstm_context_of_a_row_sees_only_the_rows_above(shape, first_kernel, num_classes):
  """Every context leaf's row r depends only on input rows < r (and on some), and rows(x, context(x)) is the
  network, also one row at a time with that row's context (as the sampler calls it)."""
  method, params = make_method('rowlstm', shape, 4, channels=6, num_layers=2, first_kernel=first_kernel,
                               num_classes=num_classes)
  variables = {'params': params['pixelcnn']}
  onehot = jax.nn.one_hot(jnp.asarray([1]), num_classes) if num_classes else None
  context = lambda x: method.net.apply(variables, x[None], onehot, method='context')
  x = jax.random.uniform(jax.random.PRNGKey(0), shape) * 2.0 - 1.0
  leaves = jax.tree.leaves(jax.jacrev(context)(x))  # above, then (h_prev, c_prev) per layer
  assert len(leaves) == 1 + 2 * 2
  for i, jac in enumerate(leaves):                    # [1, H, W, D, H, W, C]
    dep = np.abs(np.asarray(jac[0])).sum(axis=(1, 2, 4, 5))  # [H (output row), H (input row)]
    assert np.all(np.triu(dep) == 0.0), (i, dep)
    assert np.all(np.diag(dep, -1) > 0.0), (i, dep)   # row r does read row r - 1
  ctx = context(x)
  full = np.asarray(method.net.apply(variables, x[None], onehot))
  split = method.net.apply(variables, x[None], ctx, onehot, method='rows')
  np.testing.assert_allclose(np.asarray(split), full, rtol=1e-5, atol=1e-5)
  for r in range(shape[0]):
    ctx_r = jax.tree.map(lambda a: a[:, r:r + 1], ctx)
    row = method.net.apply(variables, x[None, r:r + 1], ctx_r, onehot, method='rows')
    np.testing.assert_allclose(np.asarray(row), full[:, r:r + 1], rtol=1e-5, atol=1e-5)
