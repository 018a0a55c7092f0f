"""Preference learning on a language model: a reward model, DPO, and RLHF with PPO.

The task (jaxgen/data/builders/pysource_prompts.py, jaxgen/evals/syntax.py): a prompt is the first P
bytes of a line of stdlib source; a completion is C bytes sampled after it, of which the part up to and
including the first newline counts (its `length`; C when there is no newline). A completion is good when
the completed line parses with `ast.parse`. Everything starts from a pre-trained byte LM (the SFT
policy, a run of configs/lm/transformer_pysource.py) through `config.init_from`.

Sequences: the network reads [bos, prompt, completion[:-1]] (jaxgen.methods.lm.shift_right), so its
position P + j predicts completion token j from the prompt and c_<j. log pi(c | x) is the sum over the
completion's first `length` tokens.

  'reward_model'  r(x, c) = w . h + b, h the network's last hidden state after reading
                  [bos, prompt, c_0..c_{length-1}] (the state that has seen the whole completion).
                  Trained by the Bradley-Terry loss on preference pairs (chosen, rejected)
                  (Ouyang et al. 2022). params: {'lm', 'head'}.
  'dpo'           Direct Preference Optimization (Rafailov et al. 2023) on the pairs: the policy
                  params['lm'] against the frozen reference params['reference'] (the SFT model),
                  strength `beta`. params: {'lm', 'reference'}.
  'ppo'           RLHF with PPO (Ziegler et al. 2019; Ouyang et al. 2022). One train step is one PPO
                  iteration on a batch of prompts, all inside the jitted, sharded step:
                    1. rollout: C tokens per prompt from the policy (temperature 1, KV cache);
                    2. score: the frozen reward model params['reward'] (a 'reward_model' run, via
                       config.method.reward_from) on each completion; per-token rewards
                       -kl_coef (log pi - log pi_ref) plus the score on the last token;
                    3. values from a scalar head on the policy's hidden states (params['value_head']),
                       advantages by GAE (gamma, lam), whitened. The value loss trains the head only
                       (the hidden states are a stop_gradient): with a shared trunk and Adam, its
                       gradient, much larger than the policy's, moved the LM away from the reference
                       while the reward fell (the first syntax-task run: in 60 iterations the
                       sequence KL rose to 16 nats and the mean score fell from 3.0 to -0.2);
                    4. `ppo_epochs` passes over `minibatches` minibatches of the clipped policy loss plus
                       vf_coef times the clipped value loss.
                  params: {'lm', 'value_head', 'reference', 'reward'}.

Only params['lm'] (and 'head' / 'value_head') are trained: the gradient and optimizer state cover those;
'reference' and 'reward' are frozen copies that live in params so that evaluation (KL to the
reference) and checkpoints see them. `init_sources` tells the train loop which run initialises which
part (jaxgen.train.init_from).

Config keys (config.method): completion_len (C); dpo: beta, label_smoothing; ppo: reward_from,
kl_coef, gamma, lam, clip_eps, value_clip, vf_coef, ppo_epochs, minibatches, temperature.
config.model is the LM's (jaxgen.methods.lm), and config.data.seq_len the network's max_len: both must
match the run config.init_from names.
"""

import functools

import jax
import jax.numpy as jnp

from jaxgen.core.optim import make_optimizer
from jaxgen.core.state import TrainState, step_rng
from jaxgen.errors import ConfigError
from jaxgen.methods import register, rl_math
from jaxgen.methods.base import Method, method_settings
from jaxgen.methods.lm import build_network, draw_tokens, generate, model_settings, shift_right

NEWLINE = 10
COMMON = dict(completion_len=48)
RM_DEFAULTS = dict(COMMON)
DPO_DEFAULTS = dict(COMMON, beta=0.1, label_smoothing=0.0)
PPO_DEFAULTS = dict(COMMON, reward_from='', kl_coef=0.05, gamma=1.0, lam=0.95, clip_eps=0.2, value_clip=0.2,
                    vf_coef=0.5, ppo_epochs=2, minibatches=2, temperature=1.0)


def completion_lengths(completion_BC):
  """Tokens that count in each completion [B] int32: through its first newline, or all C without one."""
  num = completion_BC.shape[1]
  is_newline_BC = completion_BC == NEWLINE
  first_B = jnp.argmax(is_newline_BC, axis=1)
  return jnp.where(jnp.any(is_newline_BC, axis=1), first_B + 1, num).astype(jnp.int32)


def length_mask(length_B, num: int):
  """[B, num] float: 1 at the first length_b positions of each row."""
  return (jnp.arange(num)[None, :] < length_B[:, None]).astype(jnp.float32)


