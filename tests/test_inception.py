"""The FID Inception network (jaxgen.evals.inception) and the torch-free .pth reader/writer (torch_pickle).

No real weights here (no network): the loader is exercised on randomly
initialised files of exactly the pytorch-fid structure, written in both torch
formats; the architecture is checked against an independent transcription of
torchvision's layer table; pooling and resizing against numpy references.
"""

import collections
import os
import pickle
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.errors import CheckpointError, DataError
from jaxgen.evals import inception, torch_pickle

# ---------------------------------------------------------------------------------------------
# torch_pickle


def _example_state_dict(rng):
  base = rng.standard_normal(40).astype(np.float32)
  return collections.OrderedDict([
      ('w', rng.standard_normal((3, 4)).astype(np.float32)),
      ('long', np.arange(-2, 5, dtype=np.int64)),
      ('scalar', np.array(7, np.int64)),
      ('half', rng.standard_normal((2, 3)).astype(np.float16)),
      ('double', rng.standard_normal(5)),
      ('int32', np.arange(4, dtype=np.int32)),
      ('bytes', np.arange(6, dtype=np.uint8)),
      ('bool', np.array([True, False, True])),
      ('empty', np.zeros((0, 3), np.float32)),
      ('fortran', np.asfortranarray(rng.standard_normal((3, 5)).astype(np.float32))),
      # a transposed view at an offset of a shared storage, and a strided view of the same storage
      ('transposed', torch_pickle.StridedTensor(base, 3, (4, 5), (1, 7))),
      ('strided', torch_pickle.StridedTensor(base, 1, (2, 3), (20, 2))),
  ])


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_torch_pickle_round_trip_is_bit_exact(tmp_path, legacy):
  rng = np.random.default_rng(0)
  state = _example_state_dict(rng)
  path = tmp_path / 'state.pth'
  torch_pickle.save_state_dict(path, state, legacy=legacy)
  loaded = torch_pickle.load_state_dict(path)
  assert list(loaded) == list(state)
  base = state['transposed'].storage
  expected_views = {
      'transposed': np.array([[base[3 + i + 7 * j] for j in range(5)] for i in range(4)]),
      'strided': np.array([[base[1 + 20 * i + 2 * j] for j in range(3)] for i in range(2)]),
  }
  for key, value in state.items():
    want = expected_views.get(key, value)
    assert loaded[key].dtype == want.dtype, key
    assert loaded[key].shape == want.shape, key
    assert loaded[key].tobytes() == np.ascontiguousarray(want).tobytes(), key
  with open(path, 'rb') as f:
    head = f.read(4)
  assert (head == b'PK\x03\x04') == (not legacy)


def test_torch_pickle_zip_layout(tmp_path):
  path = tmp_path / 'state.pth'
  torch_pickle.save_state_dict(path, {'a': np.ones(3, np.float32), 'b': np.zeros((2, 2), np.float32)})
  with zipfile.ZipFile(path) as archive:
    infos = {info.filename: info for info in archive.infolist()}
    assert set(infos) == {'archive/data.pkl', 'archive/byteorder', 'archive/data/0', 'archive/data/1',
                          'archive/version'}
    assert archive.read('archive/byteorder') == b'little'
    assert all(info.compress_type == zipfile.ZIP_STORED for info in infos.values())
    assert archive.read('archive/data/1') == np.zeros(4, '<f4').tobytes()
    ops = [op.name for op, arg, _ in __import__('pickletools').genops(archive.read('archive/data.pkl'))]
  assert 'GLOBAL' in ops and 'BINPERSID' in ops
  with open(path, 'rb') as f:
    raw = f.read()
  for name in ('archive/data/0', 'archive/data/1'):  # storage data 64-byte aligned, as torch writes it
    header = infos[name].header_offset
    name_len, extra_len = np.frombuffer(raw[header + 26:header + 30], '<u2')
    assert (header + 30 + name_len + extra_len) % 64 == 0


def test_torch_pickle_refuses_arbitrary_globals(tmp_path):
  marker = tmp_path / 'pwned'

  class Evil:

    def __reduce__(self):
      return (os.system, (f'touch {marker}',))

  path = tmp_path / 'evil.pth'
  with open(path, 'wb') as f:
    for header in (torch_pickle.MAGIC_NUMBER, torch_pickle.PROTOCOL_VERSION, {'little_endian': True}):
      pickle.dump(header, f, protocol=2)
    pickle.dump({'x': Evil()}, f, protocol=2)
  with pytest.raises(CheckpointError, match='refusing to unpickle'):
    torch_pickle.load_state_dict(path)
  assert not marker.exists()


