"""Elementwise log-likelihoods and KL terms used by the families.

Every function returns one value per element of its (broadcast) inputs and sums
nothing: callers choose which axes make up an example and reduce themselves.
Data live in [0, 1]; discrete data sit on the grid k / (levels - 1).
"""

import math

import jax
import jax.numpy as jnp

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def bernoulli_log_prob(logits, x):
  """log Bernoulli(x; sigmoid(logits)) = x log σ(l) + (1 - x) log σ(-l), stable for any logits."""
  return x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits)


def discretized_logistic_log_prob(mean, log_scale, x, levels: int):
  """log P(x) for a logistic(mean, exp(log_scale)) discretized onto `levels` grid points.

  x lies on the grid k / (levels - 1). Each grid point owns the bin of width
  1 / (levels - 1) centred on it; the first and last bins extend to -inf and +inf,
  so the probabilities of all `levels` values sum to one (PixelCNN++, Salimans et
  al. 2017). Interior bins use the exact identity
      σ(a) - σ(b) = σ(a) σ(-b) (1 - exp(b - a)),   a = (x - mean + h) / s, b = (x - mean - h) / s,
  evaluated in log space, so the result is finite and accurate for any mean and
  scale (no mid-point fallback needed when the bin mass underflows).
  """
  half_bin = 0.5 / (levels - 1)
  inv_scale = jnp.exp(-log_scale)
  upper = (x - mean + half_bin) * inv_scale
  lower = (x - mean - half_bin) * inv_scale
  log_cdf_upper = jax.nn.log_sigmoid(upper)        # log P(X <= x + h): the whole first bin
  log_sf_lower = jax.nn.log_sigmoid(-lower)        # log P(X > x - h): the whole last bin
  # log(1 - exp(-width / s)): expm1 keeps it accurate when width << s; when width >> s it is 0 up to float eps.
  log_bin = log_cdf_upper + log_sf_lower + jnp.log(-jnp.expm1(-2.0 * half_bin * inv_scale))
  return jnp.where(x < half_bin, log_cdf_upper, jnp.where(x > 1.0 - half_bin, log_sf_lower, log_bin))


def gaussian_log_prob(x, mean, log_std):
  """log N(x; mean, exp(log_std)^2)."""
  z = (x - mean) * jnp.exp(-log_std)
  return -0.5 * jnp.square(z) - log_std - _HALF_LOG_2PI


def gaussian_kl(mean1, log_var1, mean2, log_var2):
  """KL(N(mean1, exp(log_var1)) || N(mean2, exp(log_var2))) per dimension."""
  return 0.5 * (log_var2 - log_var1 - 1.0 + jnp.exp(log_var1 - log_var2)
                + jnp.square(mean1 - mean2) * jnp.exp(-log_var2))


def gaussian_kl_standard(mean, log_var):
  """KL(N(mean, exp(log_var)) || N(0, 1)) per dimension; sum over dims for a diagonal Gaussian."""
  return 0.5 * (jnp.exp(log_var) + jnp.square(mean) - 1.0 - log_var)


# ---- PixelCNN++ discretized mixture of logistics (Salimans et al. 2017, Sec. 2.1-2.2) ----------------


