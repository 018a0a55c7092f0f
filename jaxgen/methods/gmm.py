"""Gaussian mixture model trained by expectation-maximisation, the classical latent-variable baseline.

p(x) = sum_k w_k N(x; mu_k, Sigma_k) over the flattened example x in R^D, with full or diagonal
covariances (`model.covariance`). Parameters (params['gmm']), in scikit-learn's parameterisation
so that the two can be compared term by term: 'logits' [K] (w = softmax), 'means' [K, D] and
'precision_cholesky' — [K, D, D] upper-triangular U_k with Sigma_k^-1 = U_k U_k^T ('full'), or
[K, D] with U_k = Sigma_k^-1/2 ('diag'); log N(x; mu_k, Sigma_k) = -D/2 log 2 pi + sum log diag U_k
- |U_k^T (x - mu_k)|^2 / 2.

Training: one train_step is one EM iteration over the step's batch (no optimizer):
  E-step  responsibilities r_nk = p(k | x_n) under the current parameters
  M-step  N_k = sum_n r_nk + 10 eps, w_k = N_k / sum N, mu_k = sum_n r_nk x_n / N_k,
          Sigma_k = sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T / N_k + reg_covar I   (diagonal: its diagonal)
exactly scikit-learn's GaussianMixture updates (the covariance centred in a second pass over
the batch, which float32 needs). The configs make the batch the whole training split
(config.train.batch_size = its size): the step-indexed pipeline then gives every step the whole
split (step k's positions [kN, (k+1)N) are epoch k), so each step is one classical full-batch EM
iteration, with a fresh draw of the dequantization noise each iteration for dequantized images.
With a smaller batch each step is an EM iteration on that batch alone (the parameters then follow
the batches; no statistics are carried between steps). `loss` is the batch's mean -log p(x) under
the parameters before the step, the quantity EM never increases on a fixed batch.

Initialisation (`model.init`) from the first batch: 'kmeans++' (k-means++ seeding — D^2
sampling of K centres from the batch — then each example assigned to its nearest centre and one
M-step on those hard responsibilities) or 'random' (scikit-learn's: uniform random
responsibilities normalised per example, then one M-step). `params_from` builds the parameters
of given weights, means and covariances (e.g. to start from scikit-learn's initialisation).

Data: continuous — toy2d points, or images with config.data.dequantize=True: then x = (x_int + u) /
L in [0, 1]^D and `nll` is the exact -log p(x) of that density in nats, which the `nll` evaluator
turns into bits/dim of the discrete data (adding D log L), the convention of every flow and VAE.

Config keys:
  model.components   K
  model.covariance   'full' | 'diag'
  model.reg_covar    added to the covariances' diagonal in each M-step (scikit-learn's reg_covar)
  model.init         'kmeans++' | 'random'
"""

import math

import jax
import jax.numpy as jnp
import jax.scipy.linalg

from jaxgen.core.state import TrainState
from jaxgen.errors import ConfigError
from jaxgen.methods import register
from jaxgen.methods.base import Method

COVARIANCES = ('full', 'diag')
INITS = ('kmeans++', 'random')
_LOG_2PI = math.log(2.0 * math.pi)


def precision_cholesky(covariances_KDD):
  """U [K, D, D] upper-triangular with Sigma^-1 = U U^T (scikit-learn's precisions_cholesky_).

  One unbatched factorisation per component (`per_component`): see its docstring for why.
  """
  eye = jnp.eye(covariances_KDD.shape[-1], dtype=covariances_KDD.dtype)

  def one(covariance_DD):
    chol_DD = jnp.linalg.cholesky(covariance_DD)
    return jax.scipy.linalg.solve_triangular(chol_DD, eye, lower=True).T

  return per_component(one, covariances_KDD)


def per_component(fn, stacked_K):
  """fn over the leading axis one slice at a time (`lax.map`), never as one batched LAPACK call.

  jaxlib 0.10's batched CPU LAPACK kernels run their batch on XLA's intra-op thread pool, and two
  such calls in one program deadlocked the full-size RNN LM init on 2 cores (jaxgen/models/rnn_lm.py,
  `_gatewise_orthogonal`). A mixture has few components, so the sequential loop costs little.
  """
  return jax.lax.map(fn, stacked_K)