def test_torch_pickle_rejects_non_torch_files(tmp_path):
  path = tmp_path / 'junk.pth'
  path.write_bytes(b'definitely not a checkpoint')
  with pytest.raises(CheckpointError, match='not a torch.save file'):
    torch_pickle.load_state_dict(path)


# ---------------------------------------------------------------------------------------------
# Architecture: an independent transcription of torchvision's Inception3 layer table


def _basic(name, cin, cout, kh, kw):
  return [(f'{name}.conv.weight', (cout, cin, kh, kw))] + [
      (f'{name}.bn.{p}', (cout,)) for p in ('weight', 'bias', 'running_mean', 'running_var')]


def _block_a(name, cin, pool_features):
  layers = [('branch1x1', cin, 64, 1, 1), ('branch5x5_1', cin, 48, 1, 1), ('branch5x5_2', 48, 64, 5, 5),
            ('branch3x3dbl_1', cin, 64, 1, 1), ('branch3x3dbl_2', 64, 96, 3, 3), ('branch3x3dbl_3', 96, 96, 3, 3),
            ('branch_pool', cin, pool_features, 1, 1)]
  return sum((_basic(f'{name}.{b}', *rest) for b, *rest in layers), [])


def _block_b(name, cin):
  layers = [('branch3x3', cin, 384, 3, 3), ('branch3x3dbl_1', cin, 64, 1, 1), ('branch3x3dbl_2', 64, 96, 3, 3),
            ('branch3x3dbl_3', 96, 96, 3, 3)]
  return sum((_basic(f'{name}.{b}', *rest) for b, *rest in layers), [])


def _block_c(name, cin, c7):
  layers = [('branch1x1', cin, 192, 1, 1), ('branch7x7_1', cin, c7, 1, 1), ('branch7x7_2', c7, c7, 1, 7),
            ('branch7x7_3', c7, 192, 7, 1), ('branch7x7dbl_1', cin, c7, 1, 1), ('branch7x7dbl_2', c7, c7, 7, 1),
            ('branch7x7dbl_3', c7, c7, 1, 7), ('branch7x7dbl_4', c7, c7, 7, 1), ('branch7x7dbl_5', c7, 192, 1, 7),
            ('branch_pool', cin, 192, 1, 1)]
  return sum((_basic(f'{name}.{b}', *rest) for b, *rest in layers), [])


def _block_d(name, cin):
  layers = [('branch3x3_1', cin, 192, 1, 1), ('branch3x3_2', 192, 320, 3, 3), ('branch7x7x3_1', cin, 192, 1, 1),
            ('branch7x7x3_2', 192, 192, 1, 7), ('branch7x7x3_3', 192, 192, 7, 1), ('branch7x7x3_4', 192, 192, 3, 3)]
  return sum((_basic(f'{name}.{b}', *rest) for b, *rest in layers), [])


def _block_e(name, cin):
  layers = [('branch1x1', cin, 320, 1, 1), ('branch3x3_1', cin, 384, 1, 1), ('branch3x3_2a', 384, 384, 1, 3),
            ('branch3x3_2b', 384, 384, 3, 1), ('branch3x3dbl_1', cin, 448, 1, 1), ('branch3x3dbl_2', 448, 384, 3, 3),
            ('branch3x3dbl_3a', 384, 384, 1, 3), ('branch3x3dbl_3b', 384, 384, 3, 1), ('branch_pool', cin, 192, 1, 1)]
  return sum((_basic(f'{name}.{b}', *rest) for b, *rest in layers), [])


def _torchvision_fid_inception_shapes():
  entries = (_basic('Conv2d_1a_3x3', 3, 32, 3, 3) + _basic('Conv2d_2a_3x3', 32, 32, 3, 3) +
             _basic('Conv2d_2b_3x3', 32, 64, 3, 3) + _basic('Conv2d_3b_1x1', 64, 80, 1, 1) +
             _basic('Conv2d_4a_3x3', 80, 192, 3, 3) + _block_a('Mixed_5b', 192, 32) +
             _block_a('Mixed_5c', 256, 64) + _block_a('Mixed_5d', 288, 64) + _block_b('Mixed_6a', 288) +
             _block_c('Mixed_6b', 768, 128) + _block_c('Mixed_6c', 768, 160) + _block_c('Mixed_6d', 768, 160) +
             _block_c('Mixed_6e', 768, 192) + _block_d('Mixed_7a', 768) + _block_e('Mixed_7b', 1280) +
             _block_e('Mixed_7c', 2048) + [('fc.weight', (1008, 2048)), ('fc.bias', (1008,))])
  return collections.OrderedDict(entries)


