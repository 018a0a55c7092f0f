"""Hidden Markov models with categorical or Gaussian emissions, trained by Baum-Welch or by gradient.

The model, for a sequence x_1..x_T with hidden states z_t in {0..K-1}:

  z_1 ~ Cat(pi),   z_t | z_{t-1} ~ Cat(A[z_{t-1}]),   x_t | z_t ~ emission(z_t)
  'categorical'  x_t in {0..V-1}, p(x_t = v | z_t = k) = B[k, v]; V = the data's `levels`
                 (256 for the bytes of a text dataset such as pysource)
  'gaussian'     x_t in R^D, N(mean_k, diag exp(log_scale_k)^2); data of shape (T,) or (T, D)

Parameters (params['hmm']): 'initial' [K], 'transition' [K, K] (row = previous state) and
'emission' [K, V] as unconstrained logits (pi = softmax(initial), rows of A and B = softmax of
rows), or for Gaussian emissions 'mean' [K, D] and 'log_scale' [K, D].

Inference, all with `jax.lax.scan` over time and in log space:
  forward    log alpha_t(j) = log sum_i alpha_{t-1}(i) A_ij + log p(x_t | j); log p(x) = logsumexp
             alpha_T. The sum over i is taken as m + log(exp(log alpha - m) @ A), m = max_i log alpha
             (the max-shifted log-sum-exp as a matmul: exact, no overflow or underflow of alpha).
  backward   log beta_{t-1}(i) = log sum_j A_ij p(x_t | j) beta_t(j), the same way.
  posteriors gamma_t(k) = p(z_t = k | x) and the expected transition counts
             sum_t p(z_{t-1} = i, z_t = j | x), each (t, sequence) term a rescaled outer product
             (exact; see _expected_transitions).
  Viterbi    max-product with argmax back-pointers, then a reverse scan to read the path.
  sampling   ancestral: z_t then x_t, one scan step each.

Training (`config.method.training`):
  'em'        Baum-Welch on mini-batches: the E-step computes the batch's expected sufficient
              statistics (counts of initial states, transitions and emissions; for Gaussians
              sum gamma, sum gamma x, sum gamma x^2) averaged per sequence; stepwise EM (Cappe &
              Moulines 2009; Liang & Klein 2009) mixes them into running statistics
              s <- (1 - eta_k) s + eta_k s_batch with eta_k = (k + 1)^-em_stepsize_power at step k
              (power 0: eta = 1, plain Baum-Welch on each batch, the classical algorithm when the
              batch is the whole data; powers in (0.5, 1] converge as stochastic approximation);
              the M-step sets every distribution to its normalised statistics (plus
              em_pseudocount, a symmetric Dirichlet prior: MAP-EM) and writes the log-probabilities
              into the logits. Running statistics live in TrainState.extra['stats'].
  'gradient'  gradient descent on the exact mean -log p(x) per sequence (autodiff through the
              forward recursion) with config.optim.

`nll` is the exact -log p(x) per sequence in nats, so the `nll` evaluator's nll_bpd is bits per
symbol (bits per byte on text: nats / (T ln 2)). Samples are sequences of the data's shape (int32
symbols for categorical emissions; for text the `samples` evaluator writes them as .txt).

Config keys:
  model.states             K, the number of hidden states
  model.emission           'categorical' | 'gaussian'
  model.init_scale         logits start as init_scale * N(0, 1) (Gaussian means: K random frames
                           of the first batch; log_scale: the log std of its frames)
  method.training          'em' | 'gradient'
  method.em_stepsize_power stepwise-EM power alpha of eta_k = (k + 1)^-alpha (0 = plain batch EM)
  method.em_pseudocount    added to every expected count (per sequence) before normalising
  method.em_min_var        Gaussian variance floor added in the M-step (like sklearn's reg_covar)
"""

import math

import jax
import jax.numpy as jnp

from jaxgen import distributions
from jaxgen.core.optim import make_optimizer
from jaxgen.core.state import TrainState
from jaxgen.errors import ConfigError
from jaxgen.methods import register
from jaxgen.methods.base import Method, method_settings

