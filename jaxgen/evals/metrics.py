"""`metrics`: the pure mathematics of sample-quality evaluation, in float64 numpy.

Evaluators extract features / class probabilities / scores on device, bring
them to the host and reduce them here. Keeping the mathematics separate from
the models, the mesh and jax makes every number testable against closed forms
and reference implementations, and computes it in float64, where the
cancellations in FD and MMD^2 are harmless:

* `gaussian_stats`, `frechet_distance`: FID (Heusel et al. 2017), with a
  matrix square root that stays accurate for rank-deficient covariances.
* `kid`: Kernel Inception Distance (Binkowski et al. 2018), unbiased MMD^2.
* `knn_radii`, `precision_recall`: k-NN manifold precision / recall
  (Kynkaanniemi et al. 2019), in memory-bounded blocks.
* `softmax`, `log_softmax`, `inception_score`: IS (Salimans et al. 2016).
* `auroc`: OOD detection AUROC via the Mann-Whitney U statistic.
* `mode_coverage`: modes captured and high-quality fraction on 2-D Gaussian
  mixtures (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018).
"""

import numpy as np
import scipy.stats

_EPS = np.finfo(np.float64).eps
# An eigenvalue of a covariance more negative than this (relative to its largest) means the
# matrix is not a covariance at all; anything above it is rounding and is clipped to 0.
_NEGATIVE_EIGENVALUE_RTOL = 1e-5
# A Frechet distance more negative than this (relative to its scale) cannot come from rounding.
_NEGATIVE_DISTANCE_RTOL = 1e-9
_MODE_CHUNK = 8192


def _as_2d(x, name):
  x = np.asarray(x, dtype=np.float64)
  if x.ndim != 2:
    raise ValueError(f'{name} must have shape (num, dim), got {x.shape}')
  if not np.all(np.isfinite(x)):
    raise ValueError(f'{name} contains non-finite values')
  return x


# ---------------------------------------------------------------- Frechet distance


def gaussian_stats(features):
  """Mean and unbiased covariance of features (N, D), N >= 2, as float64 (mu (D,), sigma (D, D)).

  sigma = sum_i (x_i - mu)(x_i - mu)^T / (N - 1), i.e. np.cov(features, rowvar=False), which is
  what the FID reference implementations (TTUR, pytorch-fid, clean-fid) store.
  """
  features = _as_2d(features, 'features')
  if features.shape[0] < 2:
    raise ValueError(f'need at least 2 feature vectors for a covariance, got {features.shape[0]}')
  mu = features.mean(axis=0)
  sigma = np.atleast_2d(np.cov(features, rowvar=False))
  return mu, sigma


