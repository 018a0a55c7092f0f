"""Normalizing flows with exact likelihood: RealNVP (Dinh et al., 2017) and Glow (Kingma & Dhariwal, 2018).

The networks (jaxgen/models/flows.py) are bijections from data to a flat standard-normal
vector eps, so log p(y) = log N(eps; 0, I) + log|det d eps / d y|, trained by maximum
likelihood.

Data:
  images   are dequantized, by one of (method.dequantization):
             'uniform'      (default) in the data pipeline: config.data.dequantize=True gives
                            x = (k + u) / L, u ~ U[0, 1)^D. `nll` is -log p(x) of the dequantized
                            x and the nll evaluator adds D log L for the discrete data.
             'variational'  by the model (Ho et al., 2019, Flow++): the data stay discrete
                            (config.data.dequantize=False) and u ~ q(u | k) is a learned
                            logistic-normal (models/flows.py: VariationalDequantizer). Training
                            maximises the bound log P(k) >= E_q[log p((k + u) / L) - D log L
                            - log q(u | k)], and `nll` reports the importance-weighted bound
                            with method.eval_dequant_samples samples, in nats of the discrete
                            data (no correction added by the evaluator).
           The flow then models y = logit(alpha + (1 - 2 alpha) x), alpha = method.logit_alpha
           (method.preprocess='logit', default; RealNVP), or y = x - 0.5 ('center'; Glow's
           code), and `nll` includes that map's log-Jacobian.
  vectors  (toy2d) are modelled directly, without preprocessing.

Families and config keys:
  'realnvp'  images: model.num_scales scales of (3 checkerboard couplings, squeeze, 3 channel
             couplings, factor out half), the last scale 4 checkerboard couplings; ResNet
             coupling nets with model.width channels and model.num_blocks residual blocks.
             vectors: model.num_couplings half-split couplings with MLP nets model.mlp_hidden.
             model.scale: 'tanh' (default) | 'sigmoid'.
  'glow'     model.levels levels of (squeeze, model.depth x (actnorm, invertible 1x1 conv in LU
             form, affine coupling), split with a learned prior); coupling nets of width
             model.width (images) or MLP widths model.mlp_hidden (vectors, one level).
             model.scale: 'sigmoid' (default) | 'tanh'. model.learn_top: learned top prior.
             model.num_classes > 0: class-conditional top prior (labels from the dataset).
  method.preprocess    'logit' (default) | 'center' (images).
  method.logit_alpha   alpha of the logit preprocessing (images; default 0.05).
  method.dequantization        'uniform' (default) | 'variational' (images).
  method.dequantizer_width     width of the variational dequantizer's conv net (default 32).
  method.eval_dequant_samples  importance samples of the variational `nll` bound (default 16).

Parameters: params['flow'] and, with variational dequantization, params['dequantizer']
(trained), and params['consts'] (the 1x1 convolutions' fixed permutations and signs;
never updated by the optimizer).
"""

import math

import jax
import jax.numpy as jnp
import optax

from jaxgen.core.optim import make_optimizer
from jaxgen.core.state import TrainState, step_rng
from jaxgen.errors import ConfigError
from jaxgen.methods import register
from jaxgen.methods.base import Method
from jaxgen.methods.conditioning import ClassConditional
from jaxgen.models import flows


