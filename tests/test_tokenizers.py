"""Tokenizers (jaxgen.data.tokenizers): exact round trips of arbitrary text for bytes, BPE and unigram,
the reserved ids, deterministic and cached SentencePiece training, saving to and loading from a workdir.

The SentencePiece models here are trained on a few KB of stdlib source and mixed-script prose: seconds.
"""

import os
import pickle

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxgen.data import tokenizers
from jaxgen.data.builders import pysource
from jaxgen.errors import ConfigError

PROSE = ('The quick brown fox jumps over the lazy dog.  Naïve café, déjà vu; 東京は晴れ。 Привет, мир! '
         'Zürich — 12,345.67 — 3.14159\n')


def _corpus() -> bytes:
  """About 14 KB: two stdlib modules (indentation, CRLF-free code) and some mixed-script prose."""
  parts = []
  for path in ('textwrap.py', 'json/decoder.py'):
    with open(os.path.join(pysource.stdlib_dir(), *path.split('/')), 'rb') as f:
      parts.append(f.read()[:6000])
  parts.append((PROSE * 20).encode('utf-8'))
  return b'\n'.join(parts)


@pytest.fixture(scope='module')
def sp_models():
  lines = tokenizers.training_lines([_corpus()])
  return {t: tokenizers.SentencePieceTokenizer(tokenizers.train_sentencepiece(lines, t, 600))
          for t in tokenizers.SP_MODEL_TYPES}


def _texts():
  """Text that tokenizers get wrong when they normalise, fold whitespace or add a dummy prefix."""
  rng = np.random.default_rng(0)
  ranges = [(0x20, 0x7f), (0xa0, 0x2000), (0x3040, 0x30ff), (0x4e00, 0x9fff), (0xac00, 0xd7a3), (0x1f300, 0x1faff)]
  random_unicode = ''.join(chr(int(rng.integers(*ranges[int(rng.integers(len(ranges)))]))) for _ in range(300))
  texts = [
      '', ' ', '\n', 'a', 'plain ASCII text', '   leading and trailing   ', 'runs      of   spaces',
      '\ttabs\t\tinside\t', 'CRLF\r\nline two\r\n\r\n', 'mixed\r\n\n\r  \t \n', '\n\n\n  \n',
      'def f(x):\n    return x ** 2  # squared\n\n\nclass A:\n\tpass\n',
      'emoji 👩‍👩‍👧‍👦 🎉🇫🇷 ✊🏽', 'CJK 漢字 かな カナ 한국어 中文，标点。', 'combining: e\u0301 a\u0308 n\u0303 \u0915\u094d\u0937',
      'sentencepiece space \u2581 and \u2581\u2581 literal', 'zero width \u200b\u200d joiner, BOM \ufeff, nbsp \xa0!',
      'controls \x0b\x0c\x1c\x7f and line separators \u2028\u2029\x85', 'a NUL \x00 inside', 'digits 0123456789 1e-10',
      'fullwidth ＡＢＣ１２３ and ligature ﬁ (NFKC would change these)', 'Ångström Å vs A\u030a',
      random_unicode, PROSE,
  ]
  return [t.encode('utf-8') for t in texts]


def _invalid_utf8():
  rng = np.random.default_rng(1)
  out = [bytes(rng.integers(0, 256, size=n, dtype=np.uint8)) for n in (1, 7, 100, 1000)]
  out += [b'\xff\xfe\x80', b'ok \xc3 cut \xe2\x96 \xed\xa0\x80 surrogate', b'\xe2\x96\x81\xe2\x96']
  assert all(_not_utf8(b) for b in out[-3:])
  return out


def _not_utf8(b: bytes) -> bool:
  try:
    b.decode('utf-8')
    return False
  except UnicodeDecodeError:
    return True


def _check_round_trip(tokenizer, texts):
  for text in texts:
    ids = tokenizer.encode(text)
    assert ids.dtype == np.int32 and ids.ndim == 1
    assert ids.size == 0 or (0 <= ids.min() and ids.max() < tokenizer.vocab_size)
    assert tokenizer.decode(ids) == text, text
    assert tokenizer.num_bytes(ids) == len(text)
  # Batch encoding agrees with one document at a time.
  batched = tokenizer.encode_documents(texts)
  for text, ids in zip(texts, batched):
    np.testing.assert_array_equal(ids, tokenizer.encode(text))


