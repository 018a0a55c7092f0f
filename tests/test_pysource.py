"""The `pysource` text dataset and the pipeline's text path: the split rule, the byte streams, windows,
step-indexed determinism, and that image/vector datasets are unchanged by it.

The builder is checked against the files on disk: the test stream must be exactly the test files'
bytes, in path order, each followed by a 0 byte.
"""

import collections
import os
import zlib

import ml_collections
import numpy as np
import pytest

from jaxgen import data
from jaxgen.data.builders import pysource
from jaxgen.errors import ConfigError


def text_config(**overrides):
  c = dict(name='pysource', data_dir='', train_split='train', eval_split='test', binarize='', dequantize=False,
           max_eval_examples=0, max_train_examples=0, prefetch=0, seq_len=64)
  c.update(overrides)
  return ml_collections.ConfigDict(c)


def _files_bytes(paths):
  root = pysource.stdlib_dir()
  out = []
  for p in paths:
    with open(os.path.join(root, *p.split('/')), 'rb') as f:
      out.append(f.read())
  return out


def _split_bytes(config, split):
  """The split's windows through eval_batches (every window once, in order), as one byte string."""
  batches = list(data.eval_batches(config, 512, split=split))
  real = np.concatenate([b['mask'] for b in batches]) == 1
  x = np.concatenate([b['x'] for b in batches])[real]
  assert x.dtype == np.int32 and x.min() >= 0 and x.max() <= 255
  return x.astype(np.uint8).tobytes()


def test_split_rule_is_a_stable_hash_of_the_path_and_the_splits_are_disjoint():
  # crc32 of the path, not Python's salted hash(): fixed values on every machine and run.
  assert zlib.crc32(b'os.py') == 2432680823 and not pysource.is_test('os.py')
  assert zlib.crc32(b'asyncio/events.py') == 1367631030 and pysource.is_test('asyncio/events.py')
  test_paths = [p for p in pysource.source_files() if pysource.is_test(p)]
  assert all(zlib.crc32(p.encode()) % 10 == 0 for p in test_paths)
  paths = pysource.source_files()
  assert paths == sorted(set(paths)) and 'os.py' in paths and 'json/decoder.py' in paths
  assert not any(part in pysource.EXCLUDED_DIRS for p in paths for part in p.split('/')[:-1])
  builder = data.pipeline._builder('pysource', data.data_dir(text_config()))
  stored = {}
  for split in ('train', 'test'):
    source = builder.as_data_source(split=split)
    stored[split] = [source[i]['path'].decode() for i in range(len(source))]
  assert set(stored['test']) == set(test_paths) and set(stored['train']) == set(paths) - set(test_paths)
  assert not set(stored['train']) & set(stored['test'])
  assert 0.05 < len(test_paths) / len(paths) < 0.15
  assert builder.info.metadata['python_version'] == pysource.python_tag()[2:]
  assert pysource.python_tag()[2:] in builder.info.description


def test_test_stream_is_every_test_file_byte_in_path_order_with_separators():
  config = text_config(seq_len=97)
  got = _split_bytes(config, 'test')
  test_paths = sorted(p for p in pysource.source_files() if pysource.is_test(p))
  expected = b''.join(b + b'\0' for b in _files_bytes(test_paths))
  assert len(got) == -(-len(expected) // 97) * 97          # padded to whole windows
  assert got[:len(expected)] == expected and set(got[len(expected):]) <= {0}
  # Each file in its place, whole: its bytes between two separators.
  assert expected.count(b'\0') == len(test_paths)
  info = data.get_info(config)
  assert info.num_examples['test'] == len(got) // 97


def test_windows_have_the_configured_length_and_the_data_info_says_text():
  for seq_len in (16, 256):
    config = text_config(seq_len=seq_len)
    info = data.get_info(config)
    assert (info.kind, info.shape, info.levels, info.dequantized, info.num_classes) == ('text', (seq_len,), 256,
                                                                                      False, None)
    batch = data.TrainLoader(config, 8, seed=0).batch(0)
    assert set(batch) == {'x', 'num_bytes'} and batch['x'].shape == (8, seq_len) and batch['x'].dtype == np.int32
    # Bits per byte divide by num_bytes: for bytes every window is seq_len bytes, padding included.
    assert batch['num_bytes'].dtype == np.float32 and (batch['num_bytes'] == seq_len).all()
  # Default window: 256 bytes when config.data.seq_len is absent.
  config = text_config()
  del config['seq_len']
  assert data.get_info(config).shape == (256,)


def test_step_k_batches_are_a_pure_function_of_seed_step_and_process():
  config = text_config()
  a, b = data.TrainLoader(config, 32, seed=3), data.TrainLoader(config, 32, seed=3)
  for step in (0, 7, 2000):   # 2000 * 32 windows: past the first epoch
    np.testing.assert_array_equal(a.batch(step)['x'], b.batch(step)['x'])
  assert not np.array_equal(a.batch(0)['x'], a.batch(1)['x'])
  assert not np.array_equal(a.batch(0)['x'], data.TrainLoader(config, 32, seed=4).batch(0)['x'])
  # Two processes read contiguous halves of the global batch.
  halves = [data.TrainLoader(config, 32, seed=3, process_index=p, process_count=2).batch(5)['x'] for p in (0, 1)]
  np.testing.assert_array_equal(np.concatenate(halves), a.batch(5)['x'])
  # The first epoch's windows are distinct windows of the training stream (as a multiset).
  train = np.frombuffer(_split_bytes(config, 'train'), np.uint8).reshape(-1, 64)
  epoch = np.concatenate([a.batch(s)['x'] for s in range(len(train) // 32)]).astype(np.uint8)
  available = collections.Counter(w.tobytes() for w in train)
  used = collections.Counter(w.tobytes() for w in epoch)
  assert all(available[w] >= count for w, count in used.items())


def test_text_rejects_image_preprocessing_and_bad_windows():
  with pytest.raises(ConfigError, match='apply to images'):
    data.get_info(text_config(dequantize=True))
  with pytest.raises(ConfigError, match='seq_len'):
    data.get_info(text_config(seq_len=0))
  with pytest.raises(ConfigError, match='image_size'):
    data.get_info(text_config(image_size=8))


def test_image_and_vector_datasets_are_unaffected():
  for name, kind, shape, levels in (('digits', 'image', (8, 8, 1), 17), ('toy2d/ring8', 'vector', (2,), None)):
    config = text_config(name=name)   # seq_len is ignored by non-text datasets
    info = data.get_info(config)
    assert (info.kind, info.shape, info.levels) == (kind, shape, levels)
    batch = data.TrainLoader(config, 8, seed=0).batch(0)
    assert batch['x'].dtype == np.float32 and batch['x'].shape == (8,) + shape and batch['label'].dtype == np.int32
