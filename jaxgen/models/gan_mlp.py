"""MLP generator and discriminator for vector data (toy2d): the mode-collapse benchmark's networks.

The setting of the mode-collapse literature (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al.
2018) at a CPU size: the generator is an MLP with ReLU (optionally BatchNorm) mapping a
Gaussian latent to R^D, linear output in data units; the discriminator an MLP with leaky ReLU
(or maxout, as PacGAN's) and one logit. `mbstd` appends the minibatch standard deviation
(jaxgen.models.gan_nets.minibatch_stddev) before the discriminator's last hidden layer, a
remedy against collapse; PacGAN's packing is done by the method (config.method.pack), which
hands the discriminator m examples concatenated into one vector.

model keys: arch='mlp', latent_dim (2), g_hidden ((128, 128, 128)), d_hidden ((128, 128, 128)),
g_batchnorm (False), d_maxout (0 = leaky ReLU; k = maxout with k pieces), mbstd (0 = off;
group size otherwise), num_classes (0).
"""

import flax.linen as nn
import jax.numpy as jnp

from jaxgen.errors import ConfigError
from jaxgen.models import gan_nets
from jaxgen.models.mlp import dense


class MLPGenerator(nn.Module):
  hidden: tuple
  out_features: int
  batchnorm: bool = False
  num_classes: int = 0

  @nn.compact
  def __call__(self, z_BZ, label_B=None, *, train: bool):
    h = z_BZ
    if self.num_classes:
      h = jnp.concatenate([h, nn.Embed(self.num_classes, 8)(label_B)], axis=-1)
    for width in self.hidden:
      h = dense(width)(h)
      if self.batchnorm:
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
      h = nn.relu(h)
    return dense(self.out_features)(h)


class MLPDiscriminator(nn.Module):
  hidden: tuple
  maxout: int = 0
  mbstd: int = 0
  num_classes: int = 0

  @nn.compact
  def __call__(self, x_BD, label_B=None, *, train: bool):
    h = x_BD
    for i, width in enumerate(self.hidden):
      if self.mbstd and i == len(self.hidden) - 1:
        h = gan_nets.minibatch_stddev(h, self.mbstd)
      if self.maxout:
        h = dense(width * self.maxout)(h).reshape(h.shape[0], width, self.maxout).max(-1)
      else:
        h = nn.leaky_relu(dense(width)(h), 0.2)
    logit = dense(1)(h)[:, 0].astype(jnp.float32)
    return logit + gan_nets.projection(h, label_B, self.num_classes)


def build(model_config, info) -> gan_nets.GanNets:
  if info.kind != 'vector':
    raise ConfigError(f"config.model.arch='mlp' is for vector data (toy2d); dataset {info.name!r} is "
                      f"{info.kind} {tuple(info.shape)}: use 'dcgan', 'sngan_cnn', 'sngan_resnet', 'pggan' or "
                      "'stylegan2'.")
  classes = gan_nets.num_classes(model_config, info)
  generator = MLPGenerator(tuple(model_config.get('g_hidden', (128, 128, 128))), int(info.shape[-1]),
                           bool(model_config.get('g_batchnorm', False)), classes)
  discriminator = MLPDiscriminator(tuple(model_config.get('d_hidden', (128, 128, 128))),
                                   int(model_config.get('d_maxout', 0)), int(model_config.get('mbstd', 0)), classes)
  return gan_nets.GanNets(generator, discriminator, latent_shape=(int(model_config.get('latent_dim', 2)),),
                          image_range=False)