def init_head(rng, dim: int):
  """A scalar head w . h + b: w ~ N(0, 1/dim), b = 0."""
  return {'w': jax.random.normal(rng, (dim,)) / jnp.sqrt(dim), 'b': jnp.zeros(())}


def apply_head(head, hidden_BD):
  return hidden_BD.astype(jnp.float32) @ head['w'] + head['b']


class PreferenceMethod(Method):
  """What the three share: the LM network, completion log-probabilities, sampling, frozen parts."""

  KIND = 'pairs'          # the dataset kind the method trains on
  DEFAULTS = COMMON
  TRAINED = ('lm',)       # the params entries the optimizer updates; the others are frozen

  def __init__(self, config, info):
    super().__init__(config, info)
    if info.kind != self.KIND:
      raise ConfigError(f'method {config.method.name!r} trains on a dataset of kind {self.KIND!r} '
                        f"({'syntax_pairs/...: experiments/preference_pairs.py' if self.KIND == 'pairs' else 'pysource_prompts'}); "
                        f'{info.name!r} has kind {info.kind!r}.')
    self.settings = method_settings(config, self.DEFAULTS, f'{config.method.name} method')
    self.prompt_len = int(info.shape[0])
    self.completion_len = int(self.settings.completion_len)
    self.max_len = int(config.data.seq_len)
    if self.prompt_len + self.completion_len + 1 > self.max_len:
      raise ConfigError(f'prompt ({self.prompt_len}) + completion_len ({self.completion_len}) + 1 tokens exceed '
                        f'config.data.seq_len={self.max_len}, the network length (that of the pre-trained LM).')
    self.vocab_size = int(info.levels)
    self.bos_id = int(info.tokenizer.bos_id)
    self.net = build_network(model_settings(config.model), self.vocab_size, self.max_len)
    self.hidden_size = int(getattr(self.net, 'hidden_dim', None) or self.net.embed_dim)
    self.tx = make_optimizer(config.optim, config.train.steps)

  # ---- networks ------------------------------------------------------------------------------

  def apply(self, lm_params, tokens_BL, cache=None):
    return self.net.apply({'params': lm_params}, tokens_BL, cache)

  def completion_logprobs(self, lm_params, prompt_BP, completion_BC):
    """(log pi(c_j | x, c_<j) [B, C], the hidden state that predicts c_j [B, C, D])."""
    tokens_BL = jnp.concatenate([prompt_BP, completion_BC], axis=1)
    logits_BLV, hidden_BLD, _ = self.apply(lm_params, shift_right(tokens_BL, self.bos_id))
    logp_BL = rl_math.token_logprobs(logits_BLV, tokens_BL)
    return logp_BL[:, self.prompt_len:], hidden_BLD[:, self.prompt_len:]

  def score(self, scorer, prompt_BP, completion_BC, length_B):
    """The reward model's r(x, c) [B] with `scorer` = {'lm', 'head'}: the head on the hidden state that
    has read [bos, prompt, c_0..c_{length-1}] (the whole counted completion)."""
    tokens_BL = jnp.concatenate([jnp.full((prompt_BP.shape[0], 1), self.bos_id, prompt_BP.dtype), prompt_BP,
                                 completion_BC], axis=1)
    _, hidden_BLD, _ = self.apply(scorer['lm'], tokens_BL)
    last_B = self.prompt_len + length_B  # index in tokens_BL of the last counted completion token
    hidden_BD = jnp.take_along_axis(hidden_BLD, last_B[:, None, None], axis=1)[:, 0]
    return apply_head(scorer['head'], hidden_BD)

  def sequence_logprob(self, lm_params, prompt_BP, completion_BC, length_B):
    logp_BC, _ = self.completion_logprobs(lm_params, prompt_BP, completion_BC)
    return rl_math.masked_sum(logp_BC, length_mask(length_B, self.completion_len), axis=-1)

  def sequence_kl(self, params, prompt_BP, completion_BC, length_B):
    """sum_t (log pi - log pi_ref) over each completion's tokens [B] (the syntax evaluator's KL estimate)."""
    return (self.sequence_logprob(params['lm'], prompt_BP, completion_BC, length_B)
            - self.sequence_logprob(params['reference'], prompt_BP, completion_BC, length_B))

  def sample(self, params, rng, num, prompt=None, temperature=1.0):
    """[num, P + C] int32: the prompts (int32 [num, P], required), then a completion from the policy."""
    if prompt is None:
      raise ValueError(f'{type(self).__name__}.sample needs prompt=int32 [num, {self.prompt_len}] (use the '
                       'syntax evaluator, which reads prompts from pysource_prompts).')
    draw = functools.partial(draw_tokens, temperature=float(temperature), top_k=0, top_p=1.0)
    return generate(functools.partial(self.apply, params['lm']), self.net, rng, jnp.asarray(prompt, jnp.int32),
                    self.prompt_len + self.completion_len, self.bos_id, draw)

  # ---- training ------------------------------------------------------------------------------

  def init_sources(self):
    """[(params entry, workdir, entry of that run's params)]: what jaxgen.train.init_from copies where."""
    return [('lm', self.config.init_from, 'lm')]

  def trainable(self, params):
    return {k: params[k] for k in self.TRAINED}

  def initial_state(self, params, rng):
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.tx.init(self.trainable(params)),
                      ema_params=None, extra={}, rng=rng)

  def apply_trainable_gradients(self, state, grads):
    trainable = self.trainable(state.params)
    updates, opt_state = self.tx.update(grads, state.opt_state, trainable)
    params = dict(state.params)
    params.update(jax.tree.map(lambda p, u: p + u, trainable, updates))
    return state.replace(params=params, opt_state=opt_state)

  def loss(self, trainable, params, batch, rng):
    raise NotImplementedError

  def train_step(self, state, batch):
    rng = step_rng(state)
    (loss, metrics), grads = jax.value_and_grad(self.loss, has_aux=True)(
        self.trainable(state.params), state.params, batch, rng)
    return self.apply_trainable_gradients(state, grads), dict(metrics, loss=loss)

  def pair_scores(self, params, batch):
    """(score of chosen [B], score of rejected [B]): the preference_accuracy evaluator's inputs."""
    raise NotImplementedError


