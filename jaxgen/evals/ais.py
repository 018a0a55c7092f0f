"""Annealed importance sampling (Neal, 2001) of partition functions, and the `ais` and `gibbs_chain` evaluators.

AIS is generic over an `AISProblem`: a chain of unnormalised densities
f_0, f_beta, ..., f_1 over the same space, where f_0 has a known normaliser
Z_0 and can be sampled exactly, and T_beta is an MCMC transition that leaves
p_beta = f_beta / Z_beta invariant. Starting M chains at x_0 ~ p_0 and moving
them with T_{beta_1}, ..., T_{beta_{K-1}},

  log w = sum_{k=1..K} [log f_{beta_k}(x_{k-1}) - log f_{beta_{k-1}}(x_{k-1})],   x_k ~ T_{beta_k}(. | x_{k-1})

gives E[w] = Z_1 / Z_0, so log Z_1 ~= log Z_0 + log mean_m exp(log w_m). The
estimate is consistent and unbiased in Z, hence (Jensen) biased low in log Z:
an NLL computed with it tends to be optimistic. Its spread shrinks as the
number K of intermediate distributions grows. `run` is one `jax.lax.scan` over
the betas (jit it, as the evaluator does), all chains in parallel; a problem
may override `step` (the weight increment and the transition together) to
share work between them.

The schedule of Salakhutdinov & Murray (2008) for RBMs has 14,500 betas:
`schedule((500, 4000, 10000), (0.5, 0.9))` = 500 evenly spaced in [0, 0.5),
4,000 in [0.5, 0.9), 10,000 in [0.9, 1), then 1.

Methods whose likelihood needs a partition function (jaxgen.methods.rbm,
jaxgen.methods.dbn) expose

  ais_problem(params) -> AISProblem           the annealing path to their log Z
  ais_betas, ais_chains                       their schedule and chain count (config.method.ais_*)
  nll_given_log_z(params, batch, rng, log_z)  per-example NLL (or its upper bound) in nats given log Z

and the `ais` evaluator below runs AIS once per evaluation (not once per eval
batch, as the generic `nll` evaluator would through `method.nll`), reports its
spread, and then the test (and train) NLL with that one log Z:

  nll_nats, nll_bpd     mean test NLL with the pooled log Z (bits/dim on discrete data); for
                        dequantized data plus D log L, as the `nll` evaluator
  train_nll_nats        the same on `train_examples` training examples (0 = skipped)
  log_z                 log Z_0 + log-mean-exp of all repeats x chains importance weights
  log_z_std             std over the `repeats` independent runs of their own log Z estimates
                        (each of `ais_chains` chains; absent for one run); the pooled estimate's
                        spread is about this / sqrt(repeats)
  log_z_lower/upper     log(Z_hat -/+ 3 sigma_hat), sigma_hat the standard error of the pooled
                        mean weight: Salakhutdinov & Murray's +-3 std interval (no lower
                        end when Z_hat <= 3 sigma_hat)
  ais_log_w_std         std of the log importance weights (0 for a perfect annealing path)

`gibbs_chain` writes WORKDIR/samples/gibbs_chain_<step>.png (and .npy): one row
per chain, one column per snapshot of `method.gibbs_progression(params, rng,
num, snapshots)` (the Gibbs chain's progression from its initial state).
"""

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core.mesh import replicated, round_up_to_shards, shard_batch, to_host
from jaxgen.data import eval_batches
from jaxgen.errors import ConfigError
from jaxgen.evals import register
from jaxgen.evals.nll import dequantization_correction
from jaxgen.evals.samples import write_examples


class AISProblem:
  """The annealing path: subclasses define the four functions (all pure, jit-able, batched over chains)."""

  def base_sample(self, rng: jax.Array, num: int):
    """`num` exact samples of p_0 (any pytree of arrays with leading axis `num`)."""
    raise NotImplementedError

  def base_log_z(self) -> jax.Array:
    """log Z_0 of f_0, a scalar."""
    raise NotImplementedError

  def log_f(self, beta: jax.Array, x) -> jax.Array:
    """log f_beta(x) per chain: [num]."""
    raise NotImplementedError

  def transition(self, rng: jax.Array, beta: jax.Array, x):
    """One MCMC step leaving p_beta invariant, per chain."""
    raise NotImplementedError

  def step(self, rng: jax.Array, beta_prev: jax.Array, beta: jax.Array, x):
    """(log f_beta(x) - log f_beta_prev(x), x' ~ T_beta(x)): one AIS step. Override to share work
    between the three (e.g. an RBM's x W)."""
    return self.log_f(beta, x) - self.log_f(beta_prev, x), self.transition(rng, beta, x)


