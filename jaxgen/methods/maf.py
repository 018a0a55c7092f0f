"""MAF: masked autoregressive flow (Papamakarios et al., 2017), for vectors and dequantized images.

A stack of K autoregressive affine layers, each a Gaussian MADE
(`jaxgen.models.masked.MADE`, 2 outputs per dimension) in the natural order on
its input, with the order reversed between layers:

  layer k:  u_i = (x_i - mu_i(x_{<i})) * exp(-alpha_i(x_{<i})),   log|det du/dx| = -sum_i alpha_i
            alpha = s * tanh(raw / s), s = method.scale_clip (a soft clip of the log-scale)
  then      x <- reverse(u)   (a permutation: log-det 0)

log p(x) = log N(u_K; 0, I) + sum_k log|det| (no batch norm). The density
direction is one network pass per layer; the inverse (sampling) of a layer is a
`jax.lax.fori_loop` of D passes of x <- mu(x) + u * exp(alpha(x)), which fixes
one more dimension each pass (dimension i is exact once x_{<i} is).

Images (config.data.dequantize=True): with method.logit (default True) the flow
models y = logit(a + (1 - 2a) x), a = method.logit_alpha (RealNVP), and the
Jacobian log|dy/dx| is included, so
`nll` is -log p(x) of the dequantized x in [0, 1]^D; the `nll` evaluator adds
D log L for the discrete data. Vectors are modelled as they are.

Config keys:
  model.num_layers     K
  model.hidden         widths of each MADE's hidden layers
  model.out_init_scale initial std of each MADE's output weights relative to LeCun's (default 1).
                       In high dimension (images) keep it small: K layers that each scale by up
                       to exp(scale_clip) at init multiply, and the first steps blow up.
  method.scale_clip    s of the soft log-scale clip (default 3)
  method.logit         images: model logit(a + (1 - 2a) x) (True, default) or x itself (False)
  method.logit_alpha   a of the logit preprocessing (default 0.05)
"""

import math

import jax
import jax.numpy as jnp

from jaxgen import distributions
from jaxgen.core.optim import make_optimizer
from jaxgen.errors import ConfigError
from jaxgen.methods import register
from jaxgen.methods.base import Method
from jaxgen.models import flows, masked


@register('maf')
class MAF(Method):
  """Masked autoregressive flow; see the module docstring."""

  has_likelihood = True

  def __init__(self, config, info):
    super().__init__(config, info)
    self.image = info.kind == 'image'
    if self.image and not info.dequantized:
      raise ConfigError(
          f'MAF is a density for continuous data, but dataset {info.name!r} is discrete (levels={info.levels}). '
          'Set config.data.dequantize=True.')
    self.shape = tuple(info.shape)
    self.dim = math.prod(self.shape)
    self.num_layers = int(config.model.num_layers)
    self.scale_clip = float(config.method.get('scale_clip', 3.0))
    self.alpha = float(config.method.get('logit_alpha', 0.05))
    self.logit = self.image and bool(config.method.get('logit', True))
    if not 0.0 <= self.alpha < 0.5:
      raise ConfigError(f'config.method.logit_alpha must be in [0, 0.5), got {self.alpha}.')
    if self.num_layers < 1:
      raise ConfigError(f'config.model.num_layers must be >= 1, got {self.num_layers}.')
    # One MADE per layer, each with its own hidden connectivity (seed k); all in the natural order.
    self.nets = [masked.MADE(dim=self.dim, hidden=tuple(config.model.hidden), n_params=2, seed=k,
                             out_init_scale=float(config.model.get('out_init_scale', 1.0)))
                 for k in range(self.num_layers)]
    self.tx = make_optimizer(config.optim, config.train.steps)

  # ---- one layer ------------------------------------------------------------------------------

  def layer_params(self, params, k, x_BD):
    """(mu, alpha) [B, D] of layer k at x: both functions of x_{<i} at dimension i."""
    out = self.nets[k].apply({'params': params['maf'][f'layer_{k}']}, x_BD)
    mu, raw = out[..., 0], out[..., 1]
    return mu, self.scale_clip * jnp.tanh(raw / self.scale_clip)

  def layer_forward(self, params, k, x_BD):
    """Layer k in the density direction: (u [B, D], log|det du/dx| [B]) (no reversal)."""
    mu, alpha = self.layer_params(params, k, x_BD)
    return (x_BD - mu) * jnp.exp(-alpha), -alpha.sum(-1)

  def layer_inverse(self, params, k, u_BD):
    """x with layer_forward(x) = u: D passes of x <- mu(x) + u exp(alpha(x))."""
    def body(_, x_BD):
      mu, alpha = self.layer_params(params, k, x_BD)
      return mu + u_BD * jnp.exp(alpha)
    return jax.lax.fori_loop(0, self.dim, body, jnp.zeros_like(u_BD))

  # ---- the whole flow -------------------------------------------------------------------------

  def _preprocess(self, x_BD):
    """(y, log|dy/dx|): the logit map (images, method.logit), else the identity."""
    if not self.logit:
      return x_BD, jnp.zeros(x_BD.shape[0])
    return flows.LogitTransform(self.alpha)(x_BD)

  def log_prob(self, params, x):
    """Exact log p(x) per example (of the dequantized x in [0, 1]^D for images): [B]."""
    y, log_det = self._preprocess(x.reshape(x.shape[0], -1))
    for k in range(self.num_layers):
      y, ld = self.layer_forward(params, k, y)
      y = y[:, ::-1]
      log_det = log_det + ld
    return distributions.gaussian_log_prob(y, 0.0, 0.0).sum(-1) + log_det

  def init(self, rng, batch):
    keys = jax.random.split(rng, self.num_layers + 1)
    x = jnp.zeros((1, self.dim))
    params = {'maf': {f'layer_{k}': net.init(keys[k], x)['params'] for k, net in enumerate(self.nets)}}
    return self.initial_state(params, keys[-1])

  def train_step(self, state, batch):
    loss, grads = jax.value_and_grad(lambda p: -jnp.mean(self.log_prob(p, batch['x'])))(state.params)
    new_state = self.apply_gradients(state, grads)
    return new_state, {'loss': loss}

  def nll(self, params, batch, rng):
    """Exact -log p(x) per example in nats (images: of the dequantized x; the evaluator adds D log L)."""
    return -self.log_prob(params, batch['x'])

  def sample(self, params, rng, num, temperature=1.0):
    """u ~ N(0, temperature^2 I) through the inverse layers: [num, *shape] (images clipped to [0, 1])."""
    y = temperature * jax.random.normal(rng, (num, self.dim))
    for k in reversed(range(self.num_layers)):
      y = self.layer_inverse(params, k, y[:, ::-1])
    if self.logit:
      y = flows.LogitTransform(self.alpha).inverse(y)
    if self.image:
      y = jnp.clip(y, 0.0, 1.0)
    return y.reshape(num, *self.shape)
