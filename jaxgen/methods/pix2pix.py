"""pix2pix: image-to-image translation with a conditional GAN (Isola et al. 2017).

A U-Net generator maps a source image to a target image; a PatchGAN discriminator judges
(source, target) pairs patch by patch. The generator minimises the non-saturating GAN loss
plus l1_weight (the paper: 100) times the L1 distance to the true target; the discriminator's
loss is halved, as in the paper. Networks: jaxgen.models.pix2pix.

The paired task is built on the device from the dataset's images, so any image dataset gives
one: method.task = 'superres', the source is the target average-pooled by
`superres_factor` and upsampled back (nearest neighbour) to the target's size (pix2pix maps
images of equal size), e.g. 14x14 -> 28x28 on mnist5k. The `restoration` evaluator's
'superres' task measures it against the nearest-neighbour baseline (`super_resolve`).

At test time the generator keeps dropout on (its noise source, as the paper) and normalises
with BatchNorm's running averages (so an output does not depend on the rest of its batch).

State: params = {'generator', 'discriminator', 'generator_state' (BatchNorm statistics)};
extra = {'discriminator': its BatchNorm statistics}. Optimizers: `config.optim` (generator)
and `config.optim_d` (discriminator; default: the same settings).

config.method: name='pix2pix', task ('superres'), superres_factor (2), l1_weight (100).
config.model: depth (U-Net down blocks), width (ngf = ndf), d_layers (PatchGAN stride-2 convs),
dropout (0.5).
"""

import jax
import jax.numpy as jnp
import optax

from jaxgen.core.optim import make_optimizer
from jaxgen.core.state import TrainState, step_rng
from jaxgen.errors import ConfigError
from jaxgen.methods import register
from jaxgen.methods.base import Method
from jaxgen.methods.gan import discriminator_loss, generator_loss
from jaxgen.models.pix2pix import PatchDiscriminator, UNetGenerator
from jaxgen.models.unet import downsample, upsample

TASKS = ('superres',)
KEYS = ('name', 'task', 'superres_factor', 'l1_weight')


