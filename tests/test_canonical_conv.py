"""jaxgen.models.canonical_conv.conv equals lax.conv_general_dilated: values, both first gradients and
the kernel gradient of an input-gradient penalty (R1's second order), for SAME / VALID / explicit
asymmetric padding and odd and even kernels. Float64 inputs (jax.enable_x64), so
agreement is to ~1e-10: the custom vector-Jacobian product is exact, not approximate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.models.canonical_conv import conv


def _reference(x, w, padding):
  return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@pytest.mark.parametrize('padding, kernel', [('SAME', 3), ('VALID', 3), ('SAME', 4), (((2, 0), (1, 1)), 3),
                                             ('SAME', 1)])
def test_conv_and_its_gradients_to_second_order_equal_lax_conv(padding, kernel):
  with jax.enable_x64(True):
    rng = np.random.default_rng(kernel)
    x = jnp.asarray(rng.normal(size=(2, 7, 6, 3)))
    w = jnp.asarray(rng.normal(size=(kernel, kernel, 3, 5)))
    np.testing.assert_allclose(conv(x, w, padding), _reference(x, w, padding), rtol=1e-12, atol=1e-12)

    loss = lambda conv_fn: lambda x, w: jnp.sum(jnp.sin(conv_fn(x, w, padding)))
    for argnum in (0, 1):
      np.testing.assert_allclose(jax.grad(loss(conv), argnum)(x, w), jax.grad(loss(_reference), argnum)(x, w),
                                 rtol=1e-10, atol=1e-12)

    def penalty(conv_fn):  # ||d/dx sum tanh(conv(x, w))||^2, differentiated w.r.t. w below (as R1 is)
      return lambda w: jnp.sum(jax.grad(lambda x: jnp.sum(jnp.tanh(conv_fn(x, w, padding))))(x) ** 2)
    np.testing.assert_allclose(jax.grad(penalty(conv))(w), jax.grad(penalty(_reference))(w), rtol=1e-10, atol=1e-12)
