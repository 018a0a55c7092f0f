"""Tokenizers of text datasets: bytes (the default) and SentencePiece (BPE or unigram) trained offline.

A Tokenizer maps a document (bytes) to int32 token ids and back exactly: decode(encode(x)) == x for
every byte string x, including invalid UTF-8 for the byte tokenizer and any Unicode text (whitespace
runs, tabs, CRLF, emoji, CJK, combining marks) for SentencePiece. Interface:

  encode(text: bytes) -> int32 [N]       decode(ids) -> bytes
  vocab_size   ids are 0 .. vocab_size - 1
  bos_id       the token a sequence model is conditioned on before the first token
  eos_id       the document separator: jaxgen's text streams join documents with it
  mask_id      the id reserved for masked LMs; None for bytes (see below)
  name         e.g. 'byte', 'sentencepiece-bpe-1024'
  num_bytes(ids [..., L]) -> int64 [...]  len(decode(...)) of each row, without decoding

`config.data.tokenizer` chooses (`get_tokenizer`):

* 'byte': id = byte value, vocab_size 256, no training. bos_id = eos_id = 0, the NUL byte that
  ends each document of a split's stream (jaxgen.data.pipeline; Python source and the TFDS text
  corpora contain no NUL), so byte windows are exactly the bytes of the stream. mask_id is None: a
  masked LM on bytes uses the extra id 256 (= vocab_size) as its mask, i.e. vocab_size + 1 input
  symbols, and must not pass it to decode.
* 'sentencepiece': a SentencePiece model of `config.data.sp_model_type` ('bpe' | 'unigram') and
  `config.data.vocab_size` pieces, trained on the dataset's training split (`config.data.train_split`,
  all documents: `config.data.path_prefix` does not change it, so a model fine-tuned on one package of
  pysource shares its pre-training's tokenizer). Ids: 0 <unk> (never produced: byte fallback), 1 <s>
  (BOS), 2 </s> (EOS, the document separator), 3 <mask> (mask_id), 4..259 the byte pieces
  <0x00>..<0xFF> (byte_fallback: a character outside the vocabulary becomes its UTF-8 bytes), then
  the learned pieces. Whitespace is kept exactly (identity normalization, no dummy prefix, no
  whitespace folding); digits are split (split_digits) and whitespace-only pieces (indentation) are
  allowed.

decode concatenates each id's bytes: a piece's text with SentencePiece's U+2581 as the space it
stands for, a byte piece its byte, EOS the separator byte 0 — so a decoded split is exactly the byte
stream the byte tokenizer reads, and bits per byte count the same bytes for every tokenizer — and
BOS, <mask> and <unk> nothing. encode splits the text at what SentencePiece cannot represent (bytes
that are not UTF-8, and U+2581 itself, which SentencePiece would decode as a space) and spells those
as byte pieces; each line is then encoded by SentencePiece and checked against its bytes (a line
whose pieces do not decode to it exactly, which the splitting should make impossible, is spelled as
byte pieces instead), so the round trip is exact by construction.

Training (`train_sentencepiece`) is offline and deterministic: one thread, no input sampling; the
sentences are the split's lines, at most `MAX_TRAINING_LINES` of them, evenly spaced when the split
has more. SentencePiece learns no piece containing '\\n' or '\\r', so each line break is its byte
piece. On pysource's training split (295k lines, 11 MB; 2-core CPU) BPE with 1024 pieces trains in
about 4 s and unigram in about 3 minutes; encoding the split takes about 7 s (2.4 bytes per
token). The model is cached as
`<data_dir>/jaxgen_tokenizers/<dataset>-<version>_<split>_<type>_<vocab>.model` (e.g.
`pysource-py3.11.7-1.0.0_train_bpe_1024.model`: the TFDS full name, so each Python version's pysource
has its own), trained once under a file lock, so concurrent processes agree.

`save_tokenizer(tokenizer, workdir)` writes WORKDIR/tokenizer.model (the SentencePiece model, or for
bytes the JSON {"tokenizer": "byte"}); `load_tokenizer(workdir)` reads it.
"""

import fcntl
import hashlib
import io
import json
import os
import re
from typing import Callable, Iterable, List, Optional, Sequence

import numpy as np

from jaxgen.errors import ConfigError