@register('pix2pix')
class Pix2Pix(Method):
  """Conditional GAN for paired image translation (module docstring)."""

  ema_copy_keys = ('generator_state',)

  def __init__(self, config, info):
    super().__init__(config, info)
    m = config.method
    unknown = sorted(set(m.keys()) - set(KEYS))
    if unknown:
      raise ConfigError(f'config.method has unknown key(s) {", ".join(unknown)} for pix2pix; valid keys: '
                        f'{", ".join(KEYS)}.')
    if info.kind != 'image':
      raise ConfigError(f'pix2pix translates images; dataset {info.name!r} is {info.kind}.')
    self.task = m.get('task', 'superres')
    if self.task not in TASKS:
      raise ConfigError(f'config.method.task={self.task!r} is not one of {", ".join(TASKS)}.')
    self.superres_factor = int(m.get('superres_factor', 2))
    h, w = info.shape[:2]
    if h % self.superres_factor or w % self.superres_factor:
      raise ConfigError(f'config.method.superres_factor={self.superres_factor} must divide the image size {h}x{w}.')
    self.l1_weight = float(m.get('l1_weight', 100.0))
    model = config.model
    self.generator = UNetGenerator(out_channels=info.shape[-1], depth=int(model.depth), width=int(model.width),
                                   dropout_rate=float(model.get('dropout', 0.5)))
    self.discriminator = PatchDiscriminator(num_layers=int(model.d_layers), width=int(model.width))
    steps = int(config.train.steps)
    self.tx = {'generator': make_optimizer(config.optim, steps),
               'discriminator': make_optimizer(config.get('optim_d', None) or config.optim, steps)}

  def source(self, x):
    """The task's source image of targets x in [0, 1] (module docstring), same shape as x."""
    f = self.superres_factor
    return upsample(downsample(x, f), f)

  def translate(self, params_g, g_state, source, rng, train: bool):
    """(target in [-1, 1], updated generator state) for a source in [0, 1]."""
    out, new_state = self.generator.apply({'params': params_g, **g_state}, 2.0 * source - 1.0, train=train,
                                          dropout=True, rngs={'dropout': rng}, mutable=list(g_state) if train else [])
    return out, (dict(new_state) if train else g_state)

  def init(self, rng, batch):
    kg, kd, kn = jax.random.split(rng, 3)
    x = batch['x']
    src = 2.0 * self.source(x) - 1.0
    g_vars = dict(self.generator.init({'params': kg, 'dropout': kn}, src, train=True))
    d_vars = dict(self.discriminator.init({'params': kd}, src, 2.0 * x - 1.0, train=True))
    params = {'generator': g_vars.pop('params'), 'discriminator': d_vars.pop('params'), 'generator_state': g_vars}
    ema = None
    if self.config.train.ema_decay > 0:
      ema = {k: jax.tree.map(jnp.copy, params[k]) for k in ('generator', 'generator_state')}
    opt_state = {k: self.tx[k].init(params[k]) for k in ('generator', 'discriminator')}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, ema_params=ema,
                      extra={'discriminator': d_vars}, rng=rng)

  def _discriminate(self, params_d, d_state, source, target):
    logits, new_state = self.discriminator.apply({'params': params_d, **d_state}, source, target, train=True,
                                                 mutable=list(d_state))
    return logits.reshape(logits.shape[0], -1), dict(new_state)

  def train_step(self, state, batch):
    params = state.params
    k_d, k_g = jax.random.split(step_rng(state))
    x = batch['x']
    source01 = self.source(x)
    source, target = 2.0 * source01 - 1.0, 2.0 * x - 1.0
    fake, g_state = self.translate(params['generator'], params['generator_state'], source01, k_d, train=True)
    fake = jax.lax.stop_gradient(fake)

    def d_objective(params_d):
      logits_real, d_state = self._discriminate(params_d, state.extra['discriminator'], source, target)
      logits_fake, d_state = self._discriminate(params_d, d_state, source, fake)
      return 0.5 * discriminator_loss('nonsaturating', logits_real, logits_fake), d_state

    (d_loss, d_state), grads = jax.value_and_grad(d_objective, has_aux=True)(params['discriminator'])
    updates, opt_d = self.tx['discriminator'].update(grads, state.opt_state['discriminator'], params['discriminator'])
    params_d = optax.apply_updates(params['discriminator'], updates)

    def g_objective(params_g):
      out, new_g_state = self.translate(params_g, g_state, source01, k_g, train=True)
      logits, _ = self._discriminate(params_d, d_state, source, out)
      adversarial = generator_loss('nonsaturating', logits)
      l1 = jnp.mean(jnp.abs(out - target))
      return adversarial + self.l1_weight * l1, (new_g_state, adversarial, l1)

    (_, (g_state, adversarial, l1)), grads = jax.value_and_grad(g_objective, has_aux=True)(params['generator'])
    updates, opt_g = self.tx['generator'].update(grads, state.opt_state['generator'], params['generator'])
    params_g = optax.apply_updates(params['generator'], updates)
    new_params = {'generator': params_g, 'discriminator': params_d, 'generator_state': g_state}
    # l1 is in the model range [-1, 1]: half of it is the mean absolute error in [0, 1] pixel units.
    metrics = {'loss': d_loss, 'd_loss': d_loss, 'g_adversarial': adversarial, 'l1': l1}
    return state.replace(params=new_params, opt_state={'generator': opt_g, 'discriminator': opt_d},
                         extra={'discriminator': d_state}), metrics

  def super_resolve(self, params, rng, low_res, label=None):
    """Targets in [0, 1] for low-resolution images [B, H/f, W/f, C] (the restoration evaluator's 'superres')."""
    source = upsample(low_res, self.superres_factor)
    out, _ = self.translate(params['generator'], params['generator_state'], source, rng, train=False)
    return jnp.clip((out + 1.0) / 2.0, 0.0, 1.0)