def schedule(counts: Sequence[int], breaks: Sequence[float] = ()) -> np.ndarray:
  """The betas 0 = beta_0 < ... < beta_K = 1: counts[i] evenly spaced betas in [edge_i, edge_{i+1}),
  edges = (0, *breaks, 1), then 1. K = sum(counts) transitions (14,500 for Salakhutdinov & Murray's)."""
  counts, edges = [int(c) for c in counts], [0.0, *[float(b) for b in breaks], 1.0]
  if len(counts) != len(edges) - 1:
    raise ConfigError(f'an AIS schedule needs one count per interval: {len(counts)} counts for the '
                      f'{len(edges) - 1} intervals of edges {edges} (set ais_betas and ais_breaks together).')
  if any(c < 1 for c in counts) or any(a >= b for a, b in zip(edges, edges[1:])):
    raise ConfigError(f'AIS schedule: counts {counts} must be >= 1 and breaks {edges[1:-1]} increasing in (0, 1).')
  parts = [np.linspace(a, b, c, endpoint=False) for a, b, c in zip(edges, edges[1:], counts)]
  return np.concatenate(parts + [np.ones(1)]).astype(np.float32)


def run(problem: AISProblem, rng: jax.Array, betas, num_chains: int) -> jax.Array:
  """log importance weights [num_chains] of one AIS run along `betas` (one lax.scan)."""
  betas = jnp.asarray(betas, jnp.float32)
  k_base, k_steps = jax.random.split(rng)
  x0 = problem.base_sample(k_base, num_chains)

  def body(carry, inputs):
    x, log_w = carry
    i, beta_prev, beta = inputs
    delta, x = problem.step(jax.random.fold_in(k_steps, i), beta_prev, beta, x)
    return (x, log_w + delta), None

  steps = jnp.arange(betas.shape[0] - 1)
  (_, log_w), _ = jax.lax.scan(body, (x0, jnp.zeros((num_chains,), jnp.float32)), (steps, betas[:-1], betas[1:]))
  return log_w


def log_mean_exp(a: jax.Array, axis=None) -> jax.Array:
  n = a.size if axis is None else a.shape[axis]
  return jax.nn.logsumexp(a, axis=axis) - math.log(n)


def log_z(problem: AISProblem, rng: jax.Array, betas, num_chains: int) -> jax.Array:
  """The AIS estimate of log Z_1 from one run of `num_chains` chains."""
  return problem.base_log_z() + log_mean_exp(run(problem, rng, betas, num_chains))


def summarize(log_w_RM, base_log_z) -> dict:
  """Estimates from R independent runs of M chains each (numpy; see the module docstring for the keys)."""
  log_w_RM = np.asarray(log_w_RM, np.float64)
  base = float(base_log_z)
  top_R = log_w_RM.max(axis=1)
  per_run = base + top_R + np.log(np.mean(np.exp(log_w_RM - top_R[:, None]), axis=1))
  flat = log_w_RM.reshape(-1)
  top = flat.max()
  w = np.exp(flat - top)                         # weights scaled by exp(-top)
  mean, stderr = w.mean(), w.std(ddof=1) / math.sqrt(w.size) if w.size > 1 else 0.0
  estimate = base + top + math.log(mean)
  metrics = {'log_z': estimate, 'log_z_upper': base + top + math.log(mean + 3 * stderr),
             'ais_log_w_std': float(flat.std())}
  if len(per_run) > 1:
    metrics['log_z_std'] = float(per_run.std(ddof=1))
  if mean > 3 * stderr:
    metrics['log_z_lower'] = base + top + math.log(mean - 3 * stderr)
  return metrics


def _require(method, names, evaluator):
  missing = [n for n in names if not hasattr(method, n)]
  if missing:
    raise ConfigError(f'config.evals.{evaluator} needs a method with {", ".join(missing)} (an energy-based '
                      f'model: rbm, dbn); {type(method).__name__} has none. Remove config.evals.{evaluator}.')


