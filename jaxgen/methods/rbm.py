"""Restricted Boltzmann machines: Bernoulli-Bernoulli and Gaussian-Bernoulli, trained by CD-k or PCD.

Energies (v visible [V], h binary hidden [H]; parameters W [V, H], b [V], c [H]):

  'binary'    E(v, h) = -b.v - c.h - v.W h                  v in {0, 1}^V
  'gaussian'  E(v, h) = |v - b|^2 / 2 - c.h - v.W h         v in R^V (unit variances)

Summing out h gives the free energy F(v) = -log sum_h exp(-E(v, h)):

  'binary'    F(v) = -b.v - sum_j softplus(c_j + v.W_j)
  'gaussian'  F(v) = |v - b|^2 / 2 - sum_j softplus(c_j + v.W_j)

and p(v) = exp(-F(v)) / Z. The conditionals factorise: p(h_j = 1 | v) = sigmoid(c_j + v.W_j), and
p(v_i = 1 | h) = sigmoid(b_i + W_i.h) (binary) or v | h ~ N(b + W h, I) (gaussian). Block Gibbs
sampling alternates the two inside a `jax.lax.fori_loop`.

The Gaussian RBM models standardised data z = (x - m) / s (per dimension; m, s the training
inputs' mean and std, see "Data statistics"), the unit-variance setting of Hinton's practical
guide (2010); its density of x is p(z) / prod_i s_i.

Training (`train_step`) follows no loss gradient. CD-k (Hinton, 2002) runs k block-Gibbs steps
from the data batch; PCD (Tieleman, 2008) runs them from persistent chains kept in
`TrainState.extra['chains']`: their state after step t is the start of step t + 1, and they are
checkpointed with the rest of the state, so a resumed run continues exactly. The estimate of the
log-likelihood gradient,

  dW = <v p(h|v)^T>_data - <v p(h|v)^T>_neg,   db = <v>_data - <v>_neg,   dc = <p(h|v)>_data - <p(h|v)>_neg

(means over the batch and over the chains' end states; hidden probabilities rather than samples
in the statistics, as the guide advises), is negated and fed as the "gradient" to SGD with
momentum and L2 weight decay on W only (the guide's sections 9-10): an update is
-lr * trace(-d + wd * W). Momentum is method.initial_momentum for the first `momentum_steps`
steps, then config.optim.momentum (the guide: 0.5, then 0.9). Initialisation as the guide:
W ~ N(0, 0.01^2), c = 0, b = logit of the first batch's (Laplace-smoothed) means (binary) or 0.
The step's `loss` metric is the reconstruction error sum_i (v_i - E[v_i | h ~ p(h|v)])^2 per
example (a monitor, not the objective); `free_energy` is the batch's mean F(v).

Data statistics: params['data'] = {mean, sq_mean, count} of the training inputs, accumulated over
the first epoch (ceil(N_train / batch_size) steps: each training example once), then frozen. The
binary RBM's AIS starts from the base-rate RBM of Salakhutdinov & Murray (2008): zero weights,
visible biases b_A = logit of those means (Laplace-smoothed), which is exact to sample. The
Gaussian RBM standardises with them (running values during the first epoch). They live in params
(not extra) because `sample` and `nll` need them; the EMA copies them (`ema_copy_keys`).

Likelihood: log Z by annealed importance sampling (jaxgen.evals.ais) along

  'binary'    log f_beta(v) = ((1 - beta) b_A + beta b).v + sum_j softplus(beta (c_j + v.W_j))
  'gaussian'  log f_beta(v) = -|v - b|^2 / 2 + sum_j softplus(beta (c_j + v.W_j))

(Salakhutdinov & Murray's path with the base model's hidden units summed out), f_0 tractable
(log Z_0 = sum_i softplus(b_A,i) + H log 2, resp. V/2 log 2 pi + H log 2) and T_beta one
block-Gibbs step of p_beta. `nll` = F(v) + log Z per example (+ sum_i log s_i for the Gaussian),
with log Z from one AIS run of `ais_chains` chains keyed on the rng it is given; the `ais`
evaluator runs AIS once per evaluation and reports its spread. `exact_log_z` enumerates the
hidden units (tiny models and tests).

Samples: `sample_steps` block-Gibbs steps from the base-rate distribution (binary) or N(b, I)
(gaussian). Binary samples are the chains' binary states; Gaussian ones are the mean b + W h of
the last step mapped back to data space and clipped to [0, 1] (a draw of N(b + W h, I) in
standardised units is mostly noise). `gibbs_progression` gives the chains at several steps (the
`gibbs_chain` evaluator draws it).

Config keys:
  model.hidden              H
  method.visible            'binary' (data with levels == 2) | 'gaussian' (continuous or dequantized)
  method.cd_k               Gibbs steps of the negative phase (PCD-k when persistent)
  method.persistent         PCD: chains persist across steps
  method.chains             persistent chains (0 = config.train.batch_size)
  method.initial_momentum   momentum of the first `momentum_steps` steps, then config.optim.momentum
  method.momentum_steps
  method.sample_steps       Gibbs steps of `sample`
  method.ais_betas, ais_breaks   AIS schedule: jaxgen.evals.ais.schedule(ais_betas, ais_breaks)
  method.ais_chains         AIS chains per run
  optim.name='sgd', lr, schedule, momentum, weight_decay (L2 on W only)
"""

