"""MADE: masked autoencoder for distribution estimation (Germain et al., 2015).

A MADE is an MLP whose weight matrices are multiplied by binary masks so that
output d sees only the inputs that precede d in an ordering. Every input
dimension d gets a degree m(d) in 1..D (its position in the ordering), every
hidden unit k of layer l a degree m^l(k) drawn uniformly from
[min_k' m^{l-1}(k'), D - 1], and

  input/hidden -> hidden   connected iff m^l(k) >= m^{l-1}(k')
  hidden       -> output d connected iff m(d) > m^L(k')
  input        -> output d connected iff m(d) > m(d')   (the optional direct skip)

so output d is a function of x_{<d} only (in the ordering). A mask set (input
ordering + hidden degrees) is a pure function of (dim, hidden, seed, ordering);
`made_masks` precomputes `num_masks` of them as numpy constants, and the module
picks one with an integer (possibly traced) `mask_index`: connectivity-agnostic
training samples the index per step, order-agnostic training uses a random
input ordering per mask (`ordering='random'`).

Kernels carry the logical axes ('embed', 'mlp') and biases ('mlp',), like
`jaxgen.models.mlp.dense`; the mask is applied to the kernel inside the layer.
"""

import functools
from typing import Callable, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

ORDERINGS = ('natural', 'random')


def input_degrees(dim: int, ordering: str = 'natural', seed: int = 0) -> np.ndarray:
  """Degrees 1..D of the D inputs: natural (dimension d has degree d + 1) or a random permutation."""
  if ordering == 'natural':
    return np.arange(1, dim + 1)
  if ordering == 'random':
    return np.random.RandomState(seed).permutation(dim) + 1
  raise ValueError(f'ordering={ordering!r} is not one of {ORDERINGS}.')


def hidden_degrees(previous: np.ndarray, width: int, dim: int, rng: np.random.RandomState) -> np.ndarray:
  """Degrees of `width` hidden units, uniform on [min(previous), D - 1] (D - 1 >= 1 needs D >= 2)."""
  low = min(int(previous.min()), dim - 1)
  return rng.randint(low, max(dim - 1, low) + 1, size=width)


@functools.lru_cache(maxsize=None)
def made_masks(dim: int, hidden: Tuple[int, ...], num_masks: int = 1, ordering: str = 'natural',
               seed: int = 0):
  """`num_masks` mask sets for a MADE of D=`dim` inputs and the given hidden widths.

  Returns (degrees [M, D] int, hidden masks: one [M, fan_in, fan_out] per hidden layer,
  output mask [M, H_last or D, D], direct mask [M, D, D]), numpy bool arrays.
  Mask set m uses np.random.RandomState((seed, m)); with ordering='natural' every
  set shares the natural ordering and only the hidden connectivity differs.
  """
  degrees, hidden_masks, out_masks, direct_masks = [], [[] for _ in hidden], [], []
  for m in range(num_masks):
    rng = np.random.RandomState([seed, m])
    deg_in = input_degrees(dim, ordering, seed=rng.randint(2 ** 31))
    degrees.append(deg_in)
    prev = deg_in
    for layer, width in enumerate(hidden):
      deg = hidden_degrees(prev, width, dim, rng)
      hidden_masks[layer].append(prev[:, None] <= deg[None, :])
      prev = deg
    out_masks.append(prev[:, None] < deg_in[None, :])
    direct_masks.append(deg_in[:, None] < deg_in[None, :])
  stack = lambda ms: np.stack(ms).astype(bool)
  return (np.stack(degrees), tuple(stack(ms) for ms in hidden_masks), stack(out_masks), stack(direct_masks))


def orderings(dim: int, num_masks: int = 1, ordering: str = 'natural', seed: int = 0) -> np.ndarray:
  """[M, D]: row m lists the dimensions in the order mask set m generates them (argsort of its degrees)."""
  degrees = made_masks(dim, (), num_masks, ordering, seed)[0]
  return np.argsort(degrees, axis=1, kind='stable')


class MaskedDense(nn.Module):
  """Dense layer y = x @ (kernel * mask) + bias; the mask [fan_in, features] is given at call time."""
  features: int
  use_bias: bool = True
  init_scale: float = 1.0   # the kernel's initial std is init_scale x LeCun's

  @nn.compact
  def __call__(self, x, mask):
    init = nn.initializers.variance_scaling(self.init_scale ** 2, 'fan_in', 'truncated_normal')
    kernel = self.param('kernel', nn.with_logical_partitioning(init, ('embed', 'mlp')),
                        (x.shape[-1], self.features))
    y = x @ (kernel * mask.astype(kernel.dtype))
    if self.use_bias:
      bias = self.param('bias', nn.with_logical_partitioning(nn.initializers.zeros_init(), ('mlp',)),
                        (self.features,))
      y = y + bias.reshape((1,) * (y.ndim - 1) + (self.features,))
    return y


class MADE(nn.Module):
  """[B, D] -> [B, D, n_params]: n_params outputs per dimension, output d a function of x_{<d} only.

  `mask_index` (int, may be traced) picks one of the `num_masks` precomputed mask
  sets (see `made_masks`; mask set m is generated in the order `orderings(...)[m]`).
  `direct=True` adds a masked linear input -> output skip connection.
  """
  dim: int
  hidden: Sequence[int]
  n_params: int = 1
  num_masks: int = 1
  ordering: str = 'natural'
  seed: int = 0
  direct: bool = False
  activation: Callable = nn.relu
  out_init_scale: float = 1.0   # < 1 starts the outputs near 0 (a flow layer near the identity)

  def masks(self):
    return made_masks(self.dim, tuple(self.hidden), self.num_masks, self.ordering, self.seed)

  @nn.compact
  def __call__(self, x_BD, mask_index=0):
    _, hidden_masks, out_mask, direct_mask = self.masks()
    pick = lambda m: jnp.asarray(m)[mask_index]
    # Output column d * n_params + p belongs to dimension d.
    repeat = lambda m: jnp.repeat(pick(m), self.n_params, axis=-1)
    h = x_BD
    for width, mask in zip(self.hidden, hidden_masks):
      h = self.activation(MaskedDense(width)(h, pick(mask)))
    out = MaskedDense(self.dim * self.n_params, init_scale=self.out_init_scale)(h, repeat(out_mask))
    if self.direct:
      out = out + MaskedDense(self.dim * self.n_params, use_bias=False, init_scale=self.out_init_scale,
                              name='direct')(x_BD, repeat(direct_mask))
    return out.reshape(x_BD.shape[0], self.dim, self.n_params)