def _psd_sqrt(sigma, name):
  """(Symmetric PSD square root A with A A = sigma, trace of sigma), sigma projected onto the PSD cone.

  Eigenvalues at or below the numerical rank threshold max|w| * D * eps (np.linalg.matrix_rank's)
  are rounding noise of an exactly singular matrix and are set to 0; a larger negative eigenvalue
  (below -1e-5 * max|w|) means the input is no covariance and raises ValueError.
  """
  w, v = np.linalg.eigh(sigma)
  scale = np.max(np.abs(w)) if w.size else 0.0
  if w.size and w[0] < -_NEGATIVE_EIGENVALUE_RTOL * scale:
    raise ValueError(f'{name} is not positive semi-definite: eigenvalue {w[0]:.3g} '
                     f'against a largest of {scale:.3g}')
  w = np.where(w > scale * sigma.shape[0] * _EPS, w, 0.0)
  return (v * np.sqrt(w)) @ v.T, float(np.sum(w))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """Frechet (2-Wasserstein squared) distance between N(mu1, sigma1) and N(mu2, sigma2); FID on Inception features.

    FD = ||mu1 - mu2||^2 + tr(s1) + tr(s2) - 2 tr((s1 s2)^{1/2})      (Heusel et al. 2017, eq. 6;
                                                                        Dowson & Landau 1982)

  The trace term without a general (non-symmetric) matrix square root such as
  scipy.linalg.sqrtm, which loses accuracy and goes complex when s1 s2 is singular (fewer samples
  than dimensions): with A = s1^{1/2} and B = s2^{1/2} from symmetric eigendecompositions, s1 s2 is
  similar to A s2 A = (A B)(A B)^T, so

    tr((s1 s2)^{1/2}) = sum_i sqrt(eig_i(A s2 A)) = sum_i singular_value_i(A B) = ||A B||_*.

  The nuclear norm is used rather than sqrt(eigvalsh(A s2 A)): the latter squares the matrix first,
  so each zero eigenvalue comes back as ~eps*|s|^2 and its square root as ~sqrt(eps)*|s|, which
  for a rank-deficient covariance with ~D null directions leaves FD(x, x) around -1e-8 * tr(s)
  instead of ~1e-15 * tr(s).

  Edge cases (decided here):
  * Inputs are symmetrised ((s + s^T) / 2) and projected onto the PSD cone: eigenvalues within
    the numerical-rank threshold D * eps * max|w| become exactly 0, so rank-deficient
    covariances (N < D samples) give a finite, accurate result; an eigenvalue below
    -1e-5 * max|w| means the input is not a covariance and raises ValueError, as do non-finite
    values and mismatched shapes. The traces are of the projected matrices.
  * For the projected (PSD) matrices FD >= 0 exactly, so a negative result is rounding: it is
    returned as 0.0 when it is within 1e-9 of the scale ||mu1||^2 + ||mu2||^2 + tr(s1) + tr(s2),
    and raises FloatingPointError otherwise (that cannot come from rounding).

  Returns a python float >= 0.
  """
  mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
  mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
  d = mu1.shape[0]
  if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
    raise ValueError(f'shapes do not match: mu1 {mu1.shape}, sigma1 {sigma1.shape}, '
                     f'mu2 {mu2.shape}, sigma2 {sigma2.shape}')
  for name, x in (('mu1', mu1), ('mu2', mu2), ('sigma1', sigma1), ('sigma2', sigma2)):
    if not np.all(np.isfinite(x)):
      raise ValueError(f'{name} contains non-finite values')
  a, trace1 = _psd_sqrt((sigma1 + sigma1.T) / 2, 'sigma1')
  b, trace2 = _psd_sqrt((sigma2 + sigma2.T) / 2, 'sigma2')
  trace_sqrt = float(np.sum(np.linalg.svd(a @ b, compute_uv=False)))
  diff = mu1 - mu2
  fd = float(diff @ diff) + trace1 + trace2 - 2.0 * trace_sqrt
  if fd < 0.0:
    scale = float(mu1 @ mu1 + mu2 @ mu2) + trace1 + trace2
    if fd < -_NEGATIVE_DISTANCE_RTOL * scale:
      raise FloatingPointError(f'Frechet distance {fd:.6g} is negative beyond rounding (scale {scale:.6g})')
    fd = 0.0
  return fd


# ---------------------------------------------------------------- Kernel Inception Distance


def _polynomial_kernel(x, y):
  """k(x, y) = (x . y / d + 1)^3 for all rows of x (n, d) and y (m, d): (n, m)."""
  k = x @ y.T / x.shape[1] + 1.0
  return k * k * k  # not ** 3, which goes through pow


def _mmd2_unbiased(x, y):
  """Unbiased MMD^2 between equally sized samples x, y (m, d), m >= 2, with the polynomial kernel.

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
              - 2 sum_{i, j} k(x_i, y_j) / m^2
  """
  m = x.shape[0]
  k_xx = _polynomial_kernel(x, x)
  k_yy = _polynomial_kernel(y, y)
  k_xy = _polynomial_kernel(x, y)
  within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
  return float(within - 2.0 * k_xy.sum() / (m * m))