import itertools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxgen.core.optim import learning_rate_schedule
from jaxgen.core.state import TrainState, step_rng
from jaxgen.errors import ConfigError
from jaxgen.evals import ais
from jaxgen.methods import register
from jaxgen.methods.base import Method, method_settings

VISIBLE = ('binary', 'gaussian')

# config.method keys and their defaults.
DEFAULTS = dict(
    visible='binary', cd_k=1, persistent=False, chains=0,
    initial_momentum=0.5, momentum_steps=0,
    sample_steps=1000,
    ais_betas=(500, 4000, 10000), ais_breaks=(0.5, 0.9), ais_chains=100,
)

_MIN_STD = 1e-3
# step_rng tags.
_NEGATIVE, _RECONSTRUCT = 0, 1


def method_hparams(config, defaults, family: str) -> ml_collections.ConfigDict:
  """config.method's values over `defaults`; ConfigError naming the valid keys for an unknown one, or for
  a Gibbs-step or AIS setting out of range."""
  hp = method_settings(config, defaults, family)
  for key in ('cd_k', 'ais_chains'):
    if int(hp[key]) < 1:
      raise ConfigError(f'config.method.{key} must be >= 1, got {hp[key]}.')
  if int(hp.sample_steps) < 0 or int(hp.chains) < 0:
    raise ConfigError(f'config.method.sample_steps and chains must be >= 0, got {hp.sample_steps}, {hp.chains}.')
  return hp


# ---- one RBM: parameters {'W': [V, H], 'b': [V], 'c': [H]} ---------------------------------------


def hidden_logits(p, v_NV):
  """c + v W: [N, H], the logits of p(h = 1 | v)."""
  return v_NV @ p['W'] + p['c'][None]


def visible_mean(p, h_NH, visible: str):
  """E[v | h]: sigmoid(b + W h) (binary) or b + W h (gaussian): [N, V]."""
  pre_NV = h_NH @ p['W'].T + p['b'][None]
  return jax.nn.sigmoid(pre_NV) if visible == 'binary' else pre_NV


def sample_hidden(p, v_NV, key):
  return jax.random.bernoulli(key, jax.nn.sigmoid(hidden_logits(p, v_NV))).astype(v_NV.dtype)


def sample_visible(p, h_NH, key, visible: str):
  """(v ~ p(v | h), E[v | h])."""
  mean_NV = visible_mean(p, h_NH, visible)
  if visible == 'binary':
    return jax.random.bernoulli(key, mean_NV).astype(mean_NV.dtype), mean_NV
  return mean_NV + jax.random.normal(key, mean_NV.shape, mean_NV.dtype), mean_NV


def gibbs(p, v_NV, key, steps: int, visible: str):
  """`steps` block-Gibbs steps v -> h -> v' (a lax.fori_loop): (final v, E[v | last h]; v itself if steps = 0)."""

  def body(i, carry):
    v, _ = carry
    k_h, k_v = jax.random.split(jax.random.fold_in(key, i))
    return sample_visible(p, sample_hidden(p, v, k_h), k_v, visible)

  return jax.lax.fori_loop(0, steps, body, (v_NV, v_NV))


