"""TFDS builder `toy2d/<config>`: 2-D distributions with known densities.

Besides the builder, this module gives the distributions themselves as pure
numpy functions, so evaluators can compare a model against the truth:
`sample(config_name, n, seed)` draws points (what the builder stores) and
`log_density(config_name, points)` is the exact log-density for `ring8`,
`grid25` and `checkerboard` (`moons` has none in closed form).

  ring8         8 equally weighted isotropic Gaussians, std 0.02, centres
                2 * (cos(k pi/4), sin(k pi/4)), k = 0..7; label = k.
  grid25        25 equally weighted isotropic Gaussians, std 0.05, centres
                {-4,-2,0,2,4}^2; label = 5 * ix + iy for centre (x_ix, y_iy).
  checkerboard  uniform on the 8 unit squares [i,i+1] x [j,j+1] inside
                [-2,2]^2 whose integer corner (i, j) has i + j even (density
                1/8 on them); label = index of the square in `SQUARES`.
  moons         two half circles in the style of sklearn's make_moons: label 0
                is (cos t, sin t), label 1 is (1 - cos t, 0.5 - sin t), with
                t ~ U[0, pi] and isotropic Gaussian noise of std 0.05.
"""

import itertools

import numpy as np
import scipy.special
import tensorflow_datasets as tfds

CONFIG_NAMES = ('ring8', 'grid25', 'checkerboard', 'moons')
RING8_STD = 0.02
GRID25_STD = 0.05
MOONS_NOISE = 0.05
# Lower-left corners (i, j) of the checkerboard's squares, i + j even.
SQUARES = np.array([(i, j) for i, j in itertools.product(range(-2, 2), repeat=2)
                    if (i + j) % 2 == 0], dtype=np.float64)
NUM_LABELS = {'ring8': 8, 'grid25': 25, 'checkerboard': len(SQUARES), 'moons': 2}
TRAIN_SIZE, TEST_SIZE = 100_000, 10_000
TRAIN_SEED, TEST_SEED = 0, 1


def _check_name(config_name: str) -> None:
  if config_name not in CONFIG_NAMES:
    raise ValueError(f'unknown toy2d config {config_name!r}; choose one of {CONFIG_NAMES}.')


def centres(config_name: str) -> np.ndarray:
  """[K, 2] float64 mixture centres of `ring8` or `grid25`, indexed by label."""
  if config_name == 'ring8':
    angles = np.arange(8) * np.pi / 4
    return 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
  if config_name == 'grid25':
    return np.array(list(itertools.product(range(-4, 5, 2), repeat=2)), dtype=np.float64)
  raise ValueError(f'toy2d/{config_name} is not a Gaussian mixture; only ring8 and grid25 have centres.')


def _mixture_std(config_name: str) -> float:
  return RING8_STD if config_name == 'ring8' else GRID25_STD


def sample(config_name: str, n: int, seed: int):
  """`n` i.i.d. draws as (points float32 [n, 2], labels int64 [n]); pure in `seed`."""
  _check_name(config_name)
  rng = np.random.default_rng(seed)
  labels = rng.integers(NUM_LABELS[config_name], size=n)
  if config_name in ('ring8', 'grid25'):
    points = centres(config_name)[labels] + _mixture_std(config_name) * rng.standard_normal((n, 2))
  elif config_name == 'checkerboard':
    points = SQUARES[labels] + rng.random((n, 2))
  else:  # moons
    t = rng.uniform(0.0, np.pi, size=n)
    outer = np.stack([np.cos(t), np.sin(t)], axis=1)
    inner = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    points = np.where(labels[:, None] == 0, outer, inner) + MOONS_NOISE * rng.standard_normal((n, 2))
  return points.astype(np.float32), labels.astype(np.int64)


def log_density(config_name: str, points) -> np.ndarray:
  """Exact log p(points) in nats, float64 [n], for ring8, grid25 and checkerboard."""
  _check_name(config_name)
  points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
  if config_name in ('ring8', 'grid25'):
    mu = centres(config_name)
    var = _mixture_std(config_name) ** 2
    sq_dist = ((points[:, None, :] - mu[None, :, :]) ** 2).sum(-1)  # [n, K]
    log_components = -np.log(len(mu)) - np.log(2 * np.pi * var) - sq_dist / (2 * var)
    return scipy.special.logsumexp(log_components, axis=1)
  if config_name == 'checkerboard':
    corner = np.floor(points)
    inside = ((corner >= -2) & (corner <= 1)).all(1) & (corner.sum(1) % 2 == 0)
    return np.where(inside, -np.log(len(SQUARES)), -np.inf)
  raise ValueError('toy2d/moons has no closed-form density.')


class Toy2d(tfds.core.GeneratorBasedBuilder):
  """2-D toy distributions (see the module docstring for each config's exact law).

  Splits: `train` = `sample(config, 100_000, seed=0)`, `test` =
  `sample(config, 10_000, seed=1)`, in draw order. Features: `point` float32
  (2,) and `label` (mixture component / square index / moon index).
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name) for name in CONFIG_NAMES]

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'point': tfds.features.Tensor(shape=(2,), dtype=np.float32),
            'label': tfds.features.ClassLabel(num_classes=NUM_LABELS[self.builder_config.name]),
        }),
        disable_shuffling=True,  # keep draw order, so a split equals `sample(...)`
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # generated from a seed: nothing to download
    name = self.builder_config.name
    return {
        'train': self._generate_examples(*sample(name, TRAIN_SIZE, TRAIN_SEED)),
        'test': self._generate_examples(*sample(name, TEST_SIZE, TEST_SEED)),
    }

  def _generate_examples(self, points, labels):
    for i, (point, label) in enumerate(zip(points, labels)):
      yield i, {'point': point, 'label': int(label)}