def test_state_dict_shapes_match_torchvision_layer_table():
  shapes = inception.pytorch_state_dict_shapes()
  assert list(shapes.items()) == list(_torchvision_fid_inception_shapes().items())  # keys, shapes and order
  with_counters = inception.pytorch_state_dict_shapes(num_batches_tracked=True)
  assert len(with_counters) - len(shapes) == 94  # one BatchNorm per BasicConv2d
  assert with_counters['Mixed_7c.branch_pool.bn.num_batches_tracked'] == ()


def test_parameter_counts():
  shapes = inception.pytorch_state_dict_shapes()
  running = sum(int(np.prod(s)) for k, s in shapes.items() if k.endswith(('running_mean', 'running_var')))
  trainable = sum(int(np.prod(s)) for k, s in shapes.items()) - running
  # torchvision inception_v3 (1000 classes, aux logits) has 27,161,264 parameters; AuxLogits has
  # 768*128 + 2*128 + 128*768*5*5 + 2*768 + 768*1000 + 1000 = 3,326,696; the 1000-way fc 2048*1000 + 1000;
  # the FID network's 1008-way fc 2048*1008 + 1008.
  assert 768 * 128 + 2 * 128 + 128 * 768 * 25 + 2 * 768 + 768 * 1000 + 1000 == 3_326_696
  assert trainable == 27_161_264 - 3_326_696 - (2048 * 1000 + 1000) + (2048 * 1008 + 1008) == 23_850_960
  assert running == 34_432  # 2 x 17,216 BatchNorm channels
  convs = [s for k, s in shapes.items() if k.endswith('conv.weight')]
  assert len(convs) == 94 and sum(s[0] for s in convs) == 17_216


# ---------------------------------------------------------------------------------------------
# Loading a randomly initialised weights file of the pytorch-fid structure


def _random_state_dict(seed=0):
  rng = np.random.default_rng(seed)
  state = collections.OrderedDict()
  for key, shape in inception.pytorch_state_dict_shapes(num_batches_tracked=True).items():
    if key.endswith('num_batches_tracked'):
      state[key] = np.array(int(rng.integers(0, 1000)), np.int64)
      continue
    if key.endswith('conv.weight'):
      value = rng.standard_normal(shape, np.float32) * np.float32(np.sqrt(2. / np.prod(shape[1:])))
    elif key.endswith(('bn.weight', 'running_var')):
      value = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    elif key == 'fc.weight':
      value = rng.standard_normal(shape, np.float32) / np.float32(np.sqrt(shape[1]))
    else:
      value = 0.1 * rng.standard_normal(shape, np.float32)
    state[key] = value
  return state


@pytest.fixture(scope='module')
def weights_files(tmp_path_factory):
  state = _random_state_dict()
  directory = tmp_path_factory.mktemp('inception')
  paths = {'zip': str(directory / 'zip.pth'), 'legacy': str(directory / 'legacy.pth')}
  torch_pickle.save_state_dict(paths['zip'], state)
  torch_pickle.save_state_dict(paths['legacy'], state, legacy=True)
  return state, paths


def _assert_matches_state(variables, state):
  back = inception.to_pytorch_state_dict(variables)
  expected = {k: v for k, v in state.items() if not k.endswith('num_batches_tracked')}
  assert list(back) == list(expected)
  for key, value in expected.items():
    assert back[key].shape == value.shape and back[key].dtype == np.float32, key
    assert np.array_equal(back[key], value), key


def test_load_random_weights_and_apply(weights_files):
  state, paths = weights_files
  variables = inception.load_pytorch_fid_weights(paths['zip'])
  assert set(variables) == {'params', 'batch_stats'}
  assert variables['params']['Conv2d_1a_3x3']['conv']['kernel'].shape == (3, 3, 3, 32)  # HWIO
  assert variables['params']['fc']['kernel'].shape == (2048, 1008)
  assert variables['params']['Mixed_6b']['branch7x7_2']['conv']['kernel'].shape == (1, 7, 128, 128)
  _assert_matches_state(variables, state)

  images = jax.random.uniform(jax.random.PRNGKey(0), (2, 40, 36, 3))
  out = inception.features_fn(variables)(images)
  assert out['pool3'].shape == (2, 2048) and out['pool3'].dtype == jnp.float32
  assert out['logits'].shape == (2, 1008) and out['logits'].dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(out['pool3']))) and bool(jnp.all(jnp.isfinite(out['logits'])))
  assert bool(jnp.all(out['pool3'] >= 0))  # an average of ReLU outputs
  assert float(jnp.std(out['pool3'])) > 0
  logits = out['pool3'] @ variables['params']['fc']['kernel'] + variables['params']['fc']['bias'][None, :]
  np.testing.assert_allclose(out['logits'], logits, rtol=1e-4, atol=1e-4)