@register('reward_model')
class RewardModel(PreferenceMethod):
  """Bradley-Terry reward model on preference pairs; see the module docstring."""

  TRAINED = ('lm', 'head')

  def init(self, rng, batch):
    k_net, k_head, k_state = jax.random.split(rng, 3)
    lm = self.net.init(k_net, jnp.zeros((1, self.max_len), jnp.int32))['params']
    return self.initial_state({'lm': lm, 'head': init_head(k_head, self.hidden_size)}, k_state)

  def pair_scores(self, params, batch):
    return (self.score(params, batch['x'], batch['chosen'], batch['chosen_len']),
            self.score(params, batch['x'], batch['rejected'], batch['rejected_len']))

  def loss(self, trainable, params, batch, rng):
    chosen_B, rejected_B = self.pair_scores(trainable, batch)
    return rl_math.bradley_terry_loss(chosen_B, rejected_B), {
        'accuracy': rl_math.bradley_terry_accuracy(chosen_B, rejected_B),
        'reward_margin': jnp.mean(chosen_B - rejected_B)}


@register('dpo')
class DPO(PreferenceMethod):
  """Direct Preference Optimization against a frozen reference; see the module docstring."""

  DEFAULTS = DPO_DEFAULTS

  def init(self, rng, batch):
    k_net, k_state = jax.random.split(rng)
    lm = self.net.init(k_net, jnp.zeros((1, self.max_len), jnp.int32))['params']
    return self.initial_state({'lm': lm, 'reference': jax.tree.map(jnp.copy, lm)}, k_state)

  def init_sources(self):
    return [('lm', self.config.init_from, 'lm'), ('reference', self.config.init_from, 'lm')]

  def logps(self, lm_params, batch):
    return (self.sequence_logprob(lm_params, batch['x'], batch['chosen'], batch['chosen_len']),
            self.sequence_logprob(lm_params, batch['x'], batch['rejected'], batch['rejected_len']))

  def pair_scores(self, params, batch):
    """The implicit rewards beta (log pi - log pi_ref) of chosen and rejected."""
    (pc, pr), (rc, rr) = self.logps(params['lm'], batch), self.logps(params['reference'], batch)
    beta = float(self.settings.beta)
    return beta * (pc - rc), beta * (pr - rr)

  def loss(self, trainable, params, batch, rng):
    policy_chosen, policy_rejected = self.logps(trainable['lm'], batch)
    ref_chosen, ref_rejected = jax.lax.stop_gradient(self.logps(params['reference'], batch))
    return rl_math.dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, float(self.settings.beta),
                            float(self.settings.label_smoothing))


