"""Small image classifiers whose penultimate layer is a feature space for sample-quality metrics.

`ConvClassifier` is LeNet-style (Lecun et al., 1998): blocks of 5x5 conv, ReLU
and 2x2 max-pool, then Dense layers; `MLPClassifier` flattens the image.
Both return (features, logits): `features` is the last hidden layer (after its
ReLU), the space in which the evaluation stack computes Fréchet distance, KID
and precision/recall for domains where Inception does not fit (MNIST-like data).
"""

from typing import Sequence

import flax.linen as nn

from jaxgen.models.conv import conv_kernel_init
from jaxgen.models.mlp import dense


class ConvClassifier(nn.Module):
  """[B, H, W, C] -> ([B, hidden[-1]], [B, num_classes])."""
  channels: Sequence[int]
  hidden: Sequence[int]
  num_classes: int

  @nn.compact
  def __call__(self, x_BHWC):
    h = x_BHWC
    for width in self.channels:
      h = nn.Conv(width, (5, 5), padding='SAME', kernel_init=conv_kernel_init(),
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ('conv_out',)))(h)
      h = nn.max_pool(nn.relu(h), (2, 2), strides=(2, 2), padding='SAME')
    h = h.reshape(h.shape[0], -1)
    for width in self.hidden:
      h = nn.relu(dense(width)(h))
    return h, dense(self.num_classes)(h)


class MLPClassifier(nn.Module):
  """[B, ...] -> ([B, hidden[-1]], [B, num_classes]) on the flattened input."""
  hidden: Sequence[int]
  num_classes: int

  @nn.compact
  def __call__(self, x):
    h = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      h = nn.relu(dense(width)(h))
    return h, dense(self.num_classes)(h)
