"""Preference/RL mathematics (jaxgen/methods/rl_math.py) against small NumPy references written with
Python loops here: sequence log-probabilities, Bradley-Terry, DPO (also on log-probabilities worked
out by hand), GAE, the clipped PPO policy and value objectives, KL-penalised rewards and whitening,
on random inputs with masks of different lengths (garbage at masked positions must not matter).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.methods import rl_math

LENGTHS = [0, 1, 3, 7, 5]  # valid prefix lengths of B = 5 rows of T = 7
B, T = len(LENGTHS), 7


def prefix_mask(lengths=LENGTHS, width=T):
  return np.array([[1.0 if t < n else 0.0 for t in range(width)] for n in lengths], np.float32)


def rand(seed, *shape, scale=1.0):
  return (scale * np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def log_sigmoid(z):
  return -math.log1p(math.exp(-z)) if z >= 0 else z - math.log1p(math.exp(z))


def test_sequence_logprob_against_a_loop():
  logits = rand(0, B, T, 6, scale=2.0)
  tokens = np.random.default_rng(1).integers(0, 6, size=(B, T))
  mask = prefix_mask()
  expected = np.zeros(B)
  for b in range(B):
    for t in range(LENGTHS[b]):
      row = logits[b, t].astype(np.float64)
      expected[b] += row[tokens[b, t]] - (row.max() + math.log(np.exp(row - row.max()).sum()))
  got = rl_math.sequence_logprob(jnp.asarray(logits), jnp.asarray(tokens), jnp.asarray(mask))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  assert got[0] == 0.0  # an empty completion has log-probability 0


def test_bradley_terry_against_numpy():
  rc, rr = rand(2, 9), rand(3, 9)
  expected = np.mean([-log_sigmoid(float(c - r)) for c, r in zip(rc, rr)])
  np.testing.assert_allclose(rl_math.bradley_terry_loss(jnp.asarray(rc), jnp.asarray(rr)), expected, rtol=1e-6)
  np.testing.assert_allclose(rl_math.bradley_terry_accuracy(jnp.asarray(rc), jnp.asarray(rr)), np.mean(rc > rr))
  # Equal rewards: probability 1/2 for either order.
  np.testing.assert_allclose(rl_math.bradley_terry_loss(jnp.zeros(3), jnp.zeros(3)), math.log(2), rtol=1e-6)


def test_dpo_on_hand_computed_log_probabilities():
  """Vocabulary {0, 1}. The policy puts logits [0, log 3] at each position: p(1) = 3/4, p(0) = 1/4; the
  reference is uniform. Chosen = [1, 1], rejected = [0, 0], beta = 1/2:
    pc = 2 log 3/4, pr = 2 log 1/4, rc = rr = 2 log 1/2
    chosen reward   = 1/2 (2 log 3/4 - 2 log 1/2) = log 3/2
    rejected reward = 1/2 (2 log 1/4 - 2 log 1/2) = log 1/2
    margin = log 3,  loss = -log sigmoid(log 3) = -log 3/4 = log 4/3."""
  policy_logits = jnp.asarray([[[0.0, math.log(3.0)]] * 2])
  ref_logits = jnp.zeros((1, 2, 2))
  chosen, rejected, mask = jnp.asarray([[1, 1]]), jnp.asarray([[0, 0]]), jnp.ones((1, 2))
  pc = rl_math.sequence_logprob(policy_logits, chosen, mask)
  pr = rl_math.sequence_logprob(policy_logits, rejected, mask)
  rc = rl_math.sequence_logprob(ref_logits, chosen, mask)
  rr = rl_math.sequence_logprob(ref_logits, rejected, mask)
  np.testing.assert_allclose([pc[0], pr[0], rc[0], rr[0]],
                             [2 * math.log(0.75), 2 * math.log(0.25), 2 * math.log(0.5), 2 * math.log(0.5)], rtol=1e-6)
  loss, metrics = rl_math.dpo_loss(pc, pr, rc, rr, beta=0.5)
  np.testing.assert_allclose(loss, math.log(4 / 3), rtol=1e-6)
  np.testing.assert_allclose(metrics['rewards_chosen'], math.log(1.5), rtol=1e-6)
  np.testing.assert_allclose(metrics['rewards_rejected'], math.log(0.5), rtol=1e-6)
  np.testing.assert_allclose(metrics['reward_margin'], math.log(3), rtol=1e-6)
  assert float(metrics['accuracy']) == 1.0

  # Two pairs by hand: z = 1/2 ((-10 + 11) - (-12 + 11)) = 1 and z = 1/2 ((-5 + 5) - (-4 + 5)) = -1/2.
  loss, metrics = rl_math.dpo_loss(jnp.asarray([-10.0, -5.0]), jnp.asarray([-12.0, -4.0]), jnp.asarray([-11.0, -5.0]),
                                   jnp.asarray([-11.0, -5.0]), beta=0.5)
  np.testing.assert_allclose(loss, (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(0.5))) / 2, rtol=1e-6)
  np.testing.assert_allclose([metrics['rewards_chosen'], metrics['rewards_rejected'], metrics['reward_margin'],
                              metrics['accuracy']], [0.25, 0.0, 0.25, 0.5], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('beta,smoothing', [(0.1, 0.0), (2.0, 0.0), (0.5, 0.2)])
def test_dpo_against_numpy_on_random_inputs(beta, smoothing):
  pc, pr, rc, rr = (rand(s, 8, scale=5.0) - 20 for s in (4, 5, 6, 7))
  losses, margins = [], []
  for b in range(8):
    z = beta * ((float(pc[b]) - float(rc[b])) - (float(pr[b]) - float(rr[b])))
    losses.append(-(1 - smoothing) * log_sigmoid(z) - smoothing * log_sigmoid(-z))
    margins.append(z)
  loss, metrics = rl_math.dpo_loss(*map(jnp.asarray, (pc, pr, rc, rr)), beta=beta, label_smoothing=smoothing)
  np.testing.assert_allclose(loss, np.mean(losses), rtol=1e-5)
  np.testing.assert_allclose(metrics['reward_margin'], np.mean(margins), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(metrics['rewards_chosen'], beta * np.mean(pc.astype(np.float64) - rc), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(metrics['accuracy'], np.mean(np.array(margins) > 0))


def test_dpo_is_log_2_when_the_policy_is_the_reference():
  pc, pr = jnp.asarray(rand(8, 6) - 30), jnp.asarray(rand(9, 6) - 30)
  loss, metrics = rl_math.dpo_loss(pc, pr, pc, pr, beta=0.3)
  np.testing.assert_allclose(loss, math.log(2), rtol=1e-6)
  assert float(metrics['reward_margin']) == 0.0 and float(metrics['accuracy']) == 0.0


def test_dpo_gradient_raises_chosen_and_lowers_rejected():
  """-d loss / d log pi(chosen) > 0 and -d loss / d log pi(rejected) < 0 for every pair; the magnitudes are
  beta sigmoid(-z) / B."""
  pc, pr, rc, rr = (jnp.asarray(rand(s, 6, scale=3.0) - 10) for s in (10, 11, 12, 13))
  beta = 0.7
  g_c, g_r = jax.grad(lambda c, r: rl_math.dpo_loss(c, r, rc, rr, beta)[0], argnums=(0, 1))(pc, pr)
  assert np.all(np.asarray(g_c) < 0) and np.all(np.asarray(g_r) > 0)
  z = beta * ((pc - rc) - (pr - rr))
  np.testing.assert_allclose(-g_c, beta * jax.nn.sigmoid(-z) / 6, rtol=1e-5)
  np.testing.assert_allclose(g_r, -g_c, rtol=1e-6)


def gae_reference(rewards, values, mask, last_value, gamma, lam):
  """GAE by the textbook loop over each episode: a maximal run of valid steps a..e of a row. The episode
  ends at e (next value 0) unless e == T - 1 (bootstrapped with last_value)."""
  rows, width = mask.shape
  adv, ret = np.zeros((rows, width)), np.zeros((rows, width))
  for b in range(rows):
    valid = [t for t in range(width) if mask[b, t]]
    episodes = [[t for t in valid if t >= a and all(mask[b, a:t + 1])] for a in valid if a == 0 or not mask[b, a - 1]]
    for steps in episodes:
      running = 0.0
      for t in reversed(steps):
        if t != steps[-1]:
          next_value = values[b, t + 1]
        else:
          next_value = last_value[b] if t == width - 1 else 0.0
        delta = rewards[b, t] + gamma * next_value - values[b, t]
        running = delta + gamma * lam * running
        adv[b, t] = running
        ret[b, t] = running + values[b, t]
  return adv, ret


HOLES = np.array([[1, 1, 0, 1, 1, 1, 1], [0, 1, 1, 0, 0, 1, 0]], np.float32)  # two episodes in one row


@pytest.mark.parametrize('gamma,lam', [(0.99, 0.95), (1.0, 1.0), (0.9, 0.0)])
@pytest.mark.parametrize('mask', [prefix_mask(), HOLES], ids=['prefix', 'holes'])
def test_gae_against_a_numpy_loop(gamma, lam, mask):
  rows = mask.shape[0]
  # Garbage at the masked-out positions: it must not reach the result.
  rewards = rand(14, rows, T) + (1 - mask) * 100.0
  values = rand(15, rows, T) - (1 - mask) * 50.0
  last_value = rand(16, rows)
  adv, ret = jax.jit(rl_math.gae, static_argnums=(4, 5))(*map(jnp.asarray, (rewards, values, mask, last_value)), gamma,
                                                        lam)
  exp_adv, exp_ret = gae_reference(rewards, values, mask, last_value, gamma, lam)
  np.testing.assert_allclose(adv, exp_adv, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ret, exp_ret, rtol=1e-5, atol=1e-5)
  if gamma == lam == 1.0 and mask is not HOLES:  # the lambda-return is then the Monte-Carlo return
    b = 2  # a terminal row of length 3: the return is the sum of the rewards to go
    np.testing.assert_allclose(ret[b, :3], np.cumsum(rewards[b, :3][::-1])[::-1], rtol=1e-5)


def test_ppo_policy_loss_against_a_numpy_loop():
  mask = prefix_mask()
  logp_old = rand(17, B, T) - 2
  logp_new = logp_old + rand(18, B, T, scale=0.4)  # ratios from ~0.3 to ~3: many tokens clipped
  adv = rand(19, B, T)
  eps = 0.2
  objective, clipped, kl, count = 0.0, 0, 0.0, 0
  grad = np.zeros((B, T))
  for b, n in enumerate(LENGTHS):
    for t in range(n):
      r = math.exp(float(logp_new[b, t]) - float(logp_old[b, t]))
      unclipped, clip = r * adv[b, t], min(max(r, 1 - eps), 1 + eps) * adv[b, t]
      objective += min(unclipped, clip)
      clipped += clip < unclipped
      kl += (r - 1) - math.log(r)
      grad[b, t] = -r * adv[b, t] if unclipped <= clip else 0.0  # d(-min)/d logp_new: zero where the clip binds
      count += 1
  args = tuple(map(jnp.asarray, (logp_new, logp_old, adv, mask)))
  loss, metrics = rl_math.ppo_policy_loss(*args, eps)
  np.testing.assert_allclose(loss, -objective / count, rtol=1e-5)
  np.testing.assert_allclose(metrics['clip_fraction'], clipped / count, rtol=1e-6)
  np.testing.assert_allclose(metrics['approx_kl'], kl / count, rtol=1e-4)
  assert 0 < clipped < count
  g = jax.grad(lambda lp: rl_math.ppo_policy_loss(lp, *args[1:], eps)[0])(args[0])
  np.testing.assert_allclose(g, grad / count, rtol=1e-5, atol=1e-7)


def test_ppo_value_loss_against_a_numpy_loop():
  mask = prefix_mask()
  v_old, returns = rand(20, B, T), rand(21, B, T)
  v_new = v_old + rand(22, B, T, scale=0.5)
  eps = 0.2
  total, clipped, count = 0.0, 0, 0
  for b, n in enumerate(LENGTHS):
    for t in range(n):
      vc = v_old[b, t] + min(max(v_new[b, t] - v_old[b, t], -eps), eps)
      e, ec = (v_new[b, t] - returns[b, t]) ** 2, (vc - returns[b, t]) ** 2
      total += max(e, ec)
      clipped += ec > e
      count += 1
  loss, metrics = rl_math.ppo_value_loss(*map(jnp.asarray, (v_new, v_old, returns, mask)), eps)
  np.testing.assert_allclose(loss, 0.5 * total / count, rtol=1e-5)
  np.testing.assert_allclose(metrics['value_clip_fraction'], clipped / count, rtol=1e-6)
  assert 0 < clipped < count


def test_kl_penalty_rewards_against_a_loop():
  mask = prefix_mask()
  logp, logp_ref, final = rand(23, B, T) - 2, rand(24, B, T) - 2, rand(25, B)
  coef = 0.05
  expected = np.zeros((B, T))
  for b, n in enumerate(LENGTHS):
    for t in range(n):
      expected[b, t] = -coef * (logp[b, t] - logp_ref[b, t]) + (final[b] if t == n - 1 else 0.0)
  got = rl_math.kl_penalty_rewards(*map(jnp.asarray, (logp, logp_ref, mask)), coef, jnp.asarray(final))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(rl_math.sequence_kl(*map(jnp.asarray, (logp, logp_ref, mask))),
                             [np.sum((logp - logp_ref)[b, :n]) for b, n in enumerate(LENGTHS)], rtol=1e-5, atol=1e-6)


def test_whiten_against_numpy():
  mask = prefix_mask()
  x = rand(26, B, T, scale=3.0) + 5 + (1 - mask) * 1000.0
  valid = np.concatenate([x[b, :n] for b, n in enumerate(LENGTHS)]).astype(np.float64)
  expected = np.zeros((B, T))
  for b, n in enumerate(LENGTHS):
    expected[b, :n] = (x[b, :n] - valid.mean()) / math.sqrt(valid.var() + 1e-8)
  got = rl_math.whiten(jnp.asarray(x), jnp.asarray(mask))
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
  got = rl_math.whiten(jnp.asarray(x), jnp.asarray(mask), shift_mean=False)
  np.testing.assert_allclose(got, (expected + valid.mean()) * mask, rtol=1e-4, atol=1e-4)