def test_byte_tokenizer_is_the_identity_on_bytes():
  tok = tokenizers.ByteTokenizer()
  texts = _texts() + _invalid_utf8() + [bytes(range(256))]
  _check_round_trip(tok, texts)
  np.testing.assert_array_equal(tok.encode(b'A\x00\xff'), [65, 0, 255])
  assert (tok.vocab_size, tok.bos_id, tok.eos_id, tok.mask_id, tok.name) == (256, 0, 0, None, 'byte')
  # The stream of documents is each document's bytes followed by the 0 byte.
  docs = [b'ab', b'', b'\xff']
  assert tok.stream(docs).tobytes() == b'ab\x00\x00\xff\x00' and tok.stream(docs).dtype == np.uint8
  np.testing.assert_array_equal(tok.num_bytes(np.zeros((3, 5), np.int32)), [5, 5, 5])
  with pytest.raises(ValueError, match=r'\[0, 256\)'):
    tok.decode([1, 256])  # 256 is a byte masked LM's mask id, not a byte


@pytest.mark.parametrize('model_type', tokenizers.SP_MODEL_TYPES)
def test_sentencepiece_round_trips_arbitrary_text_exactly(sp_models, model_type):
  tok = sp_models[model_type]
  assert tok.name == f'sentencepiece-{model_type}-600' and tok.vocab_size == 600
  _check_round_trip(tok, _texts() + _invalid_utf8() + [_corpus()])
  # It compresses text like its training data (learned pieces, not byte fallback everywhere) ...
  code = _corpus()[:4000]
  assert len(tok.encode(code)) < 0.6 * len(code)
  # ... spells a character outside its vocabulary as that character's UTF-8 bytes ...
  ids = tok.encode('\U0001f600'.encode('utf-8'))
  np.testing.assert_array_equal(ids, tokenizers.SP_FIRST_BYTE + np.frombuffer('\U0001f600'.encode('utf-8'), np.uint8))
  # ... and a literal U+2581 (SentencePiece's own space symbol) as its bytes, never as a space.
  np.testing.assert_array_equal(tok.encode('a\u2581'.encode('utf-8'))[1:], tokenizers.SP_FIRST_BYTE + np.array(
      [0xe2, 0x96, 0x81]))
  assert tok.decode(tok.encode(b' ')) == b' '


def test_a_line_sentencepiece_would_get_wrong_is_spelled_in_bytes(sp_models, monkeypatch):
  """The safety net: pieces that do not decode to their line are replaced by the line's byte pieces."""
  tok = sp_models['bpe']
  good = tok.encode(b'ok\nbroken line\nok')
  monkeypatch.setattr(tok, '_sp', _Garbling(tok._sp, 'broken line\n'))  # pylint: disable=protected-access
  ids = tok.encode(b'ok\nbroken line\nok')
  assert tok.decode(ids) == b'ok\nbroken line\nok'
  line = np.frombuffer(b'broken line\n', np.uint8) + tokenizers.SP_FIRST_BYTE
  ok = tok.encode(b'ok\n')
  np.testing.assert_array_equal(ids, np.concatenate([ok, line, good[-len(tok.encode(b'ok')):]]))


class _Garbling:
  """A SentencePieceProcessor whose encoding of one line is wrong (a space piece for every character)."""

  def __init__(self, sp, bad_line):
    self._sp, self._bad = sp, bad_line

  def encode(self, lines, out_type=int):
    space = self._sp.piece_to_id('\u2581')
    return [[space] * len(line) if line == self._bad else ids
            for line, ids in zip(lines, self._sp.encode(lines, out_type=out_type))]


