"""Classifier p(y|x): the evaluation stack's offline feature network, and the learner of CAS.

Not a generative model: it is trained by jaxgen itself (configs/classifier/*.py)
so that sample-quality metrics on MNIST-like data have a feature network that
fits the domain and is reproducible offline. Its penultimate activations are
the features (`features`), its softmax the class posterior used by the
Inception Score and the classification accuracy score.

Training minimises softmax cross-entropy on batch['label'] with optional
random-translation augmentation (shifts of up to `method.max_shift` pixels,
zero-padded), which matters when the classifier later judges generated images
that are not centred exactly like the data.

Config keys:
  model.arch        'conv' (LeNet-style) | 'mlp'
  model.channels    conv widths, each a 5x5 conv + 2x2 max-pool ('conv' only)
  model.hidden      Dense widths; the last one is the feature dimension
  method.max_shift  random translation in pixels during training (0 = off; images only)
"""

import jax
import jax.numpy as jnp
import optax

from jaxgen.core.optim import make_optimizer
from jaxgen.core.state import TrainState, step_rng
from jaxgen.errors import ConfigError
from jaxgen.methods import register
from jaxgen.methods.base import Method
from jaxgen.models.classifier import ConvClassifier, MLPClassifier


def random_shift(rng, x_BHWC, max_shift: int):
  """Translate each image by an integer offset in [-max_shift, max_shift]^2, filling with zeros."""
  batch, height, width, _ = x_BHWC.shape
  padded = jnp.pad(x_BHWC, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
  offsets = jax.random.randint(rng, (batch, 2), 0, 2 * max_shift + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, image.shape[-1]))

  return jax.vmap(crop)(padded, offsets)


@register('classifier')
class Classifier(Method):
  """See the module docstring."""

  def __init__(self, config, info):
    super().__init__(config, info)
    if not info.num_classes:
      raise ConfigError(f'config.method.name=classifier needs a labelled dataset; {info.name!r} has no '
                        "ClassLabel 'label' feature.")
    m = config.model
    hidden = tuple(m.get('hidden', (128,)))
    if not hidden:
      raise ConfigError('config.model.hidden must name at least one Dense layer: the last is the feature layer.')
    self.num_classes = int(info.num_classes)
    if m.get('arch', 'conv') == 'conv':
      if info.kind != 'image':
        raise ConfigError(f"config.model.arch='conv' needs images; {info.name!r} is {info.kind} data. Use 'mlp'.")
      self.network = ConvClassifier(tuple(m.channels), hidden, self.num_classes)
    elif m.arch == 'mlp':
      self.network = MLPClassifier(hidden, self.num_classes)
    else:
      raise ConfigError(f"config.model.arch={m.arch!r} is not one of 'conv', 'mlp'.")
    self.max_shift = int(config.method.get('max_shift', 0)) if info.kind == 'image' else 0
    self.feature_dim = hidden[-1]
    self.tx = make_optimizer(config.optim, config.train.steps)

  def apply(self, params, x):
    """(features [B, feature_dim], logits [B, num_classes]) of inputs x in data space."""
    return self.network.apply({'params': params['classifier']}, x)

  def init(self, rng, batch):
    k_net, k_state = jax.random.split(rng)
    params = {'classifier': self.network.init(k_net, batch['x'][:1])['params']}
    ema = jax.tree.map(jnp.copy, params) if self.config.train.ema_decay > 0 else None
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.tx.init(params),
                      ema_params=ema, extra={}, rng=k_state)

  def train_step(self, state, batch):
    x = batch['x']
    if self.max_shift:
      x = random_shift(step_rng(state), x, self.max_shift)

    def loss_fn(params):
      _, logits = self.apply(params, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean(), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
    return state.replace(params=params, opt_state=opt_state), {'loss': loss, 'accuracy': accuracy}
