"""Multi-layer perceptron, with kernels annotated for logical-axis sharding.

Dense kernels carry the logical axes ('embed', 'mlp') and biases ('mlp',); the
mesh rules in `config.mesh.rules` map them onto mesh axes.
"""

from typing import Callable, Sequence

import flax.linen as nn


def dense(features: int, name=None) -> nn.Dense:
  """nn.Dense whose kernel is ('embed', 'mlp') and bias ('mlp',) for the mesh rules."""
  return nn.Dense(
      features,
      kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), ('embed', 'mlp')),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ('mlp',)),
      name=name)


class MLP(nn.Module):
  """[B, D_in] -> [B, out_features]: `hidden` activated Dense layers, then a linear one.

  With `hidden=()` the module is a single affine map (e.g. the linear decoder of
  probabilistic PCA).
  """
  hidden: Sequence[int]
  out_features: int
  activation: Callable = nn.silu

  @nn.compact
  def __call__(self, x_BD):
    h_BH = x_BD
    for width in self.hidden:
      h_BH = self.activation(dense(width)(h_BH))
    return dense(self.out_features)(h_BH)
