"""Generative adversarial networks: one method for every GAN architecture and loss.

One jitted, sharded `train_step` does `n_critic` discriminator updates and one generator
update, each with its own optimizer (TTUR: `config.optim` is the generator's, `config.optim_d`
the discriminator's), with the regularisers and augmentation of the GAN papers:

  losses       'nonsaturating' (Goodfellow et al. 2014), 'hinge' (SNGAN), 'wasserstein'
               (WGAN; with gp_weight = 10: WGAN-GP, Gulrajani et al. 2017; drift: PGGAN's
               epsilon * D(real)^2)
  R1           gamma / 2 * E ||grad_x D(x_real)||^2 (Mescheder et al. 2018), lazy: every
               r1_every steps, scaled by r1_every (StyleGAN2)
  path length  StyleGAN2's regulariser of the generator (pl_weight, lazy every pl_every)
  ADA          StyleGAN2-ADA's augmentation of everything the discriminator sees, with
               probability p in TrainState.extra adjusted toward E[sign D(real)] = ada_target
  packing      PacGAN (Lin et al. 2018): the discriminator judges `pack` examples at once
  lazy_adam    StyleGAN2's Adam adjustment for lazy regularisation (lazy_regularization_optim)

With n_critic > 1 the step's batch is split into n_critic micro-batches, one per
discriminator update (fresh real data for each, as WGAN-GP), and the generator update uses
batch_size / n_critic latents. Conditional models (config.model.num_classes > 0) generate
with the real micro-batch's labels.

The architecture (config.model.arch) comes from jaxgen.models.gan_nets. State layout:
params = {'generator', 'discriminator': trained parameters; 'generator_state': the
generator's other variables (BatchNorm statistics, StyleGAN's running mean of w);
'schedule': the architecture's step-dependent inputs (PGGAN's stage and fade-in alpha)},
so that sampling needs nothing but `params`; ema_params (config.train.ema_decay > 0) holds
the averaged generator and copies of its state and schedule (as StyleGAN copies buffers);
extra = {'discriminator': the discriminator's other variables (spectral-norm power-iteration
vectors, BatchNorm statistics), 'ada': {p, sign_sum, count}, 'pl_mean'}.

The reported `loss` is the discriminator's loss (for 'wasserstein', minus the critic's
estimate of the Wasserstein distance, plus penalties).
"""

import math

import jax
import jax.numpy as jnp
import optax

from jaxgen.core.optim import make_optimizer
from jaxgen.core.state import TrainState, step_rng
from jaxgen.errors import ConfigError
from jaxgen.methods import ada, register
from jaxgen.methods.base import Method, method_settings
from jaxgen.models import gan_nets

LOSSES = ('nonsaturating', 'hinge', 'wasserstein')

# config.method keys and their defaults.
DEFAULTS = dict(
    loss='nonsaturating', n_critic=1, pack=1,
    gp_weight=0.0, drift=0.0,
    r1_gamma=0.0, r1_every=1,
    pl_weight=0.0, pl_every=4, pl_decay=0.01,
    ada_target=0.0, ada_p=0.0, ada_interval=4, ada_kimg=500.0, augment='bgc',
    lazy_adam=False,
)


def lazy_regularization_optim(optim, interval: int):
  """StyleGAN2's Adam settings for a network regularised every `interval` steps: lr * c and
  betas ** c with c = interval / (interval + 1), so that the extra regularisation updates do not
  change the effective step (Karras et al. 2020, appendix B; the official training loop)."""
  c = interval / (interval + 1)
  adjusted = optim.copy_and_resolve_references()
  adjusted.lr, adjusted.b1, adjusted.b2 = optim.lr * c, optim.b1 ** c, optim.b2 ** c
  return adjusted


def discriminator_loss(kind: str, logits_real, logits_fake):
  """Per-example discriminator loss (mean taken by the caller), from the two sets of logits."""
  if kind == 'nonsaturating':
    return jax.nn.softplus(-logits_real).mean() + jax.nn.softplus(logits_fake).mean()
  if kind == 'hinge':
    return jax.nn.relu(1.0 - logits_real).mean() + jax.nn.relu(1.0 + logits_fake).mean()
  return logits_fake.mean() - logits_real.mean()


