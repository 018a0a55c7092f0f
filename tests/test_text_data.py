"""The pipeline's text path with tokenizers: TFDS text datasets by name (tiny_shakespeare, lm1b under
tfds.testing.mock_data), token windows and their byte counts, path_prefix on pysource, bits per byte in
the nll evaluator, and decoded text samples.

Every split's windows, re-joined and decoded, must be exactly the split's byte stream (the documents, each
followed by a 0 byte), and each window's num_bytes exactly the length of its decoding.
"""

import math
import os
import pickle

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxgen import data, evals
from jaxgen.core.config import base_config
from jaxgen.core.mesh import make_mesh
from jaxgen.core.state import TrainState
from jaxgen.data import tokenizers
from jaxgen.data.builders import pysource
from jaxgen.errors import ConfigError
from jaxgen.evals.samples import write_text
from jaxgen.methods.base import Method

_WORDS = ('thou', 'art', 'more', 'lovely', 'and', 'temperate', 'rough', 'winds', 'do', 'shake', 'the', 'darling',
          'buds', 'of', 'May', 'summer', "lease", 'hath', 'all', 'too', 'short', 'a', 'date', 'KING', 'HENRY:',
          'Nay,', 'père', 'naïve', '—', '«quoth»', '夏', '🌹')


def _document(seed: int, lines: int) -> bytes:
  """Play-like text: speaker lines, indentation, CRLF and blank lines, a little non-ASCII."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(lines):
    words = ' '.join(_WORDS[int(j)] for j in rng.integers(0, len(_WORDS), size=int(rng.integers(3, 12))))
    end = '\r\n' if i % 7 == 3 else '\n\n' if i % 5 == 4 else '\n'
    out.append(('  ' if i % 3 else '') + words + end)
  return ''.join(out).encode('utf-8')


SPLITS = {'train': [_document(0, 120), _document(1, 60), _document(2, 30)],
          'test': [_document(3, 40), _document(4, 5)]}


def _mock_source(builder, split, **kwargs):
  del builder, kwargs
  return [{'text': text} for text in SPLITS[split]]


def cfg(data_dir, name='tiny_shakespeare', **overrides):
  c = dict(name=name, data_dir=str(data_dir), train_split='train', eval_split='test', binarize='', dequantize=False,
           max_eval_examples=0, max_train_examples=0, prefetch=0, seq_len=16, tokenizer='byte', vocab_size=340,
           sp_model_type='bpe', path_prefix='')
  c.update(overrides)
  return ml_collections.ConfigDict(c)


TOKENIZER_SETTINGS = [dict(tokenizer='byte'), dict(tokenizer='sentencepiece', sp_model_type='bpe'),
                      dict(tokenizer='sentencepiece', sp_model_type='unigram')]


def _eval_windows(config, split='test'):
  batches = list(data.eval_batches(config, 24, split=split))
  real = np.concatenate([b['mask'] for b in batches]) == 1
  return (np.concatenate([b['x'] for b in batches])[real], np.concatenate([b['num_bytes'] for b in batches])[real])


@pytest.mark.parametrize('settings', TOKENIZER_SETTINGS, ids=lambda s: s.get('sp_model_type', 'byte'))
def test_tiny_shakespeare_windows_decode_to_the_byte_stream(tmp_path, settings):
  config = cfg(tmp_path, **settings)
  with tfds.testing.mock_data(as_data_source_fn=_mock_source):
    info = data.get_info(config)
    tok = info.tokenizer
    assert tok == tokenizers.get_tokenizer(config) and tok.name == (
        'byte' if settings['tokenizer'] == 'byte' else f"sentencepiece-{settings['sp_model_type']}-340")
    assert (info.kind, info.shape, info.levels) == ('text', (16,), tok.vocab_size)
    for split in ('train', 'test'):
      x, num_bytes = _eval_windows(config, split)
      assert x.dtype == np.int32 and x.shape == (info.num_examples[split], 16) and num_bytes.dtype == np.float32
      assert 0 <= x.min() and x.max() < info.levels
      decoded = [tok.decode(w) for w in x]
      np.testing.assert_array_equal(num_bytes, [len(d) for d in decoded])
      stream = b''.join(d + b'\0' for d in SPLITS[split])
      joined = b''.join(decoded)
      # The stream, then padding separators (each decoding to one 0 byte) to a whole last window.
      assert joined[:len(stream)] == stream and set(joined[len(stream):]) <= {0}
      pad = len(x) * 16 - sum(len(tok.encode(d)) + 1 for d in SPLITS[split])
      assert 0 <= pad < 16 and (x.reshape(-1)[len(x) * 16 - pad:] == tok.eos_id).all()
      assert len(joined) == len(stream) + pad
      if settings['tokenizer'] == 'byte':
        assert joined == x.astype(np.uint8).tobytes()
      else:  # subword windows hold more than 16 bytes on average
        assert num_bytes.mean() > 24
    # Training batches: the same windows, step-indexed and deterministic.
    a, b = data.TrainLoader(config, 8, seed=0), data.TrainLoader(config, 8, seed=0)
    for step in (0, 1, 50):
      batch = a.batch(step)
      assert set(batch) == {'x', 'num_bytes'} and batch['x'].shape == (8, 16) and batch['x'].dtype == np.int32
      np.testing.assert_array_equal(batch['x'], b.batch(step)['x'])
      np.testing.assert_array_equal(batch['num_bytes'], tok.num_bytes(batch['x']))
    assert not np.array_equal(a.batch(0)['x'], a.batch(1)['x'])
    train_x, _ = _eval_windows(config, 'train')
    rows = {w.tobytes() for w in train_x}
    assert all(w.tobytes() in rows for w in a.batch(3)['x'])
    # DataInfo (with its tokenizer) pickles, e.g. to worker processes.
    assert pickle.loads(pickle.dumps(info)) == info


@pytest.mark.parametrize('settings', TOKENIZER_SETTINGS[:2], ids=['byte', 'bpe'])
def test_lm1b_mock_data_gives_int32_windows_of_the_vocabulary(tmp_path, settings):
  """lm1b with tfds's own random mock text (strings of ' abcdefghij'): one sentence per example."""
  config = cfg(tmp_path, name='lm1b', seq_len=8, vocab_size=280, **settings)
  with tfds.testing.mock_data(num_examples=30):
    info = data.get_info(config)
    levels = 256 if settings['tokenizer'] == 'byte' else 280
    assert (info.kind, info.shape, info.levels, info.tokenizer.vocab_size) == ('text', (8,), levels, levels)
    batches = [data.TrainLoader(config, 16, seed=1).batch(s) for s in (0, 1)]
    again = [data.TrainLoader(config, 16, seed=1).batch(s) for s in (0, 1)]
    for batch, same in zip(batches, again):
      assert batch['x'].shape == (16, 8) and batch['x'].dtype == np.int32 and batch['x'].max() < levels
      np.testing.assert_array_equal(batch['x'], same['x'])
      np.testing.assert_array_equal(batch['num_bytes'], info.tokenizer.num_bytes(batch['x']))
    x, _ = _eval_windows(config)
    text = info.tokenizer.decode(x.reshape(-1))
    documents = text.rstrip(b'\0').split(b'\0')
    assert len(documents) == 30 and all(set(d) <= set(b' abcdefghij') and 10 <= len(d) < 20 for d in documents)