TOKENIZERS = ('byte', 'sentencepiece')
SP_MODEL_TYPES = ('bpe', 'unigram')
# Defaults of config.data.tokenizer / vocab_size / sp_model_type when the config has no such key.
DEFAULT_TOKENIZER, DEFAULT_VOCAB_SIZE, DEFAULT_SP_MODEL_TYPE = 'byte', 1024, 'bpe'
# SentencePiece's reserved ids (module docstring) and the first id of its 256 byte pieces.
SP_UNK, SP_BOS, SP_EOS, SP_MASK = 0, 1, 2, 3
SP_FIRST_BYTE = 4
# Training reads at most this many lines of the training split (evenly spaced): pysource's training
# split has about 300k lines, lm1b's 30M sentences.
MAX_TRAINING_LINES = 400_000
# The file in a run's workdir that save_tokenizer writes.
WORKDIR_FILE = 'tokenizer.model'
# The document separator byte of jaxgen's text streams (jaxgen.data.pipeline).
SEPARATOR_BYTE = b'\0'
# What SentencePiece cannot spell (module docstring): U+2581, and the lone surrogates U+DC80..U+DCFF
# by which 'surrogateescape' decoding stands for bytes that are not UTF-8.
_UNREPRESENTABLE = re.compile('[\u2581\udc80-\udcff]+')
_SP_SPACE = '\u2581'


class Tokenizer:
  """Bytes <-> int32 token ids, exactly (module docstring)."""
  name: str
  vocab_size: int
  bos_id: int
  eos_id: int
  mask_id: Optional[int]
  fingerprint: str          # a digest of what it does (its model): equal fingerprints encode alike

  def encode(self, text: bytes) -> np.ndarray:
    """int32 [N]: the ids of `text`."""
    raise NotImplementedError

  def decode(self, ids) -> bytes:
    """The bytes of the ids [N] (any integer dtype); ValueError for an id outside [0, vocab_size)."""
    return b''.join(self._token_bytes[i] for i in self._checked(ids).tolist())

  def num_bytes(self, ids) -> np.ndarray:
    """int64 [...]: len(decode(row)) of each row of ids [..., L]."""
    return self._token_lengths[self._checked(ids)].sum(-1)

  def stream(self, documents: Sequence[bytes]) -> np.ndarray:
    """[sum of lengths]: every document's ids, each followed by eos_id, in the smallest unsigned dtype."""
    ids = self.encode_documents(documents)
    eos = np.array([self.eos_id], np.int64)
    return np.concatenate([part for doc in ids for part in (doc, eos)] or [eos[:0]]).astype(self.dtype)

  def encode_documents(self, documents: Sequence[bytes]) -> List[np.ndarray]:
    return [self.encode(d) for d in documents]

  @property
  def dtype(self):
    """The smallest unsigned integer type that holds every id."""
    return np.uint8 if self.vocab_size <= 256 else np.uint16 if self.vocab_size <= 65536 else np.uint32

  def _checked(self, ids) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
      raise ValueError(f'token ids must be in [0, {self.vocab_size}) for the {self.name} tokenizer; got ids in '
                       f'[{ids.min()}, {ids.max()}].')
    return ids.astype(np.int64)

  def __eq__(self, other):
    return type(self) is type(other) and self.fingerprint == other.fingerprint

  def __hash__(self):
    return hash(self.fingerprint)

  def __repr__(self):
    return f'{type(self).__name__}({self.name}, vocab_size={self.vocab_size})'


class ByteTokenizer(Tokenizer):
  """id = byte value (module docstring): vocab 256, bos = eos = the separator byte 0, no mask id."""
  name = 'byte'
  vocab_size = 256
  bos_id = eos_id = SEPARATOR_BYTE[0]
  mask_id = None
  fingerprint = 'byte'

  def encode(self, text: bytes) -> np.ndarray:
    return np.frombuffer(bytes(text), np.uint8).astype(np.int32)

  def decode(self, ids) -> bytes:
    return self._checked(ids).astype(np.uint8).tobytes()

  def num_bytes(self, ids) -> np.ndarray:
    ids = np.asarray(ids)
    return np.full(ids.shape[:-1], ids.shape[-1], np.int64)

  def stream(self, documents: Sequence[bytes]) -> np.ndarray:
    return np.frombuffer(b''.join(bytes(d) + SEPARATOR_BYTE for d in documents), np.uint8)


