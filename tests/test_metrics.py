"""Evaluation mathematics against closed forms, brute-force loops and reference implementations.

Every metric in jaxgen.evals.metrics is pinned by a case with a known answer (FD of commuting
Gaussians, IS of one-hot predictions, hand-computed k-NN radii, the chi^2 mass of the
high-quality region) and by agreement with an independent computation (scipy.linalg.sqrtm,
an O(n^2) MMD loop, cdist, sklearn's roc_auc_score).
"""

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import scipy.stats
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from jaxgen.evals import metrics


@pytest.fixture(autouse=True, scope='module')
def single_threaded_blas():
  """These matrices are small: OpenBLAS threads only contend (10x slower on a loaded 2-core box)."""
  with threadpool_limits(limits=1, user_api='blas'):
    yield


# ---------------------------------------------------------------- Frechet distance


def sqrtm_reference(mu1, sigma1, mu2, sigma2):
  """The textbook FD with scipy's general matrix square root (real part)."""
  diff = mu1 - mu2
  covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean).real)


def test_gaussian_stats_is_mean_and_unbiased_covariance():
  x = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
  mu, sigma = metrics.gaussian_stats(x)
  centred = x.astype(np.float64) - x.astype(np.float64).mean(0)
  assert mu.dtype == sigma.dtype == np.float64
  np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
  np.testing.assert_allclose(sigma, centred.T @ centred / 6, rtol=1e-12)
  with pytest.raises(ValueError):
    metrics.gaussian_stats(x[:1])


def test_frechet_distance_commuting_covariances_closed_form():
  rng = np.random.default_rng(1)
  d = 16
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  a, b = rng.uniform(0.01, 4.0, size=d), rng.uniform(0.01, 4.0, size=d)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  assert metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
  # Commuting but not diagonal: the same spectra in a shared rotated basis.
  q, _ = np.linalg.qr(rng.normal(size=(d, d)))
  fd = metrics.frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
  assert fd == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_matches_sqrtm_reference_full_rank():
  rng = np.random.default_rng(2)
  d = 64
  for _ in range(3):
    w1, w2 = rng.normal(size=(d, 2 * d)), rng.normal(size=(d, 2 * d)) * rng.uniform(0.2, 2.0, size=(d, 1))
    sigma1, sigma2 = w1 @ w1.T / (2 * d), w2 @ w2.T / (2 * d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d) * 0.1
    fd = metrics.frechet_distance(mu1, sigma1, mu2, sigma2)
    assert isinstance(fd, float)
    assert fd == pytest.approx(sqrtm_reference(mu1, sigma1, mu2, sigma2), rel=1e-6)


def test_frechet_distance_rank_deficient():
  """50 samples in 128 dimensions: both covariances have rank 49."""
  rng = np.random.default_rng(3)
  x = rng.normal(size=(50, 128))
  y = rng.normal(size=(50, 128)) * 1.5 + 0.2
  mu1, sigma1 = metrics.gaussian_stats(x)
  mu2, sigma2 = metrics.gaussian_stats(y)
  assert np.linalg.matrix_rank(sigma1) == 49
  fd = metrics.frechet_distance(mu1, sigma1, mu2, sigma2)
  assert np.isfinite(fd) and fd >= 0
  assert fd == pytest.approx(sqrtm_reference(mu1, sigma1, mu2, sigma2), rel=1e-4)
  assert metrics.frechet_distance(mu2, sigma2, mu1, sigma1) == pytest.approx(fd, rel=1e-10)
  # Identical inputs: exactly zero up to rounding (a sqrt(eigvalsh(A s A)) trace would leave ~1e-8).
  scale = np.trace(sigma1) + mu1 @ mu1
  same = metrics.frechet_distance(mu1, sigma1, mu1, sigma1)
  assert 0.0 <= same < 1e-12 * scale
  # One rank-deficient against one full-rank covariance.
  full = np.cov(rng.normal(size=(1000, 128)), rowvar=False)
  fd = metrics.frechet_distance(mu1, sigma1, mu2, full)
  assert fd == pytest.approx(sqrtm_reference(mu1, sigma1, mu2, full), rel=1e-4)


def test_frechet_distance_symmetric_and_identity_on_full_rank():
  rng = np.random.default_rng(4)
  mu1, sigma1 = metrics.gaussian_stats(rng.normal(size=(300, 32)))
  mu2, sigma2 = metrics.gaussian_stats(rng.standard_t(5, size=(300, 32)))
  assert metrics.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(
      metrics.frechet_distance(mu2, sigma2, mu1, sigma1), rel=1e-10)
  assert 0.0 <= metrics.frechet_distance(mu1, sigma1, mu1, sigma1) < 1e-12 * np.trace(sigma1)