@pytest.mark.parametrize('model_type', tokenizers.SP_MODEL_TYPES)
def test_sentencepiece_reserved_ids_and_what_they_decode_to(sp_models, model_type):
  tok = sp_models[model_type]
  assert (tok.bos_id, tok.eos_id, tok.mask_id) == (1, 2, 3)
  assert tok.decode([tok.bos_id, tok.mask_id, 0]) == b''         # BOS, <mask>, <unk>: no bytes
  assert tok.decode([tok.eos_id]) == b'\0'                      # the document separator byte
  assert tok.decode(tokenizers.SP_FIRST_BYTE + np.arange(256)) == bytes(range(256))
  # No text ever encodes to a reserved id, not even their spellings.
  for text in (b'<s></s><mask><unk>', b'\x00'):
    assert not set(tok.encode(text).tolist()) & {0, 1, 2, 3}
  # A stream ends each document with EOS and decodes to the byte stream of the byte tokenizer.
  docs = _texts()[:6]
  stream = tok.stream(docs)
  assert stream.dtype == np.uint16 and (stream == tok.eos_id).sum() == len(docs)
  assert tok.decode(stream) == tokenizers.ByteTokenizer().stream(docs).tobytes()
  rows = stream[:(len(stream) // 4) * 4].reshape(-1, 4)
  np.testing.assert_array_equal(tok.num_bytes(rows), [len(tok.decode(r)) for r in rows])
  with pytest.raises(ValueError, match=r'\[0, 600\)'):
    tok.decode([600])


def test_sentencepiece_training_is_deterministic_and_validated():
  lines = tokenizers.training_lines([_corpus()])
  assert ''.join(lines).encode('utf-8') == _corpus()    # lines keep every byte of valid UTF-8 text
  for model_type in tokenizers.SP_MODEL_TYPES:
    first = tokenizers.train_sentencepiece(lines, model_type, 600)
    assert tokenizers.train_sentencepiece(lines, model_type, 600) == first
  # At most max_lines lines, evenly spaced, first and last kept.
  few = tokenizers.training_lines([_corpus()], max_lines=10)
  assert len(few) == 10 and few[0] == lines[0] and few[-1] == lines[-1]
  # Invalid bytes and U+2581 are cut out of training text, not passed to SentencePiece.
  assert tokenizers.training_lines([b'a\xffb\xe2\x96\x81c\n']) == ['a', 'b', 'c\n']
  with pytest.raises(ConfigError, match='vocab_size'):
    tokenizers.train_sentencepiece(['tiny text\n'], 'unigram', 5000)
  with pytest.raises(ConfigError, match="'bpe', 'unigram'|bpe, unigram"):
    tokenizers.train_sentencepiece(lines, 'wordpiece', 300)


def _config(data_dir, **overrides):
  c = dict(name='tiny_shakespeare', data_dir=str(data_dir), train_split='train', eval_split='test', binarize='',
           dequantize=False, max_eval_examples=0, max_train_examples=0, prefetch=0, seq_len=32,
           tokenizer='sentencepiece', vocab_size=290, sp_model_type='bpe')
  c.update(overrides)
  return ml_collections.ConfigDict(c)


def test_get_tokenizer_trains_once_and_caches_under_the_data_dir(tmp_path, monkeypatch):
  calls = []
  train = tokenizers.train_sentencepiece
  monkeypatch.setattr(tokenizers, 'train_sentencepiece', lambda *a: calls.append(a[1:]) or train(*a))
  with tfds.testing.mock_data(num_examples=40):
    first = tokenizers.get_tokenizer(_config(tmp_path))
    path = tmp_path / 'jaxgen_tokenizers' / 'tiny_shakespeare-1.0.0_train_bpe_290.model'
    assert calls == [('bpe', 290)] and path.exists() and first.vocab_size == 290
    mtime = path.stat().st_mtime_ns
    again = tokenizers.get_tokenizer(_config(tmp_path))
    assert calls == [('bpe', 290)] and path.stat().st_mtime_ns == mtime and again == first
    assert again.model_proto == path.read_bytes()
    other = tokenizers.get_tokenizer(_config(tmp_path, sp_model_type='unigram', vocab_size=280))
    assert calls == [('bpe', 290), ('unigram', 280)] and other.name == 'sentencepiece-unigram-280'
    assert tokenizers.get_tokenizer(_config(tmp_path, tokenizer='byte')) == tokenizers.ByteTokenizer()
  # The keys default to bytes when absent (configs older than the tokenizer keys).
  plain = _config(tmp_path)
  for key in ('tokenizer', 'vocab_size', 'sp_model_type'):
    del plain[key]
  assert isinstance(tokenizers.get_tokenizer(plain), tokenizers.ByteTokenizer)


def test_get_tokenizer_rejects_bad_settings(tmp_path):
  with pytest.raises(ConfigError, match='byte, sentencepiece'):
    tokenizers.get_tokenizer(_config(tmp_path, tokenizer='wordpiece'))
  with pytest.raises(ConfigError, match='bpe, unigram'):
    tokenizers.get_tokenizer(_config(tmp_path, sp_model_type='char'))
  with pytest.raises(ConfigError, match='vocab_size=256 leaves no room'):
    tokenizers.get_tokenizer(_config(tmp_path, vocab_size=256))


def test_save_and_load_in_a_workdir_and_pickle(sp_models, tmp_path):
  byte = tokenizers.ByteTokenizer()
  tokenizers.save_tokenizer(byte, str(tmp_path / 'a'))
  assert (tmp_path / 'a' / 'tokenizer.model').read_text() == '{"tokenizer": "byte"}'
  assert tokenizers.load_tokenizer(str(tmp_path / 'a')) == byte
  sp = sp_models['unigram']
  path = tokenizers.save_tokenizer(sp, str(tmp_path / 'b'))
  assert open(path, 'rb').read() == sp.model_proto
  loaded = tokenizers.load_tokenizer(str(tmp_path / 'b'))
  assert loaded == sp and loaded != sp_models['bpe'] and loaded != byte
  text = _texts()[13]
  np.testing.assert_array_equal(loaded.encode(text), sp.encode(text))
  unpickled = pickle.loads(pickle.dumps(sp))
  assert unpickled == sp and unpickled.decode(sp.encode(text)) == text
  with pytest.raises(ConfigError, match='not the workdir of a text run'):
    tokenizers.load_tokenizer(str(tmp_path / 'missing'))