def test_legacy_format_loads_the_same(weights_files):
  state, paths = weights_files
  _assert_matches_state(inception.load_pytorch_fid_weights(paths['legacy']), state)


def test_weights_path_from_env(weights_files, monkeypatch):
  state, paths = weights_files
  monkeypatch.setenv(inception.WEIGHTS_ENV, paths['legacy'])
  assert inception.weights_path() == paths['legacy']
  assert inception.weights_path('/explicit/x.pth') == '/explicit/x.pth'
  monkeypatch.delenv(inception.WEIGHTS_ENV)
  monkeypatch.setenv('JAXGEN_CACHE_DIR', '/some/cache')
  assert inception.weights_path() == '/some/cache/pt_inception-2015-12-05-6726825d.pth'
  monkeypatch.delenv('JAXGEN_CACHE_DIR')
  assert inception.weights_path() == os.path.expanduser('~/.cache/jaxgen/pt_inception-2015-12-05-6726825d.pth')


def test_missing_weights_file_is_a_data_error(tmp_path, monkeypatch):
  missing = str(tmp_path / 'nowhere.pth')
  with pytest.raises(DataError) as info:
    inception.load_pytorch_fid_weights(missing)
  message = str(info.value)
  assert missing in message and inception.WEIGHTS_URL in message and 'JAXGEN_INCEPTION_WEIGHTS' in message
  monkeypatch.setenv('JAXGEN_INCEPTION_WEIGHTS', missing + '.env')
  with pytest.raises(DataError, match='nowhere.pth.env'):
    inception.load_pytorch_fid_weights()


def test_mismatched_state_dicts_are_checkpoint_errors(tmp_path):
  shapes = inception.pytorch_state_dict_shapes()
  good = {k: np.zeros(s, np.float32) for k, s in shapes.items()}

  wrong_shape = dict(good, **{'Mixed_5b.branch_pool.conv.weight': np.zeros((64, 192, 1, 1), np.float32)})
  with pytest.raises(CheckpointError, match=r'wrong shapes: Mixed_5b\.branch_pool\.conv\.weight: \(64, 192, 1, 1\)'):
    inception.from_pytorch_state_dict(wrong_shape)

  missing = {k: v for k, v in good.items() if k != 'fc.bias'}
  with pytest.raises(CheckpointError, match=r'1 missing keys: fc\.bias'):
    inception.from_pytorch_state_dict(missing)

  aux = dict(good, **{'AuxLogits.fc.weight': np.zeros((1000, 768), np.float32)})
  with pytest.raises(CheckpointError, match=r'unexpected keys: AuxLogits\.fc\.weight'):
    inception.from_pytorch_state_dict(aux)

  path = tmp_path / 'other_network.pth'  # a file of some other network, through the file loader
  torch_pickle.save_state_dict(path, {'0.weight': np.zeros((4, 3, 3, 3), np.float32)})
  with pytest.raises(CheckpointError, match='missing keys') as info:
    inception.load_pytorch_fid_weights(path)
  assert str(path) in str(info.value) and '0.weight' in str(info.value)


# ---------------------------------------------------------------------------------------------
# Pooling and resizing against numpy references


def _numpy_pool(x, window, stride, padding, reduce):
  n, h, w, c = x.shape
  out_h, out_w = (h + 2 * padding - window) // stride + 1, (w + 2 * padding - window) // stride + 1
  out = np.zeros((n, out_h, out_w, c), x.dtype)
  for i in range(out_h):
    for j in range(out_w):
      r0, c0 = i * stride - padding, j * stride - padding
      patch = x[:, max(r0, 0):r0 + window, max(c0, 0):c0 + window, :]  # only the non-padded pixels
      out[:, i, j, :] = reduce(patch, axis=(1, 2))
  return out


def test_avg_pool_excludes_padding():
  x = np.random.default_rng(0).standard_normal((2, 5, 4, 3)).astype(np.float32)
  got = np.asarray(inception.avg_pool_exclude_pad(jnp.asarray(x), 3, 1, 1))
  np.testing.assert_allclose(got, _numpy_pool(x, 3, 1, 1, np.mean), rtol=1e-6, atol=1e-6)
  # the corner averages 4 pixels, not 9 with zeros
  np.testing.assert_allclose(got[:, 0, 0], x[:, :2, :2].mean(axis=(1, 2)), rtol=1e-6)


