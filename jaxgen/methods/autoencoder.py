"""Deterministic and denoising autoencoders (Rumelhart et al., 1986; Vincent et al., 2008, 2010).

An encoder f maps x to a code z = f(x) of `model.latent_dim` numbers and a decoder g maps
it back. Training minimises a reconstruction loss of g(f(x~)) against the clean x, where x~
is x itself (a plain autoencoder) or a corrupted copy of it (a denoising autoencoder, DAE):

  method.noise  'none'      x~ = x
                'gaussian'  x~ = x + noise_level * n, n ~ N(0, I): additive isotropic Gaussian
                            noise, not clipped (the `restoration` evaluator's 'denoise' task
                            corrupts test images the same way)
                'masking'   every component of x set to 0 independently with probability
                            noise_level (Vincent et al.'s masking noise)
  method.loss   'mse'       sum over the dimensions of (g(f(x~)) - x)^2; the decoder output is the
                            reconstruction (clipped to [0, 1] for images when reported)
                'bernoulli' the cross-entropy -sum x log p + (1 - x) log(1 - p), p = sigmoid(decoder
                            output), for data in [0, 1] (binary or grey levels, as Vincent et al.
                            train on MNIST); the reconstruction is p

The noise is drawn inside the step from `step_rng(state)`, so it is the same on any mesh and
after a resume. `corrupt(x, rng)` is that corruption, a pure function of (x, rng).

Evaluation (nothing is random): `reconstruct` is g(f(x)) of the clean input; `denoise` is
g(f(y)) of a noisy input y; `anomaly_score` is the base class's per-example squared
reconstruction error sum (g(f(x)) - x)^2, the `ood_auroc` evaluator's score. The
`restoration` evaluator's tasks 'reconstruct' and 'denoise' report test MSE and PSNR.

Sampling: an autoencoder defines no distribution over x, so `sample` decodes codes drawn from
the Gaussian N(mu, Sigma) fitted to the codes of the training data, a standard heuristic (not a
likelihood model): mu and Sigma come from bias-corrected running averages, with decay
`method.code_decay`, of the mean and second moment of the codes of each clean training batch,
encoded by the parameters being trained (as BatchNorm keeps running statistics). Before any
training step the codes are N(0, I).

State layout: params = {'autoencoder': {'encoder', 'decoder'}: trained by the optimizer;
'codes': {'weight', 'sum', 'outer'}: the running averages of 1, z and z z^T}, so that `sample`
needs nothing but params; ema_params (config.train.ema_decay > 0) average the autoencoder and
copy the code statistics (which describe the trained, not the averaged, encoder's codes).

Config keys:
  model.arch          'mlp' | 'conv'
  model.latent_dim    size of the code z
  model.hidden        Dense widths (encoder order; the decoder mirrors them)
  model.channels      conv widths, one stride-2 conv each (encoder order; 'conv' only)
  method.loss         'mse' | 'bernoulli'                      (default 'mse')
  method.noise        'none' | 'gaussian' | 'masking'          (default 'none')
  method.noise_level  Gaussian std, or masking probability     (default 0.0; > 0 with noise)
  method.code_decay   decay of the running code statistics     (default 0.99)
"""

import math

import jax
import jax.numpy as jnp
import optax

from jaxgen import distributions
from jaxgen.core.optim import make_optimizer
from jaxgen.core.state import TrainState, step_rng
from jaxgen.errors import ConfigError
from jaxgen.methods import register
from jaxgen.methods.base import Method, method_settings
from jaxgen.models.conv import ConvDecoder, ConvEncoder, check_encoder_arch
from jaxgen.models.mlp import MLP

LOSSES = ('mse', 'bernoulli')
NOISES = ('none', 'gaussian', 'masking')

# config.method keys and their defaults.
DEFAULTS = dict(loss='mse', noise='none', noise_level=0.0, code_decay=0.99)