def kid(features_real, features_fake, num_subsets=100, subset_size=1000, seed=0):
  """Kernel Inception Distance: (mean, std) of the unbiased MMD^2 over random subsets (Binkowski et al. 2018).

  Kernel k(x, y) = (x . y / d + 1)^3 on d-dimensional features. Each of `num_subsets` subsets
  draws m = min(subset_size, n_real, n_fake) real and m fake rows without replacement
  (independently per subset, from np.random.default_rng(seed), so the result is deterministic
  given the seed) and computes

    MMD^2_u = [sum_{i != j} k(x_i, x_j) + sum_{i != j} k(y_i, y_j)] / (m (m - 1))
              - 2 sum_{i, j} k(x_i, y_j) / m^2,

  an unbiased estimate of MMD^2 (so it can be slightly negative when the distributions match).
  Returns (mean, std) over subsets, std with ddof=0 as in the reference implementations
  (the spread of single-subset estimates, not the standard error of the mean).
  """
  x = _as_2d(features_real, 'features_real')
  y = _as_2d(features_fake, 'features_fake')
  if x.shape[1] != y.shape[1]:
    raise ValueError(f'feature dimensions differ: {x.shape[1]} vs {y.shape[1]}')
  m = min(int(subset_size), x.shape[0], y.shape[0])
  if m < 2:
    raise ValueError(f'KID needs subsets of at least 2 points, got {m}')
  if num_subsets < 1:
    raise ValueError(f'num_subsets must be >= 1, got {num_subsets}')
  rng = np.random.default_rng(seed)
  values = np.empty(num_subsets)
  for s in range(num_subsets):
    real = x[rng.choice(x.shape[0], m, replace=False)]
    fake = y[rng.choice(y.shape[0], m, replace=False)]
    values[s] = _mmd2_unbiased(real, fake)
  return float(values.mean()), float(values.std())


# ---------------------------------------------------------------- precision / recall


def _squared_distances(x, y, x_sq, y_sq):
  """||x_i - y_j||^2 for blocks x (n, d), y (m, d) with precomputed squared norms, clipped at 0."""
  return np.maximum(x_sq[:, None] + y_sq[None, :] - 2.0 * (x @ y.T), 0.0)


def _knn_squared_radii(x, k, batch_size):
  """Squared k-th nearest-neighbour distances (see `knn_radii`); kept squared so ties compare exactly."""
  n = x.shape[0]
  if not 1 <= k < n:
    raise ValueError(f'k must be in [1, {n - 1}] for {n} points, got {k}')
  sq = np.einsum('ij,ij->i', x, x)
  radii2 = np.empty(n)
  for r0 in range(0, n, batch_size):
    rows = slice(r0, min(r0 + batch_size, n))
    best = np.full((rows.stop - r0, k), np.inf)
    for c0 in range(0, n, batch_size):
      cols = slice(c0, min(c0 + batch_size, n))
      d2 = _squared_distances(x[rows], x[cols], sq[rows], sq[cols])
      if c0 == r0:  # the diagonal block holds each row's distance to itself
        np.fill_diagonal(d2, np.inf)
      best = np.partition(np.concatenate([best, d2], axis=1), k - 1, axis=1)[:, :k]
    radii2[rows] = np.max(best, axis=1)
  return radii2


def knn_radii(features, k=3, batch_size=2048):
  """Distance from each row of features (N, D) to its k-th nearest neighbour among the other rows.

  The point itself is excluded by index (its own distance is never counted, whatever rounding
  gives it), while an exact duplicate elsewhere in the set is a neighbour at distance 0.
  Squared distances ||x||^2 + ||y||^2 - 2 x.y are computed in float64 in
  (batch_size x batch_size) blocks, keeping a running k smallest per row, so memory is
  O(batch_size * (batch_size + k)) whatever N is. Requires 1 <= k < N.
  """
  return np.sqrt(_knn_squared_radii(_as_2d(features, 'features'), k, int(batch_size)))


def _coverage(manifold, r2, queries, batch_size):
  """Fraction of query rows within squared distance <= r2[j] of at least one manifold row j."""
  m_sq = np.einsum('ij,ij->i', manifold, manifold)
  q_sq = np.einsum('ij,ij->i', queries, queries)
  inside = np.zeros(queries.shape[0], dtype=bool)
  for q0 in range(0, queries.shape[0], batch_size):
    rows = slice(q0, min(q0 + batch_size, queries.shape[0]))
    for m0 in range(0, manifold.shape[0], batch_size):
      cols = slice(m0, min(m0 + batch_size, manifold.shape[0]))
      pending = ~inside[rows]
      if not pending.any():
        break
      idx = np.arange(rows.start, rows.stop)[pending]
      d2 = _squared_distances(queries[idx], manifold[cols], q_sq[idx], m_sq[cols])
      inside[idx] |= np.any(d2 <= r2[None, cols], axis=1)
  return float(inside.mean())