def free_energy(p, v_NV, visible: str):
  """F(v) = -log sum_h exp(-E(v, h)): [N]."""
  soft_N = jax.nn.softplus(hidden_logits(p, v_NV)).sum(-1)
  if visible == 'binary':
    return -(v_NV @ p['b']) - soft_N
  return 0.5 * jnp.sum((v_NV - p['b'][None]) ** 2, axis=-1) - soft_N


def energy(p, v_NV, h_NH, visible: str):
  """E(v, h): [N] (the joint's energy; for tests and enumeration)."""
  interaction_N = jnp.sum((v_NV @ p['W']) * h_NH, axis=-1) + h_NH @ p['c']
  if visible == 'binary':
    return -(v_NV @ p['b']) - interaction_N
  return 0.5 * jnp.sum((v_NV - p['b'][None]) ** 2, axis=-1) - interaction_N


def binary_states(n: int) -> np.ndarray:
  """All 2^n binary vectors: [2^n, n] float32."""
  return np.array(list(itertools.product((0.0, 1.0), repeat=n)), np.float32).reshape(-1, n)


def exact_log_z(p, visible: str):
  """log Z by enumerating the 2^H hidden states (H <= 20):

    'binary'    log Z = logsumexp_h [c.h + sum_i softplus(b_i + W_i.h)]
    'gaussian'  log Z = logsumexp_h [c.h + |b + W h|^2 / 2 - |b|^2 / 2] + V/2 log 2 pi
  """
  num_v, num_h = p['W'].shape
  if num_h > 20:
    raise ValueError(f'exact_log_z enumerates 2^H hidden states; H = {num_h} is too many.')
  h_SH = jnp.asarray(binary_states(num_h))
  pre_SV = h_SH @ p['W'].T + p['b'][None]
  if visible == 'binary':
    return jax.nn.logsumexp(h_SH @ p['c'] + jax.nn.softplus(pre_SV).sum(-1))
  terms_S = h_SH @ p['c'] + 0.5 * jnp.sum(pre_SV ** 2, -1) - 0.5 * jnp.sum(p['b'] ** 2)
  return jax.nn.logsumexp(terms_S) + 0.5 * num_v * math.log(2 * math.pi)


def cd_gradients(p, v0_NV, start_MV, key, k: int, visible: str):
  """Minus the CD-k / PCD-k estimate of the log-likelihood gradient (module docstring), and the
  negative chains' end states: the chains start at `start_MV` (the batch for CD, the persistent
  chains for PCD) and run k block-Gibbs steps."""
  ph0_NH = jax.nn.sigmoid(hidden_logits(p, v0_NV))
  vk_MV, _ = gibbs(p, start_MV, key, k, visible)
  phk_MH = jax.nn.sigmoid(hidden_logits(p, vk_MV))
  n, m = v0_NV.shape[0], vk_MV.shape[0]
  grads = {'W': -(v0_NV.T @ ph0_NH / n - vk_MV.T @ phk_MH / m),
           'b': -(v0_NV.mean(0) - vk_MV.mean(0)),
           'c': -(ph0_NH.mean(0) - phk_MH.mean(0))}
  return grads, vk_MV


def reconstruction_error(p, v_NV, key, visible: str):
  """Mean over the batch of sum_i (v_i - E[v_i | h])^2, h ~ p(h | v)."""
  recon_NV = visible_mean(p, sample_hidden(p, v_NV, key), visible)
  return jnp.mean(jnp.sum((v_NV - recon_NV) ** 2, axis=-1))


def init_rbm(key, num_visible: int, num_hidden: int, visible_bias=None):
  """{'W', 'b', 'c'} with logical axes: W ~ N(0, 0.01^2), c = 0, b = visible_bias (default 0)."""
  b = jnp.zeros((num_visible,), jnp.float32) if visible_bias is None else visible_bias
  return {'W': nn.LogicallyPartitioned(0.01 * jax.random.normal(key, (num_visible, num_hidden)), ('embed', 'mlp')),
          'b': nn.LogicallyPartitioned(b, ('embed',)),
          'c': nn.LogicallyPartitioned(jnp.zeros((num_hidden,), jnp.float32), ('mlp',))}