class _Flow(ClassConditional, Method):
  """Shared maximum-likelihood training, likelihood and sampling; subclasses build `self.model`."""

  has_likelihood = True
  family_name = ''

  def __init__(self, config, info):
    super().__init__(config, info)
    self.shape = tuple(info.shape)
    self.dim = math.prod(self.shape)
    self.image = info.kind == 'image'
    self.alpha = float(config.method.get('logit_alpha', 0.05))
    self.preprocess = config.method.get('preprocess', 'logit')
    self.dequantization = config.method.get('dequantization', 'uniform')
    self.eval_dequant_samples = int(config.method.get('eval_dequant_samples', 16))
    self._init_conditioning()
    self._validate_data()
    self.logit = flows.LogitTransform(self.alpha)
    self.model = self._build()
    self.variational = self.image and self.dequantization == 'variational'
    if self.variational:
      self.dequantizer = flows.VariationalDequantizer(int(config.method.get('dequantizer_width', 32)))
    self.tx = make_optimizer(config.optim, config.train.steps)

  def _validate_data(self):
    info = self.info
    if self.image:
      if len(self.shape) != 3:
        raise ConfigError(f'{self.family_name} expects images shaped [H, W, C]; dataset {info.name!r} has {self.shape}.')
      if self.dequantization not in ('uniform', 'variational'):
        raise ConfigError(f"config.method.dequantization={self.dequantization!r} is not one of 'uniform', "
                          "'variational'.")
      if self.preprocess not in ('logit', 'center'):
        raise ConfigError(f"config.method.preprocess={self.preprocess!r} is not one of 'logit', 'center'.")
      if self.dequantization == 'uniform' and not info.dequantized:
        raise ConfigError(
            f'{self.family_name} is a density on continuous data, but dataset {info.name!r} is discrete '
            f'(levels={info.levels}); its NLL would be meaningless. Set config.data.dequantize=True '
            "(uniform dequantization) or config.method.dequantization='variational'.")
      if self.dequantization == 'variational' and (info.dequantized or not info.levels or info.levels < 2):
        raise ConfigError(
            f"config.method.dequantization='variational' adds its own noise to discrete data, but dataset "
            f'{info.name!r} has levels={info.levels}, dequantized={info.dequantized}. Set '
            'config.data.dequantize=False (and no binarization).')
      if self.eval_dequant_samples < 1:
        raise ConfigError(f'config.method.eval_dequant_samples must be >= 1, got {self.eval_dequant_samples}.')
      if not 0.0 <= self.alpha < 0.5:
        raise ConfigError(f'config.method.logit_alpha must be in [0, 0.5), got {self.alpha}.')
    elif len(self.shape) != 1:
      raise ConfigError(f'{self.family_name} on non-image data needs vectors; dataset {info.name!r} has {self.shape}.')

  def _check_divisible(self, factor, key):
    h, w = self.shape[:2]
    if h % factor or w % factor:
      raise ConfigError(f'{key} needs image height and width divisible by {factor}; dataset '
                        f'{self.info.name!r} has {self.shape}. Use fewer levels/scales.')

  def _build(self):
    raise NotImplementedError

  # ---- density ----------------------------------------------------------------------------------

  def _variables(self, params):
    return {'params': params['flow'], 'consts': params['consts']}

  def _preprocess(self, x):
    """(y, log|dy/dx|): the logit map or centring for images, the identity for vectors."""
    if self.image and self.preprocess == 'logit':
      return self.logit(x)
    shift = 0.5 if self.image else 0.0
    return x - shift, jnp.zeros((x.shape[0],), x.dtype)

  def _postprocess(self, y):
    """The inverse of `_preprocess`, images clipped to [0, 1]."""
    if not self.image:
      return y
    x = self.logit.inverse(y) if self.preprocess == 'logit' else y + 0.5
    return jnp.clip(x, 0.0, 1.0)

  def log_prob(self, params, x, label=None):
    """log p(x) per example [B] in nats (of the dequantized x for images)."""
    y, logdet_pre = self._preprocess(x)
    eps, logdet = self.model.apply(self._variables(params), y, label)
    return flows.gaussian_log_prob(eps) + logdet + logdet_pre

  def dequantized_log_likelihood(self, params, x, label, rng, num_samples=1):
    """Variational dequantization: log (1/K sum_k P_k) with P_k = p((x L' + u_k) / L) L^-D / q(u_k | x).

    x is discrete on the grid k / L' (L' = levels - 1, L = levels), u_k ~ q(u | x), K =
    `num_samples`. A lower bound on log P(x) in nats per example [B] that tightens as K grows.
    """
    levels = self.info.levels
    x_in = 2.0 * x - 1.0

    def one(key):
      u, log_q = self.dequantizer.apply({'params': params['dequantizer']}, x_in, jax.random.normal(key, x.shape))
      y = (x * (levels - 1) + u) / levels
      return (self.log_prob(params, y, label) - self.dim * math.log(levels)
              - log_q.reshape(log_q.shape[0], -1).sum(-1))

    log_w = jax.lax.map(one, jax.random.split(rng, num_samples))
    return jax.nn.logsumexp(log_w, axis=0) - math.log(num_samples)

  # ---- the Method contract ----------------------------------------------------------------------

  def init(self, rng, batch):
    """Parameters, with every ActNorm initialised from `batch` (data-dependent init)."""
    k_model, k_state = jax.random.split(rng)
    y, _ = self._preprocess(batch['x'])
    label = batch['label'] if self.conditional else None
    variables = self.model.init(k_model, y, label)
    params = {'flow': variables['params'], 'consts': variables.get('consts', {})}
    if self.variational:
      x = batch['x']
      params['dequantizer'] = self.dequantizer.init(jax.random.fold_in(k_model, 1), 2.0 * x - 1.0,
                                                    jnp.zeros_like(x))['params']
    ema = jax.tree.map(jnp.copy, params) if self.config.train.ema_decay > 0 else None
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.tx.init(_trainable(params)),
                      ema_params=ema, extra={}, rng=k_state)

  def train_step(self, state, batch):
    label = self._batch_label(batch)
    consts = state.params['consts']
    rng = step_rng(state)

    def loss_fn(trainable):
      params = dict(trainable, consts=consts)
      if self.variational:
        nll = -self.dequantized_log_likelihood(params, batch['x'], label, rng)
      else:
        nll = -self.log_prob(params, batch['x'], label)
      return jnp.mean(nll), nll

    trainable = _trainable(state.params)
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
    updates, opt_state = self.tx.update(grads, state.opt_state, trainable)
    params = dict(optax.apply_updates(trainable, updates), consts=consts)
    metrics = {'loss': loss, 'nll_per_dim': loss / self.dim, 'grad_norm': optax.global_norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  def nll(self, params, batch, rng):
    """-log p(x) per example in nats (images: see the module docstring for what x is)."""
    label = self._batch_label(batch)
    if self.variational:
      return -self.dequantized_log_likelihood(params, batch['x'], label, rng, self.eval_dequant_samples)
    return -self.log_prob(params, batch['x'], label)

  def sample(self, params, rng, num, label=None, temperature=1.0):
    """x = f^-1(eps), eps ~ N(0, temperature^2 I): [num, *shape]; images mapped back to [0, 1].

    A conditional model given no label generates the cycle jnp.arange(num) % num_classes.
    """
    label = self.sample_labels(num, label)
    eps = temperature * jax.random.normal(rng, (num, self.dim))
    y, _ = self.model.apply(self._variables(params), eps, label, reverse=True)
    return self._postprocess(y)


def _trainable(params):
  """The parameters the optimizer updates: all but the fixed 'consts'."""
  return {k: v for k, v in params.items() if k != 'consts'}


@register('realnvp')
class RealNVPMethod(_Flow):
  """RealNVP; see the module docstring."""
  family_name = 'realnvp'

  def _build(self):
    m = self.config.model
    scale = m.get('scale', 'tanh')
    if self.conditional:
      raise ConfigError('realnvp has no class-conditional variant; set config.model.num_classes=0 (or use glow).')
    if self.image:
      num_scales = int(m.num_scales)
      if num_scales < 1:
        raise ConfigError(f'config.model.num_scales must be >= 1, got {num_scales}.')
      self._check_divisible(2 ** (num_scales - 1), f'config.model.num_scales={num_scales}')
      return flows.RealNVPImage(self.shape, num_scales, int(m.width), int(m.num_blocks), scale)
    return flows.RealNVPVector(int(m.num_couplings), tuple(m.mlp_hidden), scale)


@register('glow')
class GlowMethod(_Flow):
  """Glow; see the module docstring."""
  family_name = 'glow'

  def _build(self):
    m = self.config.model
    levels, depth = int(m.get('levels', 1)), int(m.depth)
    if levels < 1 or depth < 1:
      raise ConfigError(f'config.model.levels and depth must be >= 1, got {levels} and {depth}.')
    if self.image:
      self._check_divisible(2 ** levels, f'config.model.levels={levels}')
    elif levels != 1:
      raise ConfigError(f'glow on vectors has one level (no squeeze); got config.model.levels={levels}.')
    return flows.Glow(self.shape, levels, depth, int(m.get('width', 512)), tuple(m.get('mlp_hidden', (64, 64))),
                      m.get('scale', 'sigmoid'), self.num_classes, bool(m.get('learn_top', True)), self.image)
