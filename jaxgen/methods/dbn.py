"""Deep belief networks (Hinton, Osindero & Teh, 2006): a greedily trained stack of binary RBMs.

model.hidden = (n_1, ..., n_L); RBM l (l = 0..L-1, parameters params['rbm<l>'] = {W_l, b_l, c_l})
connects h_l (its visibles; h_0 = v, the data) to h_{l+1}. The generative model is the top RBM
as an undirected prior p(h_{L-1}, h_L), and below it directed sigmoid belief nets
p(h_l | h_{l+1}) = prod_i sigmoid(b_l + W_l h_{l+1})_i, RBM l's visible conditional.

Greedy layer-wise training as stages of one run: layer l trains during steps [l S, (l + 1) S),
S = method.stage_steps (the top layer keeps training if config.train.steps > L S). At a step of
stage l the data batch is passed up through the frozen layers below by sampling
h_{j+1} ~ q(h_{j+1} | h_j) = sigmoid(c_j + h_j W_j): binary posterior samples, not probabilities,
so each RBM is trained on binary data as the generative model has it. Layer l gets one CD-k (or
PCD-k) update on those samples (jaxgen.methods.rbm.cd_gradients) from its own optimizer: SGD with
momentum and weight decay as the RBM's, its momentum and learning-rate schedules counting its own
S updates. The other layers and their optimizer states do not change. The stage is a function of
the step (a `lax.switch`) and everything is in the TrainState, so a run resumed at any step,
within a stage or at a boundary, continues exactly.

params['data']['rbm<l>'] holds the mean of layer l's inputs over the first epoch of its stage
(rbm.update_stats): the base rates of layer l's AIS (Salakhutdinov & Murray, 2008).

Generation: `sample_steps` block-Gibbs steps in the top RBM from its base-rate distribution over
h_{L-1}, then a top-down pass h_l ~ p(h_l | h_{l+1}) to v; samples are binary, shaped like the
data.

Likelihood: the variational lower bound of Salakhutdinov & Murray (2008, eq. 20; for L = 2
log p(v) >= E_q(h1|v)[log p(v|h1) + log p*(h1)] + H(q(h1|v)) - log Z_top), for L layers

  log p(v) >= E_q[ sum_{l=0..L-2} log p(h_l | h_{l+1}) - F_top(h_{L-1}) ] + E_q[ sum_l H(q(h_{l+1} | h_l)) ] - log Z_top

with q the sampled up-pass, -F_top(h) = b.h + sum_j softplus(c_j + h.W_j) the log of the top
RBM's unnormalised marginal p*(h_{L-1}), and log Z_top from AIS on the top RBM (from its base-rate
RBM). The expectation is a Monte Carlo average over `bound_samples` up-pass samples per example;
each layer's entropy is the analytic entropy of q(h_{l+1} | h_l) given the sampled h_l (unbiased
for E_q[-log q], with less variance). `nll` returns minus the bound: an upper bound on -log p(v)
in nats (exact for L = 1, an RBM). The `ais` evaluator reports it with log Z's spread.

Config keys (config.method; the RBM's optimizer keys, see jaxgen.methods.rbm):
  model.hidden              (n_1, ..., n_L)
  method.stage_steps        S, steps per layer (config.train.steps >= L S)
  method.cd_k, persistent, chains, initial_momentum, momentum_steps, sample_steps,
  method.ais_betas, ais_breaks, ais_chains          as the RBM's (AIS runs on the top RBM)
  method.bound_samples      up-pass samples per example in the bound
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxgen import distributions
from jaxgen.core.state import TrainState, step_rng
from jaxgen.errors import ConfigError
from jaxgen.evals import ais
from jaxgen.methods import register, rbm
from jaxgen.methods.base import Method

# config.method keys and their defaults.
DEFAULTS = dict(
    stage_steps=0, cd_k=1, persistent=False, chains=0,
    initial_momentum=0.5, momentum_steps=0,
    sample_steps=1000,
    ais_betas=(500, 4000, 10000), ais_breaks=(0.5, 0.9), ais_chains=100,
    bound_samples=100,
)

# step_rng tags.
_NEGATIVE, _RECONSTRUCT, _UP = 0, 1, 2


def bernoulli_entropy(logits):
  """Entropy of Bernoulli(sigmoid(logits)) in nats, elementwise."""
  q = jax.nn.sigmoid(logits)
  return q * jax.nn.softplus(-logits) + (1.0 - q) * jax.nn.softplus(logits)


@register('dbn')
class DBN(Method):
  """Binary DBN; see the module docstring."""

  has_likelihood = True
  ema_copy_keys = ('data',)

  def __init__(self, config, info):
    super().__init__(config, info)
    hp = self.hp = rbm.method_hparams(config, DEFAULTS, 'DBN')
    rbm.check_data(info, 'binary')
    self.shape = tuple(info.shape)
    self.dim = math.prod(self.shape)
    self.hidden = tuple(int(n) for n in config.model.hidden)
    if not self.hidden or min(self.hidden) < 1:
      raise ConfigError(f'config.model.hidden must be a tuple of layer widths >= 1, got {config.model.hidden}.')
    self.sizes = (self.dim,) + self.hidden
    self.num_layers = len(self.hidden)
    self.names = tuple(f'rbm{l}' for l in range(self.num_layers))
    steps = int(config.train.steps)
    self.stage_steps = int(hp.stage_steps) or steps // self.num_layers
    if self.stage_steps < 1 or steps < self.num_layers * self.stage_steps:
      raise ConfigError(
          f'a DBN of {self.num_layers} layers trains each for config.method.stage_steps={hp.stage_steps} steps, '
          f'so config.train.steps={steps} must be at least {self.num_layers} x that (and positive). Set '
          f'config.train.steps={self.num_layers * max(self.stage_steps, 1)} or lower stage_steps.')
    self.k = int(hp.cd_k)
    self.persistent = bool(hp.persistent)
    self.num_chains = int(hp.chains) or int(config.train.batch_size)
    self.sample_steps = int(hp.sample_steps)
    self.bound_samples = int(hp.bound_samples)
    if self.bound_samples < 1:
      raise ConfigError(f'config.method.bound_samples must be >= 1, got {self.bound_samples}.')
    self.stats_steps = rbm.epoch_steps(config, info)
    self.ais_betas = ais.schedule(hp.ais_betas, hp.ais_breaks)
    self.ais_chains = int(hp.ais_chains)
    self.tx = rbm.rbm_optimizer(config.optim, float(hp.initial_momentum), int(hp.momentum_steps), self.stage_steps)

  def stage(self, step):
    """The layer trained at `step`: min(step // stage_steps, L - 1)."""
    return jnp.minimum(step // self.stage_steps, self.num_layers - 1)

  # ---- the Method contract --------------------------------------------------------------------

  def init(self, rng, batch):
    keys = jax.random.split(rng, 2 * self.num_layers + 1)
    x_NV = batch['x'].reshape(batch['x'].shape[0], -1)
    params, opt_state, chains = {}, {}, {}
    for l, name in enumerate(self.names):
      # The data layer's visible biases from the first batch (Hinton's guide); higher layers' from 0.
      b = rbm.smoothed_logit(x_NV.mean(0), x_NV.shape[0]) if l == 0 else None
      params[name] = rbm.init_rbm(keys[2 * l], self.sizes[l], self.sizes[l + 1], b)
      opt_state[name] = self.tx.init(params[name])
      if self.persistent:
        draw = jax.random.bernoulli(keys[2 * l + 1], 0.5, (self.num_chains, self.sizes[l])).astype(jnp.float32)
        chains[name] = nn.LogicallyPartitioned(draw, ('batch', None))
    params['data'] = {name: rbm.init_stats(self.sizes[l]) for l, name in enumerate(self.names)}
    extra = {'chains': chains} if self.persistent else {}
    ema = jax.tree.map(jnp.copy, params) if self.config.train.ema_decay > 0 else None
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, ema_params=ema,
                      extra=extra, rng=keys[-1])

  def up(self, params, v_NV, key, layers: int):
    """Binary posterior samples h_layers of the up-pass from v through the first `layers` RBMs."""
    h = v_NV
    for l in range(layers):
      h = rbm.sample_hidden(params[self.names[l]], h, jax.random.fold_in(key, l))
    return h

  def _layer_step(self, l: int, state, batch):
    """One CD/PCD update of layer l on the up-pass samples of the batch: (params, opt_state, extra, metrics)."""
    name, params = self.names[l], state.params
    p = params[name]
    x_NV = self.up(params, batch['x'].reshape(batch['x'].shape[0], -1), step_rng(state, _UP), l)
    since = state.step - l * self.stage_steps
    stats = rbm.update_stats(params['data'][name], x_NV, (since >= 0) & (since < self.stats_steps))
    start = state.extra['chains'][name] if self.persistent else x_NV
    grads, chains = rbm.cd_gradients(p, x_NV, start, step_rng(state, _NEGATIVE), self.k, 'binary')
    updates, layer_opt = self.tx.update(grads, state.opt_state[name], p)
    new_params = {**params, name: optax.apply_updates(p, updates), 'data': {**params['data'], name: stats}}
    extra = state.extra
    if self.persistent:
      extra = {**extra, 'chains': {**extra['chains'], name: chains}}
    metrics = {'loss': rbm.reconstruction_error(p, x_NV, step_rng(state, _RECONSTRUCT), 'binary'),
               'free_energy': jnp.mean(rbm.free_energy(p, x_NV, 'binary')),
               'stage': jnp.float32(l)}
    return new_params, {**state.opt_state, name: layer_opt}, extra, metrics

  def train_step(self, state, batch):
    branches = [lambda s, b, l=l: self._layer_step(l, s, b) for l in range(self.num_layers)]
    params, opt_state, extra, metrics = jax.lax.switch(self.stage(state.step), branches, state, batch)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, extra=extra), metrics

  def ais_problem(self, params):
    top = self.names[-1]
    stats = params['data'][top]
    return rbm.RBMAnnealing(params[top], 'binary', rbm.smoothed_logit(stats['mean'], stats['count']))

  def log_bound_unnormalized(self, params, x, rng):
    """The bound on log p(x) plus log Z_top per example: [B] (module docstring)."""
    v_BV = x.reshape(x.shape[0], -1)
    samples, batch = self.bound_samples, v_BV.shape[0]
    h = jnp.broadcast_to(v_BV[None], (samples,) + v_BV.shape).reshape(samples * batch, -1)
    total = jnp.zeros((samples * batch,), jnp.float32)
    for l in range(self.num_layers - 1):
      p = params[self.names[l]]
      logits_NH = rbm.hidden_logits(p, h)
      h_next = jax.random.bernoulli(jax.random.fold_in(rng, l), jax.nn.sigmoid(logits_NH)).astype(h.dtype)
      down_logits = h_next @ p['W'].T + p['b'][None]
      total = (total + distributions.bernoulli_log_prob(down_logits, h).sum(-1)
               + bernoulli_entropy(logits_NH).sum(-1))
      h = h_next
    total = total - rbm.free_energy(params[self.names[-1]], h, 'binary')
    return total.reshape(samples, batch).mean(0)

  def nll_given_log_z(self, params, batch, rng, log_z):
    """Minus the lower bound on log p(x) per example, given log Z of the top RBM: an upper bound on the NLL."""
    return log_z - self.log_bound_unnormalized(params, batch['x'], rng)

  def nll(self, params, batch, rng):
    """Minus the bound, log Z_top from one AIS run (config.method.ais_*) keyed on `rng`."""
    k_ais, k_bound = jax.random.split(rng)
    log_z = ais.log_z(self.ais_problem(params), k_ais, self.ais_betas, self.ais_chains)
    return self.nll_given_log_z(params, batch, k_bound, log_z)

  def anomaly_score(self, params, batch, rng):
    """Minus the bound without log Z_top (a constant): no AIS needed."""
    return -self.log_bound_unnormalized(params, batch['x'], rng)

  def down(self, params, h, key):
    """Top-down pass from h_{L-1} to binary v: [N, D]."""
    for l in reversed(range(self.num_layers - 1)):
      h, _ = rbm.sample_visible(params[self.names[l]], h, jax.random.fold_in(key, l), 'binary')
    return h

  def gibbs_progression(self, params, rng, num, snapshots):
    """Top-RBM Gibbs chains at each step count in `snapshots`, each passed down to v: [len(snapshots), num, *shape]."""
    top = self.names[-1]
    k_start, k_chain, k_down = jax.random.split(rng, 3)
    stats = params['data'][top]
    base = jax.nn.sigmoid(rbm.smoothed_logit(stats['mean'], stats['count']))
    h = jax.random.bernoulli(k_start, base[None], (num, self.sizes[-2])).astype(jnp.float32)
    frames, done = [], 0
    for s in snapshots:
      h, _ = rbm.gibbs(params[top], h, jax.random.fold_in(k_chain, s), s - done, 'binary')
      done = s
      frames.append(self.down(params, h, jax.random.fold_in(k_down, s)).reshape(num, *self.shape))
    return jnp.stack(frames)

  def sample(self, params, rng, num):
    """Binary samples [num, *shape]: `sample_steps` Gibbs steps in the top RBM, then the top-down pass."""
    return self.gibbs_progression(params, rng, num, (self.sample_steps,))[0]
