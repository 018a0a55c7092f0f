"""The Gaussian diffusion process of DDPM (Ho et al., 2020) and its samplers, as pure functions.

Timesteps are 0-based, t = 0 .. T-1 (the paper's t = 1 .. T). With x_0 the data in [-1, 1]:

  q(x_t | x_0)            = N(sqrt(abar_t) x_0, (1 - abar_t) I),  abar_t = prod_{s<=t} (1 - beta_s)
  q(x_{t-1} | x_t, x_0)   = N(c0_t x_0 + ct_t x_t, betatilde_t I)   (`posterior`)
  p(x_{t-1} | x_t)        = N(mu(x_t, t), sigma_t^2 I)              (`p_mean_variance`)

The network predicts eps, x_0 or v = sqrt(abar) eps - sqrt(1 - abar) x_0 (`prediction`);
its variance is fixed ('large': beta_t, 'small': betatilde_t) or learned as an
interpolation between the two in log space (Nichol & Dhariwal, 2021, output in [-1, 1]).

The variational bound in nats, summed over dimensions (`vlb_term`):
  t = 0:      -log p(x_0 | x_1), the discretized Gaussian decoder over `levels` bins on [-1, 1]
  t > 0:      KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))
  prior:      KL(q(x_{T} | x_0) || N(0, I))  (`prior_kl`)

Samplers take `model_fn(x_t, t_B) -> network output` and run as one `jax.lax.scan`:
`ddpm_sample` (ancestral, every step) and `ddim_sample` (Song et al., 2021; any strided
subsequence of timesteps, eta = 0 deterministic, eta = 1 DDPM-like). Both accept a
`known` image and `mask` (1 = known) for inpainting by replacement: after each step the
known region is set to a fresh draw of q(x_{t-1} | x_0) (and to x_0 itself at the end),
optionally with RePaint's resampling (Lugmayr et al., 2022). `start_step` begins the
reverse process part-way, at a noisy input, for SDEdit-style denoising (Meng et al., 2022).
"""

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import distributions
from jaxgen.errors import ConfigError

PREDICTIONS = ('eps', 'x0', 'v')
VARIANCES = ('large', 'small', 'learned')


