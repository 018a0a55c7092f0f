"""Class conditioning shared by the families that condition on the dataset's labels.

A family mixes in `ClassConditional`, sets `family_name` (used in messages) and
calls `self._init_conditioning()` in `__init__`, after `Method.__init__`. Then:

  self.num_classes, self.conditional   from config.model.num_classes (0 or absent: unconditional),
                                       checked against the dataset's number of classes
  self._batch_label(batch)             batch['label'] for a conditional model, else None
  self.sample_labels(num, label)       the classes `sample` generates: `label` checked, or for a
                                       conditional model the cycle jnp.arange(num) % num_classes
  self._onehot(label, num)             one-hot [num, num_classes] float32, or None when unconditional
"""

import jax
import jax.numpy as jnp

from jaxgen.errors import ConfigError


class ClassConditional:
  """Mixin for a Method conditioned on class labels through config.model.num_classes."""

  family_name = 'model'

  def _init_conditioning(self):
    info = self.info
    self.num_classes = int(self.config.model.get('num_classes', 0) or 0)
    self.conditional = self.num_classes > 0
    if self.num_classes < 0:
      raise ConfigError(f'config.model.num_classes must be >= 0 (0 = unconditional), got {self.num_classes}.')
    if self.conditional and self.num_classes != (info.num_classes or 0):
      raise ConfigError(
          f'config.model.num_classes={self.num_classes} asks for a class-conditional {self.family_name}, but '
          f'dataset {info.name!r} has {info.num_classes or "no"} classes. Set config.model.num_classes='
          f'{info.num_classes or 0}.')

  def _batch_label(self, batch):
    """batch['label'] for a conditional model (ConfigError if the batch has none); None otherwise."""
    if not self.conditional:
      return None
    if 'label' not in batch:
      raise ConfigError(f'config.model.num_classes={self.num_classes} makes the {self.family_name} '
                        "class-conditional, but the batch has no 'label'. Use a labelled dataset or set "
                        'config.model.num_classes=0.')
    return batch['label']

  def _onehot(self, label, num):
    """One-hot labels [num, num_classes] (float32) for a conditional model; None for an unconditional one."""
    if not self.conditional:
      if label is not None:
        raise ValueError(f'a label was given, but this {self.family_name} is unconditional '
                         '(config.model.num_classes=0).')
      return None
    if label is None:
      raise ValueError(f'this {self.family_name} is class-conditional (config.model.num_classes='
                       f'{self.num_classes}) and needs a label for every example.')
    label = jnp.asarray(label)
    if label.shape != (num,):
      raise ValueError(f'label must have shape ({num},), got {label.shape}.')
    return jax.nn.one_hot(label, self.num_classes, dtype=jnp.float32)

  def sample_labels(self, num, label=None):
    """The classes `sample` generates: `label` (checked, int32 [num]); for a conditional model given
    none, the cycle jnp.arange(num) % num_classes; None for an unconditional model."""
    if self.conditional and label is None:
      label = jnp.arange(num) % self.num_classes
    if label is not None:
      label = jnp.asarray(label, jnp.int32)
    self._onehot(label, num)  # raises if the label does not fit the model
    return label