def test_frechet_distance_rejects_bad_inputs():
  eye = np.eye(3)
  with pytest.raises(ValueError):
    metrics.frechet_distance(np.zeros(3), eye, np.zeros(3), -eye)  # not a covariance
  with pytest.raises(ValueError):
    metrics.frechet_distance(np.zeros(3), eye, np.zeros(4), np.eye(4))
  with pytest.raises(ValueError):
    metrics.frechet_distance(np.full(3, np.nan), eye, np.zeros(3), eye)


# ---------------------------------------------------------------- KID


def mmd2_loop(x, y):
  """Unbiased MMD^2 with k(a, b) = (a.b/d + 1)^3, by explicit double loops."""
  m, d = x.shape
  k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3  # noqa: E731
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
  return (xx + yy) / (m * (m - 1)) - 2 * xy / (m * m)


def test_kid_single_subset_equals_direct_loop():
  rng = np.random.default_rng(5)
  x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)) + 0.3
  # subset_size is capped at 6, so every subset is a permutation of the full sets, and the
  # estimator is permutation invariant.
  mean, std = metrics.kid(x, y, num_subsets=1)
  assert mean == pytest.approx(mmd2_loop(x, y), rel=1e-12)
  assert std == 0.0
  mean, std = metrics.kid(x, y, num_subsets=4, subset_size=1000)
  assert mean == pytest.approx(mmd2_loop(x, y), rel=1e-12) and std < 1e-12


def test_kid_same_distribution_near_zero_shifted_positive():
  rng = np.random.default_rng(6)
  d, num_subsets = 16, 50
  real = rng.normal(size=(2000, d))
  same = rng.normal(size=(2000, d))
  shifted = rng.normal(size=(2000, d)) + 0.3
  mean, std = metrics.kid(real, same, num_subsets=num_subsets, subset_size=200, seed=0)
  # Each subset estimate is unbiased with mean 0 under the null; subsets of 200 out of 2000
  # overlap by ~10%, so they are nearly independent and the mean's standard error is about
  # std / sqrt(num_subsets). 4 standard errors.
  stderr = std / math.sqrt(num_subsets)
  assert abs(mean) < 4 * stderr
  mean_shift, std_shift = metrics.kid(real, shifted, num_subsets=num_subsets, subset_size=200, seed=0)
  assert mean_shift > 10 * stderr and mean_shift > 4 * std_shift / math.sqrt(num_subsets)


def test_kid_deterministic_given_seed():
  rng = np.random.default_rng(7)
  x, y = rng.normal(size=(300, 8)), rng.normal(size=(250, 8))
  a = metrics.kid(x, y, num_subsets=5, subset_size=100, seed=3)
  assert a == metrics.kid(x, y, num_subsets=5, subset_size=100, seed=3)
  assert a != metrics.kid(x, y, num_subsets=5, subset_size=100, seed=4)


# ---------------------------------------------------------------- precision / recall


def brute_precision_recall(real, fake, k):
  rr = scipy.spatial.distance.cdist(real, real)
  ff = scipy.spatial.distance.cdist(fake, fake)
  rf = scipy.spatial.distance.cdist(real, fake)
  np.fill_diagonal(rr, np.inf)
  np.fill_diagonal(ff, np.inf)
  real_radii = np.sort(rr, axis=1)[:, k - 1]
  fake_radii = np.sort(ff, axis=1)[:, k - 1]
  precision = np.mean(np.any(rf <= real_radii[:, None], axis=0))
  recall = np.mean(np.any(rf <= fake_radii[None, :], axis=1))
  return precision, recall


def test_knn_radii_exclude_the_point_itself():
  real = np.array([0.0, 1.0, 3.0, 6.0, 10.0])[:, None]
  np.testing.assert_array_equal(metrics.knn_radii(real, k=1, batch_size=2), [1, 1, 2, 3, 4])
  np.testing.assert_array_equal(metrics.knn_radii(real, k=2, batch_size=2), [3, 2, 3, 4, 7])
  np.testing.assert_array_equal(metrics.knn_radii(real, k=4, batch_size=3), [10, 9, 7, 6, 10])
  # A duplicate is a neighbour at distance 0; the point itself is not.
  np.testing.assert_array_equal(metrics.knn_radii(np.array([[0.0], [0.0], [5.0]]), k=1), [0, 0, 5])