def smoothed_logit(mean_V, count):
  """logit((mean * count + 1) / (count + 2)): the Laplace-smoothed marginals' logits (0 when count = 0)."""
  q = (mean_V * count + 1.0) / (count + 2.0)
  return jnp.log(q) - jnp.log1p(-q)


def rbm_optimizer(optim, initial_momentum: float, momentum_steps: int, total_steps: int):
  """SGD with momentum (initial_momentum for the first momentum_steps updates, then optim.momentum) and
  L2 weight decay optim.weight_decay on W only, for {'W', 'b', 'c'} trees (module docstring)."""
  if optim.get('name', 'sgd') != 'sgd':
    raise ConfigError(f"RBMs are trained by feeding CD statistics to SGD with momentum (Hinton's guide); "
                      f"config.optim.name={optim.name!r} is not supported: set config.optim.name='sgd'.")
  final = float(optim.get('momentum', 0.0))
  momentum = lambda count: jnp.where(count < momentum_steps, initial_momentum, final)
  return optax.chain(
      optax.add_decayed_weights(float(optim.get('weight_decay', 0.0)), mask={'W': True, 'b': False, 'c': False}),
      optax.inject_hyperparams(optax.trace)(decay=momentum),
      optax.scale_by_learning_rate(learning_rate_schedule(optim, total_steps)))


def init_stats(dim: int):
  return {'mean': jnp.zeros((dim,), jnp.float32), 'sq_mean': jnp.zeros((dim,), jnp.float32),
          'count': jnp.zeros((), jnp.float32)}


def update_stats(stats, x_NV, active):
  """The running mean and mean square of the inputs after batch x (unchanged where `active` is False)."""
  n = x_NV.shape[0]
  weight = jnp.where(active, n / (stats['count'] + n), 0.0)
  return {'mean': stats['mean'] + weight * (x_NV.mean(0) - stats['mean']),
          'sq_mean': stats['sq_mean'] + weight * ((x_NV ** 2).mean(0) - stats['sq_mean']),
          'count': stats['count'] + jnp.where(active, float(n), 0.0)}


def stats_std(stats):
  """Per-dimension std of the statistics (>= 1e-3; 1 before any data)."""
  std = jnp.sqrt(jnp.maximum(stats['sq_mean'] - stats['mean'] ** 2, 0.0))
  return jnp.where(stats['count'] > 0, jnp.maximum(std, _MIN_STD), 1.0)