def generator_loss(kind: str, logits_fake):
  """The generator's loss: -log D(G(z)) (non-saturating) or -D(G(z)) (hinge, Wasserstein)."""
  if kind == 'nonsaturating':
    return jax.nn.softplus(-logits_fake).mean()
  return -logits_fake.mean()


def _input_grad_norms(critic, x, group: int = 1):
  """||grad_x critic(.)||_2 per critic output: `critic` maps [B, ...] to [B / group] logits, output j
  depending only on examples j*group .. j*group+group-1 (PacGAN packing), so the norm of output j's
  gradient is that of those examples' gradients together."""
  grads = jax.grad(lambda v: critic(v).sum())(x)
  squares = jnp.sum(grads.reshape(grads.shape[0] // group, -1) ** 2, axis=-1)
  return jnp.sqrt(squares + 1e-12)


def gradient_penalty(critic, real, fake, key, group: int = 1):
  """WGAN-GP's E[(||grad D(x_hat)||_2 - 1)^2] at x_hat = eps real + (1 - eps) fake, eps ~ U[0, 1] per
  example (the norm per critic output, `group` examples each; see _input_grad_norms)."""
  eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
  x_hat = eps * real + (1.0 - eps) * fake
  return jnp.mean((_input_grad_norms(critic, x_hat, group) - 1.0) ** 2)


def r1_penalty(critic, real, group: int = 1):
  """R1: E ||grad_x D(x_real)||^2 (multiplied by gamma / 2 by the caller)."""
  return jnp.mean(_input_grad_norms(critic, real, group) ** 2)


def pack(x, m: int):
  """PacGAN packing: [B, ..., C] -> [B/m, ..., m*C], examples i*m .. i*m+m-1 concatenated on the last axis."""
  if m == 1:
    return x
  b = x.shape[0]
  moved = jnp.moveaxis(x.reshape((b // m, m) + x.shape[1:]), 1, -2)   # [B/m, ..., m, C]
  return moved.reshape(moved.shape[:-2] + (m * x.shape[-1],))


@register('gan')
class GAN(Method):
  """The GAN family (module docstring); the architecture comes from config.model.arch."""

  def __init__(self, config, info):
    super().__init__(config, info)
    self.hp = method_settings(config, DEFAULTS, 'GAN')
    hp = self.hp
    if hp.loss not in LOSSES:
      raise ConfigError(f'config.method.loss={hp.loss!r} is not one of {", ".join(LOSSES)}.')
    for key in ('n_critic', 'pack', 'r1_every', 'pl_every', 'ada_interval'):
      if int(hp[key]) < 1:
        raise ConfigError(f'config.method.{key} must be >= 1, got {hp[key]}.')
    if not 0.0 <= hp.ada_target < 1.0 or not 0.0 <= hp.ada_p <= 1.0:
      raise ConfigError(f'config.method.ada_target must be in [0, 1) and ada_p in [0, 1]; got '
                        f'{hp.ada_target}, {hp.ada_p}.')
    self.nets = gan_nets.build(config.model, info)
    self.num_classes = gan_nets.num_classes(config.model, info)
    self.conditional = bool(self.num_classes)
    if self.conditional and hp.pack > 1:
      raise ConfigError('config.method.pack > 1 (PacGAN) packs examples of different classes together; it is '
                        'only supported for unconditional models (config.model.num_classes=0).')
    batch, micro = int(config.train.batch_size), int(config.train.batch_size) // int(hp.n_critic)
    if batch % hp.n_critic or micro % hp.pack:
      raise ConfigError(f'config.train.batch_size={batch} must split into n_critic={hp.n_critic} micro-batches '
                        f'whose size is a multiple of pack={hp.pack}.')
    self.augments = hp.ada_target > 0 or hp.ada_p > 0
    if self.augments and not self.nets.image_range:
      raise ConfigError('ADA augments images; set config.method.ada_target=0 and ada_p=0 for vector data.')
    if hp.pl_weight > 0 and not hasattr(self.nets.generator, 'synthesis'):
      raise ConfigError(f'config.method.pl_weight > 0 needs a StyleGAN-like generator (mapping/synthesis); '
                        f'config.model.arch={config.model.arch!r} has none.')
    steps = int(config.train.steps)
    optim_g, optim_d = config.optim, config.get('optim_d', None) or config.optim
    if hp.lazy_adam:  # as StyleGAN2's training loop: G regularised every pl_every steps, D every r1_every
      optim_g, optim_d = lazy_regularization_optim(optim_g, hp.pl_every), lazy_regularization_optim(optim_d, hp.r1_every)
    self.tx = {'generator': make_optimizer(optim_g, steps),
               'discriminator': make_optimizer(optim_d, steps * hp.n_critic)}

  # ---- data <-> model range --------------------------------------------------------------------

  def to_model(self, x):
    return 2.0 * x - 1.0 if self.nets.image_range else x

  def to_data(self, x):
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0) if self.nets.image_range else x

  # ---- the networks, with their non-trainable state --------------------------------------------

  def _latents(self, key, num):
    return jax.random.normal(key, (num,) + tuple(self.nets.latent_shape), jnp.float32)

  def generate(self, params_g, g_state, key, num, label, schedule, train, **kwargs):
    """(G(z) in the model range, the generator's updated state) for `num` fresh latents."""
    kz, kn, kd = jax.random.split(key, 3)
    variables = {'params': params_g, **g_state}
    x, new_state = self.nets.generator.apply(variables, self._latents(kz, num), label, train=train,
                                             rngs={'noise': kn, 'dropout': kd}, mutable=list(g_state) if train else [],
                                             **schedule, **kwargs)
    return x, (dict(new_state) if train else g_state)

  def discriminate(self, params_d, d_state, x, label, schedule, key, ada_p=None):
    """(logits, the discriminator's updated state) of x in the model range: ADA-augmented when
    configured, packed `pack` at a time."""
    ka, kd = jax.random.split(key)
    if self.augments:
      x = ada.augment(x, ada_p, ka, self.hp.augment)
    x = pack(x, int(self.hp.pack))
    logits, new_state = self.nets.discriminator.apply({'params': params_d, **d_state}, x, label, train=True,
                                                      rngs={'dropout': kd}, mutable=list(d_state), **schedule)
    return logits, dict(new_state)

  # ---- the Method contract ---------------------------------------------------------------------

  def init(self, rng, batch):
    kg, kd, kn = jax.random.split(rng, 3)
    x = self.to_model(batch['x'])
    label = batch['label'] if self.conditional else None
    schedule = self.nets.schedule(jnp.zeros((), jnp.int32))
    g_vars = self.nets.generator.init({'params': kg, 'noise': kn, 'dropout': kn},
                                      self._latents(kn, x.shape[0]), label, train=True, **schedule)
    d_vars = self.nets.discriminator.init({'params': kd, 'dropout': kn}, pack(x, int(self.hp.pack)), label,
                                          train=True, **schedule)
    g_vars, d_vars = dict(g_vars), dict(d_vars)
    params = {'generator': g_vars.pop('params'), 'discriminator': d_vars.pop('params'),
              'generator_state': g_vars, 'schedule': schedule}
    ema = None
    if self.config.train.ema_decay > 0:
      ema = {k: jax.tree.map(jnp.copy, params[k]) for k in ('generator', 'generator_state', 'schedule')}
    extra = {'discriminator': d_vars}
    if self.augments:
      extra['ada'] = {'p': jnp.asarray(self.hp.ada_p, jnp.float32), 'sign_sum': jnp.zeros((), jnp.float32),
                      'count': jnp.zeros((), jnp.float32)}
    if self.hp.pl_weight > 0:
      extra['pl_mean'] = jnp.zeros((), jnp.float32)
    opt_state = {k: self.tx[k].init(params[k]) for k in ('generator', 'discriminator')}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, ema_params=ema,
                      extra=extra, rng=rng)

  #: ema_params keys copied from params each step instead of averaged (see train.make_step_fn).
  ema_copy_keys = ('generator_state', 'schedule')

  def _critic_loss(self, params_d, d_state, real, fake, label, schedule, key, ada_p, step):
    hp = self.hp
    k_real, k_fake, k_gp, k_r1 = jax.random.split(key, 4)
    logits_real, d_state = self.discriminate(params_d, d_state, real, label, schedule, k_real, ada_p)
    logits_fake, d_state = self.discriminate(params_d, d_state, fake, label, schedule, k_fake, ada_p)
    loss = discriminator_loss(hp.loss, logits_real, logits_fake)
    metrics = {'d_real': logits_real.mean(), 'd_fake': logits_fake.mean()}
    if hp.loss == 'wasserstein':
      metrics['wasserstein'] = logits_real.mean() - logits_fake.mean()
    critic = lambda kk: lambda v: self.discriminate(params_d, d_state, v, label, schedule, kk, ada_p)[0]
    if hp.gp_weight > 0:
      # With packing, x_hat is interpolated per example and packed inside the critic.
      gp = gradient_penalty(critic(k_gp), real, fake, jax.random.fold_in(k_gp, 1), int(hp.pack))
      loss += hp.gp_weight * gp
      metrics['gp'] = gp
    if hp.drift > 0:
      loss += hp.drift * jnp.mean(logits_real ** 2)
    if hp.r1_gamma > 0:
      due = step % int(hp.r1_every) == 0
      r1 = jax.lax.cond(due, lambda: r1_penalty(critic(k_r1), real, int(hp.pack)),
                        lambda: jnp.zeros((), jnp.float32))
      loss += 0.5 * hp.r1_gamma * int(hp.r1_every) * r1
      metrics['r1'] = r1
    return loss, (d_state, logits_real, metrics)

  def _path_length(self, params_g, g_state, key, num, label, pl_mean):
    """StyleGAN2's path-length penalty and the updated running mean of the path lengths."""
    kz, kn, kp = jax.random.split(key, 3)
    g = self.nets.generator
    variables = {'params': params_g, **g_state}
    rngs = {'noise': kn, 'dropout': kn}
    ws, _ = g.apply(variables, self._latents(kz, num), label, train=True, rngs=rngs, mutable=list(g_state),
                    method='mapping')
    synth = lambda w: g.apply(variables, w, train=True, rngs=rngs, mutable=list(g_state), method='synthesis')[0]
    images, vjp = jax.vjp(synth, ws)
    h, w = images.shape[1], images.shape[2]
    (grads,) = vjp(jax.random.normal(kp, images.shape, images.dtype) / math.sqrt(h * w))
    lengths = jnp.sqrt(jnp.mean(jnp.sum(grads ** 2, axis=2), axis=1))
    new_mean = pl_mean + self.hp.pl_decay * (jnp.mean(lengths) - pl_mean)
    return jnp.mean((lengths - jax.lax.stop_gradient(new_mean)) ** 2), new_mean

  def train_step(self, state, batch):
    hp = self.hp
    key = step_rng(state)
    schedule = self.nets.schedule(state.step)
    params = state.params
    g_state, d_state = params['generator_state'], state.extra['discriminator']
    ada_p = state.extra['ada']['p'] if self.augments else None
    n, micro = int(hp.n_critic), batch['x'].shape[0] // int(hp.n_critic)
    # [B, ...] -> [n, B/n, ...] with micro-batch i = examples i, n+i, 2n+i, ...: the sharded batch axis stays whole.
    split = lambda a: jnp.moveaxis(a.reshape((micro, n) + a.shape[1:]), 1, 0)
    reals = split(self.to_model(batch['x']))
    labels = split(batch['label']) if self.conditional else jnp.zeros((n, micro), jnp.int32)

    def critic_update(carry, inputs):
      params_d, opt_d, d_state, g_state, sign_sum = carry
      real, label, i = inputs
      k_fake, k_loss = jax.random.split(jax.random.fold_in(key, i))
      label = label if self.conditional else None
      fake, g_state = self.generate(params['generator'], g_state, k_fake, micro, label, schedule, train=True)
      grad_fn = jax.value_and_grad(self._critic_loss, has_aux=True)
      (loss, (d_state, logits_real, metrics)), grads = grad_fn(
          params_d, d_state, real, jax.lax.stop_gradient(fake), label, schedule, k_loss, ada_p, state.step)
      updates, opt_d = self.tx['discriminator'].update(grads, opt_d, params_d)
      params_d = optax.apply_updates(params_d, updates)
      metrics = dict(metrics, d_loss=loss)
      return (params_d, opt_d, d_state, g_state, sign_sum + jnp.sum(jnp.sign(logits_real))), metrics

    carry = (params['discriminator'], state.opt_state['discriminator'], d_state, g_state, jnp.zeros((), jnp.float32))
    (params_d, opt_d, d_state, g_state, sign_sum), d_metrics = jax.lax.scan(
        critic_update, carry, (reals, labels, jnp.arange(n)), unroll=True)
    d_metrics = jax.tree.map(jnp.mean, d_metrics)

    k_gen, k_disc, k_pl = jax.random.split(jax.random.fold_in(key, n), 3)
    g_label = labels[0] if self.conditional else None
    extra = dict(state.extra, discriminator=d_state)

    def generator_objective(params_g):
      fake, new_g_state = self.generate(params_g, g_state, k_gen, micro, g_label, schedule, train=True)
      logits, _ = self.discriminate(params_d, d_state, fake, g_label, schedule, k_disc, ada_p)
      loss = generator_loss(hp.loss, logits)
      aux = {'g_state': new_g_state, 'metrics': {'g_loss': loss}}
      if hp.pl_weight > 0:
        due = state.step % int(hp.pl_every) == 0
        penalty, pl_mean = jax.lax.cond(
            due, lambda: self._path_length(params_g, g_state, k_pl, micro, g_label, state.extra['pl_mean']),
            lambda: (jnp.zeros((), jnp.float32), state.extra['pl_mean']))
        loss += hp.pl_weight * int(hp.pl_every) * penalty
        aux['pl_mean'] = pl_mean
        aux['metrics']['pl_penalty'] = penalty
      return loss, aux

    (_, aux), grads = jax.value_and_grad(generator_objective, has_aux=True)(params['generator'])
    updates, opt_g = self.tx['generator'].update(grads, state.opt_state['generator'], params['generator'])
    params_g = optax.apply_updates(params['generator'], updates)
    if hp.pl_weight > 0:
      extra['pl_mean'] = aux['pl_mean']

    metrics = dict(d_metrics, **aux['metrics'], loss=d_metrics['d_loss'])
    if self.augments:
      extra['ada'] = self._ada_update(state.extra['ada'], sign_sum, n * micro // int(hp.pack), state.step)
      metrics['ada_p'] = extra['ada']['p']
    new_params = {'generator': params_g, 'discriminator': params_d, 'generator_state': aux['g_state'],
                  'schedule': self.nets.schedule(state.step + 1)}
    return state.replace(params=new_params, opt_state={'generator': opt_g, 'discriminator': opt_d},
                         extra=extra), metrics

  def _ada_update(self, ada_state, sign_sum, count, step):
    """Accumulate sign(D(real)); every ada_interval steps move p toward E[sign D(real)] = ada_target."""
    hp = self.hp
    total, seen = ada_state['sign_sum'] + sign_sum, ada_state['count'] + count
    if hp.ada_target <= 0:  # fixed augmentation probability
      return dict(ada_state, sign_sum=total, count=seen)
    due = (step + 1) % int(hp.ada_interval) == 0
    new_p = ada.update_p(ada_state['p'], total, seen, target=hp.ada_target,
                         batch_size=int(self.config.train.batch_size), interval=int(hp.ada_interval),
                         kimg=float(hp.ada_kimg))
    zero = jnp.zeros((), jnp.float32)
    return {'p': jnp.where(due, new_p, ada_state['p']), 'sign_sum': jnp.where(due, zero, total),
            'count': jnp.where(due, zero, seen)}

  def sample(self, params, rng, num, label=None):
    if self.conditional and label is None:
      label = jnp.arange(num, dtype=jnp.int32) % self.num_classes
    x, _ = self.generate(params['generator'], params['generator_state'], rng, num,
                         label if self.conditional else None, params['schedule'], train=False,
                         **self.nets.sample_kwargs)
    return self.to_data(x)