class UniformTokens(Method):
  """p(x) = V^-L for windows of L tokens over a vocabulary of V: nats = L log V per window."""
  has_likelihood = True

  def nll(self, params, batch, rng):
    return jnp.full(batch['x'].shape[:1], batch['x'].shape[1] * math.log(self.info.levels))


def _nll(tmp_path, data_settings):
  config = base_config()
  config.method.name = 'uniform'
  config.data.update(data_settings)
  config.train.eval_batch_size = 30  # rounded up to 32 over the 8 devices: padded examples must not count
  config.evals.nll = ml_collections.ConfigDict({'every': 1})
  info = data.get_info(config.data)
  ctx = evals.EvalContext(method=UniformTokens(config, info), config=config, info=info,
                          mesh=make_mesh(config.mesh), workdir=str(tmp_path), is_main=True)
  state = TrainState(step=jnp.zeros((), jnp.int32), params={}, opt_state=(), rng=jnp.zeros((2,), jnp.uint32))
  return info, evals.get('nll')(config.evals.nll, ctx)(state, 0)


def test_nll_bpd_is_bits_per_byte_for_every_tokenizer(tmp_path):
  with tfds.testing.mock_data(as_data_source_fn=_mock_source):
    # Bytes: the uniform model's log2(256) = 8 bits per byte, by the formula used before num_bytes.
    settings = dict(cfg(tmp_path, seq_len=24))
    info, metrics = _nll(tmp_path, settings)
    np.testing.assert_allclose(metrics['nll_nats'], 24 * math.log(256), rtol=1e-7)  # float32 on the device
    assert metrics['nll_bpd'] == metrics['nll_nats'] / (24 * math.log(2))   # exactly today's number
    np.testing.assert_allclose(metrics['nll_bpd'], 8, rtol=1e-7)
    np.testing.assert_allclose(metrics['perplexity'], 256, rtol=2e-6)      # exp() of float32 nats
    # SentencePiece: log2(V) bits per token, times tokens per byte of the real (unpadded) windows.
    settings.update(tokenizer='sentencepiece', sp_model_type='unigram')
    info, metrics = _nll(tmp_path, settings)
    x, num_bytes = _eval_windows(ml_collections.ConfigDict(settings))
    v = info.levels
    assert v == 340 and len(x) == info.num_examples['test'] and len(x) % 32 != 0
    np.testing.assert_allclose(metrics['nll_bpd'], math.log2(v) * x.size / num_bytes.sum(), rtol=1e-7)
    np.testing.assert_allclose(metrics['perplexity'], v, rtol=1e-6)
    assert metrics['nll_bpd'] < 0.6 * math.log2(v)   # more than one byte per token