def test_max_pools_match_pytorch_padding():
  x = -np.abs(np.random.default_rng(1).standard_normal((2, 7, 6, 3))).astype(np.float32)  # all negative
  np.testing.assert_array_equal(np.asarray(inception.max_pool(jnp.asarray(x), 3, 1, 1)), _numpy_pool(x, 3, 1, 1, np.max))
  np.testing.assert_array_equal(np.asarray(inception.max_pool(jnp.asarray(x), 3, 2)), _numpy_pool(x, 3, 2, 0, np.max))
  assert inception.max_pool(jnp.zeros((1, 147, 147, 1)), 3, 2).shape == (1, 73, 73, 1)


def test_resize_upsample_half_pixel_values():
  a, b, c, d = 1., 2., 10., 30.
  image = jnp.array([[a, b], [c, d]], jnp.float32)[None, :, :, None]
  got = np.asarray(inception.resize_bilinear(image, 4, 4))[0, :, :, 0]
  # PyTorch align_corners=False: output i samples input (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 (clamped)
  row = lambda p, q: [p, .75 * p + .25 * q, .25 * p + .75 * q, q]  # noqa: E731
  top, bottom = row(a, b), row(c, d)
  expected = np.array([row(top[j], bottom[j]) for j in range(4)]).T
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  np.testing.assert_allclose(got[0], [1., 1.25, 1.75, 2.], rtol=1e-6)
  np.testing.assert_allclose(got[:, 0], [1., 3.25, 7.75, 10.], rtol=1e-6)


def test_resize_constant_and_downsample():
  constant = jnp.full((1, 13, 7, 3), 0.3, jnp.float32)
  np.testing.assert_allclose(np.asarray(inception.resize_bilinear(constant, 299, 299)), 0.3, rtol=1e-6)
  x = np.random.default_rng(2).uniform(size=(2, 8, 8, 3)).astype(np.float32)
  got = np.asarray(inception.resize_bilinear(jnp.asarray(x), 4, 4))
  # no antialiasing: output i samples input 2i + 0.5, the mean of pixels 2i and 2i + 1 (per axis)
  expected = x.reshape(2, 4, 2, 4, 2, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_resize_matches_pytorch_weights_and_jax_image():
  # rows of torch.nn.functional.interpolate(48 -> 299, bilinear, align_corners=False), torch 2.13 CPU, float32:
  # the sampling position is rounded once (fused multiply-add), which a naive float32 evaluation misses.
  weights = inception.bilinear_matrix(48, 299)
  for row, cols, values in ((12, (1, 2), ('0x1.f926880000000p-2', '0x1.036cbc0000000p-1')),
                            (100, (15, 16), ('0x1.7702c00000000p-2', '0x1.447ea00000000p-1'))):
    assert np.count_nonzero(weights[row]) == 2
    assert [float(weights[row, col]) for col in cols] == [float.fromhex(v) for v in values]
  assert np.allclose(weights.sum(axis=1), 1., atol=1e-6)
  x = jax.random.uniform(jax.random.PRNGKey(3), (1, 48, 400, 1))  # up along H, down along W
  ours = inception.resize_bilinear(x, 299, 299)
  reference = jax.image.resize(x, (1, 299, 299, 1), 'linear', antialias=False)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(reference), atol=1e-6)


def test_preprocess():
  rng = np.random.default_rng(5)
  gray = rng.uniform(size=(2, 32, 32, 1)).astype(np.float32)
  out = inception.preprocess(gray)
  assert out.shape == (2, 299, 299, 3) and out.dtype == jnp.float32
  np.testing.assert_array_equal(out[..., 0], out[..., 2])
  assert float(out.min()) >= -1. and float(out.max()) <= 1.
  rgb = rng.uniform(size=(2, 299, 299, 3)).astype(np.float32)  # already 299: no resampling, just 2x - 1
  np.testing.assert_array_equal(np.asarray(inception.preprocess(rgb)), 2. * rgb - 1.)
  np.testing.assert_allclose(np.asarray(inception.preprocess(255. * rgb, value_range=(0, 255))), 2. * rgb - 1.,
                             atol=1e-6)
  as_uint8 = np.round(255. * rgb).astype(np.uint8)
  np.testing.assert_allclose(np.asarray(inception.preprocess(as_uint8, value_range=(0, 255))),
                             2. * as_uint8 / 255. - 1., atol=1e-6)
  with pytest.raises(DataError, match='value_range=\\(0, 255\\)'):
    inception.preprocess(as_uint8)
  with pytest.raises(DataError, match='C = 1 or 3'):
    inception.preprocess(np.zeros((1, 8, 8, 4), np.float32))