@register('autoencoder')
class Autoencoder(Method):
  """Plain or denoising autoencoder; see the module docstring."""

  #: ema_params keys copied from params each step instead of averaged (see train.make_step_fn).
  ema_copy_keys = ('codes',)

  def __init__(self, config, info):
    super().__init__(config, info)
    self.hp = method_settings(config, DEFAULTS, 'autoencoder')
    self.shape = tuple(info.shape)
    self.dim = math.prod(self.shape)
    self.latent_dim = int(config.model.latent_dim)
    self._validate()
    hidden = tuple(config.model.get('hidden', ()))
    if config.model.arch == 'mlp':
      self.encoder = MLP(hidden, self.latent_dim)
      self.decoder = MLP(hidden[::-1], self.dim)
    else:
      channels = tuple(config.model.channels)
      self.encoder = ConvEncoder(channels, hidden, self.latent_dim)
      self.decoder = ConvDecoder(self.shape[:2], channels[::-1], hidden[::-1], self.shape[2])
    self.tx = make_optimizer(config.optim, config.train.steps)

  def _validate(self):
    """ConfigError for settings that do not fit each other or the data."""
    hp, m, info = self.hp, self.config.model, self.info
    if hp.loss not in LOSSES:
      raise ConfigError(f'config.method.loss={hp.loss!r} is not one of {", ".join(LOSSES)}.')
    if hp.noise not in NOISES:
      raise ConfigError(f'config.method.noise={hp.noise!r} is not one of {", ".join(NOISES)}.')
    level = float(hp.noise_level)
    if hp.noise == 'none' and level != 0.0:
      raise ConfigError(f"config.method.noise_level={level} has no effect with config.method.noise='none': set "
                        "config.method.noise='gaussian' or 'masking' for a denoising autoencoder, or noise_level=0.")
    if hp.noise == 'gaussian' and level <= 0.0:
      raise ConfigError(f'config.method.noise_level is the std of the Gaussian noise and must be > 0, got {level}.')
    if hp.noise == 'masking' and not 0.0 < level < 1.0:
      raise ConfigError(f'config.method.noise_level is the probability of masking a component and must be in '
                        f'(0, 1), got {level}.')
    if not 0.0 <= float(hp.code_decay) < 1.0:
      raise ConfigError(f'config.method.code_decay must be in [0, 1), got {hp.code_decay}.')
    if self.latent_dim < 1:
      raise ConfigError(f'config.model.latent_dim must be >= 1, got {self.latent_dim}.')
    check_encoder_arch(m, self.shape, info.name)
    if hp.loss == 'bernoulli' and not (info.kind == 'image' or info.levels == 2):
      raise ConfigError(
          f"config.method.loss='bernoulli' is a cross-entropy for data in [0, 1], but dataset {info.name!r} is "
          f'{info.kind} data with levels={info.levels}. Use config.method.loss=\'mse\'.')

  # ---- networks, corruption, loss --------------------------------------------------------------

  def encode(self, params, x):
    """The codes f(x): [B, L]. `params` is params['autoencoder']."""
    h = x.reshape(x.shape[0], -1) if self.config.model.arch == 'mlp' else x
    return self.encoder.apply({'params': params['encoder']}, h)

  def decode_raw(self, params, z_BL):
    """The decoder output g(z) before the output map (logits for 'bernoulli'): [B, *shape]."""
    return self.decoder.apply({'params': params['decoder']}, z_BL).reshape(z_BL.shape[0], *self.shape)

  def to_data(self, out):
    """The reconstruction a decoder output stands for: sigmoid(logits) for 'bernoulli'; for 'mse' the
    output itself, clipped to [0, 1] for images."""
    if self.hp.loss == 'bernoulli':
      return jax.nn.sigmoid(out)
    return jnp.clip(out, 0.0, 1.0) if self.info.kind == 'image' else out

  def corrupt(self, x, rng):
    """x~: x with the configured noise (module docstring); x itself for noise='none'."""
    level = float(self.hp.noise_level)
    if self.hp.noise == 'gaussian':
      return x + level * jax.random.normal(rng, x.shape, x.dtype)
    if self.hp.noise == 'masking':
      return x * jax.random.bernoulli(rng, 1.0 - level, x.shape).astype(x.dtype)
    return x

  def reconstruction_loss(self, out, x):
    """Per-example loss of decoder output `out` against the clean x: [B]."""
    if self.hp.loss == 'bernoulli':
      per_dim = -distributions.bernoulli_log_prob(out, x)
    else:
      per_dim = (out - x) ** 2
    return per_dim.reshape(per_dim.shape[0], -1).sum(-1)

  # ---- the Gaussian fitted to the training codes -----------------------------------------------

  def _update_codes(self, codes, z_BL):
    """The running averages after one batch of codes (z_BL without gradient)."""
    d = float(self.hp.code_decay)
    outer_LL = jnp.einsum('bi,bj->ij', z_BL, z_BL, precision=jax.lax.Precision.HIGHEST) / z_BL.shape[0]
    return {'weight': d * codes['weight'] + (1.0 - d),
            'sum': d * codes['sum'] + (1.0 - d) * z_BL.mean(0),
            'outer': d * codes['outer'] + (1.0 - d) * outer_LL}

  def code_distribution(self, params):
    """(mean [L], covariance [L, L]) of the Gaussian fitted to the training codes; (0, I) before training."""
    codes = params['codes']
    weight = codes['weight']
    trained = weight > 0
    safe = jnp.where(trained, weight, 1.0)
    mean_L = jnp.where(trained, codes['sum'] / safe, 0.0)
    cov_LL = codes['outer'] / safe - jnp.outer(mean_L, mean_L)
    cov_LL = jnp.where(trained, 0.5 * (cov_LL + cov_LL.T), jnp.eye(self.latent_dim))
    return mean_L, cov_LL

  # ---- the Method contract ---------------------------------------------------------------------

  def init(self, rng, batch):
    k_enc, k_dec, k_state = jax.random.split(rng, 3)
    x = batch['x'][:1]
    net = {'encoder': self.encoder.init(k_enc, x.reshape(1, -1) if self.config.model.arch == 'mlp' else x)['params'],
           'decoder': self.decoder.init(k_dec, jnp.zeros((1, self.latent_dim)))['params']}
    codes = {'weight': jnp.zeros((), jnp.float32), 'sum': jnp.zeros((self.latent_dim,), jnp.float32),
             'outer': jnp.zeros((self.latent_dim, self.latent_dim), jnp.float32)}
    params = {'autoencoder': net, 'codes': codes}
    ema = jax.tree.map(jnp.copy, params) if self.config.train.ema_decay > 0 else None
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.tx.init(net),
                      ema_params=ema, extra={}, rng=k_state)

  def train_step(self, state, batch):
    x = batch['x']
    noisy = self.hp.noise != 'none'
    x_in = self.corrupt(x, step_rng(state))

    def loss_fn(net):
      z_BL = self.encode(net, x_in)
      out = self.decode_raw(net, z_BL)
      return jnp.mean(self.reconstruction_loss(out, x)), (z_BL, out)

    (loss, (z_BL, out)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params['autoencoder'])
    clean_z_BL = self.encode(state.params['autoencoder'], x) if noisy else z_BL
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params['autoencoder'])
    params = {'autoencoder': optax.apply_updates(state.params['autoencoder'], updates),
              'codes': self._update_codes(state.params['codes'], jax.lax.stop_gradient(clean_z_BL))}
    metrics = {'loss': loss, 'mse': jnp.mean((self.to_data(out) - x) ** 2)}
    if noisy:
      metrics['input_mse'] = jnp.mean((x_in - x) ** 2)  # of the corrupted input: what denoising starts from
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  def reconstruct(self, params, batch, rng=None):
    """g(f(x)) of the clean batch['x'] in data space (module docstring): [B, *shape]; deterministic."""
    net = params['autoencoder']
    return self.to_data(self.decode_raw(net, self.encode(net, batch['x'])))

  def denoise(self, params, rng, y, noise_std, label=None):
    """g(f(y)) of noisy inputs y [B, *shape] (the `restoration` evaluator's 'denoise' task). The network
    was trained on config.method.noise at noise_level; `noise_std` of the test noise is not an input."""
    del rng, noise_std, label
    return self.reconstruct(params, {'x': y})

  def sample(self, params, rng, num):
    """g(z), z ~ N(mu, Sigma) fitted to the training codes (module docstring): [num, *shape] in data space."""
    mean_L, cov_LL = self.code_distribution(params)
    evals_L, evecs_LL = jnp.linalg.eigh(cov_LL)
    eps_NL = jax.random.normal(rng, (num, self.latent_dim))
    z_NL = mean_L[None] + (eps_NL * jnp.sqrt(jnp.maximum(evals_L, 0.0))[None]) @ evecs_LL.T
    return self.to_data(self.decode_raw(params['autoencoder'], z_NL))
