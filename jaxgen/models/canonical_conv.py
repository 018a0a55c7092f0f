"""A stride-1 NHWC / HWIO convolution whose gradients, to any order, are NHWC / HWIO convolutions too.

Why: XLA:CPU runs a convolution fast (its Eigen / YNNPACK kernels) only in the canonical form
`b01f_01io->b01f`. Autodiff of `lax.conv_general_dilated` writes the kernel gradient as a
convolution in another form (`f01b_i01o->01bf`: the batch axis contracted); in a small program XLA
rewrites it to the canonical form, but inside a large one (a GAN step with R1 or several critic
updates) it often does not, and the generic loop it falls back to is one to two orders of
magnitude slower. In the StyleGAN2 step on mnist5k four such kernel gradients took most of the
time (experiments/results/gan.md, "Training speed").

`conv(x, w, padding)` computes the same function as `lax.conv_general_dilated(x, w, (1, 1), padding,
('NHWC', 'HWIO', 'NHWC'))` and defines its vector-Jacobian product with two calls of itself:

  grad_x = conv(g, w flipped in space with in/out swapped, padding (k - 1 - lo, k - 1 - hi))
  grad_w = conv(x as [C_in, H, W, B], g as [H', W', B, C_out], padding (lo, hi)), as [k, k, C_in, C_out]

(the second contracts the batch axis by making it the convolution's channel axis). Both are again
`conv`, so the gradients of the gradients (R1, WGAN-GP's penalty, the path length) stay canonical.
On GPU and TPU it costs nothing: the same convolutions, written out.
"""

import functools

import jax
import jax.numpy as jnp

_DIMS = ('NHWC', 'HWIO', 'NHWC')


def _pairs(padding, kernel_hw):
  """'SAME' / 'VALID' / ((lo, hi), (lo, hi)) -> explicit (lo, hi) per spatial dim, for stride 1."""
  if padding == 'VALID':
    return ((0, 0), (0, 0))
  if padding == 'SAME':
    return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_hw)
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def conv(x_BHWC, w_KKIO, padding='SAME'):
  """Stride-1 2-D convolution (cross-correlation, as lax.conv_general_dilated) of NHWC x with HWIO w."""
  return _conv(x_BHWC, w_KKIO, _pairs(padding, w_KKIO.shape[:2]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(x_BHWC, w_KKIO, pads):
  return jax.lax.conv_general_dilated(x_BHWC, w_KKIO, (1, 1), pads, dimension_numbers=_DIMS)


def _conv_fwd(x_BHWC, w_KKIO, pads):
  return _conv(x_BHWC, w_KKIO, pads), (x_BHWC, w_KKIO)


def _conv_bwd(pads, residuals, g_BHWO):
  x_BHWC, w_KKIO = residuals
  kh, kw = w_KKIO.shape[:2]
  (lo_h, hi_h), (lo_w, hi_w) = pads
  w_flipped_KKOI = jnp.swapaxes(w_KKIO[::-1, ::-1], 2, 3)
  grad_x = _conv(g_BHWO, w_flipped_KKOI, ((kh - 1 - lo_h, kh - 1 - hi_h), (kw - 1 - lo_w, kw - 1 - hi_w)))
  # Batch as the channel axis: [C, H, W, B] * [H', W', B, O] -> [C, k, k, O].
  grad_w_CKKO = _conv(jnp.transpose(x_BHWC, (3, 1, 2, 0)), jnp.transpose(g_BHWO, (1, 2, 0, 3)), pads)
  return grad_x, jnp.transpose(grad_w_CKKO, (1, 2, 0, 3))


_conv.defvjp(_conv_fwd, _conv_bwd)