def mix_logistic_num_params(channels: int, num_mix: int) -> int:
  """Size of the last axis of `params` for `discretized_mix_logistic_*`: M * (1 + 2C + C(C-1)/2).

  C = 3: 10 M (the paper's RGB model); C = 1: 3 M.
  """
  return num_mix * (1 + 2 * channels + channels * (channels - 1) // 2)


def _split_mix_params(params, channels: int, num_mix: int):
  """(logit_probs [..., M], means [..., C, M], log_scales [..., C, M], coeffs [..., P, M]) in [-1, 1] units."""
  c, m = channels, num_mix
  pairs = c * (c - 1) // 2
  if params.shape[-1] != mix_logistic_num_params(c, m):
    raise ValueError(f'params has {params.shape[-1]} entries on its last axis; a mixture of {m} logistics over '
                     f'{c} channels needs {mix_logistic_num_params(c, m)}.')
  lead = params.shape[:-1]
  logit_probs = params[..., :m]
  means = params[..., m:m + c * m].reshape(*lead, c, m)
  log_scales = jnp.maximum(params[..., m + c * m:m + 2 * c * m].reshape(*lead, c, m), -7.0)
  coeffs = jnp.tanh(params[..., m + 2 * c * m:].reshape(*lead, pairs, m))
  return logit_probs, means, log_scales, coeffs


def _conditioned_means(means, coeffs, x_pm1):
  """Mean of channel k: means_k + sum_{j<k} coeff_{kj} * x_j (x in [-1, 1]); pairs ordered (1,0), (2,0), (2,1), ...."""
  c = means.shape[-2]
  out = [means[..., 0, :]]
  p = 0
  for k in range(1, c):
    mk = means[..., k, :]
    for j in range(k):
      mk = mk + coeffs[..., p, :] * x_pm1[..., j, None]
      p += 1
    out.append(mk)
  return jnp.stack(out, axis=-2)


def discretized_mix_logistic_log_prob(params, x, levels: int, num_mix: int):
  """log P(x) of whole pixels under the PixelCNN++ discretized mixture of logistics: [...].

  params [..., M * (1 + 2C + C(C-1)/2)] (see `mix_logistic_num_params`), x [..., C] on the grid
  k / (levels - 1) in [0, 1]; their leading axes broadcast against each other. Parameter layout along the last axis, M = num_mix, P = C(C-1)/2:

      [0, M)                    mixture logits
      [M, M + CM)               means, reshaped [C, M] (channel-major), in [-1, 1] units
      [M + CM, M + 2CM)         log scales [C, M] in [-1, 1] units (clamped below at -7)
      [M + 2CM, end)            coefficients [P, M] (tanh-squashed), pairs (1,0), (2,0), (2,1), ...

  For RGB (C = 3) that is the paper's 10 M numbers. Component m gives every channel a
  logistic whose mean is `mean_k + sum_{j<k} coeff_kj * x_j` (x_j rescaled to [-1, 1]: the
  actual earlier sub-pixels of the pixel, paper Sec. 2.2), discretized onto the `levels`
  grid with the edge bins extended to -inf / +inf (`discretized_logistic_log_prob`, which
  is stable in log space). log P(x) = logsumexp_m (log softmax(logits)_m + sum_k log P_m(x_k)).
  """
  c = x.shape[-1]
  lead = jnp.broadcast_shapes(params.shape[:-1], x.shape[:-1])
  params = jnp.broadcast_to(params, lead + params.shape[-1:])
  x = jnp.broadcast_to(x, lead + x.shape[-1:])
  logit_probs, means, log_scales, coeffs = _split_mix_params(params, c, num_mix)
  x_pm1 = 2.0 * x - 1.0
  means = _conditioned_means(means, coeffs, x_pm1)
  # [-1, 1] units -> [0, 1] units: mean' = (mean + 1) / 2, scale' = scale / 2.
  lp = discretized_logistic_log_prob(0.5 * (means + 1.0), log_scales - math.log(2.0), x[..., None], levels)
  return jax.nn.logsumexp(jnp.sum(lp, axis=-2) + jax.nn.log_softmax(logit_probs, axis=-1), axis=-1)


def discretized_mix_logistic_sample(rng, params, levels: int, num_mix: int, channels: int = None):
  """Exact draws of whole pixels from `discretized_mix_logistic_log_prob`'s distribution: [..., C] in [0, 1].

  `channels` (C) defaults to the C implied by the last axis of params. A component is drawn
  from the softmax of the logits; then channel by channel a logistic draw (mean conditioned
  on the already drawn, discretized channels of the pixel) is rounded to the nearest grid
  point k / (levels - 1) and clipped to [0, 1], so each value k has exactly the bin mass that
  the log-prob assigns (edge bins up to +-inf). Unlike the reference code, which returns the
  continuous clipped draw, samples lie on the data grid.
  """
  if channels is None:
    n = params.shape[-1] // num_mix
    channels = (math.isqrt(1 + 8 * n) - 3) // 2
  logit_probs, means, log_scales, coeffs = _split_mix_params(params, channels, num_mix)
  k_mix, k_logistic = jax.random.split(rng)
  comp = jax.random.categorical(k_mix, logit_probs, axis=-1)
  onehot = jax.nn.one_hot(comp, num_mix, dtype=params.dtype)[..., None, :]
  means = jnp.sum(means * onehot, -1)
  scales = jnp.exp(jnp.sum(log_scales * onehot, -1))
  coeffs = jnp.sum(coeffs * onehot, -1)
  noise = jax.random.logistic(k_logistic, means.shape, params.dtype)
  values, p = [], 0
  for k in range(channels):
    mean = means[..., k]
    for j in range(k):
      mean = mean + coeffs[..., p] * (2.0 * values[j] - 1.0)
      p += 1
    draw = 0.5 * (mean + scales[..., k] * noise[..., k] + 1.0)   # [0, 1] units
    values.append(jnp.clip(jnp.round(draw * (levels - 1)), 0, levels - 1) / (levels - 1))
  return jnp.stack(values, axis=-1)