def precision_recall(real, fake, k=3, batch_size=2048):
  """Improved precision and recall (Kynkaanniemi et al. 2019): (precision, recall) in [0, 1].

  The real manifold is the union of balls B(r_j, rad_j), rad_j = distance from real point r_j to
  its k-th nearest other real point (`knn_radii`); likewise for the fake manifold. Then

    precision = (1/|F|) sum_{f in F} 1[exists j: ||f - r_j|| <= rad_j]   (fakes on the real manifold)
    recall    = (1/|R|) sum_{r in R} 1[exists j: ||r - f_j|| <= rad'_j]  (reals on the fake manifold)

  A point at exactly the radius counts as inside (squared distance <= squared radius, compared
  without a square-root round trip). Distances are float64, in
  (batch_size x batch_size) blocks (memory bounded for 50k x 50k), with rows already found inside
  skipped.
  """
  real = _as_2d(real, 'real')
  fake = _as_2d(fake, 'fake')
  if real.shape[1] != fake.shape[1]:
    raise ValueError(f'feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}')
  batch_size = int(batch_size)
  precision = _coverage(real, _knn_squared_radii(real, k, batch_size), fake, batch_size)
  recall = _coverage(fake, _knn_squared_radii(fake, k, batch_size), real, batch_size)
  return precision, recall


# ---------------------------------------------------------------- Inception Score


def log_softmax(logits, axis=-1):
  """log softmax(logits) along axis, in float64, stable (max-subtracted)."""
  logits = np.asarray(logits, dtype=np.float64)
  shifted = logits - np.max(logits, axis=axis, keepdims=True)
  return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def softmax(logits, axis=-1):
  """softmax(logits) along axis, in float64."""
  return np.exp(log_softmax(logits, axis))


def _log_where_positive(x):
  """log x where x > 0 and -inf where x == 0, without divide-by-zero warnings."""
  return np.log(x, out=np.full_like(x, -np.inf), where=x > 0)