EMISSIONS = ('categorical', 'gaussian')
TRAININGS = ('em', 'gradient')

# config.method keys and their defaults.
DEFAULTS = dict(training='em', em_stepsize_power=0.7, em_pseudocount=1e-4, em_min_var=1e-6)


def log_matmul(log_v_BK, m_KJ):
  """log(exp(log_v) @ m) [B, J] for a non-negative matrix m, without forming exp(log_v) unshifted."""
  shift_B1 = jnp.max(log_v_BK, axis=-1, keepdims=True)
  shift_B1 = jnp.where(jnp.isfinite(shift_B1), shift_B1, 0.0)
  return shift_B1 + jnp.log(jnp.exp(log_v_BK - shift_B1) @ m_KJ)


def forward(log_pi_K, log_a_KK, log_e_TBK):
  """(log alpha [T, B, K], log p(x) [B]) of emission log-likelihoods log_e[t, b, k] = log p(x_bt | k)."""
  a_KK = jnp.exp(log_a_KK)

  def step(log_alpha_BK, log_e_BK):
    log_alpha_BK = log_matmul(log_alpha_BK, a_KK) + log_e_BK
    return log_alpha_BK, log_alpha_BK

  first_BK = log_pi_K[None] + log_e_TBK[0]
  last_BK, rest_TBK = jax.lax.scan(step, first_BK, log_e_TBK[1:])
  log_alpha_TBK = jnp.concatenate([first_BK[None], rest_TBK], axis=0)
  return log_alpha_TBK, jax.nn.logsumexp(last_BK, axis=-1)


def forward_log_likelihood(log_pi_K, log_a_KK, log_e_TBK):
  """log p(x) [B] by the forward recursion, keeping only the last alpha (what training differentiates)."""
  a_KK = jnp.exp(log_a_KK)
  step = lambda log_alpha_BK, log_e_BK: (log_matmul(log_alpha_BK, a_KK) + log_e_BK, None)
  last_BK, _ = jax.lax.scan(step, log_pi_K[None] + log_e_TBK[0], log_e_TBK[1:])
  return jax.nn.logsumexp(last_BK, axis=-1)


def backward(log_a_KK, log_e_TBK):
  """log beta [T, B, K]: log p(x_{t+1..T} | z_t = k), 0 at the last step."""
  a_t_KK = jnp.exp(log_a_KK).T

  def step(log_beta_BK, log_e_BK):  # log_e at t + 1, beta at t + 1 -> beta at t
    log_beta_BK = log_matmul(log_e_BK + log_beta_BK, a_t_KK)
    return log_beta_BK, log_beta_BK

  last_BK = jnp.zeros_like(log_e_TBK[0])
  _, earlier_TBK = jax.lax.scan(step, last_BK, log_e_TBK[1:], reverse=True)
  return jnp.concatenate([earlier_TBK, last_BK[None]], axis=0)


# exp() of at most this: the rescaled factors of _expected_transitions stay finite in float32.
_MAX_HALF_LOG_SCALE = 40.0


def _expected_transitions(log_alpha_TBK, log_beta_TBK, log_a_KK, log_e_TBK, log_z_B):
  """sum over sequences and t of p(z_{t-1} = i, z_t = j | x) [K, K].

  Each term exp(log alpha_{t-1}(i) + log A_ij + r_t(j) - log p(x)), r = log e + log beta, is
  A_ij u_i w_j with u = exp(log alpha_{t-1} - max log alpha_{t-1} + s/2), w = exp(r_t - max r_t + s/2),
  s = max log alpha_{t-1} + max r_t - log p(x): exact, and a matmul instead of K^2 exponentials per
  position. s <= -log A_{i*j*} (i*, j* the maximisers), so u, w <= exp(s/2) stay finite unless a
  transition probability is below e^-80 (effectively zero in float32); s/2 is capped at 40 as a guard
  for that case, which would under-count that position's transitions.
  """
  left_TBK, right_TBK = log_alpha_TBK[:-1], (log_e_TBK + log_beta_TBK)[1:]
  left_max = jnp.max(left_TBK, axis=-1, keepdims=True)
  right_max = jnp.max(right_TBK, axis=-1, keepdims=True)
  half_TB1 = jnp.minimum(0.5 * (left_max + right_max - log_z_B[None, :, None]), _MAX_HALF_LOG_SCALE)
  u_TBK = jnp.exp(left_TBK - left_max + half_TB1)
  w_TBK = jnp.exp(right_TBK - right_max + half_TB1)
  return jnp.exp(log_a_KK) * jnp.einsum('tbi,tbj->ij', u_TBK, w_TBK)


