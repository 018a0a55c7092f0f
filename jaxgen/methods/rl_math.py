"""The mathematics of preference learning and RLHF for language models: pure jnp functions.

Shapes: B sequences, L positions of logits/tokens, T positions of per-token quantities (the
completion's tokens), V the vocabulary. A mask is 1.0 at valid positions and 0.0 at padding; every
function ignores masked-out positions (they contribute nothing to sums, means or recursions).
All of them are jit-able and differentiable; reductions are in float32.

Log-probabilities (the alignment is the caller's: logits[:, l] scores tokens[:, l])
  token_logprobs      log softmax(logits)[token]                                     [B, L]
  sequence_logprob    sum_l mask_l log softmax(logits_l)[token_l]                      [B]

Reward model (Bradley & Terry 1952; as the reward model of Ouyang et al. 2022, "InstructGPT")
  P(chosen > rejected) = sigmoid(r_c - r_r),  loss = mean_b -log sigmoid(r_c - r_r)

DPO (Rafailov et al. 2023, "Direct Preference Optimization", Eq. 7), with implicit rewards
  r_c = beta (log pi(y_c|x) - log pi_ref(y_c|x)),  r_r = beta (log pi(y_r|x) - log pi_ref(y_r|x))
  loss = mean_b -log sigmoid(r_c - r_r)
  (with label_smoothing e, the conservative DPO of Mitchell 2023: -(1-e) log sigmoid(z) - e log sigmoid(-z)).

PPO for RLHF (Schulman et al. 2017, "Proximal Policy Optimization"; the per-token recipe of
Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences", and Ouyang et al. 2022):
  kl_penalty_rewards  r_t = -kl_coef (log pi(a_t) - log pi_ref(a_t)) + [t = last valid] R(x, y)
  gae                 delta_t = r_t + gamma V_{t+1} - V_t,  A_t = delta_t + gamma lam A_{t+1}
                      (Schulman et al. 2016, "High-Dimensional Continuous Control Using GAE")
  whiten              (x - mean) / sqrt(var + 1e-8) over the valid positions
  ppo_policy_loss     -masked_mean(min(rho A, clip(rho, 1 - eps, 1 + eps) A)),  rho = exp(logp - logp_old)
  ppo_value_loss      0.5 masked_mean(max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2))
                      (the clipped value loss of OpenAI baselines' PPO2)
Means over tokens are over all valid tokens of the batch (token-level), as in the PPO2/TRL recipe.
"""

import jax
import jax.numpy as jnp


def masked_sum(x, mask, axis=None):
  return jnp.sum(x * mask, axis=axis)


def masked_mean(x, mask, axis=None):
  """sum(x * mask) / sum(mask) over `axis` (all axes by default); 0 where the mask is empty."""
  mask = mask.astype(jnp.float32)
  return masked_sum(x, mask, axis) / jnp.maximum(jnp.sum(mask, axis=axis), 1.0)