def test_path_prefix_keeps_one_package_of_pysource():
  paths = pysource.source_files()
  email = [p for p in paths if p.startswith('email/')]
  json_ = [p for p in paths if p.startswith('json/')]
  config = cfg('', name='pysource', seq_len=64, path_prefix='email/')
  for split, in_split in (('train', lambda p: not pysource.is_test(p)), ('test', pysource.is_test)):
    expected_paths = [p for p in email if in_split(p)]
    assert expected_paths, split
    got, _ = _eval_windows(config, split)
    stream = b''.join(_read(p) + b'\0' for p in expected_paths)
    assert got.astype(np.uint8).tobytes()[:len(stream)] == stream and len(got) == -(-len(stream) // 64)
  both = config.copy_and_resolve_references()
  both.path_prefix = 'json/, email/'
  expected = sorted(p for p in email + json_ if not pysource.is_test(p))
  assert b''.join(data.pipeline.split_documents(both, 'train', data.pipeline.path_prefixes(both))) == b''.join(
      _read(p) for p in expected)
  full = data.get_info(_with(config, path_prefix=''))
  assert data.get_info(config).num_examples['train'] < full.num_examples['train'] / 5
  with pytest.raises(ConfigError, match="matches no document of split '(train|test)'.*'email/'"):
    data.get_info(_with(config, path_prefix='no_such_package/'))
  with pytest.raises(ConfigError, match="has no 'path' feature"):
    data.get_info(_with(config, name='digits'))


def test_pysource_package_through_a_bpe_tokenizer_trained_on_all_of_pysource():
  """The fine-tuning set-up: one package's files, tokenized by the pre-training tokenizer (BPE, 1024)."""
  config = cfg('', name='pysource', seq_len=64, path_prefix='email/', tokenizer='sentencepiece', vocab_size=1024)
  info = data.get_info(config)
  tok = info.tokenizer
  assert tok == tokenizers.get_tokenizer(_with(config, path_prefix=''))   # the prefix does not change it
  model = os.path.join(data.data_dir(config), 'jaxgen_tokenizers',
                       f'pysource-{pysource.python_tag()}-1.0.0_train_bpe_1024.model')
  assert os.path.exists(model) and (info.levels, tok.name) == (1024, 'sentencepiece-bpe-1024')
  x, num_bytes = _eval_windows(config)
  paths = [p for p in pysource.source_files() if p.startswith('email/') and pysource.is_test(p)]
  stream = b''.join(_read(p) + b'\0' for p in paths)
  decoded = tok.decode(x.reshape(-1))
  assert decoded[:len(stream)] == stream and set(decoded[len(stream):]) <= {0}
  assert num_bytes.sum() == len(decoded) and len(stream) / x.size > 2   # subwords: > 2 bytes per token
  batch = data.TrainLoader(config, 4, seed=0).batch(2)
  np.testing.assert_array_equal(batch['num_bytes'], [len(tok.decode(w)) for w in batch['x']])


def test_path_prefix_needs_a_path_feature_and_tokenizers_need_text(tmp_path):
  with tfds.testing.mock_data(as_data_source_fn=_mock_source):
    with pytest.raises(ConfigError, match="has no 'path' feature"):
      data.get_info(cfg(tmp_path, path_prefix='act1/'))
  with pytest.raises(ConfigError, match='tokenizes text'):
    data.get_info(cfg('', name='digits', tokenizer='sentencepiece'))


def _with(config, **overrides):
  out = config.copy_and_resolve_references()
  out.update(overrides)
  return out


def _read(path: str) -> bytes:
  with open(os.path.join(pysource.stdlib_dir(), *path.split('/')), 'rb') as f:
    return f.read()


def test_text_samples_are_decoded_by_the_tokenizer(tmp_path):
  lines = tokenizers.training_lines(SPLITS['train'])
  sp = tokenizers.SentencePieceTokenizer(tokenizers.train_sentencepiece(lines, 'bpe', 340))
  first = np.concatenate([sp.encode('thou art\n'.encode()), [sp.eos_id], sp.encode('père 🌹'.encode())])
  second = np.concatenate([[sp.bos_id], sp.encode(b'\xff ok')])[:len(first)]
  second = np.pad(second, (0, len(first) - len(second)), constant_values=sp.eos_id)
  write_text(str(tmp_path / 's.txt'), np.stack([first, second]), sp)
  pad = '\n[EOF]\n' * (len(first) - len(sp.encode(b'\xff ok')) - 1)
  assert (tmp_path / 's.txt').read_text(encoding='utf-8') == (
      '===== sample 0 =====\nthou art\n\n[EOF]\npère 🌹\n'
      f'===== sample 1 =====\n\ufffd ok{pad}\n')
  write_text(str(tmp_path / 'b.txt'), np.array([[104, 105, 0, 0xc3]]))   # bytes, as before tokenizers
  assert (tmp_path / 'b.txt').read_text(encoding='utf-8') == '===== sample 0 =====\nhi\n[EOF]\n\ufffd\n'