class SentencePieceTokenizer(Tokenizer):
  """A trained SentencePiece model (module docstring), from its serialized model proto."""

  def __init__(self, model_proto: bytes):
    import sentencepiece as spm  # pylint: disable=g-import-not-at-top  # only text runs need it
    from sentencepiece import sentencepiece_model_pb2  # pylint: disable=g-import-not-at-top
    self.model_proto = bytes(model_proto)
    self._sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
    spec = sentencepiece_model_pb2.ModelProto.FromString(self.model_proto).trainer_spec
    model_type = {spec.BPE: 'bpe', spec.UNIGRAM: 'unigram'}.get(spec.model_type)
    if (model_type is None or (self._sp.bos_id(), self._sp.eos_id(), self._sp.unk_id()) != (SP_BOS, SP_EOS, SP_UNK)
        or self._sp.piece_to_id('<mask>') != SP_MASK or self._sp.piece_to_id('<0x00>') != SP_FIRST_BYTE):
      raise ValueError('not a jaxgen SentencePiece model (BPE or unigram with the reserved ids of '
                       'jaxgen.data.tokenizers); train it with train_sentencepiece.')
    self.vocab_size = self._sp.get_piece_size()
    self.bos_id, self.eos_id, self.mask_id = SP_BOS, SP_EOS, SP_MASK
    self.name = f'sentencepiece-{model_type}-{self.vocab_size}'
    self.model_type = model_type
    self.fingerprint = hashlib.sha256(self.model_proto).hexdigest()[:16]
    self._token_bytes = [self._piece_bytes(i) for i in range(self.vocab_size)]
    self._token_lengths = np.array([len(b) for b in self._token_bytes], np.int64)
    self._byte_ids = np.arange(SP_FIRST_BYTE, SP_FIRST_BYTE + 256)

  def _piece_bytes(self, i: int) -> bytes:
    sp = self._sp
    if i == SP_EOS:
      return SEPARATOR_BYTE
    if sp.is_byte(i):
      return bytes([int(sp.id_to_piece(i)[3:5], 16)])
    if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
      return b''
    return sp.id_to_piece(i).replace(_SP_SPACE, ' ').encode('utf-8')

  def __getstate__(self):
    return {'model_proto': self.model_proto}

  def __setstate__(self, state):
    self.__init__(state['model_proto'])

  def _bytes_ids(self, data: bytes) -> np.ndarray:
    return self._byte_ids[np.frombuffer(data, np.uint8)]

  def encode(self, text: bytes) -> np.ndarray:
    return self.encode_documents([text])[0]

  def encode_documents(self, documents: Sequence[bytes]) -> List[np.ndarray]:
    """The ids of each document; SentencePiece encodes all their lines in one multi-threaded call."""
    # Each document as a list of parts: str (a line, or the tail of one, for SentencePiece) or bytes
    # (spelled as byte pieces).
    parts_per_doc, lines = [], []
    for document in documents:
      text = bytes(document).decode('utf-8', 'surrogateescape')
      parts, start = [], 0
      for match in _UNREPRESENTABLE.finditer(text):
        parts += _lines(text[start:match.start()])
        parts.append(match.group().encode('utf-8', 'surrogateescape'))
        start = match.end()
      parts += _lines(text[start:])
      lines += [p for p in parts if isinstance(p, str)]
      parts_per_doc.append(parts)
    encoded = iter(self._sp.encode(lines, out_type=int) if lines else [])
    out = []
    for parts in parts_per_doc:
      ids = []
      for part in parts:
        if isinstance(part, bytes):
          ids.append(self._bytes_ids(part))
          continue
        line_ids = next(encoded)
        expected = part.encode('utf-8')
        if b''.join(self._token_bytes[i] for i in line_ids) != expected:
          ids.append(self._bytes_ids(expected))  # never seen; keeps the round trip exact regardless
        else:
          ids.append(np.asarray(line_ids, np.int64))
      out.append(np.concatenate(ids).astype(np.int32) if ids else np.zeros(0, np.int32))
    return out


def _lines(text: str) -> List[str]:
  """`text` cut after each '\\n' (no empty parts); their concatenation is `text`."""
  return [line for line in re.split('(?<=\n)', text) if line]


def training_lines(documents: Iterable[bytes], max_lines: int = MAX_TRAINING_LINES) -> List[str]:
  """The sentences SentencePiece trains on: the documents' lines (each with its '\\n'), without what
  SentencePiece cannot spell (module docstring), at most `max_lines`, evenly spaced."""
  lines = []
  for document in documents:
    text = bytes(document).decode('utf-8', 'surrogateescape')
    for piece in _UNREPRESENTABLE.split(text):
      lines += _lines(piece)
  if len(lines) > max_lines:
    lines = [lines[i] for i in np.linspace(0, len(lines) - 1, max_lines).round().astype(int)]
  return lines