def test_precision_recall_hand_built_with_ties():
  real = np.array([0.0, 1.0, 3.0, 6.0, 10.0, 40.0, 41.0])[:, None]  # k=1 radii 1 1 2 3 4 1 1
  fake = np.array([-1.0, 2.0, 8.5, 14.0, 20.0])[:, None]  # k=1 radii 3 3 5.5 5.5 6
  # Fakes: -1 (to 0, radius 1), 2 (to 1), 8.5 (to 10) are inside; 14 is exactly on 10's radius 4
  # (a tie counts as inside); 20 is outside everything: precision 4/5.
  # Reals: 0, 1, 3, 6, 10 are within a fake's radius, 40 and 41 are not: recall 5/7.
  for batch_size in (2, 3, 1024):
    precision, recall = metrics.precision_recall(real, fake, k=1, batch_size=batch_size)
    assert precision == pytest.approx(4 / 5) and recall == pytest.approx(5 / 7)


def test_precision_recall_matches_brute_force():
  rng = np.random.default_rng(8)
  real, fake = rng.normal(size=(60, 5)), rng.normal(size=(45, 5)) * 1.3 + 0.4
  expected = brute_precision_recall(real, fake, k=3)
  assert 0 < expected[0] < 1 and 0 < expected[1] < 1
  assert metrics.precision_recall(real, fake, k=3, batch_size=7) == pytest.approx(expected, abs=1e-12)


def test_precision_recall_limits():
  rng = np.random.default_rng(9)
  x = rng.normal(size=(200, 8))
  assert metrics.precision_recall(x, x, k=3, batch_size=64) == (1.0, 1.0)
  assert metrics.precision_recall(x, x + 100.0, k=3) == (0.0, 0.0)


def test_precision_recall_fake_on_one_of_two_clusters():
  rng = np.random.default_rng(10)
  real = np.concatenate([rng.uniform(0, 1, size=(500, 2)), rng.uniform(10, 11, size=(500, 2))])
  fake = rng.uniform(0, 1, size=(500, 2))
  precision, recall = metrics.precision_recall(real, fake, k=3, batch_size=256)
  assert precision > 0.97
  assert 0.47 < recall <= 0.5  # the second cluster is entirely missed


# ---------------------------------------------------------------- Inception Score


def test_inception_score_constant_predictions_is_one():
  p = np.tile(np.array([0.5, 0.25, 0.25, 0.0]), (40, 1))
  mean, std = metrics.inception_score(p, splits=4)
  assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_one_hot_evenly_spread_is_num_classes():
  num_classes = 10
  p = np.eye(num_classes)[np.arange(100) % num_classes]  # every split of 10 holds each class once
  mean, std = metrics.inception_score(p, splits=10)
  assert mean == pytest.approx(num_classes, rel=1e-12) and std == pytest.approx(0.0, abs=1e-10)
  # The same through logits: near one-hot softmax gives C up to exp(-50)-level corrections.
  mean, _ = metrics.inception_score(logits=50.0 * p, splits=10)
  assert mean == pytest.approx(num_classes, rel=1e-9)


