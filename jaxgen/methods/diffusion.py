"""Denoising diffusion (DDPM, Ho et al. 2020; improved DDPM, Nichol & Dhariwal 2021; DDIM, Song et
al. 2021; classifier-free guidance, Ho & Salimans 2022) on images, with a U-Net (jaxgen/models/unet.py).

The data x in [0, 1] on `levels` values is modelled as x_0 = 2x - 1 in [-1, 1]; the forward
process, its posteriors, the bound and the samplers are jaxgen/methods/diffusion_process.py.

Training (`train_step`): t ~ U{0..T-1} (or importance-sampled), x_t = q_sample(x_0, t, eps), and
  loss='simple'   mean squared error of the prediction (eps, x0 or v) -- the paper's L_simple
  loss='vlb'      T * L_t / D, an unbiased estimate of the bound per dimension; with
                  method.importance_sampling, t ~ p_t proportional to sqrt(E[L_t^2]) (an EMA per t
                  in TrainState.extra, uniform until every t has been seen) and the term is
                  weighted by 1 / (T p_t)
  loss='hybrid'   L_simple + hybrid_weight * the bound with the mean's gradient stopped, which
                  trains the learned variances only (improved DDPM, lambda = 0.001)
`method.random_flip` flips images left-right with probability 1/2 inside the step (a pure
function of the step's rng, so resumes are exact).

Likelihood (`nll`): the discrete-decoder bound of the DDPM paper, in nats of the discrete data:
  prior_kl + L_0 (decoder) + sum_{t=1}^{T-1} L_t.
method.nll_timesteps = 0 evaluates every L_t (T network passes per example); K > 0 evaluates
L_0 exactly and estimates the sum over t >= 1 without bias from K stratified timesteps (one
uniform draw in each of K equal strata of 1..T-1, weighted by the stratum's size).

Sampling (`sample`): method.sampler 'ddpm' (ancestral, T steps) or 'ddim' (method.sample_steps
strided steps, method.ddim_eta), one lax.scan, from the EMA parameters when configured.
Class-conditional when model.num_classes > 0; the label is dropped (replaced by the null class,
index num_classes) with probability method.label_dropout during training, and sampling mixes
  eps = eps(x, null) + s * (eps(x, y) - eps(x, null)),   s = method.guidance_scale
(s = 0: the unconditional model; s = 1: the conditional one; s > 1: guided).

Restoration (jaxgen/evals/restoration.py uses these):
  inpaint(params, rng, x, mask)         replacement conditioning (RePaint with
                                        method.repaint_resamples > 1); known pixels kept exactly
  denoise(params, rng, y, noise_std)    SDEdit: y = x + noise_std * n (in [0, 1] units) enters the
                                        reverse process at the matching t
  super_resolve(params, rng, low)       models trained with method.superres_factor = f see the
                                        f-times average-pooled image, upsampled, as extra input
                                        channels and generate the full-resolution image
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core.optim import make_optimizer
from jaxgen.core.state import step_rng
from jaxgen.errors import ConfigError
from jaxgen.methods import register
from jaxgen.methods import diffusion_process as dp
from jaxgen.methods.base import Method, require_discrete_images
from jaxgen.methods.conditioning import ClassConditional
from jaxgen.models.unet import UNet, downsample, upsample

LOSSES = ('simple', 'vlb', 'hybrid')
SAMPLERS = ('ddpm', 'ddim')
_IS_DECAY = 0.99  # EMA of L_t^2 per timestep, for importance-sampled timesteps


@register('ddpm')
class DDPM(ClassConditional, Method):
  """Gaussian diffusion with a U-Net; see the module docstring."""

  has_likelihood = True
  family_name = 'diffusion model'

  def __init__(self, config, info):
    super().__init__(config, info)
    require_discrete_images(info, 'DDPM')
    self._init_conditioning()
    m, c = config.method, config.model
    self.shape = tuple(info.shape)
    self.levels = int(info.levels)
    self.loss = m.get('loss', 'simple')
    if self.loss not in LOSSES:
      raise ConfigError(f'config.method.loss={self.loss!r} is not one of {LOSSES}.')
    variance = m.get('variance', 'learned' if self.loss == 'hybrid' else 'large')
    if self.loss == 'hybrid' and variance != 'learned':
      raise ConfigError("config.method.loss='hybrid' trains learned variances: set config.method.variance='learned'.")
    betas = dp.beta_schedule(m.get('beta_schedule', 'linear'), int(m.get('timesteps', 1000)),
                             float(m.get('beta_start', 1e-4)), float(m.get('beta_end', 0.02)))
    self.diffusion = dp.GaussianDiffusion(betas, m.get('prediction', 'eps'), variance, self.levels,
                                          bool(m.get('clip_x0', True)))
    self.T = self.diffusion.timesteps
    self.hybrid_weight = float(m.get('hybrid_weight', 0.001))
    self.importance_sampling = bool(m.get('importance_sampling', False))
    if self.importance_sampling and self.loss != 'vlb':
      raise ConfigError("config.method.importance_sampling applies to loss='vlb' only.")
    self.label_dropout = float(m.get('label_dropout', 0.0))
    if not 0.0 <= self.label_dropout < 1.0:
      raise ConfigError(f'config.method.label_dropout must be in [0, 1), got {self.label_dropout}.')
    if self.label_dropout > 0 and not self.conditional:
      raise ConfigError('config.method.label_dropout (classifier-free guidance) needs a class-conditional model: '
                        'set config.model.num_classes.')
    self.guidance_scale = float(m.get('guidance_scale', 1.0))
    self.random_flip = bool(m.get('random_flip', False))
    self.sampler = m.get('sampler', 'ddpm')
    if self.sampler not in SAMPLERS:
      raise ConfigError(f'config.method.sampler={self.sampler!r} is not one of {SAMPLERS}.')
    self.sample_steps = int(m.get('sample_steps', self.T))
    dp.ddim_timesteps(self.T, self.sample_steps)  # validates
    self.ddim_eta = float(m.get('ddim_eta', 0.0))
    self.repaint_resamples = int(m.get('repaint_resamples', 1))
    self.nll_timesteps = int(m.get('nll_timesteps', 0))
    if not 0 <= self.nll_timesteps <= self.T - 1:
      raise ConfigError(f'config.method.nll_timesteps must be in [0, {self.T - 1}] (0 = all), '
                        f'got {self.nll_timesteps}.')
    self.superres_factor = int(m.get('superres_factor', 0))
    height, width, channels = self.shape
    if self.superres_factor and (self.superres_factor < 2 or height % self.superres_factor
                                 or width % self.superres_factor):
      raise ConfigError(f'config.method.superres_factor={self.superres_factor} must be >= 2 and divide the '
                        f'image size {height}x{width}.')
    if self.superres_factor and 'samples' in config.evals:
      raise ConfigError('a super-resolution model (config.method.superres_factor) generates from low-resolution '
                        "inputs: use config.evals.restoration (task 'superres') instead of config.evals.samples.")
    levels_down = 2 ** (len(c.ch_mult) - 1)
    if height % levels_down or width % levels_down:
      raise ConfigError(f'the U-Net halves the resolution {len(c.ch_mult) - 1} times (config.model.ch_mult='
                        f'{tuple(c.ch_mult)}), so H and W must be divisible by {levels_down}; dataset '
                        f'{info.name!r} has shape {self.shape}.')
    out_channels = channels * (2 if variance == 'learned' else 1)
    self.net = UNet(ch=int(c.ch), ch_mult=tuple(c.ch_mult), num_res_blocks=int(c.num_res_blocks),
                    attn_resolutions=tuple(c.attn_resolutions), dropout=float(c.get('dropout', 0.0)),
                    out_channels=out_channels, num_classes=self.num_classes,
                    num_groups=int(c.get('num_groups', 32)),
                    dtype=jnp.bfloat16 if c.get('compute_dtype', 'float32') == 'bfloat16' else jnp.float32)
    self.tx = make_optimizer(config.optim, config.train.steps)

  # ---- the network ------------------------------------------------------------------------------

  def _cond(self, x0):
    """The super-resolution model's extra input: x0 average-pooled and upsampled; None otherwise."""
    if not self.superres_factor:
      return None
    return upsample(downsample(x0, self.superres_factor), self.superres_factor)

  def apply(self, params, xt, t, label=None, cond=None, train=False, rng=None):
    """The U-Net's output at (x_t, t): [B, H, W, C or 2C]. label: int32 [B] with num_classes = the
    null class, or None (the null class for a conditional model)."""
    rngs = {'dropout': rng} if train else None
    out = self.net.apply({'params': params['unet']}, xt, t, label, cond, train, rngs=rngs)
    return out.astype(jnp.float32)

  def _guided_fn(self, params, label, cond, scale):
    """model_fn(x_t, t) for the samplers: conditional on `label`, guided with `scale` when the
    model is conditional and scale != 1 (one network pass on the conditional and null labels)."""
    if not self.conditional or scale == 1.0:
      return lambda x, t: self.apply(params, x, t, label, cond)
    null = jnp.full_like(label, self.num_classes)

    def model_fn(x, t):
      both = self.apply(params, jnp.concatenate([x, x]), jnp.concatenate([t, t]), jnp.concatenate([label, null]),
                        None if cond is None else jnp.concatenate([cond, cond]))
      out_c, out_u = jnp.split(both, 2)
      pred_c, var_c = self.diffusion.split_output(out_c)
      pred_u, _ = self.diffusion.split_output(out_u)
      pred = pred_u + scale * (pred_c - pred_u)
      return pred if var_c is None else jnp.concatenate([pred, var_c], axis=-1)
    return model_fn

  # ---- training ---------------------------------------------------------------------------------

  def init(self, rng, batch):
    k_net, k_state = jax.random.split(rng)
    x0 = 2.0 * batch['x'][:1] - 1.0
    label = jnp.zeros((1,), jnp.int32) if self.conditional else None
    params = {'unet': self.net.init(k_net, x0, jnp.zeros((1,), jnp.int32), label, self._cond(x0), False)['params']}
    state = self.initial_state(params, k_state)
    if self.importance_sampling:
      state = state.replace(extra={'loss_sq': jnp.zeros((self.T,), jnp.float32),
                                   'seen': jnp.zeros((self.T,), jnp.int32)})
    return state

  def _timesteps(self, state, key, batch_size):
    """(t [B], weight [B]): uniform, or importance-sampled from the EMA of L_t^2 once every t is seen."""
    if not self.importance_sampling:
      return jax.random.randint(key, (batch_size,), 0, self.T), jnp.ones((batch_size,))
    ready = jnp.all(state.extra['seen'] > 0)
    probs = jnp.sqrt(state.extra['loss_sq']) + 1e-10
    probs = jnp.where(ready, probs / probs.sum(), jnp.full((self.T,), 1.0 / self.T))
    t = jax.random.choice(key, self.T, (batch_size,), p=probs)
    return t, 1.0 / (self.T * probs[t])

  def _update_importance(self, extra, t, terms):
    """EMA of L_t^2 per timestep from this batch's terms (duplicates of a t average)."""
    total = jnp.zeros((self.T,)).at[t].add(jax.lax.stop_gradient(terms) ** 2)
    count = jnp.zeros((self.T,)).at[t].add(1.0)
    batch_mean = total / jnp.maximum(count, 1.0)
    fresh = extra['seen'] == 0
    decayed = jnp.where(fresh, batch_mean, _IS_DECAY * extra['loss_sq'] + (1 - _IS_DECAY) * batch_mean)
    return {'loss_sq': jnp.where(count > 0, decayed, extra['loss_sq']),
            'seen': extra['seen'] + (count > 0).astype(jnp.int32)}

  def train_step(self, state, batch):
    key = step_rng(state)
    k_flip, k_t, k_noise, k_label, k_drop = jax.random.split(key, 5)
    x0 = 2.0 * batch['x'] - 1.0
    if self.random_flip:
      flip = jax.random.bernoulli(k_flip, 0.5, (x0.shape[0], 1, 1, 1))
      x0 = jnp.where(flip, x0[:, :, ::-1], x0)
    label = self._batch_label(batch)
    if label is not None and self.label_dropout > 0:
      drop = jax.random.bernoulli(k_label, self.label_dropout, label.shape)
      label = jnp.where(drop, self.num_classes, label)
    t, weight = self._timesteps(state, k_t, x0.shape[0])
    eps = jax.random.normal(k_noise, x0.shape)
    xt = self.diffusion.q_sample(x0, t, eps)
    cond = self._cond(x0)
    dims = math.prod(self.shape)

    def loss_fn(params):
      out = self.apply(params, xt, t, label, cond, train=True, rng=k_drop)
      pred, var_out = self.diffusion.split_output(out)
      mse = jnp.mean((pred - self.diffusion.target(x0, t, eps)) ** 2, axis=(1, 2, 3))
      metrics = {'mse': jnp.mean(mse)}
      if self.loss == 'simple':
        return jnp.mean(mse), (metrics, None)
      if self.loss == 'hybrid':
        frozen = jnp.concatenate([jax.lax.stop_gradient(pred), var_out], axis=-1)
        terms = self.diffusion.vlb_term(frozen, x0, xt, t)
        vlb = jnp.mean(terms) * self.T / dims
        metrics['vlb_per_dim'] = vlb
        return jnp.mean(mse) + self.hybrid_weight * vlb, (metrics, terms)
      terms = self.diffusion.vlb_term(out, x0, xt, t)
      vlb = jnp.mean(weight * terms) * self.T / dims
      metrics['vlb_per_dim'] = vlb
      return vlb, (metrics, terms)

    (loss, (metrics, terms)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state = self.apply_gradients(state, grads)
    if self.importance_sampling:
      new_state = new_state.replace(extra=self._update_importance(state.extra, t, terms))
    return new_state, {'loss': loss, **metrics}

  # ---- likelihood -------------------------------------------------------------------------------

  def _term(self, params, x0, label, cond, t, key):
    xt = self.diffusion.q_sample(x0, t, jax.random.normal(key, x0.shape))
    return self.diffusion.vlb_term(self.apply(params, xt, t, label, cond), x0, xt, t)

  def nll(self, params, batch, rng):
    """The bound on -log p(x) in nats per example (see the module docstring); the null label
    (unconditional) for a guided model's p(x) is not used: a conditional model reports -log p(x|y)."""
    x0 = 2.0 * batch['x'] - 1.0
    label, cond, b = self._batch_label(batch), self._cond(x0), x0.shape[0]
    total = self.diffusion.prior_kl(x0)
    total = total + self._term(params, x0, label, cond, jnp.zeros((b,), jnp.int32), jax.random.fold_in(rng, 0))
    if self.nll_timesteps == 0:
      ts, weights = jnp.arange(1, self.T), jnp.ones((self.T - 1,))
      offsets = jnp.zeros((self.T - 1, b), jnp.int32)
    else:
      k = self.nll_timesteps
      edges = np.floor(np.linspace(1, self.T, k + 1)).astype(np.int32)  # strata [edges_i, edges_i+1)
      sizes = jnp.asarray(edges[1:] - edges[:-1], jnp.float32)
      u = jax.random.uniform(jax.random.fold_in(rng, 1), (k, b))
      offsets = jnp.floor(u * sizes[:, None]).astype(jnp.int32)
      ts, weights = jnp.asarray(edges[:-1]), sizes

    def body(carry, inputs):
      t0, offset, weight, i = inputs
      t = t0 + offset
      return carry + weight * self._term(params, x0, label, cond, t, jax.random.fold_in(rng, 2 + i)), None

    total, _ = jax.lax.scan(body, total, (ts, offsets, weights, jnp.arange(len(ts))))
    return total

  # ---- sampling and restoration -----------------------------------------------------------------

  def _run_sampler(self, model_fn, rng, shape, known=None, mask=None, start_step=None, x_start=None):
    if self.sampler == 'ddim':
      return dp.ddim_sample(self.diffusion, model_fn, rng, shape, self.sample_steps, self.ddim_eta, known, mask,
                            start_step, x_start)
    return dp.ddpm_sample(self.diffusion, model_fn, rng, shape, known, mask, start_step, x_start,
                          self.repaint_resamples)

  def _to_data(self, x0):
    """[-1, 1] -> the data grid k / (levels - 1) in [0, 1]."""
    grid = jnp.round((jnp.clip(x0, -1.0, 1.0) + 1.0) / 2.0 * (self.levels - 1))
    return grid / (self.levels - 1)

  def sample(self, params, rng, num, label=None, guidance_scale=None, low_res=None):
    """Samples [num, H, W, C] on the data grid. label: int32 [num] (conditional models; default the
    cycle of classes); guidance_scale: default method.guidance_scale; low_res: [num, H/f, W/f, C] in
    [0, 1], required by a super-resolution model."""
    label = self.sample_labels(num, label)
    scale = self.guidance_scale if guidance_scale is None else float(guidance_scale)
    cond = None
    if self.superres_factor:
      if low_res is None:
        raise ValueError('this super-resolution model (config.method.superres_factor) needs low_res images.')
      cond = upsample(2.0 * low_res - 1.0, self.superres_factor)
    x0 = self._run_sampler(self._guided_fn(params, label, cond, scale), rng, (num,) + self.shape)
    return self._to_data(x0)

  def inpaint(self, params, rng, x, mask, label=None):
    """x [B, H, W, C] in [0, 1] with mask (1 = known): the unknown region generated, the known
    region returned exactly as given."""
    known = 2.0 * x - 1.0
    label = self.sample_labels(x.shape[0], label)
    cond = self._cond(known)
    out = self._run_sampler(self._guided_fn(params, label, cond, self.guidance_scale), rng, x.shape,
                            known=known, mask=mask)
    return jnp.where(mask > 0, x, self._to_data(out))

  def denoise(self, params, rng, y, noise_std, label=None):
    """SDEdit: y = x + noise_std * n in [0, 1] units; the reverse process from the timestep whose
    noise level matches (noise_std in [-1, 1] units is 2 * noise_std)."""
    start = dp.sdedit_start(self.diffusion, 2.0 * noise_std)
    x_start = self.diffusion.sqrt_abar[start] * (2.0 * y - 1.0)
    label = self.sample_labels(y.shape[0], label)
    out = self._run_sampler(self._guided_fn(params, label, self._cond(2.0 * y - 1.0), self.guidance_scale), rng,
                            y.shape, start_step=start, x_start=x_start)
    return self._to_data(out)

  def super_resolve(self, params, rng, low_res, label=None):
    """[B, H/f, W/f, C] in [0, 1] -> [B, H, W, C] samples of the super-resolution model."""
    return self.sample(params, rng, low_res.shape[0], label=label, low_res=low_res)