def inception_score(probs=None, splits=10, *, logits=None):
  """Inception Score (Salimans et al. 2016): (mean, std) over `splits` contiguous splits.

  Given class probabilities p(y|x_i) (N, C) (or `logits=`, turned into log-probabilities with
  `log_softmax`), split k is rows [k N / splits, (k + 1) N / splits) (integer division, as in the
  original code), with marginal p_k(y) = mean over the split of p(y|x_i), and

    IS_k = exp( mean_{i in split} KL(p(y|x_i) || p_k(y)) ),
    KL(p || q) = sum_y p(y) (log p(y) - log q(y)),  with 0 log 0 = 0.

  Zeros in probs are fine: terms with p(y|x) = 0 contribute 0, and where p(y|x) > 0 the marginal
  of its split is > 0 too. Returns (mean, std) of IS_k over splits (std with ddof=0).
  IS is 1 when every prediction equals the marginal and at most C.
  """
  if (probs is None) == (logits is None):
    raise ValueError('pass exactly one of probs and logits=')
  if logits is not None:
    log_p = log_softmax(_as_2d(logits, 'logits'))
    p = np.exp(log_p)
  else:
    p = _as_2d(probs, 'probs')
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
      raise ValueError('probs must be non-negative with rows summing to 1 (pass logits= for logits)')
    log_p = _log_where_positive(p)
  n = p.shape[0]
  if not 1 <= splits <= n:
    raise ValueError(f'splits must be in [1, {n}] for {n} predictions, got {splits}')
  scores = np.empty(splits)
  for k in range(splits):
    part = slice(k * n // splits, (k + 1) * n // splits)
    p_k, log_p_k = p[part], log_p[part]
    log_marginal = _log_where_positive(np.mean(p_k, axis=0))
    # Only where p > 0 (there the marginal is > 0 too): 0 log 0 = 0, and no inf - inf.
    log_ratio = np.subtract(log_p_k, log_marginal, out=np.zeros_like(p_k), where=p_k > 0)
    kl = np.sum(p_k * log_ratio, axis=1)
    scores[k] = np.exp(np.mean(kl))
  return float(scores.mean()), float(scores.std())


# ---------------------------------------------------------------- AUROC


def auroc(scores_in, scores_out) -> float:
  """Area under the ROC curve for detecting out-of-distribution inputs by a higher score.

  Out-of-distribution samples are the positives. Via the Mann-Whitney U statistic with average
  ranks for ties (Hanley & McNeil 1982):

    AUROC = P(s_out > s_in) + P(s_out = s_in) / 2
          = (sum of the ranks of scores_out in the pooled scores - n_out (n_out + 1) / 2) / (n_in n_out).

  1.0: every OOD score above every in-distribution score; 0.5: chance; 0.0: reversed.
  """
  s_in = np.asarray(scores_in, dtype=np.float64).ravel()
  s_out = np.asarray(scores_out, dtype=np.float64).ravel()
  if s_in.size == 0 or s_out.size == 0:
    raise ValueError('auroc needs at least one in-distribution and one out-of-distribution score')
  if not (np.all(np.isfinite(s_in)) and np.all(np.isfinite(s_out))):
    raise ValueError('scores contain non-finite values')
  ranks = scipy.stats.rankdata(np.concatenate([s_in, s_out]))  # average ranks for ties, 1-based
  n_in, n_out = s_in.size, s_out.size
  u = np.sum(ranks[n_in:]) - n_out * (n_out + 1) / 2.0
  return float(u / (n_in * n_out))


# ---------------------------------------------------------------- mode coverage


def mode_coverage(samples, centers, std, num_std=3.0, min_count=20):
  """Modes captured and high-quality fraction on a Gaussian mixture with known centres and std.

  The VEEGAN (Srivastava et al. 2017) / PacGAN (Lin et al. 2018) protocol for the 8-Gaussian ring
  and the 25-Gaussian grid: each sample is assigned to its nearest centre (Euclidean); it is
  high quality if that distance is <= num_std * std; a mode is captured if at least `min_count`
  high-quality samples are assigned to it.

  "Within three standard deviations" is taken as the Euclidean radius ||x - c|| <= 3 std (the
  Mahalanobis distance of an isotropic mode), as in PacGAN's reference code, which thresholds
  sqrt(sum_i (x_i - c_i)^2 / std^2) < 3; not as a per-coordinate box |dx|, |dy| <= 3 std. So
  samples from the true 2-D mixture are high quality with probability
  P(chi^2_2 <= 9) = 1 - exp(-9/2) = 0.98889 (not the 1-D 3-sigma mass 0.9973, nor the box's
  0.9973^2 = 0.9946), provided the modes are far apart relative to std.
  Works for any dimension D (samples (N, D), centres (M, D)); the high-quality probability of
  a true sample is then P(chi^2_D <= num_std^2).

  Returns {'hq_fraction': float, 'modes': int}.
  """
  samples = _as_2d(samples, 'samples')
  centers = _as_2d(centers, 'centers')
  if samples.shape[1] != centers.shape[1]:
    raise ValueError(f'samples have dimension {samples.shape[1]}, centres {centers.shape[1]}')
  if samples.shape[0] == 0:
    raise ValueError('mode_coverage needs at least one sample')
  nearest = np.empty(samples.shape[0], dtype=np.int64)
  nearest_d2 = np.empty(samples.shape[0])
  for s0 in range(0, samples.shape[0], _MODE_CHUNK):  # (chunk, M, D) differences at a time
    chunk = samples[s0:s0 + _MODE_CHUNK]
    d2 = np.sum((chunk[:, None, :] - centers[None, :, :]) ** 2, axis=-1)
    nearest[s0:s0 + _MODE_CHUNK] = np.argmin(d2, axis=1)
    nearest_d2[s0:s0 + _MODE_CHUNK] = np.min(d2, axis=1)
  high_quality = nearest_d2 <= (num_std * std) ** 2
  counts = np.bincount(nearest[high_quality], minlength=centers.shape[0])
  return {'hq_fraction': float(np.mean(high_quality)), 'modes': int(np.sum(counts >= min_count))}