def beta_schedule(name: str, timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02,
                  cosine_s: float = 0.008) -> np.ndarray:
  """[T] float64 betas: 'linear' from beta_start to beta_end (DDPM), or 'cosine' (Nichol & Dhariwal:
  abar(t) = f(t) / f(0), f(t) = cos((t / T + s) / (1 + s) * pi / 2)^2, betas clipped at 0.999)."""
  if timesteps < 1:
    raise ConfigError(f'config.method.timesteps must be >= 1, got {timesteps}.')
  if name == 'linear':
    return np.linspace(beta_start, beta_end, timesteps, dtype=np.float64)
  if name == 'cosine':
    steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    f = np.cos((steps + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2
    abar = f / f[0]
    return np.minimum(1 - abar[1:] / abar[:-1], 0.999)
  raise ConfigError(f"config.method.beta_schedule={name!r} is not 'linear' or 'cosine'.")


def _std_normal_cdf(x):
  return 0.5 * (1.0 + jax.lax.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x, mean, log_scale, levels: int = 256):
  """Elementwise log P(x) of N(mean, exp(log_scale)^2) integrated over x's bin, for x on the grid of
  `levels` values in [-1, 1] (bin width 2 / (levels - 1)); the edge bins extend to -inf and +inf,
  so the probabilities of the `levels` values sum to 1."""
  half = 1.0 / (levels - 1)
  inv_std = jnp.exp(-log_scale)
  cdf_plus = _std_normal_cdf(inv_std * (x - mean + half))
  cdf_minus = _std_normal_cdf(inv_std * (x - mean - half))
  log_cdf_plus = jnp.log(jnp.maximum(cdf_plus, 1e-12))
  log_one_minus_cdf_min = jnp.log(jnp.maximum(1.0 - cdf_minus, 1e-12))
  log_delta = jnp.log(jnp.maximum(cdf_plus - cdf_minus, 1e-12))
  return jnp.where(x < -1.0 + 1e-3, log_cdf_plus, jnp.where(x > 1.0 - 1e-3, log_one_minus_cdf_min, log_delta))


def _gather(a, t, x):
  """a[t] [B] broadcast against x [B, ...]."""
  return a[t].reshape((-1,) + (1,) * (x.ndim - 1))


class GaussianDiffusion:
  """The schedule's constants (float64 numpy, cast to float32 at use) and the process's closed forms."""

  def __init__(self, betas: np.ndarray, prediction: str = 'eps', variance: str = 'large', levels: int = 256,
               clip_x0: bool = True):
    if prediction not in PREDICTIONS:
      raise ConfigError(f'config.method.prediction={prediction!r} is not one of {PREDICTIONS}.')
    if variance not in VARIANCES:
      raise ConfigError(f'config.method.variance={variance!r} is not one of {VARIANCES}.')
    betas = np.asarray(betas, np.float64)
    if np.any(betas <= 0) or np.any(betas >= 1):
      raise ConfigError('diffusion betas must lie in (0, 1).')
    self.prediction, self.variance, self.levels, self.clip_x0 = prediction, variance, levels, clip_x0
    self.timesteps = len(betas)
    alphas = 1.0 - betas
    abar = np.cumprod(alphas)
    abar_prev = np.append(1.0, abar[:-1])
    post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
    # betatilde_0 = 0: its log is clipped to betatilde_1, as in the DDPM code.
    post_log_var = np.log(np.append(post_var[1] if len(betas) > 1 else betas[0], post_var[1:]))
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    self.np = dict(betas=betas, abar=abar, abar_prev=abar_prev, post_var=post_var)
    self.betas, self.abar, self.abar_prev = f32(betas), f32(abar), f32(abar_prev)
    self.sqrt_abar, self.sqrt_1m_abar = f32(np.sqrt(abar)), f32(np.sqrt(1.0 - abar))
    self.one_minus_abar = f32(1.0 - abar)   # from float64: 1 - abar_0 = 1e-4 loses digits in float32
    self.post_c0 = f32(betas * np.sqrt(abar_prev) / (1.0 - abar))
    self.post_ct = f32((1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar))
    self.post_var, self.post_log_var = f32(post_var), f32(post_log_var)
    # DDPM's 'fixedlarge': beta_t, with beta_0 replaced by betatilde_1 (a better decoder variance).
    self.large_log_var = f32(np.log(np.append(post_var[1] if len(betas) > 1 else betas[0], betas[1:])))
    self.log_betas = f32(np.log(betas))

  # ---- the forward process ---------------------------------------------------------------------

  def q_mean_variance(self, x0, t):
    """Mean and variance of q(x_t | x_0)."""
    return _gather(self.sqrt_abar, t, x0) * x0, _gather(self.one_minus_abar, t, x0)

  def q_sample(self, x0, t, noise):
    return _gather(self.sqrt_abar, t, x0) * x0 + _gather(self.sqrt_1m_abar, t, x0) * noise

  def posterior(self, x0, xt, t):
    """(mean, variance, clipped log variance) of q(x_{t-1} | x_t, x_0)."""
    mean = _gather(self.post_c0, t, xt) * x0 + _gather(self.post_ct, t, xt) * xt
    return mean, _gather(self.post_var, t, xt), _gather(self.post_log_var, t, xt)

  def prior_kl(self, x0):
    """KL(q(x_T | x_0) || N(0, I)) summed over dimensions: [B]."""
    t = jnp.full((x0.shape[0],), self.timesteps - 1, jnp.int32)
    mean, var = self.q_mean_variance(x0, t)
    kl = distributions.gaussian_kl_standard(mean, jnp.log(var))
    return kl.reshape(kl.shape[0], -1).sum(-1)

  # ---- conversions between eps, x0 and v ------------------------------------------------------

  def x0_from_eps(self, xt, t, eps):
    return (xt - _gather(self.sqrt_1m_abar, t, xt) * eps) / _gather(self.sqrt_abar, t, xt)

  def eps_from_x0(self, xt, t, x0):
    return (xt - _gather(self.sqrt_abar, t, xt) * x0) / _gather(self.sqrt_1m_abar, t, xt)

  def v_target(self, x0, t, eps):
    return _gather(self.sqrt_abar, t, x0) * eps - _gather(self.sqrt_1m_abar, t, x0) * x0

  def target(self, x0, t, eps):
    """What the network regresses on under `prediction`."""
    if self.prediction == 'eps':
      return eps
    return x0 if self.prediction == 'x0' else self.v_target(x0, t, eps)

  def split_output(self, out):
    """(prediction, variance output or None): learned variances double the channels."""
    if self.variance == 'learned':
      return jnp.split(out, 2, axis=-1)
    return out, None

  def predict_eps_x0(self, pred, xt, t):
    """(eps, x0) implied by the network's prediction; x0 clipped to [-1, 1] when `clip_x0`
    (and eps recomputed from the clipped x0, so the two stay consistent)."""
    if self.prediction == 'eps':
      eps, x0 = pred, self.x0_from_eps(xt, t, pred)
    elif self.prediction == 'x0':
      x0 = pred
      eps = self.eps_from_x0(xt, t, x0)
    else:
      sa, s1 = _gather(self.sqrt_abar, t, xt), _gather(self.sqrt_1m_abar, t, xt)
      x0, eps = sa * xt - s1 * pred, s1 * xt + sa * pred
    if self.clip_x0:
      x0 = jnp.clip(x0, -1.0, 1.0)
      eps = self.eps_from_x0(xt, t, x0)
    return eps, x0

  def model_log_variance(self, var_out, t, x):
    if self.variance == 'large':
      return jnp.broadcast_to(_gather(self.large_log_var, t, x), x.shape)
    if self.variance == 'small':
      return jnp.broadcast_to(_gather(self.post_log_var, t, x), x.shape)
    frac = (var_out + 1.0) / 2.0  # the network's output in [-1, 1] -> [0, 1]
    return frac * _gather(self.log_betas, t, x) + (1.0 - frac) * _gather(self.post_log_var, t, x)

  def p_mean_variance(self, out, xt, t):
    """(mean, log variance, eps, x0) of p(x_{t-1} | x_t) from the network output `out`."""
    pred, var_out = self.split_output(out)
    eps, x0 = self.predict_eps_x0(pred, xt, t)
    mean, _, _ = self.posterior(x0, xt, t)
    return mean, self.model_log_variance(var_out, t, xt), eps, x0

  # ---- the variational bound ------------------------------------------------------------------

  def vlb_term(self, out, x0, xt, t):
    """L_t in nats per example [B]: KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t)) for t > 0, and the
    discretized decoder's -log p(x_0 | x_1) for t = 0."""
    mean, log_var, _, _ = self.p_mean_variance(out, xt, t)
    true_mean, _, true_log_var = self.posterior(x0, xt, t)
    kl = distributions.gaussian_kl(true_mean, true_log_var, mean, log_var)
    decoder = -discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_var, self.levels)
    per_dim = jnp.where(_gather(jnp.arange(self.timesteps), t, x0) == 0, decoder, kl)
    return per_dim.reshape(per_dim.shape[0], -1).sum(-1)


# ---- samplers ----------------------------------------------------------------------------------


def ddim_timesteps(timesteps: int, steps: int) -> np.ndarray:
  """The strided subsequence of `steps` timesteps in 0..T-1, descending, always ending at t = 0
  (steps == T gives every timestep)."""
  if not 1 <= steps <= timesteps:
    raise ConfigError(f'sampling steps must be in [1, {timesteps}], got {steps}.')
  seq = np.floor(np.arange(steps) * (timesteps / steps)).astype(np.int32)
  return seq[::-1].copy()


def _replace_known(diffusion, x_prev, t_prev, known, mask, rng):
  """Inpainting by replacement: the known region of x_{t-1} drawn from q(x_{t-1} | x_0), and
  x_0 itself once t_prev < 0."""
  if known is None:
    return x_prev
  t_clamped = jnp.maximum(t_prev, 0)
  noisy = diffusion.q_sample(known, jnp.full((known.shape[0],), t_clamped, jnp.int32),
                             jax.random.normal(rng, known.shape))
  known_t = jnp.where(t_prev < 0, known, noisy)
  return mask * known_t + (1.0 - mask) * x_prev


def ddpm_sample(diffusion: GaussianDiffusion, model_fn: Callable, rng, shape, known=None, mask=None,
                start_step: Optional[int] = None, x_start=None, resamples: int = 1):
  """Ancestral sampling from t = start_step (default T - 1) down to 0, one lax.scan.

  x_start: the state at start_step (default N(0, I)). known/mask: inpainting by replacement;
  resamples > 1 repeats each step with a re-noised x_t (RePaint's resampling, jump length 1).
  """
  start = diffusion.timesteps - 1 if start_step is None else int(start_step)
  rng, init_rng = jax.random.split(rng)
  x = jax.random.normal(init_rng, shape) if x_start is None else x_start

  def one_step(x, t, key):
    step_key, known_key = jax.random.split(key)
    t_B = jnp.full((shape[0],), t, jnp.int32)
    mean, log_var, _, _ = diffusion.p_mean_variance(model_fn(x, t_B), x, t_B)
    noise = jax.random.normal(step_key, shape)
    x_prev = mean + jnp.where(t > 0, jnp.exp(0.5 * log_var), 0.0) * noise
    return _replace_known(diffusion, x_prev, t - 1, known, mask, known_key)

  def body(x, inputs):
    t, key = inputs
    keys = jax.random.split(key, resamples)
    for r in range(resamples):
      x_prev = one_step(x, t, keys[r])
      if r < resamples - 1:  # back to x_t: q(x_t | x_{t-1})
        beta = diffusion.betas[t]
        x = jnp.sqrt(1.0 - beta) * x_prev + jnp.sqrt(beta) * jax.random.normal(jax.random.fold_in(keys[r], 1), shape)
    return x_prev, None

  ts = jnp.arange(start, -1, -1, dtype=jnp.int32)
  x, _ = jax.lax.scan(body, x, (ts, jax.random.split(rng, len(ts))))
  return x


def ddim_sample(diffusion: GaussianDiffusion, model_fn: Callable, rng, shape, steps: int, eta: float = 0.0,
                known=None, mask=None, start_step: Optional[int] = None, x_start=None):
  """DDIM over `steps` strided timesteps (ddim_timesteps) from start_step (default T - 1), one lax.scan:

    x_{prev} = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z,
    sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev),

  with abar_prev = 1 after the last step. eta = 0 is deterministic given the initial noise.
  """
  seq = ddim_timesteps(diffusion.timesteps, steps)
  if start_step is not None:
    seq = seq[seq <= int(start_step)]
    seq = np.concatenate([[int(start_step)], seq]) if seq[0] != int(start_step) else seq
  prev = np.append(seq[1:], -1).astype(np.int32)
  rng, init_rng = jax.random.split(rng)
  x = jax.random.normal(init_rng, shape) if x_start is None else x_start
  abar_ext = jnp.concatenate([diffusion.abar, jnp.ones((1,), jnp.float32)])  # index -1 -> abar = 1

  def body(x, inputs):
    t, t_prev, key = inputs
    step_key, known_key = jax.random.split(key)
    t_B = jnp.full((shape[0],), t, jnp.int32)
    pred, _ = diffusion.split_output(model_fn(x, t_B))
    eps, x0 = diffusion.predict_eps_x0(pred, x, t_B)
    a_t, a_prev = abar_ext[t], abar_ext[t_prev]
    sigma = eta * jnp.sqrt((1.0 - a_prev) / (1.0 - a_t)) * jnp.sqrt(1.0 - a_t / a_prev)
    x_prev = (jnp.sqrt(a_prev) * x0 + jnp.sqrt(jnp.maximum(1.0 - a_prev - sigma ** 2, 0.0)) * eps
              + sigma * jax.random.normal(step_key, shape))
    return _replace_known(diffusion, x_prev, t_prev, known, mask, known_key), None

  x, _ = jax.lax.scan(body, x, (jnp.asarray(seq), jnp.asarray(prev), jax.random.split(rng, len(seq))))
  return x


def sdedit_start(diffusion: GaussianDiffusion, noise_std: float) -> int:
  """The timestep whose x_t / sqrt(abar_t) = x_0 + sqrt((1 - abar_t) / abar_t) eps carries noise of
  std `noise_std` (in the [-1, 1] data scale): a noisy image y = x_0 + noise_std * n enters the
  reverse process as x_t = sqrt(abar_t) y."""
  ratio = np.sqrt((1.0 - diffusion.np['abar']) / diffusion.np['abar'])
  return int(np.argmin(np.abs(ratio - noise_std)))