@register('ppo')
class PPO(PreferenceMethod):
  """RLHF with PPO against a frozen reward model; see the module docstring."""

  KIND = 'prompts'
  DEFAULTS = PPO_DEFAULTS
  TRAINED = ('lm', 'value_head')

  def __init__(self, config, info):
    super().__init__(config, info)
    s = self.settings
    batch = int(config.train.batch_size)
    if int(s.minibatches) < 1 or batch % int(s.minibatches):
      raise ConfigError(f'config.method.minibatches={s.minibatches} must divide config.train.batch_size={batch}.')

  def init(self, rng, batch):
    k_net, k_value, k_reward, k_state = jax.random.split(rng, 4)
    lm = self.net.init(k_net, jnp.zeros((1, self.max_len), jnp.int32))['params']
    dim = self.hidden_size
    params = {'lm': lm, 'value_head': init_head(k_value, dim), 'reference': jax.tree.map(jnp.copy, lm),
              'reward': {'lm': jax.tree.map(jnp.copy, lm), 'head': init_head(k_reward, dim)}}
    return self.initial_state(params, k_state)

  def init_sources(self):
    return [('lm', self.config.init_from, 'lm'), ('reference', self.config.init_from, 'lm'),
            ('reward', self.settings.reward_from, None)]

  def rollout(self, params, prompt_BP, rng):
    """Completions [B, C] and everything PPO needs about them, all without gradient."""
    s = self.settings
    tokens = self.sample(params, rng, prompt_BP.shape[0], prompt=prompt_BP, temperature=float(s.temperature))
    completion_BC = tokens[:, self.prompt_len:]
    length_B = completion_lengths(completion_BC)
    mask_BC = length_mask(length_B, self.completion_len)
    logp_BC, hidden_BCD = self.completion_logprobs(params['lm'], prompt_BP, completion_BC)
    ref_logp_BC, _ = self.completion_logprobs(params['reference'], prompt_BP, completion_BC)
    values_BC = apply_head(params['value_head'], hidden_BCD)
    score_B = self.score(params['reward'], prompt_BP, completion_BC, length_B)
    rewards_BC = rl_math.kl_penalty_rewards(logp_BC, ref_logp_BC, mask_BC, float(s.kl_coef), score_B)
    advantages_BC, returns_BC = rl_math.gae(rewards_BC, values_BC, mask_BC, jnp.zeros_like(score_B),
                                            float(s.gamma), float(s.lam))
    data = dict(prompt=prompt_BP, completion=completion_BC, mask=mask_BC, logp=logp_BC, values=values_BC,
                advantages=rl_math.whiten(advantages_BC, mask_BC), returns=returns_BC)
    stats = {'score': jnp.mean(score_B), 'kl': jnp.mean(rl_math.sequence_kl(logp_BC, ref_logp_BC, mask_BC)),
             'completion_tokens': jnp.mean(length_B.astype(jnp.float32)),
             'ended_line': jnp.mean(jnp.any(completion_BC == NEWLINE, axis=1).astype(jnp.float32))}
    return jax.lax.stop_gradient(data), stats

  def ppo_loss(self, trainable, minibatch):
    s = self.settings
    logp_BC, hidden_BCD = self.completion_logprobs(trainable['lm'], minibatch['prompt'], minibatch['completion'])
    values_BC = apply_head(trainable['value_head'], jax.lax.stop_gradient(hidden_BCD))  # head only (docstring)
    policy_loss, policy_metrics = rl_math.ppo_policy_loss(logp_BC, minibatch['logp'], minibatch['advantages'],
                                                          minibatch['mask'], float(s.clip_eps))
    value_loss, value_metrics = rl_math.ppo_value_loss(values_BC, minibatch['values'], minibatch['returns'],
                                                       minibatch['mask'], float(s.value_clip))
    loss = policy_loss + float(s.vf_coef) * value_loss
    return loss, dict(policy_metrics, **value_metrics, policy_loss=policy_loss, value_loss=value_loss)

  def train_step(self, state, batch):
    s = self.settings
    k_rollout, k_shuffle = jax.random.split(step_rng(state))
    data, stats = self.rollout(state.params, batch['x'], k_rollout)
    num, parts, epochs = batch['x'].shape[0], int(s.minibatches), int(s.ppo_epochs)

    def update(state, key):  # one minibatch update; the minibatch is a random part of the batch
      order = jax.random.permutation(key[0], num)[key[1] * (num // parts) + jnp.arange(num // parts)]
      minibatch = jax.tree.map(lambda x: x[order], data)
      (loss, metrics), grads = jax.value_and_grad(self.ppo_loss, has_aux=True)(self.trainable(state.params), minibatch)
      return self.apply_trainable_gradients(state, grads), dict(metrics, loss=loss)

    # (epoch key, part index) per update: the parts of one epoch share its permutation.
    epoch_keys = jax.random.split(k_shuffle, epochs)
    keys = (jnp.repeat(epoch_keys, parts, axis=0), jnp.tile(jnp.arange(parts), epochs))
    state, metrics = jax.lax.scan(update, state, keys)
    return state, dict(jax.tree.map(jnp.mean, metrics), **stats)