@register('hmm')
class HMM(Method):
  """Hidden Markov model; see the module docstring."""

  has_likelihood = True

  def __init__(self, config, info):
    super().__init__(config, info)
    self.hp = method_settings(config, DEFAULTS, 'HMM')
    if self.hp.training not in TRAININGS:
      raise ConfigError(f'config.method.training={self.hp.training!r} is not one of {", ".join(TRAININGS)}.')
    if self.hp.em_stepsize_power < 0 or self.hp.em_pseudocount < 0 or self.hp.em_min_var < 0:
      raise ConfigError('config.method.em_stepsize_power, em_pseudocount and em_min_var must be >= 0.')
    self.states = int(config.model.states)
    if self.states < 1:
      raise ConfigError(f'config.model.states must be >= 1, got {self.states}.')
    self.emission = config.model.get('emission', 'categorical')
    self.init_scale = float(config.model.get('init_scale', 1.0))
    if self.hp.training == 'em' and float(config.train.ema_decay) > 0:
      raise ConfigError('config.method.training=em replaces the parameters each step (no optimizer to average); '
                        'set config.train.ema_decay=0.')
    self.shape = tuple(info.shape)
    self._validate_data()
    self.length = self.shape[0]
    self.tx = make_optimizer(config.optim, config.train.steps)

  def _validate_data(self):
    info = self.info
    if self.emission not in EMISSIONS:
      raise ConfigError(f'config.model.emission={self.emission!r} is not one of {", ".join(EMISSIONS)}.')
    if self.emission == 'categorical':
      if info.kind != 'text' or info.levels is None or len(self.shape) != 1:
        raise ConfigError(f"config.model.emission='categorical' models sequences of symbols (text); dataset "
                          f'{info.name!r} is {info.kind} data of shape {self.shape}. Use a text dataset such '
                          "as 'pysource', or emission='gaussian' for continuous sequences.")
      self.symbols = int(info.levels)
    else:
      if info.levels is not None or len(self.shape) not in (1, 2):
        raise ConfigError(f"config.model.emission='gaussian' models continuous sequences of shape (T,) or (T, D); "
                          f'dataset {info.name!r} has shape {self.shape}, levels={info.levels}. Use '
                          "emission='categorical' for symbols.")
      self.dim = self.shape[1] if len(self.shape) == 2 else 1

  # ---- the model's distributions ---------------------------------------------------------------

  def log_probs(self, params):
    """(log pi [K], log A [K, K]) of the parameters."""
    p = params['hmm']
    return jax.nn.log_softmax(p['initial']), jax.nn.log_softmax(p['transition'], axis=-1)

  def _frames(self, x):
    """x [B, T] (or [B, T, D]) as the emissions see it: int32 symbols [B, T] or float32 [B, T, D]."""
    if self.emission == 'categorical':
      return x.astype(jnp.int32)
    return x.reshape(x.shape[0], self.length, self.dim).astype(jnp.float32)

  def emission_log_probs(self, params, x):
    """log p(x_bt | z_t = k) time-major: [T, B, K]."""
    p, frames = params['hmm'], self._frames(x)
    if self.emission == 'categorical':
      log_b_KV = jax.nn.log_softmax(p['emission'], axis=-1)
      return jnp.take(log_b_KV.T, frames.T, axis=0)                    # [T, B, K]
    frames_TBD = jnp.swapaxes(frames, 0, 1)
    log_p_TBKD = distributions.gaussian_log_prob(frames_TBD[:, :, None, :], p['mean'][None, None],
                                                 p['log_scale'][None, None])
    return log_p_TBKD.sum(-1)

  def log_likelihood(self, params, x):
    """Exact log p(x) per sequence [B] (forward algorithm)."""
    log_pi, log_a = self.log_probs(params)
    return forward_log_likelihood(log_pi, log_a, self.emission_log_probs(params, x))

  def forward_backward(self, params, x):
    """(log alpha [T, B, K], log beta [T, B, K], log p(x) [B], log emissions [T, B, K])."""
    log_pi, log_a = self.log_probs(params)
    log_e = self.emission_log_probs(params, x)
    log_alpha, log_z = forward(log_pi, log_a, log_e)
    return log_alpha, backward(log_a, log_e), log_z, log_e

  def posteriors(self, params, x):
    """(gamma [B, T, K] = p(z_t = k | x), expected transition counts [K, K] summed over the batch, log p(x) [B])."""
    log_alpha, log_beta, log_z, log_e = self.forward_backward(params, x)
    gamma_TBK = jnp.exp(log_alpha + log_beta - log_z[None, :, None])
    xi_KK = _expected_transitions(log_alpha, log_beta, self.log_probs(params)[1], log_e, log_z)
    return jnp.swapaxes(gamma_TBK, 0, 1), xi_KK, log_z

  # ---- Baum-Welch ---------------------------------------------------------------------------------

  def expected_stats(self, params, x):
    """(the E-step's sufficient statistics of the batch, averaged per sequence, log p(x) [B])."""
    gamma_BTK, xi_KK, log_z = self.posteriors(params, x)
    n = x.shape[0]
    stats = {'initial': gamma_BTK[:, 0].sum(0) / n, 'transition': xi_KK / n}
    frames = self._frames(x)
    if self.emission == 'categorical':
      onehot_BTV = jax.nn.one_hot(frames, self.symbols, dtype=gamma_BTK.dtype)
      stats['emission'] = jnp.einsum('btk,btv->kv', gamma_BTK, onehot_BTV) / n
    else:
      stats['count'] = gamma_BTK.sum((0, 1)) / n
      stats['sum'] = jnp.einsum('btk,btd->kd', gamma_BTK, frames) / n
      stats['sum_sq'] = jnp.einsum('btk,btd->kd', gamma_BTK, frames ** 2) / n
    return stats, log_z

  def m_step(self, stats):
    """Parameters (logits = log-probabilities) maximising the expected complete-data log-likelihood
    of `stats` (plus the Dirichlet pseudo-counts)."""
    pc = float(self.hp.em_pseudocount)

    def log_normalized(counts):  # rows of counts -> log-probabilities; a row with no counts -> uniform
      counts = counts + pc
      total = jnp.sum(counts, axis=-1, keepdims=True)
      return jnp.log(jnp.where(total > 0, counts / jnp.where(total > 0, total, 1.0), 1.0 / counts.shape[-1]))

    params = {'initial': log_normalized(stats['initial']), 'transition': log_normalized(stats['transition'])}
    if self.emission == 'categorical':
      params['emission'] = log_normalized(stats['emission'])
    else:
      count = jnp.maximum(stats['count'], jnp.finfo(jnp.float32).tiny)[:, None]
      mean = stats['sum'] / count
      var = jnp.maximum(stats['sum_sq'] / count - mean ** 2, 0.0) + float(self.hp.em_min_var)
      params['mean'], params['log_scale'] = mean, 0.5 * jnp.log(var)
    return {'hmm': params}

  def em_stepsize(self, step):
    """eta_k = (k + 1)^-em_stepsize_power: 1 at step 0 (the statistics start from the first batch)."""
    return (step.astype(jnp.float32) + 1.0) ** -float(self.hp.em_stepsize_power)

  # ---- the Method contract ----------------------------------------------------------------------

  def init(self, rng, batch):
    k_pi, k_a, k_e, k_state = jax.random.split(rng, 4)
    K, scale = self.states, self.init_scale
    params = {'initial': scale * jax.random.normal(k_pi, (K,)),
              'transition': scale * jax.random.normal(k_a, (K, K))}
    if self.emission == 'categorical':
      params['emission'] = scale * jax.random.normal(k_e, (K, self.symbols))
    else:
      frames = self._frames(batch['x']).reshape(-1, self.dim)
      chosen = jax.random.choice(k_e, frames.shape[0], (K,), replace=frames.shape[0] < K)
      params['mean'] = frames[chosen]
      log_std = 0.5 * jnp.log(jnp.var(frames, axis=0) + float(self.hp.em_min_var))
      params['log_scale'] = jnp.broadcast_to(log_std, (K, self.dim))
    params = {'hmm': params}
    if self.hp.training == 'gradient':
      return self.initial_state(params, k_state)
    shapes = jax.eval_shape(self.expected_stats, params, batch['x'])[0]
    stats = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state={}, ema_params=None,
                      extra={'stats': stats}, rng=k_state)

  def train_step(self, state, batch):
    if self.hp.training == 'gradient':
      loss, grads = jax.value_and_grad(lambda p: -jnp.mean(self.log_likelihood(p, batch['x'])))(state.params)
      return self.apply_gradients(state, grads), {'loss': loss}
    batch_stats, log_z = self.expected_stats(state.params, batch['x'])
    eta = self.em_stepsize(state.step)
    stats = jax.tree.map(lambda s, b: (1.0 - eta) * s + eta * b, state.extra['stats'], batch_stats)
    new_state = state.replace(step=state.step + 1, params=self.m_step(stats), extra={'stats': stats})
    return new_state, {'loss': -jnp.mean(log_z), 'em_stepsize': eta}

  def nll(self, params, batch, rng):
    """Exact -log p(x) per sequence in nats."""
    return -self.log_likelihood(params, batch['x'])

  def viterbi(self, params, x):
    """(the most probable state path [B, T] int32, its log joint probability log p(x, z) [B])."""
    log_pi, log_a = self.log_probs(params)
    log_e = self.emission_log_probs(params, x)

    def step(delta_BK, log_e_BK):
      scores_BKK = delta_BK[:, :, None] + log_a[None]                   # [b, previous, next]
      return jnp.max(scores_BKK, axis=1) + log_e_BK, jnp.argmax(scores_BKK, axis=1).astype(jnp.int32)

    last_BK, pointers_TBK = jax.lax.scan(step, log_pi[None] + log_e[0], log_e[1:])
    end_B = jnp.argmax(last_BK, axis=-1).astype(jnp.int32)

    def back(state_B, pointers_BK):
      previous_B = jnp.take_along_axis(pointers_BK, state_B[:, None], axis=1)[:, 0]
      return previous_B, previous_B

    _, earlier_TB = jax.lax.scan(back, end_B, pointers_TBK, reverse=True)
    path_BT = jnp.concatenate([earlier_TB, end_B[None]], axis=0).T
    return path_BT, jnp.max(last_BK, axis=-1)

  def sample(self, params, rng, num):
    """Ancestral samples [num, *shape]: int32 symbols (categorical) or float32 frames (Gaussian)."""
    log_pi, log_a = self.log_probs(params)
    p = params['hmm']
    k_first, k_steps = jax.random.split(rng)

    def emit(key, z_N):
      if self.emission == 'categorical':
        return jax.random.categorical(key, p['emission'][z_N], axis=-1).astype(jnp.int32)
      noise = jax.random.normal(key, (num, self.dim))
      return p['mean'][z_N] + jnp.exp(p['log_scale'][z_N]) * noise

    def step(z_N, key):
      k_x, k_z = jax.random.split(key)
      return jax.random.categorical(k_z, log_a[z_N], axis=-1), emit(k_x, z_N)

    z_first = jax.random.categorical(k_first, log_pi, shape=(num,))
    _, x_T = jax.lax.scan(step, z_first, jax.random.split(k_steps, self.length))
    return jnp.swapaxes(x_T, 0, 1).reshape((num,) + self.shape)
