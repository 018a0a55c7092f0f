"""The contract between the GAN method (jaxgen/methods/gan.py) and its architectures.

An architecture is a module `jaxgen/models/gan_<arch>.py` with a function

    build(model_config, info) -> GanNets

registered in `ARCHITECTURES` below by the name `config.model.arch` uses. The
method owns losses, optimizers, augmentation, packing and EMA; an architecture
only says how to map latents to data and data to logits.

Networks (Flax Linen modules):

  generator(z_BZ, label_B=None, *, train: bool, **kwargs) -> x
      z_BZ of shape [B, *latent_shape] drawn from N(0, I) by the method;
      x of shape [B, *info.shape] in the *model range* [-1, 1] (tanh, or linear
      for unbounded 2-D data: then `image_range` is False and x is in data units).
  discriminator(x, label_B=None, *, train: bool, **kwargs) -> logits_B (float32, shape [B])
      x in the model range, shaped as the generator's output, except that with
      PacGAN packing (config.method.pack = m) it receives [B/m, ..., m*C]:
      m examples concatenated on the last axis. A D must therefore infer its
      input width lazily (Flax does) and must not hard-code the channel count.

  `label_B` is int32 [B] when config.model.num_classes > 0 (conditional), else None.
  `kwargs` are the entries of `schedule(step)` (both networks) and, for the
  generator at sampling time only, `sample_kwargs` (e.g. truncation_psi).

Variables other than 'params' (BatchNorm statistics, spectral-norm power-iteration
vectors, StyleGAN's running mean of w, ...) are *state*: the method keeps them in
`TrainState.extra`, applies the nets with `mutable=<those collection names>` when
train=True, and with them frozen otherwise. Put them in the 'batch_stats'
collection (flax's BatchNorm and SpectralNorm default) unless there is a reason not to.

Random streams a net may use (the method always provides them): 'dropout',
'noise' (StyleGAN noise inputs, style mixing). Randomness must come only from them.

Architectures whose generator factorises as StyleGAN's does may define the module
methods `mapping(z, label, *, train)` -> ws and `synthesis(ws, *, train, **kwargs)` -> x,
which the method's path-length regulariser uses (config.method.pl_weight > 0).
"""

import dataclasses
import importlib
from typing import Any, Callable, Dict, Optional, Tuple

import flax.linen as nn
import jax.numpy as jnp

from jaxgen.errors import ConfigError

# config.model.arch -> module defining build(model_config, info) -> GanNets.
ARCHITECTURES = {
    'mlp': 'jaxgen.models.gan_mlp',
    'dcgan': 'jaxgen.models.gan_dcgan',
    'sngan_cnn': 'jaxgen.models.gan_sngan',
    'sngan_resnet': 'jaxgen.models.gan_sngan',
    'pggan': 'jaxgen.models.gan_pggan',
    'stylegan2': 'jaxgen.models.gan_stylegan2',
}


def no_schedule(step) -> Dict[str, Any]:
  return {}


@dataclasses.dataclass(frozen=True)
class GanNets:
  """A generator/discriminator pair and what the method needs to drive them (module docstring)."""
  generator: nn.Module
  discriminator: nn.Module
  latent_shape: Tuple[int, ...]
  # step (traced int32 scalar) -> dict of extra keyword arguments for both nets (PGGAN: stage, alpha).
  schedule: Callable[[Any], Dict[str, Any]] = no_schedule
  # Extra generator keyword arguments used only when sampling for evaluation (StyleGAN: truncation_psi).
  sample_kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)
  # True: the generator's outputs are images in [-1, 1] (data in [0, 1] is mapped to it); False:
  # vectors in data units (2-D toy data), passed unchanged.
  image_range: bool = True


def build(model_config, info) -> GanNets:
  """The GanNets of `config.model.arch` for the dataset `info`."""
  arch = model_config.get('arch', '')
  if arch not in ARCHITECTURES:
    raise ConfigError(f'config.model.arch={arch!r} is not a GAN architecture; known: '
                      f'{", ".join(sorted(ARCHITECTURES))}.')
  return importlib.import_module(ARCHITECTURES[arch]).build(model_config, info)


def num_classes(model_config, info) -> int:
  """config.model.num_classes (0 = unconditional), checked against the dataset's labels."""
  classes = int(model_config.get('num_classes', 0) or 0)
  if classes and not info.num_classes:
    raise ConfigError(f'config.model.num_classes={classes} but dataset {info.name!r} has no labels; '
                      'set config.model.num_classes=0.')
  if classes and classes != info.num_classes:
    raise ConfigError(f'config.model.num_classes={classes} but dataset {info.name!r} has '
                      f'{info.num_classes} classes.')
  return classes


def minibatch_stddev(x, group_size: int = 4, num_features: int = 1):
  """Append the minibatch standard-deviation feature(s) (Karras et al. 2018) to x on its last axis.

  x is [B, ..., C] (images [B, H, W, C] or features [B, C]). Examples are split into groups
  of `group_size` (the whole batch when it is smaller or not divisible); within each group the
  standard deviation of every feature over the group's members is averaged over the feature
  (and spatial) axes, per feature group of C / num_features channels, and broadcast back as
  `num_features` extra channels. A collapsed generator (identical samples) gives 0 here, which
  the discriminator can see: the remedy against mode collapse of PGGAN and StyleGAN.
  """
  b, c = x.shape[0], x.shape[-1]
  g = group_size if (group_size and b % group_size == 0 and b >= group_size) else b
  spatial = x.shape[1:-1]
  y = x.reshape((g, b // g) + spatial + (num_features, c // num_features)).astype(jnp.float32)
  y = y - y.mean(axis=0, keepdims=True)
  y = jnp.sqrt((y ** 2).mean(axis=0) + 1e-8)              # [B/g, *spatial, F, C/F]
  y = y.mean(axis=tuple(range(1, 1 + len(spatial))) + (len(spatial) + 2,))  # [B/g, F]
  y = jnp.tile(y, (g, 1))                                  # example i of group member j -> row j*(B/g)+i
  y = y.reshape((b,) + (1,) * len(spatial) + (num_features,))
  y = jnp.broadcast_to(y, (b,) + spatial + (num_features,)).astype(x.dtype)
  return jnp.concatenate([x, y], axis=-1)


def projection(features_BF, label_B: Optional[Any], num_classes: int, name: str = 'label_projection'):
  """The projection discriminator's class term <embed(y), h> (Miyato & Koyama 2018); 0 if unconditional.

  Call inside a compact discriminator: returns a [B] float32 term to add to the unconditional logit.
  """
  if not num_classes or label_B is None:
    return jnp.zeros(features_BF.shape[:1], jnp.float32)
  embed = nn.Embed(num_classes, features_BF.shape[-1], name=name)(label_B)
  return jnp.sum(embed * features_BF, axis=-1).astype(jnp.float32)