def epoch_steps(config, info) -> int:
  """Steps of the first epoch: ceil(training examples / global batch)."""
  n = int(info.num_examples.get(config.data.train_split, 0)) or int(config.train.batch_size)
  return -(-n // int(config.train.batch_size))


class RBMAnnealing(ais.AISProblem):
  """The AIS path from the zero-weight RBM with visible biases `base_b` (binary) or the model's own b
  (gaussian) to the RBM `p` (module docstring)."""

  def __init__(self, p, visible: str, base_b=None):
    self.p, self.visible = p, visible
    self.base_b = p['b'] if visible == 'gaussian' else base_b

  def base_sample(self, rng, num):
    shape = (num,) + self.base_b.shape
    if self.visible == 'binary':
      return jax.random.bernoulli(rng, jax.nn.sigmoid(self.base_b)[None], shape).astype(jnp.float32)
    return self.base_b[None] + jax.random.normal(rng, shape)

  def base_log_z(self):
    num_v, num_h = self.p['W'].shape
    if self.visible == 'binary':
      return jnp.sum(jax.nn.softplus(self.base_b)) + num_h * math.log(2)
    return 0.5 * num_v * math.log(2 * math.pi) + num_h * math.log(2)

  def _visible_bias(self, beta):
    return (1 - beta) * self.base_b + beta * self.p['b']

  def _log_f(self, beta, v_NV, logits_NH):
    soft_N = jax.nn.softplus(beta * logits_NH).sum(-1)
    if self.visible == 'binary':
      return v_NV @ self._visible_bias(beta) + soft_N
    return -0.5 * jnp.sum((v_NV - self.p['b'][None]) ** 2, axis=-1) + soft_N

  def log_f(self, beta, v_NV):
    return self._log_f(beta, v_NV, hidden_logits(self.p, v_NV))

  def transition(self, rng, beta, v_NV):
    return self._transition(rng, beta, v_NV, hidden_logits(self.p, v_NV))

  def step(self, rng, beta_prev, beta, v_NV):
    logits_NH = hidden_logits(self.p, v_NV)   # one v W for the weight and the transition
    delta = self._log_f(beta, v_NV, logits_NH) - self._log_f(beta_prev, v_NV, logits_NH)
    return delta, self._transition(rng, beta, v_NV, logits_NH)

  def _transition(self, rng, beta, v_NV, logits_NH):
    k_h, k_v = jax.random.split(rng)
    h_NH = jax.random.bernoulli(k_h, jax.nn.sigmoid(beta * logits_NH)).astype(v_NV.dtype)
    if self.visible == 'binary':
      logits_NV = (beta * h_NH) @ self.p['W'].T + self._visible_bias(beta)[None]
      return jax.random.bernoulli(k_v, jax.nn.sigmoid(logits_NV)).astype(v_NV.dtype)
    mean_NV = self.p['b'][None] + (beta * h_NH) @ self.p['W'].T
    return mean_NV + jax.random.normal(k_v, v_NV.shape, v_NV.dtype)


@register('rbm')
class RBM(Method):
  """Bernoulli- or Gaussian-Bernoulli RBM; see the module docstring."""

  has_likelihood = True
  ema_copy_keys = ('data',)

  def __init__(self, config, info):
    super().__init__(config, info)
    hp = self.hp = method_hparams(config, DEFAULTS, 'RBM')
    self.visible = hp.visible
    if self.visible not in VISIBLE:
      raise ConfigError(f'config.method.visible={self.visible!r} is not one of {", ".join(VISIBLE)}.')
    check_data(info, self.visible)
    self.shape = tuple(info.shape)
    self.dim = math.prod(self.shape)
    self.hidden = int(config.model.hidden)
    self.k = int(hp.cd_k)
    if self.hidden < 1:
      raise ConfigError(f'config.model.hidden must be >= 1, got {self.hidden}.')
    self.persistent = bool(hp.persistent)
    self.num_chains = int(hp.chains) or int(config.train.batch_size)
    self.sample_steps = int(hp.sample_steps)
    self.stats_steps = epoch_steps(config, info)
    self.ais_betas = ais.schedule(hp.ais_betas, hp.ais_breaks)
    self.ais_chains = int(hp.ais_chains)
    self.tx = rbm_optimizer(config.optim, float(hp.initial_momentum), int(hp.momentum_steps), config.train.steps)

  # ---- data space <-> model space -------------------------------------------------------------

  def _flat(self, x):
    return x.reshape(x.shape[0], -1)

  def to_model(self, x, stats):
    """Flat model inputs: x itself (binary) or standardised (gaussian)."""
    x_NV = self._flat(x)
    if self.visible == 'binary':
      return x_NV
    return (x_NV - stats['mean'][None]) / stats_std(stats)[None]

  def to_data(self, v_NV, stats):
    """Model-space visibles (binary states, or Gaussian means) as examples shaped like the data."""
    if self.visible == 'gaussian':
      v_NV = v_NV * stats_std(stats)[None] + stats['mean'][None]
      if self.info.kind == 'image':
        v_NV = jnp.clip(v_NV, 0.0, 1.0)
    return v_NV.reshape(v_NV.shape[0], *self.shape)

  def base_bias(self, params):
    """Visible biases of the base-rate RBM (binary) from the training marginals."""
    stats = params['data']
    return smoothed_logit(stats['mean'], stats['count'])

  # ---- the Method contract --------------------------------------------------------------------

  def init(self, rng, batch):
    k_w, k_chains, k_state = jax.random.split(rng, 3)
    x_NV = self._flat(batch['x'])
    b = smoothed_logit(x_NV.mean(0), x_NV.shape[0]) if self.visible == 'binary' else None
    rbm = init_rbm(k_w, self.dim, self.hidden, b)
    params = {'rbm': rbm, 'data': init_stats(self.dim)}
    extra = {}
    if self.persistent:
      shape = (self.num_chains, self.dim)
      chains = (jax.random.bernoulli(k_chains, 0.5, shape).astype(jnp.float32) if self.visible == 'binary'
                else jax.random.normal(k_chains, shape))
      extra['chains'] = nn.LogicallyPartitioned(chains, ('batch', None))
    ema = jax.tree.map(jnp.copy, params) if self.config.train.ema_decay > 0 else None
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.tx.init(rbm),
                      ema_params=ema, extra=extra, rng=k_state)

  def train_step(self, state, batch):
    p = state.params['rbm']
    stats = update_stats(state.params['data'], self._flat(batch['x']), state.step < self.stats_steps)
    v0_NV = self.to_model(batch['x'], stats)
    start_MV = state.extra['chains'] if self.persistent else v0_NV
    grads, chains_MV = cd_gradients(p, v0_NV, start_MV, step_rng(state, _NEGATIVE), self.k, self.visible)
    updates, opt_state = self.tx.update(grads, state.opt_state, p)
    extra = {**state.extra, 'chains': chains_MV} if self.persistent else state.extra
    metrics = {'loss': reconstruction_error(p, v0_NV, step_rng(state, _RECONSTRUCT), self.visible),
               'free_energy': jnp.mean(free_energy(p, v0_NV, self.visible))}
    new_state = state.replace(step=state.step + 1, params={'rbm': optax.apply_updates(p, updates), 'data': stats},
                              opt_state=opt_state, extra=extra)
    return new_state, metrics

  def ais_problem(self, params):
    return RBMAnnealing(params['rbm'], self.visible, self.base_bias(params))

  def log_unnormalized(self, params, x):
    """-F(v) in data space: log p(x) + log Z per example (the Gaussian's standardisation Jacobian included)."""
    stats = params['data']
    neg_f = -free_energy(params['rbm'], self.to_model(x, stats), self.visible)
    if self.visible == 'gaussian':
      neg_f = neg_f - jnp.sum(jnp.log(stats_std(stats)))
    return neg_f

  def nll_given_log_z(self, params, batch, rng, log_z):
    """-log p(x) = F(v) + log Z per example, given an estimate of log Z."""
    return log_z - self.log_unnormalized(params, batch['x'])

  def nll(self, params, batch, rng):
    """F(v) + log Z per example, log Z from one AIS run (config.method.ais_*) keyed on `rng`."""
    log_z = ais.log_z(self.ais_problem(params), rng, self.ais_betas, self.ais_chains)
    return self.nll_given_log_z(params, batch, rng, log_z)

  def anomaly_score(self, params, batch, rng):
    """The free energy (-log p(x) up to the constant log Z): no AIS needed."""
    return -self.log_unnormalized(params, batch['x'])

  def gibbs_progression(self, params, rng, num, snapshots):
    """The Gibbs chains at each step count in `snapshots` (increasing): [len(snapshots), num, *shape].

    The chains start from the base-rate distribution (binary) or N(b, I) (gaussian).
    """
    p, stats = params['rbm'], params['data']
    k_start, k_chain = jax.random.split(rng)
    if self.visible == 'binary':
      v = jax.random.bernoulli(k_start, jax.nn.sigmoid(self.base_bias(params))[None],
                               (num, self.dim)).astype(jnp.float32)
    else:
      v = p['b'][None] + jax.random.normal(k_start, (num, self.dim))
    frames, done = [], 0
    for s in snapshots:
      v, mean = gibbs(p, v, jax.random.fold_in(k_chain, s), s - done, self.visible)
      done = s
      frames.append(self.to_data(v if self.visible == 'binary' else mean, stats))
    return jnp.stack(frames)

  def sample(self, params, rng, num):
    """`sample_steps` block-Gibbs steps: [num, *shape] (binary states; Gaussian means, see the docstring)."""
    return self.gibbs_progression(params, rng, num, (self.sample_steps,))[0]


def check_data(info, visible: str):
  """ConfigError unless the data suits the visible units."""
  if visible == 'binary' and (info.levels != 2 or info.dequantized):
    raise ConfigError(
        f"a binary RBM models binary data, but dataset {info.name!r} has levels={info.levels} "
        f"(dequantized={info.dequantized}). Set config.data.binarize='dynamic' (or 'threshold'), or "
        "config.method.visible='gaussian' with config.data.dequantize=True.")
  if visible == 'gaussian' and info.levels is not None and not info.dequantized:
    raise ConfigError(
        f"a Gaussian RBM is a density for continuous data, but dataset {info.name!r} is discrete "
        f'(levels={info.levels}); its NLL would be meaningless. Set config.data.dequantize=True.')