def train_sentencepiece(lines: Sequence[str], model_type: str, vocab_size: int) -> bytes:
  """The serialized model proto of a SentencePiece model trained on `lines` (module docstring):
  deterministic (one thread, every line used, in order); ConfigError when SentencePiece rejects the
  vocabulary size for this data."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  if model_type not in SP_MODEL_TYPES:
    raise ConfigError(f'config.data.sp_model_type={model_type!r} is not one of {", ".join(SP_MODEL_TYPES)}.')
  if not lines:
    raise ConfigError('cannot train a SentencePiece tokenizer: the training split has no text.')
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type=model_type, vocab_size=int(vocab_size),
        byte_fallback=True, add_dummy_prefix=False, remove_extra_whitespaces=False,
        normalization_rule_name='identity', split_digits=True, allow_whitespace_only_pieces=True,
        character_coverage=0.9995, max_sentence_length=1 << 16, input_sentence_size=0,
        shuffle_input_sentence=False, num_threads=1, unk_id=SP_UNK, bos_id=SP_BOS, eos_id=SP_EOS, pad_id=-1,
        control_symbols=['<mask>'], minloglevel=2)
  except RuntimeError as e:
    raise ConfigError(f'SentencePiece cannot train a {model_type} model of vocab_size={vocab_size} on this text: '
                      f'{str(e).rstrip(".")}. Change config.data.vocab_size (it must exceed the 260 reserved and '
                      'byte ids, and a small training split cannot fill a large vocabulary).') from None
  return model.getvalue()


def settings(data_config):
  """(tokenizer, sp_model_type, vocab_size) of config.data, validated; the keys default to 'byte', 'bpe', 1024."""
  kind = data_config.get('tokenizer', DEFAULT_TOKENIZER) or DEFAULT_TOKENIZER
  if kind not in TOKENIZERS:
    raise ConfigError(f'config.data.tokenizer={kind!r} is not one of {", ".join(TOKENIZERS)}.')
  model_type = data_config.get('sp_model_type', DEFAULT_SP_MODEL_TYPE)
  vocab_size = int(data_config.get('vocab_size', DEFAULT_VOCAB_SIZE))
  if kind == 'sentencepiece':
    if model_type not in SP_MODEL_TYPES:
      raise ConfigError(f'config.data.sp_model_type={model_type!r} is not one of {", ".join(SP_MODEL_TYPES)}.')
    if vocab_size <= SP_FIRST_BYTE + 256:
      raise ConfigError(f'config.data.vocab_size={vocab_size} leaves no room for learned pieces: SentencePiece '
                        f'reserves {SP_FIRST_BYTE} special ids and 256 byte pieces. Use e.g. 1024.')
  return kind, model_type, vocab_size


def get_tokenizer(data_config) -> Tokenizer:
  """The tokenizer of config.data (module docstring): trains and caches a SentencePiece model on first use."""
  kind, model_type, vocab_size = settings(data_config)
  if kind == 'byte':
    return ByteTokenizer()
  from jaxgen.data import pipeline  # pylint: disable=g-import-not-at-top  # pipeline imports this module
  dataset = pipeline.dataset_id(data_config)
  split = data_config.train_split
  name = '_'.join(re.sub(r'[^\w.=-]+', '-', s) for s in (dataset, split, model_type, str(vocab_size)))
  path = os.path.join(pipeline.data_dir(data_config), 'jaxgen_tokenizers', name + '.model')
  return cached_sentencepiece(path, lambda: train_sentencepiece(
      training_lines(pipeline.split_documents(data_config, split)), model_type, vocab_size))


def cached_sentencepiece(path: str, train: Callable[[], bytes]) -> 'SentencePieceTokenizer':
  """The model at `path`, trained by `train()` and written there first if absent (under a file lock)."""
  if not os.path.exists(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + '.lock', 'w') as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
      if not os.path.exists(path):  # another process may have trained it while we waited
        _write_atomically(path, train())
  with open(path, 'rb') as f:
    return SentencePieceTokenizer(f.read())


def _write_atomically(path: str, content: bytes) -> None:
  temporary = f'{path}.tmp{os.getpid()}'
  with open(temporary, 'wb') as f:
    f.write(content)
  os.replace(temporary, path)


def save_tokenizer(tokenizer: Tokenizer, workdir: str) -> str:
  """Write WORKDIR/tokenizer.model (module docstring); returns its path."""
  path = os.path.join(workdir, WORKDIR_FILE)
  os.makedirs(workdir, exist_ok=True)
  if isinstance(tokenizer, ByteTokenizer):
    content = json.dumps({'tokenizer': 'byte'}).encode()
  elif isinstance(tokenizer, SentencePieceTokenizer):
    content = tokenizer.model_proto
  else:
    raise TypeError(f'cannot save a {type(tokenizer).__name__}.')
  _write_atomically(path, content)
  return path


def load_tokenizer(workdir: str) -> Tokenizer:
  """The tokenizer save_tokenizer wrote to WORKDIR/tokenizer.model."""
  path = os.path.join(workdir, WORKDIR_FILE)
  if not os.path.exists(path):
    raise ConfigError(f'{path} does not exist: {workdir} is not the workdir of a text run (or predates '
                      'saved tokenizers).')
  with open(path, 'rb') as f:
    content = f.read()
  if content.startswith(b'{'):  # a serialized SentencePiece model starts with a protobuf tag, never '{'
    if json.loads(content) != {'tokenizer': 'byte'}:
      raise ConfigError(f'{path} is not a tokenizer jaxgen wrote.')
    return ByteTokenizer()
  return SentencePieceTokenizer(content)