@register('gmm')
class GMM(Method):
  """Gaussian mixture model; see the module docstring."""

  has_likelihood = True

  def __init__(self, config, info):
    super().__init__(config, info)
    m = config.model
    self.components = int(m.components)
    self.covariance = m.get('covariance', 'full')
    self.reg_covar = float(m.get('reg_covar', 1e-6))
    self.init_method = m.get('init', 'kmeans++')
    if self.components < 1:
      raise ConfigError(f'config.model.components must be >= 1, got {self.components}.')
    if self.covariance not in COVARIANCES:
      raise ConfigError(f'config.model.covariance={self.covariance!r} is not one of {", ".join(COVARIANCES)}.')
    if self.init_method not in INITS:
      raise ConfigError(f'config.model.init={self.init_method!r} is not one of {", ".join(INITS)}.')
    if self.reg_covar < 0:
      raise ConfigError(f'config.model.reg_covar must be >= 0, got {self.reg_covar}.')
    if set(config.method.keys()) - {'name'}:
      raise ConfigError(f'the GMM has no config.method settings (got {sorted(set(config.method.keys()) - {"name"})}); '
                        'its settings are config.model.components, covariance, reg_covar, init.')
    if float(config.train.ema_decay) > 0:
      raise ConfigError('the GMM replaces its parameters by EM each step (nothing to average); set '
                        'config.train.ema_decay=0.')
    if info.kind == 'text' or (info.levels is not None and not info.dequantized):
      raise ConfigError(f'a Gaussian mixture is a density for continuous data, but dataset {info.name!r} is '
                        f'discrete ({info.kind}, levels={info.levels}); its NLL would be meaningless. Set '
                        'config.data.dequantize=True for images, or use continuous data such as toy2d.')
    self.shape = tuple(info.shape)
    self.dim = math.prod(self.shape)

  # ---- the density ------------------------------------------------------------------------------

  def _flat(self, x):
    return x.reshape(x.shape[0], -1).astype(jnp.float32)

  def component_log_probs(self, params, x_ND):
    """log w_k + log N(x_n; mu_k, Sigma_k): [N, K]."""
    p = params['gmm']
    u, means = p['precision_cholesky'], p['means']
    if self.covariance == 'full':
      y_NKD = jnp.einsum('nd,kde->nke', x_ND, u) - jnp.einsum('kd,kde->ke', means, u)[None]
      log_det_K = jnp.sum(jnp.log(jnp.diagonal(u, axis1=-2, axis2=-1)), axis=-1)
    else:
      y_NKD = (x_ND[:, None, :] - means[None]) * u[None]
      log_det_K = jnp.sum(jnp.log(u), axis=-1)
    log_gauss_NK = -0.5 * self.dim * _LOG_2PI + log_det_K[None] - 0.5 * jnp.sum(y_NKD ** 2, axis=-1)
    return jax.nn.log_softmax(p['logits'])[None] + log_gauss_NK

  def log_prob(self, params, x):
    """Exact log p(x) per example [N]."""
    return jax.nn.logsumexp(self.component_log_probs(params, self._flat(x)), axis=-1)

  def responsibilities(self, params, x):
    """(p(k | x_n) [N, K], log p(x_n) [N])."""
    log_joint_NK = self.component_log_probs(params, self._flat(x))
    log_p_N = jax.nn.logsumexp(log_joint_NK, axis=-1)
    return jnp.exp(log_joint_NK - log_p_N[:, None]), log_p_N

  # ---- EM --------------------------------------------------------------------------------------

  def covariances(self, params):
    """Sigma_k from the precision Cholesky factors: [K, D, D] ('full') or [K, D] ('diag')."""
    u = params['gmm']['precision_cholesky']
    if self.covariance == 'diag':
      return u ** -2
    chol = self._covariance_cholesky(u)
    return chol @ jnp.swapaxes(chol, -1, -2)

  def _covariance_cholesky(self, u_KDD):
    """L = U^-T [K, D, D], lower-triangular with Sigma = L L^T."""
    eye = jnp.eye(self.dim, dtype=u_KDD.dtype)
    return per_component(lambda u_DD: jax.scipy.linalg.solve_triangular(u_DD.T, eye, lower=True), u_KDD)

  def params_from(self, weights, means, covariances):
    """Parameters of the mixture with these weights [K], means [K, D] and covariances ([K, D, D] or [K, D])."""
    covariances = jnp.asarray(covariances, jnp.float32)
    if self.covariance == 'full':
      u = precision_cholesky(covariances)
    else:
      u = covariances ** -0.5
    return {'gmm': {'logits': jnp.log(jnp.asarray(weights, jnp.float32)), 'means': jnp.asarray(means, jnp.float32),
                    'precision_cholesky': u}}

  def m_step(self, x, resp_NK):
    """The parameters maximising the expected complete-data log-likelihood of responsibilities `resp_NK`."""
    x_ND = self._flat(x)
    nk_K = jnp.sum(resp_NK, axis=0) + 10 * jnp.finfo(jnp.float32).eps
    means_KD = (resp_NK.T @ x_ND) / nk_K[:, None]
    diff_KND = x_ND[None] - means_KD[:, None, :]
    if self.covariance == 'full':
      weighted_KND = resp_NK.T[:, :, None] * diff_KND
      cov = jnp.einsum('knd,kne->kde', weighted_KND, diff_KND) / nk_K[:, None, None]
      cov = cov + self.reg_covar * jnp.eye(self.dim, dtype=cov.dtype)[None]
    else:
      cov = jnp.einsum('nk,knd->kd', resp_NK, diff_KND ** 2) / nk_K[:, None] + self.reg_covar
    return self.params_from(nk_K / jnp.sum(nk_K), means_KD, cov)

  def em_step(self, params, x):
    """(the parameters after one EM iteration on x, log p(x) [N] under the old parameters)."""
    resp_NK, log_p_N = self.responsibilities(params, x)
    return self.m_step(x, resp_NK), log_p_N

  def kmeans_plus_plus(self, rng, x):
    """K centres [K, D] chosen from x by k-means++ D^2 sampling (Arthur & Vassilvitskii, 2007)."""
    x_ND = self._flat(x)
    k_first, k_rest = jax.random.split(rng)
    first = x_ND[jax.random.randint(k_first, (), 0, x_ND.shape[0])]
    centres = jnp.zeros((self.components, self.dim), x_ND.dtype).at[0].set(first)
    d2_N = jnp.sum((x_ND - first[None]) ** 2, axis=-1)

    def pick(k, carry):
      centres, d2_N = carry
      log_w = jnp.where(d2_N > 0, jnp.log(jnp.where(d2_N > 0, d2_N, 1.0)), -jnp.inf)
      chosen = x_ND[jax.random.categorical(jax.random.fold_in(k_rest, k), log_w)]
      return centres.at[k].set(chosen), jnp.minimum(d2_N, jnp.sum((x_ND - chosen[None]) ** 2, axis=-1))

    centres, _ = jax.lax.fori_loop(1, self.components, pick, (centres, d2_N))
    return centres

  # ---- the Method contract ---------------------------------------------------------------------

  def init(self, rng, batch):
    k_init, k_state = jax.random.split(rng)
    x = batch['x']
    if self.init_method == 'kmeans++':
      centres_KD = self.kmeans_plus_plus(k_init, x)
      d2_NK = jnp.sum((self._flat(x)[:, None, :] - centres_KD[None]) ** 2, axis=-1)
      resp_NK = jax.nn.one_hot(jnp.argmin(d2_NK, axis=-1), self.components, dtype=jnp.float32)
    else:
      resp_NK = jax.random.uniform(k_init, (x.shape[0], self.components))
      resp_NK = resp_NK / jnp.sum(resp_NK, axis=-1, keepdims=True)
    return TrainState(step=jnp.zeros((), jnp.int32), params=self.m_step(x, resp_NK), opt_state={},
                      ema_params=None, extra={}, rng=k_state)

  def train_step(self, state, batch):
    params, log_p_N = self.em_step(state.params, batch['x'])
    return state.replace(step=state.step + 1, params=params), {'loss': -jnp.mean(log_p_N)}

  def nll(self, params, batch, rng):
    """Exact -log p(x) per example in nats (of x as the pipeline delivers it; see the module docstring)."""
    return -self.log_prob(params, batch['x'])

  def sample(self, params, rng, num):
    """num draws [num, *shape]: k ~ Cat(w), x = mu_k + Sigma_k^1/2 z."""
    p = params['gmm']
    k_comp, k_noise = jax.random.split(rng)
    comp_N = jax.random.categorical(k_comp, p['logits'], shape=(num,))
    z_ND = jax.random.normal(k_noise, (num, self.dim))
    u = p['precision_cholesky']
    if self.covariance == 'full':  # x - mu = L z with L = U^-T (Sigma = L L^T) for every component, then pick
      offsets_KND = jnp.einsum('kde,ne->knd', self._covariance_cholesky(u), z_ND)
      offset_ND = jnp.take_along_axis(offsets_KND, comp_N[None, :, None], axis=0)[0]
    else:
      offset_ND = z_ND / u[comp_N]
    return (p['means'][comp_N] + offset_ND).reshape((num,) + self.shape)
