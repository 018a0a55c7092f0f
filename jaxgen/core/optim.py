"""Optimizers from `config.optim`: optax chain of clipping, decay and a schedule.

config.optim keys:
  name          'adam' | 'adamw' | 'sgd' | 'rmsprop'
  lr            peak learning rate
  schedule      'constant' | 'cosine' | 'linear'  (decay after warm-up, to lr * final_lr_ratio)
                | 'exponential'  (lr * decay_rate ** (step - warmup) after warm-up; PixelCNN++)
  warmup_steps  linear warm-up from 0
  final_lr_ratio  end of the decay as a fraction of lr
  decay_steps   length of the decay (0 = config.train.steps - warmup)
  decay_rate    per-step factor of the 'exponential' schedule
  b1, b2, eps   Adam moments
  weight_decay  decoupled (adamw) weight decay
  grad_clip     global-norm clipping (0 = off)
  momentum      for sgd / rmsprop
"""

import optax

from jaxgen.errors import ConfigError


def learning_rate_schedule(optim, total_steps: int) -> optax.Schedule:
  """Warm-up then constant/cosine/linear decay, as a function of the step."""
  warmup = int(optim.get('warmup_steps', 0))
  decay_steps = int(optim.get('decay_steps', 0)) or max(total_steps - warmup, 1)
  final = optim.lr * float(optim.get('final_lr_ratio', 0.0))
  name = optim.get('schedule', 'constant')
  if name == 'constant':
    decay = optax.constant_schedule(optim.lr)
  elif name == 'cosine':
    decay = optax.cosine_decay_schedule(optim.lr, decay_steps, alpha=final / optim.lr if optim.lr else 0.0)
  elif name == 'linear':
    decay = optax.linear_schedule(optim.lr, final, decay_steps)
  elif name == 'exponential':
    rate = float(optim.get('decay_rate', 1.0))
    if not 0.0 < rate <= 1.0:
      raise ConfigError(f'config.optim.decay_rate must be in (0, 1] for the exponential schedule, got {rate}.')
    decay = optax.exponential_decay(optim.lr, transition_steps=1, decay_rate=rate)
  else:
    raise ConfigError(f"config.optim.schedule={name!r} is not one of 'constant', 'cosine', 'linear', "
                      "'exponential'.")
  if warmup <= 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, optim.lr, warmup), decay], [warmup])


def make_optimizer(optim, total_steps: int) -> optax.GradientTransformation:
  """The optax transformation described by `config.optim` (see module docstring)."""
  lr = learning_rate_schedule(optim, total_steps)
  name = optim.get('name', 'adam')
  if name == 'adam':
    opt = optax.adam(lr, b1=optim.get('b1', 0.9), b2=optim.get('b2', 0.999), eps=optim.get('eps', 1e-8))
  elif name == 'adamw':
    opt = optax.adamw(lr, b1=optim.get('b1', 0.9), b2=optim.get('b2', 0.999), eps=optim.get('eps', 1e-8),
                      weight_decay=optim.get('weight_decay', 0.0))
  elif name == 'sgd':
    opt = optax.sgd(lr, momentum=optim.get('momentum', 0.0) or None)
  elif name == 'rmsprop':
    opt = optax.rmsprop(lr, momentum=optim.get('momentum', 0.0), eps=optim.get('eps', 1e-8))
  else:
    raise ConfigError(f"config.optim.name={name!r} is not one of 'adam', 'adamw', 'sgd', 'rmsprop'.")
  clip = float(optim.get('grad_clip', 0.0))
  return optax.chain(optax.clip_by_global_norm(clip), opt) if clip > 0 else opt