@register('ais')
class AISEvaluator:
  """Config: every, repeats (independent AIS runs, default 4), seed, batch_size, train_examples (default 500)."""
  KEYS = ('repeats', 'seed', 'batch_size', 'train_examples')

  def __init__(self, eval_config, ctx):
    _require(ctx.method, ('ais_problem', 'nll_given_log_z', 'ais_betas', 'ais_chains'), 'ais')
    self.ctx = ctx
    self.repeats = int(eval_config.get('repeats', 4))
    if self.repeats < 1:
      raise ConfigError(f'config.evals.ais.repeats must be >= 1, got {self.repeats}.')
    self.seed = int(eval_config.get('seed', 0))
    self.train_examples = int(eval_config.get('train_examples', 500))
    self.batch_size = round_up_to_shards(int(eval_config.get('batch_size', 0) or ctx.config.train.eval_batch_size),
                                         ctx.mesh)
    method, chains, repeats = ctx.method, int(ctx.method.ais_chains), self.repeats
    betas = method.ais_betas

    def weights(params, rng):
      # R runs of M chains are one run of R*M chains: the chains never interact.
      problem = method.ais_problem(params)
      return run(problem, rng, betas, repeats * chains).reshape(repeats, chains), problem.base_log_z()

    def summed(params, batch, rng, log_z_value):
      nll = method.nll_given_log_z(params, batch, rng, log_z_value)
      return jnp.sum(nll * batch['mask']), jnp.sum(batch['mask'])

    self._weights = jax.jit(weights, out_shardings=(replicated(ctx.mesh), replicated(ctx.mesh)))
    self._summed = jax.jit(summed, out_shardings=(replicated(ctx.mesh), replicated(ctx.mesh)))

  def _mean_nll(self, params, data_config, split, rng, log_z_value):
    totals = [self._summed(params, shard_batch(batch, self.ctx.mesh), jax.random.fold_in(rng, i), log_z_value)
              for i, batch in enumerate(eval_batches(data_config, self.batch_size, jax.process_index(),
                                                     jax.process_count(), split=split))]
    total = sum(float(to_host(s)) for s, _ in totals)
    count = sum(float(to_host(n)) for _, n in totals)
    return total / count + dequantization_correction(self.ctx.info)

  def __call__(self, state, step):
    ctx, params = self.ctx, state.eval_params()
    rng = jax.random.PRNGKey(self.seed)
    log_w, base = self._weights(params, jax.random.fold_in(rng, 0))
    metrics = summarize(to_host(log_w), to_host(base))
    log_z_value = jnp.float32(metrics['log_z'])
    nll = self._mean_nll(params, ctx.config.data, None, jax.random.fold_in(rng, 1), log_z_value)
    metrics['nll_nats'] = nll
    if ctx.info.levels:
      metrics['nll_bpd'] = nll / (math.prod(ctx.info.shape) * math.log(2))
    if self.train_examples > 0:
      train_data = ctx.config.data.copy_and_resolve_references()
      train_data.max_eval_examples = self.train_examples
      metrics['train_nll_nats'] = self._mean_nll(params, train_data, train_data.train_split,
                                                 jax.random.fold_in(rng, 2), log_z_value)
    return metrics


@register('gibbs_chain')
class GibbsChainEvaluator:
  """Config: every, num (chains, default 8), snapshots (Gibbs steps shown, default 0, 1, 2, 5, 10, 50,
  100, 500, 1000), seed."""
  KEYS = ('num', 'snapshots', 'seed')

  def __init__(self, eval_config, ctx):
    _require(ctx.method, ('gibbs_progression',), 'gibbs_chain')
    self.ctx = ctx
    self.num = int(eval_config.get('num', 8))
    self.snapshots = tuple(int(s) for s in eval_config.get('snapshots', (0, 1, 2, 5, 10, 50, 100, 500, 1000)))
    if list(self.snapshots) != sorted(set(self.snapshots)) or self.snapshots[0] < 0:
      raise ConfigError(f'config.evals.gibbs_chain.snapshots must be increasing and >= 0, got {self.snapshots}.')
    self.seed = int(eval_config.get('seed', 0))
    self._progression = jax.jit(functools.partial(ctx.method.gibbs_progression, num=self.num,
                                                  snapshots=self.snapshots), out_shardings=replicated(ctx.mesh))

  def __call__(self, state, step):
    frames = to_host(self._progression(state.eval_params(), jax.random.PRNGKey(self.seed)))  # [S, num, ...]
    rows = np.swapaxes(frames, 0, 1)                                                        # [num, S, ...]
    write_examples(self.ctx, 'gibbs_chain', step, rows.reshape(-1, *rows.shape[2:]), columns=len(self.snapshots))
    return {}