def token_logprobs(logits_BLV, tokens_BL):
  """log softmax(logits)[token] at every position: [B, L] float32."""
  logp_BLV = jax.nn.log_softmax(logits_BLV.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(logp_BLV, tokens_BL[..., None], axis=-1)[..., 0]


def sequence_logprob(logits_BLV, tokens_BL, mask_BL):
  """sum_l mask_l log softmax(logits_l)[token_l]: [B], the log-probability of each sequence's valid tokens."""
  return masked_sum(token_logprobs(logits_BLV, tokens_BL), mask_BL.astype(jnp.float32), axis=-1)


def bradley_terry_loss(reward_chosen_B, reward_rejected_B):
  """mean -log sigmoid(r_c - r_r): the negative log-likelihood of the preferences under Bradley-Terry."""
  return jnp.mean(-jax.nn.log_sigmoid(reward_chosen_B.astype(jnp.float32) - reward_rejected_B.astype(jnp.float32)))


def bradley_terry_accuracy(reward_chosen_B, reward_rejected_B):
  """The fraction of pairs whose chosen reward is strictly higher."""
  return jnp.mean((reward_chosen_B > reward_rejected_B).astype(jnp.float32))


def dpo_loss(policy_chosen_logp_B, policy_rejected_logp_B, ref_chosen_logp_B, ref_rejected_logp_B, beta,
             label_smoothing=0.0):
  """DPO's loss mean -log sigmoid(beta ((pc - rc) - (pr - rr))) and its metrics.

  Arguments are sequence log-probabilities [B] (`sequence_logprob` of the completions) under the
  policy and the frozen reference. Metrics (means over the batch): `rewards_chosen` and
  `rewards_rejected` (the implicit rewards beta (log pi - log pi_ref)), `reward_margin` (their
  difference) and `accuracy` (the fraction of pairs with a positive margin).
  """
  f32 = lambda x: x.astype(jnp.float32)
  reward_chosen_B = beta * (f32(policy_chosen_logp_B) - f32(ref_chosen_logp_B))
  reward_rejected_B = beta * (f32(policy_rejected_logp_B) - f32(ref_rejected_logp_B))
  margin_B = reward_chosen_B - reward_rejected_B
  losses_B = -(1.0 - label_smoothing) * jax.nn.log_sigmoid(margin_B) - label_smoothing * jax.nn.log_sigmoid(-margin_B)
  metrics = {'rewards_chosen': jnp.mean(reward_chosen_B), 'rewards_rejected': jnp.mean(reward_rejected_B),
             'reward_margin': jnp.mean(margin_B), 'accuracy': jnp.mean((margin_B > 0).astype(jnp.float32))}
  return jnp.mean(losses_B), metrics


def gae(rewards_BT, values_BT, mask_BT, last_value_B, gamma, lam):
  """Generalised advantage estimates and returns (Schulman et al. 2016), -> (advantages_BT, returns_BT).

  A step t is valid where mask_BT is 1. A valid step whose successor is not valid ends its episode
  (terminal: the next value is 0), so a completion that stops before T gets no value from the padding
  after it. `last_value_B` is the value of the state after step T - 1 and bootstraps rows whose last
  step T - 1 is valid (a completion truncated at T tokens; pass zeros to treat it as terminal too):

    V_next_t = V_{t+1} m_{t+1} for t < T - 1,  last_value for t = T - 1
    delta_t  = r_t + gamma V_next_t - V_t
    A_t      = m_t (delta_t + gamma lam A_{t+1}),  A_T = 0   (A_{t+1} = 0 where m_{t+1} = 0)
    R_t      = m_t (A_t + V_t)   (the lambda-return, the value target)

  One `jax.lax.scan` in reverse over T. Advantages and returns are 0 at invalid steps.
  """
  f32 = lambda x: x.astype(jnp.float32)
  rewards_BT, values_BT, mask_BT = f32(rewards_BT), f32(values_BT), f32(mask_BT)
  next_mask_BT = jnp.concatenate([mask_BT[:, 1:], jnp.ones_like(mask_BT[:, :1])], axis=1)
  next_values_BT = jnp.concatenate([values_BT[:, 1:], f32(last_value_B)[:, None]], axis=1) * next_mask_BT
  deltas_BT = rewards_BT + gamma * next_values_BT - values_BT

  def step(next_advantage_B, inputs):
    delta_B, mask_B = inputs
    advantage_B = mask_B * (delta_B + gamma * lam * next_advantage_B)
    return advantage_B, advantage_B

  _, advantages_TB = jax.lax.scan(step, jnp.zeros_like(rewards_BT[:, 0]), (deltas_BT.T, mask_BT.T), reverse=True)
  advantages_BT = advantages_TB.T
  return advantages_BT, (advantages_BT + values_BT) * mask_BT


def whiten(x_BT, mask_BT, shift_mean=True):
  """(x - mean) / sqrt(var + 1e-8), mean and (population) variance over the valid positions; 0 at invalid ones.

  shift_mean=False adds the mean back, (x - mean) / sqrt(var + 1e-8) + mean (rescale only, as TRL's
  `whiten(..., shift_mean=False)`; used for rewards, whose mean carries the signal).
  """
  x_BT, mask_BT = x_BT.astype(jnp.float32), mask_BT.astype(jnp.float32)
  mean = masked_mean(x_BT, mask_BT)
  var = masked_mean(jnp.square(x_BT - mean), mask_BT)
  out_BT = (x_BT - mean) * jax.lax.rsqrt(var + 1e-8)
  if not shift_mean:
    out_BT = out_BT + mean
  return out_BT * mask_BT


def ppo_policy_loss(logp_new_BT, logp_old_BT, advantages_BT, mask_BT, clip_eps):
  """PPO's clipped surrogate -masked_mean(min(rho A, clip(rho, 1 - eps, 1 + eps) A)), rho = exp(logp - logp_old).

  Metrics (masked means over tokens): `clip_fraction` (tokens where the clipped term is the smaller, i.e.
  active: its gradient is zero), `approx_kl` (Schulman's k3 estimator of KL(old || new), (rho - 1) - log rho,
  nonnegative), `ratio` (mean rho).
  """
  mask_BT = mask_BT.astype(jnp.float32)
  log_ratio_BT = logp_new_BT.astype(jnp.float32) - logp_old_BT.astype(jnp.float32)
  ratio_BT = jnp.exp(log_ratio_BT)
  advantages_BT = advantages_BT.astype(jnp.float32)
  unclipped_BT = ratio_BT * advantages_BT
  clipped_BT = jnp.clip(ratio_BT, 1.0 - clip_eps, 1.0 + clip_eps) * advantages_BT
  loss = -masked_mean(jnp.minimum(unclipped_BT, clipped_BT), mask_BT)
  metrics = {'clip_fraction': masked_mean((clipped_BT < unclipped_BT).astype(jnp.float32), mask_BT),
             'approx_kl': masked_mean((ratio_BT - 1.0) - log_ratio_BT, mask_BT),
             'ratio': masked_mean(ratio_BT, mask_BT)}
  return loss, metrics


def ppo_value_loss(values_new_BT, values_old_BT, returns_BT, mask_BT, clip_eps):
  """PPO2's clipped value loss 0.5 masked_mean(max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2)).

  Returns (loss, metrics) with `value_clip_fraction` (tokens where the clipped error is the larger).
  """
  f32 = lambda x: x.astype(jnp.float32)
  values_new_BT, values_old_BT, returns_BT, mask_BT = f32(values_new_BT), f32(values_old_BT), f32(returns_BT), f32(
      mask_BT)
  clipped_BT = values_old_BT + jnp.clip(values_new_BT - values_old_BT, -clip_eps, clip_eps)
  error_BT = jnp.square(values_new_BT - returns_BT)
  clipped_error_BT = jnp.square(clipped_BT - returns_BT)
  loss = 0.5 * masked_mean(jnp.maximum(error_BT, clipped_error_BT), mask_BT)
  return loss, {'value_clip_fraction': masked_mean((clipped_error_BT > error_BT).astype(jnp.float32), mask_BT)}


def last_valid_onehot(mask_BT):
  """[B, T] one-hot of each row's last valid position (all zeros for a row with no valid position)."""
  mask_BT = mask_BT.astype(jnp.float32)
  T = mask_BT.shape[1]
  last_B = T - 1 - jnp.argmax(mask_BT[:, ::-1] > 0, axis=1)
  has_any_B = jnp.any(mask_BT > 0, axis=1)
  return jax.nn.one_hot(last_B, T, dtype=jnp.float32) * has_any_B[:, None].astype(jnp.float32)


def kl_penalty_rewards(logp_policy_BT, logp_ref_BT, mask_BT, kl_coef, final_reward_B):
  """Per-token RLHF rewards -kl_coef (logp - logp_ref) at valid tokens, plus the sequence's reward R(x, y)
  on its last valid token (Ziegler et al. 2019; Ouyang et al. 2022): [B, T], 0 at invalid positions.

  logp_* are the log-probabilities of the sampled tokens under the policy and the frozen reference;
  sum_t (logp - logp_ref) is a single-sample estimate of KL(pi || pi_ref) for the sequence.
  """
  mask_BT = mask_BT.astype(jnp.float32)
  kl_BT = logp_policy_BT.astype(jnp.float32) - logp_ref_BT.astype(jnp.float32)
  return (-kl_coef * kl_BT) * mask_BT + last_valid_onehot(mask_BT) * final_reward_B.astype(jnp.float32)[:, None]


def sequence_kl(logp_policy_BT, logp_ref_BT, mask_BT):
  """sum_t m_t (logp - logp_ref): [B], the sampled estimate of KL(pi || pi_ref) of each completion."""
  return masked_sum(logp_policy_BT.astype(jnp.float32) - logp_ref_BT.astype(jnp.float32),
                    mask_BT.astype(jnp.float32), axis=-1)