def test_inception_score_matches_direct_formula():
  rng = np.random.default_rng(11)
  p = rng.dirichlet(np.full(4, 0.5), size=21)
  splits = 3
  expected = []
  for k in range(splits):
    part = p[k * 21 // splits:(k + 1) * 21 // splits]
    marginal = part.mean(axis=0)
    kl = [sum(row[c] * math.log(row[c] / marginal[c]) for c in range(4) if row[c] > 0) for row in part]
    expected.append(math.exp(sum(kl) / len(kl)))
  mean, std = metrics.inception_score(p, splits=splits)
  assert mean == pytest.approx(np.mean(expected), rel=1e-12)
  assert std == pytest.approx(np.std(expected), rel=1e-9)
  logits = np.log(p) + 2.0  # softmax is shift invariant
  assert metrics.inception_score(logits=logits, splits=splits) == pytest.approx((mean, std), rel=1e-9)
  np.testing.assert_allclose(metrics.softmax(logits), p, rtol=1e-12)


def test_inception_score_rejects_logits_as_probs():
  with pytest.raises(ValueError):
    metrics.inception_score(np.array([[2.0, -1.0], [0.5, 0.5]]), splits=1)
  with pytest.raises(ValueError):
    metrics.inception_score(splits=1)


# ---------------------------------------------------------------- AUROC


def test_auroc_limits():
  assert metrics.auroc([0.1, 0.2, 0.3], [0.5, 0.9]) == 1.0
  assert metrics.auroc([0.5, 0.9], [0.1, 0.2, 0.3]) == 0.0
  scores = [0.3, 0.1, 0.1, 0.7]
  assert metrics.auroc(scores, scores) == 0.5
  assert metrics.auroc([1.0, 1.0], [1.0, 1.0, 1.0]) == 0.5


def test_auroc_matches_sklearn_with_ties():
  rng = np.random.default_rng(12)
  s_in = np.round(rng.normal(size=300), 1)  # rounding makes many ties
  s_out = np.round(rng.normal(size=200) + 0.7, 1)
  labels = np.concatenate([np.zeros(300), np.ones(200)])
  expected = roc_auc_score(labels, np.concatenate([s_in, s_out]))
  assert metrics.auroc(s_in, s_out) == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- mode coverage

# P(||x - c|| <= 3 std) for a 2-D isotropic Gaussian: the chi^2_2 CDF at 9.
HQ_PROBABILITY = 1.0 - math.exp(-4.5)


def ring8_centers():
  angles = np.arange(8) * np.pi / 4
  return 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid25_centers():
  return np.array(list(itertools.product([-4.0, -2.0, 0.0, 2.0, 4.0], repeat=2)))


def mixture_samples(centers, std, n, seed):
  rng = np.random.default_rng(seed)
  return centers[rng.integers(len(centers), size=n)] + std * rng.normal(size=(n, 2))


def binomial_tolerance(n, p=HQ_PROBABILITY, num_sd=4.0):
  return num_sd * math.sqrt(p * (1 - p) / n)


def test_hq_probability_is_chi2_mass():
  assert HQ_PROBABILITY == pytest.approx(scipy.stats.chi2.cdf(9.0, df=2), rel=1e-12)
  assert HQ_PROBABILITY == pytest.approx(0.98889, abs=1e-5)


def test_mode_coverage_true_ring8():
  result = metrics.mode_coverage(mixture_samples(ring8_centers(), 0.02, 2500, seed=13), ring8_centers(), 0.02)
  assert result['modes'] == 8
  assert abs(result['hq_fraction'] - HQ_PROBABILITY) < binomial_tolerance(2500)


def test_mode_coverage_definition_is_euclidean_radius():
  """200k samples pin hq_fraction to 1 - exp(-4.5), ruling out the box (0.9946) and 1-D (0.9973) readings."""
  n = 200_000
  result = metrics.mode_coverage(mixture_samples(ring8_centers(), 0.02, n, seed=14), ring8_centers(), 0.02)
  tolerance = binomial_tolerance(n)
  assert abs(result['hq_fraction'] - HQ_PROBABILITY) < tolerance
  for alternative in (scipy.stats.norm.cdf(3) - scipy.stats.norm.cdf(-3),
                      (scipy.stats.norm.cdf(3) - scipy.stats.norm.cdf(-3)) ** 2):
    assert abs(alternative - HQ_PROBABILITY) > 3 * tolerance


def test_mode_coverage_true_grid25():
  result = metrics.mode_coverage(mixture_samples(grid25_centers(), 0.05, 2500, seed=15), grid25_centers(), 0.05)
  assert result['modes'] == 25
  assert abs(result['hq_fraction'] - HQ_PROBABILITY) < binomial_tolerance(2500)


def test_mode_coverage_collapsed_and_far():
  centers = ring8_centers()
  collapsed = centers[3] + 0.02 * np.random.default_rng(16).normal(size=(2500, 2))
  result = metrics.mode_coverage(collapsed, centers, 0.02)
  assert result['modes'] == 1
  assert abs(result['hq_fraction'] - HQ_PROBABILITY) < binomial_tolerance(2500)
  # All samples at the origin: 2 away from every centre, 33 std: nothing is high quality.
  assert metrics.mode_coverage(np.zeros((100, 2)), centers, 0.02) == {'hq_fraction': 0.0, 'modes': 0}


def test_mode_coverage_min_count_and_boundary():
  centers = ring8_centers()
  samples = np.concatenate([np.repeat(centers[:1], 20, axis=0), np.repeat(centers[1:2], 19, axis=0)])
  assert metrics.mode_coverage(samples, centers, 0.02, min_count=20) == {'hq_fraction': 1.0, 'modes': 1}
  assert metrics.mode_coverage(samples, centers, 0.02, min_count=19)['modes'] == 2
  # Exactly num_std * std away counts as high quality (3 * 0.25 = 0.75 and 0.75^2 are exact).
  edge = np.array([[0.75, 0.0], [0.0, 0.7500001]])
  result = metrics.mode_coverage(edge, np.zeros((1, 2)), 0.25, min_count=1)
  assert result == {'hq_fraction': 0.5, 'modes': 1}
