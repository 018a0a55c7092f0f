"""The deterministic host data pipeline over TFDS (DESIGN.md, "Data").

`config.data.name` is any TFDS name. The offline datasets of
`jaxgen.data.builders` (mnist5k, digits, toy2d/*, pysource, pysource_prompts) are prepared on
first use; every other dataset must have been prepared by the user (`tfds build`).

Text (a dataset with a `text` feature, e.g. pysource, lm1b, tiny_shakespeare): a
split is one token stream, its documents in `path` order (else stored order), each
encoded by the tokenizer of `config.data.tokenizer` (jaxgen.data.tokenizers; default
'byte': the token ids are the bytes) and followed by the tokenizer's document
separator (eos_id; for bytes the 0 byte), padded with separators to a multiple of
`config.data.seq_len` (default 256) and cut into non-overlapping windows of seq_len
tokens. The windows are the split's examples: batch['x'] is int32 token ids [B,
seq_len] and batch['num_bytes'] float32 [B] the number of bytes each window decodes
to (the separator and its padding count one byte each, so for bytes it is seq_len;
bits per byte divide by it), DataInfo(kind='text', shape=(seq_len,),
levels=tokenizer.vocab_size, tokenizer=the Tokenizer), and num_examples counts
windows. `config.data.path_prefix` ('json/' or 'json/,email/') keeps only the
documents whose `path` starts with one of the comma-separated prefixes (pysource: one
package's files). Streams are cached in memory per (split, seq_len, tokenizer, prefix).

Prompts (a dataset with a `prompt` feature of fixed-length byte strings and no `chosen`, e.g.
pysource_prompts, whose prompts are the first 16 bytes of lines of code): batch['x'] is the prompts'
bytes as int32 [B, P], DataInfo(kind='prompts', shape=(P,), levels=256,
tokenizer=ByteTokenizer()). Preference pairs (features `prompt` [P], `chosen` and `rejected` [C]
(uint8 bytes), `chosen_len` and `rejected_len` (int32: the bytes of each completion that count, see
jaxgen.data.builders.pysource_prompts), e.g. syntax_pairs/<config> written by
experiments/preference_pairs.py): batch = {'x': int32 [B, P] (the prompts), 'chosen': int32 [B, C],
'rejected': int32 [B, C], 'chosen_len': int32 [B], 'rejected_len': int32 [B]},
DataInfo(kind='pairs', shape=(P,), levels=256, tokenizer=ByteTokenizer()). Both are bytes only
(config.data.tokenizer must be 'byte') and read whole examples (no seq_len, no path_prefix); they
are batched, indexed by step and evaluated like every other kind.

Determinism: the training batch for step `k` is a pure function of
`(seed, k, process_index)`, so a run resumed at step `k` sees exactly the
batches an uninterrupted run would have, and no iterator state needs saving.
Epoch `e` is the permutation of the split drawn by `np.random.default_rng((seed,
e))`; the global batch for step `k` is positions `[k*B, (k+1)*B)` of the
concatenated epochs, and process `p` of `P` takes the contiguous slice
`[p*B/P, (p+1)*B/P)`. Per-example noise (dynamic binarization, dequantization)
comes from a generator keyed on `(seed, step, example index)` for training and
on `(seed, example index)` for evaluation, never from global state.

Reading: a split whose decoded size fits in memory (every offline dataset,
mnist, cifar10, ...) is decoded once per process and cached; larger ones are
read example by example through `tfds.data_source` (ArrayRecord random access),
so each process reads only the examples it needs. Datasets prepared as
tfrecord (no random access) are loaded into memory with `tfds.load`.
"""

import dataclasses
import fcntl
import functools
import math
import os
import queue
import threading
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import tensorflow_datasets as tfds

from jaxgen.data import builders, tokenizers
from jaxgen.errors import ConfigError, DataError

# Window length of text datasets when config.data.seq_len is absent.
_DEFAULT_SEQ_LEN = 256
# Discrete values per pixel of image datasets that are not 8-bit.
_IMAGE_LEVELS = {'digits': 17, 'binarized_mnist': 2}
_DEFAULT_IMAGE_LEVELS = 256
# Splits whose decoded arrays are at most this large are held in memory.
_MAX_IN_MEMORY_BYTES = 2 << 30
# First word of the noise generators' keys, so their streams never coincide.
_TRAIN_NOISE, _EVAL_NOISE, _TRAIN_SUBSET = 1, 2, 3
# The features of a preference-pairs dataset (module docstring), as its batches name them.
_PAIR_FEATURES = {'prompt': 'x', 'chosen': 'chosen', 'rejected': 'rejected', 'chosen_len': 'chosen_len',
                  'rejected_len': 'rejected_len'}


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """What a model needs to know about the data, as the pipeline delivers it."""
  name: str
  kind: str                 # 'image' | 'vector' | 'text' | 'prompts' | 'pairs'
  shape: tuple              # per-example shape of batch['x'], e.g. (28, 28, 1), (2,) or (seq_len,)
  levels: Optional[int]     # discrete values per dimension of x as the model sees it; None if continuous
  num_classes: Optional[int]
  num_examples: Dict[str, int]   # split name -> count
  dequantized: bool         # x carries uniform dequantization noise
  tokenizer: Optional[Any] = None   # text: the jaxgen.data.tokenizers.Tokenizer of the ids; else None


def data_dir(data_config) -> str:
  """`data_config.data_dir`, else $JAXGEN_DATA_DIR, else the TFDS default."""
  return (data_config.data_dir or os.environ.get('JAXGEN_DATA_DIR')
          or tfds.core.constants.get_default_data_dir())


def get_info(data_config) -> DataInfo:
  """The DataInfo of `data_config` (preparing an offline dataset if needed)."""
  return _Dataset(data_config).info


class TrainLoader:
  """Step-indexed: the local batch for step k is a pure function of (seed, k, process_index)."""

  def __init__(self, data_config, global_batch_size: int, seed: int, process_index: int = 0,
               process_count: int = 1, split: Optional[str] = None):
    self._local_batch_size = _local_batch_size(global_batch_size, process_index, process_count)
    self._global_batch_size = global_batch_size
    self._process_index = process_index
    self._seed = seed
    self._prefetch = int(data_config.prefetch)
    self._dataset = _Dataset(data_config)
    self._split = self._dataset.split(split or data_config.train_split)
    subset = int(data_config.get('max_train_examples', 0))
    if subset > 0 and split is None:
      self._split = _SubsetSplit(self._split, train_subset(len(self._split), subset))
    if not len(self._split):
      raise DataError(f'split {split or data_config.train_split!r} of {data_config.name!r} is empty.')
    self._stops = []
    self.info = self._dataset.info

  def batch(self, step: int) -> Dict[str, np.ndarray]:
    """{'x': float32 [B/P, *shape] (text: int32), 'label': int32 [B/P]} (label if the dataset has one)."""
    if step < 0:
      raise ValueError(f'step must be >= 0, got {step}.')
    start = step * self._global_batch_size + self._process_index * self._local_batch_size
    epochs, offsets = np.divmod(np.arange(start, start + self._local_batch_size), len(self._split))
    indices = np.empty_like(offsets)
    for epoch in np.unique(epochs):
      here = epochs == epoch
      indices[here] = _epoch_permutation(self._seed, int(epoch), len(self._split))[offsets[here]]
    keys = [(_TRAIN_NOISE, self._seed, step, int(i)) for i in indices]
    return self._dataset.make_batch(self._split.read(indices), keys)

  def iterate(self, start_step: int) -> Iterator[Dict[str, np.ndarray]]:
    """batch(start_step), batch(start_step + 1), ... prepared `prefetch` ahead by a daemon thread.

    The thread stops when the returned generator is closed or collected, or on close().
    """
    if self._prefetch <= 0:
      step = start_step
      while True:
        yield self.batch(step)
        step += 1
    stop = threading.Event()
    self._stops.append(stop)
    ready = queue.Queue(maxsize=self._prefetch)

    def produce():
      step = start_step
      while not stop.is_set():
        try:
          item = self.batch(step)
        except Exception as e:  # pylint: disable=broad-except  # re-raised in the consumer
          item = e
        while not stop.is_set():
          try:
            ready.put(item, timeout=0.1)
            break
          except queue.Full:
            pass
        if isinstance(item, Exception):
          return
        step += 1

    threading.Thread(target=produce, name='jaxgen-prefetch', daemon=True).start()
    try:
      while True:
        item = ready.get()
        if isinstance(item, Exception):
          raise item
        yield item
    finally:
      stop.set()

  def close(self) -> None:
    """Stop every prefetch thread started by iterate()."""
    for stop in self._stops:
      stop.set()
    self._stops.clear()


def eval_batches(data_config, global_batch_size: int, process_index: int = 0, process_count: int = 1,
                 split: Optional[str] = None, seed: int = 0,
                 with_index: bool = False) -> Iterator[Dict[str, np.ndarray]]:
  """Each example of the split exactly once, in a fixed order, with a 'mask'.

  The split is `split` or `data_config.eval_split`, cut to the first
  `data_config.max_eval_examples` if that is > 0. Batches hold
  `global_batch_size` examples (each process its contiguous share); the last
  one is padded by repeating the final example, with 'mask' 0.0 there and 1.0
  on real examples. Noise (fixed binarization, dequantization) depends on
  `seed` and the example index only, so every call yields the same arrays.
  With `with_index`, batch['index'] holds each example's index in the split.
  """
  local = _local_batch_size(global_batch_size, process_index, process_count)
  dataset = _Dataset(data_config)
  source = dataset.split(split or data_config.eval_split)
  chosen = eval_subset(len(source), int(data_config.max_eval_examples))
  n = len(chosen)
  for start in range(0, n, global_batch_size):
    positions = np.arange(start + process_index * local, start + (process_index + 1) * local)
    indices = chosen[np.minimum(positions, n - 1)]
    keys = [(_EVAL_NOISE, seed, int(i)) for i in indices]
    batch = dataset.make_batch(source.read(indices), keys)
    batch['mask'] = (positions < n).astype(np.float32)
    if with_index:
      batch['index'] = indices.astype(np.int32)
    yield batch


def eval_subset(n: int, max_examples: int) -> np.ndarray:
  """The split indices evaluation reads: all n, or a fixed random subset of `max_examples`, in index order.

  A random (not leading) subset because splits are often sorted by class: the
  first 1,000 mnist5k training images are only 0s, 1s and 2s. The subset is a
  pure function of (n, max_examples), the same in every run and on every mesh.
  """
  if max_examples <= 0 or max_examples >= n:
    return np.arange(n)
  return np.sort(np.random.default_rng((_EVAL_NOISE, n, max_examples)).permutation(n)[:max_examples])


def train_subset(n: int, max_examples: int) -> np.ndarray:
  """The training-split indices a run with config.data.max_train_examples = N trains on: a fixed random
  subset of N (all n if N >= n), a pure function of (n, N) like eval_subset (limited-data experiments:
  StyleGAN2-ADA on 10% of mnist5k)."""
  if max_examples <= 0 or max_examples >= n:
    return np.arange(n)
  return np.sort(np.random.default_rng((_TRAIN_SUBSET, n, max_examples)).permutation(n)[:max_examples])


def _local_batch_size(global_batch_size: int, process_index: int, process_count: int) -> int:
  if global_batch_size <= 0 or global_batch_size % process_count:
    raise ConfigError(f'the global batch size ({global_batch_size}) must be a positive multiple '
                      f'of the number of processes ({process_count}).')
  if not 0 <= process_index < process_count:
    raise ConfigError(f'process_index {process_index} is not in [0, {process_count}).')
  return global_batch_size // process_count


@functools.lru_cache(maxsize=8)  # consecutive steps mostly share an epoch
def _epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """The order of the split's examples in epoch `epoch`: a pure function of (seed, epoch, n)."""
  permutation = np.random.default_rng((seed, epoch)).permutation(n)
  permutation.setflags(write=False)
  return permutation


def _uniform(keys, shape) -> np.ndarray:
  """U[0, 1) float32 noise [len(keys), *shape]; row i depends on keys[i] alone."""
  return np.stack([np.random.default_rng(key).random(shape, dtype=np.float32) for key in keys])


class _Dataset:
  """A TFDS dataset opened for the pipeline: its DataInfo, its splits, and preprocessing."""

  def __init__(self, data_config):
    self._config = data_config
    self._builder = _builder(data_config.name, data_dir(data_config))
    features = self._builder.info.features
    if 'image' in features:
      self._x_key, kind = 'image', 'image'
      self._levels = _IMAGE_LEVELS.get(self._builder.name, _DEFAULT_IMAGE_LEVELS)
      if features['image'].np_dtype != np.uint8:
        raise DataError(f"dataset {data_config.name!r}: jaxgen reads 'image' features of dtype uint8, "
                        f"not {features['image'].np_dtype}.")
    elif 'point' in features:
      self._x_key, kind, self._levels = 'point', 'vector', None
    elif 'text' in features:
      self._x_key, kind = 'text', 'text'
    elif 'chosen' in features:
      self._x_key, kind = 'prompt', 'pairs'
      _check_pair_features(data_config.name, features)
    elif 'prompt' in features:
      self._x_key, kind = 'prompt', 'prompts'
    else:
      raise DataError(f"dataset {data_config.name!r} has none of the features 'image', 'point', 'text', 'prompt' "
                      f"(it has {sorted(features.keys())}); jaxgen's pipeline reads one of those.")
    self._kind = kind
    self._seq_len = int(data_config.get('seq_len', _DEFAULT_SEQ_LEN))
    if kind == 'text' and self._seq_len < 1:
      raise ConfigError(f'config.data.seq_len must be a positive number of tokens, got {self._seq_len}.')
    self._prefixes = path_prefixes(data_config)
    if self._prefixes and 'path' not in features:
      raise ConfigError(f'config.data.path_prefix={data_config.path_prefix!r} keeps the documents whose path '
                        f"starts with it, but dataset {data_config.name!r} has no 'path' feature; set it to ''.")
    shape = (self._seq_len,) if kind == 'text' else tuple(features[self._x_key].shape)
    self._image_size = int(data_config.get('image_size', 0))
    if self._image_size:
      if kind != 'image':
        raise ConfigError(f'config.data.image_size resizes images; {data_config.name!r} is not an image dataset.')
      shape = (self._image_size, self._image_size, shape[-1])
    if None in shape:
      raise DataError(f'dataset {data_config.name!r}: {self._x_key} has a variable shape {shape}; '
                      'jaxgen needs a fixed per-example shape (config.data.image_size=N crops and resizes to NxN).')
    label = features['label'] if 'label' in features else None
    self._has_label = isinstance(label, tfds.features.ClassLabel)
    self._check_preprocessing(kind)
    self._tokenizer = tokenizers.get_tokenizer(data_config) if kind == 'text' else None
    if kind in ('prompts', 'pairs'):
      self._tokenizer = tokenizers.ByteTokenizer()
    if self._tokenizer is not None:
      self._levels = self._tokenizer.vocab_size
    binarized = bool(data_config.binarize)
    self._splits = {}
    self.info = DataInfo(
        name=data_config.name, kind=kind, shape=shape,
        levels=2 if binarized else self._levels,
        num_classes=label.num_classes if self._has_label else None,
        num_examples=self._num_examples(),
        dequantized=bool(data_config.dequantize),
        tokenizer=self._tokenizer)

  def _check_preprocessing(self, kind: str) -> None:
    c = self._config
    if c.binarize not in ('', 'dynamic', 'threshold'):
      raise ConfigError(f"config.data.binarize={c.binarize!r} is not one of '', 'dynamic', 'threshold'.")
    if c.binarize and c.dequantize:
      raise ConfigError('config.data.binarize and config.data.dequantize exclude each other: set one.')
    if kind != 'image' and (c.binarize or c.dequantize):
      raise ConfigError(f'config.data.binarize / dequantize apply to images; {c.name!r} is '
                        f"{'continuous' if kind == 'vector' else kind}.")
    if kind in ('prompts', 'pairs'):
      if c.get('tokenizer', 'byte') not in ('', 'byte'):
        raise ConfigError(f"config.data.tokenizer={c.tokenizer!r}: dataset {c.name!r} holds {kind} of raw bytes, "
                          "read by byte-level models only. Set config.data.tokenizer='byte'.")
      if self._prefixes:
        raise ConfigError(f'config.data.path_prefix={c.path_prefix!r} selects documents of text datasets; {c.name!r} '
                          f"holds {kind}. Set it to ''.")
    if kind != 'text' and c.get('tokenizer', 'byte') not in ('', 'byte'):
      raise ConfigError(f'config.data.tokenizer={c.tokenizer!r} tokenizes text; {c.name!r} is '
                        f"{'continuous' if kind == 'vector' else kind} data. Set it to 'byte'.")

  def _num_examples(self) -> Dict[str, int]:
    splits = self._builder.info.splits
    if splits and self._x_key != 'text':  # a text split's examples are windows, not documents
      return {name: split.num_examples for name, split in splits.items()}
    # No split metadata (e.g. under tfds.testing.mock_data): count the splits we read.
    names = {self._config.train_split, self._config.eval_split}
    return {name: len(self.split(name)) for name in sorted(names)}

  def split(self, split: str):
    """The split, opened for reading (cached on this object), without `exclude_labels` examples."""
    if split not in self._splits:
      keys = (self._x_key, 'label') if self._has_label else (self._x_key,)
      if self._kind == 'pairs':
        keys = tuple(_PAIR_FEATURES)
      if self._x_key == 'text':
        key = ('text', self._seq_len, self._tokenizer.fingerprint, self._prefixes)
        source = _TextSplit(**_cached(self._builder, split, key, lambda: _text_windows(
            _documents(self._builder, self._config.name, split, self._prefixes), self._tokenizer, self._seq_len)))
      else:
        source = _open_split(self._builder, self._config.name, split, keys)
      excluded = tuple(int(k) for k in self._config.get('exclude_labels', ()))
      if excluded:
        if not self._has_label:
          raise ConfigError(f'config.data.exclude_labels needs labels; {self._config.name!r} has none.')
        labels = source.read(np.arange(len(source)))['label']
        source = _SubsetSplit(source, np.flatnonzero(~np.isin(labels, excluded)))
      self._splits[split] = source
    return self._splits[split]

  def make_batch(self, examples: Dict[str, np.ndarray], noise_keys) -> Dict[str, np.ndarray]:
    """Raw examples -> {'x': float32, 'label': int32} (text: {'x': int32 ids, 'num_bytes': float32}; prompts
    and pairs: int32 bytes, module docstring); noise_keys[i] seeds example i's noise."""
    x = examples[self._x_key]
    if self._x_key == 'text':
      return {'x': x.astype(np.int32), 'num_bytes': examples['num_bytes'].astype(np.float32)}
    if self._kind == 'pairs':
      return {name: examples[key].astype(np.int32) for key, name in _PAIR_FEATURES.items()}
    if self._kind == 'prompts':
      return {'x': x.astype(np.int32)}
    if self._image_size:
      x = center_crop_resize(x, self._image_size)
    batch = {'x': self._preprocess(x, lambda: _uniform(noise_keys, x.shape[1:]))}
    if self._has_label:
      batch['label'] = examples['label'].astype(np.int32)
    return batch

  def _preprocess(self, x_int: np.ndarray, uniform) -> np.ndarray:
    """x as the model sees it (module docstring); `uniform()` draws the examples' noise."""
    if self._levels is None:
      return x_int.astype(np.float32)
    c, levels = self._config, np.float32(self._levels)
    x_int = x_int.astype(np.float32)
    p = x_int / (levels - 1)
    if c.binarize == 'dynamic':
      return (uniform() < p).astype(np.float32)
    if c.binarize == 'threshold':
      return (p > 0.5).astype(np.float32)
    if c.dequantize:
      # float32 rounding can reach (x_int + 1) / L; keep x in [x_int / L, (x_int + 1) / L).
      return np.minimum((x_int + uniform()) / levels, np.nextafter((x_int + 1) / levels, np.float32(0)))
    return p


class _InMemorySplit:
  """A decoded split held as arrays: len() and read(indices) -> {key: array [len(indices), ...]}."""

  def __init__(self, arrays: Dict[str, np.ndarray]):
    self._arrays = arrays

  def __len__(self) -> int:
    return len(next(iter(self._arrays.values())))

  def read(self, indices: np.ndarray) -> Dict[str, np.ndarray]:
    return {key: array[indices] for key, array in self._arrays.items()}


def center_crop_resize(images: np.ndarray, size: int) -> np.ndarray:
  """uint8 [B, H, W, C] -> uint8 [B, size, size, C]: the central square crop, resized with an
  antialiasing (Lanczos) filter and rounded, so the pixels stay discrete 8-bit values (as DCGAN's
  64x64 LSUN / CelebA inputs)."""
  from PIL import Image
  out = []
  for image in images:
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top:top + side, left:left + side]
    pil = Image.fromarray(crop[..., 0] if crop.shape[-1] == 1 else crop)
    resized = np.asarray(pil.resize((size, size), Image.LANCZOS), np.uint8)
    out.append(resized.reshape(size, size, image.shape[-1]))
  return np.stack(out)


class _TextSplit:
  """A text split's windows [n, seq_len] (token ids) and their decoded sizes num_bytes [n]; same interface
  as _InMemorySplit."""

  def __init__(self, windows: np.ndarray, num_bytes: np.ndarray):
    self._windows, self._num_bytes = windows, num_bytes

  def __len__(self) -> int:
    return len(self._windows)

  def read(self, indices: np.ndarray) -> Dict[str, np.ndarray]:
    return {'text': self._windows[indices], 'num_bytes': self._num_bytes[indices]}


def _check_pair_features(name: str, features) -> None:
  """DataError unless `features` are those of a preference-pairs dataset (module docstring)."""
  missing = sorted(set(_PAIR_FEATURES) - set(features.keys()))
  if missing:
    raise DataError(f"dataset {name!r} has a 'chosen' feature but lacks {', '.join(missing)}: a preference-pairs "
                    f"dataset has {', '.join(_PAIR_FEATURES)} (experiments/preference_pairs.py writes one).")
  shapes = {k: tuple(features[k].shape) for k in _PAIR_FEATURES}
  if (len(shapes['prompt']) != 1 or len(shapes['chosen']) != 1 or shapes['chosen'] != shapes['rejected']
      or shapes['chosen_len'] != () or shapes['rejected_len'] != ()):
    raise DataError(f'dataset {name!r}: a preference-pairs dataset has prompt [P], chosen and rejected [C] and '
                    f'scalar chosen_len and rejected_len; got shapes {shapes}.')


def path_prefixes(data_config) -> tuple:
  """config.data.path_prefix as a tuple of prefixes: 'json/,email/' -> ('json/', 'email/'), '' -> ()."""
  return tuple(p.strip() for p in str(data_config.get('path_prefix', '') or '').split(',') if p.strip())


def dataset_id(data_config) -> str:
  """The TFDS full name of config.data's dataset, e.g. 'pysource/py3.11.7/1.0.0' (preparing it if offline)."""
  return _builder(data_config.name, data_dir(data_config)).info.full_name


def split_documents(data_config, split: str, prefixes=()) -> List[bytes]:
  """The documents (bytes) of a text split in stream order: by `path` where the dataset has one, else as
  stored; only those whose path starts with one of `prefixes` if any are given."""
  builder = _builder(data_config.name, data_dir(data_config))
  return _documents(builder, data_config.name, split, tuple(prefixes))


def _documents(builder, name: str, split: str, prefixes: tuple) -> List[bytes]:
  """split_documents of an opened builder (the whole split read once, then cached)."""

  def load():
    try:
      source = builder.as_data_source(split=split)
      examples = [source[i] for i in range(len(source))]
    except NotImplementedError:  # no ArrayRecord files: not prepared at all, or prepared as tfrecord
      if not builder.is_prepared():
        raise _not_prepared(name, builder) from None
      examples = list(tfds.as_numpy(builder.as_dataset(split=split)))
    except ValueError as e:  # e.g. an unknown split name
      raise DataError(f'cannot read split {split!r} of dataset {name!r}: {e}') from e
    texts = [_as_bytes(e['text']) for e in examples]
    paths = [_as_bytes(e['path']) for e in examples] if examples and 'path' in examples[0] else None
    if paths is not None:
      order = sorted(range(len(paths)), key=paths.__getitem__)  # stable: equal paths keep stored order
      texts, paths = [texts[i] for i in order], [paths[i] for i in order]
    return {'text': texts, 'path': paths}

  documents = _cached(builder, split, ('documents',), load)
  if not prefixes:
    return documents['text']
  encoded = tuple(p.encode('utf-8') for p in prefixes)
  kept = [t for t, p in zip(documents['text'], documents['path']) if p.startswith(encoded)]
  if not kept:
    directories = sorted({p.split(b'/')[0].decode('utf-8', 'replace') + '/' for p in documents['path'] if b'/' in p})
    raise ConfigError(f'config.data.path_prefix={",".join(prefixes)!r} matches no document of split {split!r} '
                      f"of {name!r}. Use prefixes with files in every split read; this split's directories "
                      f'include {", ".join(map(repr, directories[:12]))}.')
  return kept


def _as_bytes(value) -> bytes:
  return value.encode('utf-8') if isinstance(value, str) else bytes(value)


def _text_windows(documents: List[bytes], tokenizer, seq_len: int) -> Dict[str, np.ndarray]:
  """{'windows': ids [n, seq_len] of the documents' token stream (module docstring) padded with separators,
  'num_bytes': float32 [n] the bytes each window decodes to}."""
  stream = tokenizer.stream(documents)
  windows = -(-len(stream) // seq_len)
  padded = np.full(windows * seq_len, tokenizer.eos_id, stream.dtype)
  padded[:len(stream)] = stream
  padded = padded.reshape(windows, seq_len)
  num_bytes = tokenizer.num_bytes(padded).astype(np.float32)
  padded.setflags(write=False)
  num_bytes.setflags(write=False)
  return {'windows': padded, 'num_bytes': num_bytes}


class _SubsetSplit:
  """The examples `indices` of another split, in that order; same interface as _InMemorySplit."""

  def __init__(self, source, indices: np.ndarray):
    self._source, self._indices = source, indices

  def __len__(self) -> int:
    return len(self._indices)

  def read(self, indices: np.ndarray) -> Dict[str, np.ndarray]:
    return self._source.read(self._indices[indices])


class _RandomAccessSplit:
  """A split read example by example from a `tfds.data_source`; same interface as _InMemorySplit."""

  def __init__(self, source, keys):
    self._source, self._keys = source, keys

  def __len__(self) -> int:
    return len(self._source)

  def read(self, indices: np.ndarray) -> Dict[str, np.ndarray]:
    # One __getitem__ per example: tfds.testing.mock_data's __getitems__ is broken in TFDS 4.9.10.
    examples = [self._source[int(i)] for i in indices]
    return {key: np.stack([np.asarray(e[key]) for e in examples]) for key in self._keys}


# (data path, split, keys) -> decoded arrays of splits held in memory.
_IN_MEMORY: Dict[tuple, Dict[str, np.ndarray]] = {}
_IN_MEMORY_LOCK = threading.RLock()  # reentrant: a load may read another cached entry


def _open_split(builder, name: str, split: str, keys):
  """Open one split for reading: in memory if it fits, else random access."""
  try:
    source = builder.as_data_source(split=split)
  except NotImplementedError:  # no ArrayRecord files: not prepared at all, or prepared as tfrecord
    if not builder.is_prepared():
      raise _not_prepared(name, builder) from None
    return _InMemorySplit(_cached(builder, split, keys, lambda: _load_tfrecord(builder, split, keys)))
  except ValueError as e:  # e.g. an unknown split name
    raise DataError(f'cannot read split {split!r} of dataset {name!r}: {e}') from e
  features = builder.info.features
  example_bytes = sum(math.prod(features[k].shape) * np.dtype(features[k].np_dtype).itemsize for k in keys)
  # Split metadata is missing under tfds.testing.mock_data, whose sources must be read as given.
  if builder.info.splits and len(source) * example_bytes <= _MAX_IN_MEMORY_BYTES:
    return _InMemorySplit(_cached(builder, split, keys, lambda: _decode_all(builder, split, keys)))
  return _RandomAccessSplit(source, keys)


def _cached(builder, split, keys, load) -> Dict[str, Any]:
  """load(), kept for the process's lifetime under (the builder's data path, split, keys). Not kept when
  the builder has no split metadata (tfds.testing.mock_data, whose data path is the same whatever it
  generates)."""
  if not builder.info.splits:
    return load()
  key = (os.fspath(builder.data_path), split, keys)
  with _IN_MEMORY_LOCK:
    if key not in _IN_MEMORY:
      _IN_MEMORY[key] = load()
    return _IN_MEMORY[key]


def _decode_all(builder, split: str, keys) -> Dict[str, np.ndarray]:
  """The whole split's `keys` as arrays, from ArrayRecord.

  Parses the serialized tf.Examples in one vectorised call: decoding example by
  example through the data source costs ~50 µs each (5 s for toy2d's 100k).
  Only encoded features (e.g. PNG images) are then decoded one by one.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  # slow to import; only needed here
  raw = builder.as_data_source(split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  features = builder.info.features
  specs = features.tf_example_spec
  parsed = tf.io.parse_example(raw.__getitems__(range(len(raw))), {k: specs[k] for k in keys})
  arrays = {}
  for k in keys:
    values = parsed[k].numpy()
    if values.dtype == object:  # encoded bytes
      arrays[k] = np.stack([features[k].decode_example_np(v) for v in values])
    else:
      arrays[k] = values.astype(features[k].np_dtype)
  return arrays


def _load_tfrecord(builder, split: str, keys) -> Dict[str, np.ndarray]:
  """The whole split's `keys` as arrays, for datasets prepared without random access."""
  data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
  return {k: data[k] for k in keys}


def _not_prepared(name: str, builder) -> DataError:
  root = os.fspath(builder.data_dir_root)
  return DataError(f'dataset {name!r} is not prepared in {root}: run `tfds build {name} --data_dir {root}` '
                   'on a machine with network (or set config.data.data_dir).')


def _builder(name: str, root: str):
  """The TFDS builder for `name` in `root`; offline datasets are prepared on first use."""
  try:
    builder = tfds.builder(name, data_dir=root)
  except ValueError as e:  # DatasetNotFoundError, or an unknown config or version
    raise _unknown(name, e) from None
  if isinstance(builder, builders.OFFLINE_BUILDERS) and not builder.is_prepared():
    builder = _prepare_offline(name, root)
  return builder


def _unknown(name: str, error: ValueError) -> DataError:
  if isinstance(error, tfds.core.registered.DatasetNotFoundError):
    reason = 'TFDS has no dataset of that name'
  else:  # TFDS's first sentence names the bad config or version
    reason = str(error).splitlines()[0].split(' Here are ')[0].rstrip('.')
  return DataError(f'unknown dataset {name!r}: {reason}. Offline datasets, prepared automatically: '
                   f'{", ".join(builders.OFFLINE_DATASETS)}; any other TFDS name (mnist, cifar10, ...) '
                   'must be prepared with `tfds build`.')


def _prepare_offline(name: str, root: str):
  """Prepare an offline dataset as ArrayRecord, under a file lock so concurrent processes agree."""
  os.makedirs(root, exist_ok=True)
  lock_path = os.path.join(root, '.jaxgen-prepare-' + name.replace('/', '-').replace(':', '-') + '.lock')
  with open(lock_path, 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    builder = tfds.builder(name, data_dir=root)  # after the lock: sees another process's result
    if not builder.is_prepared():
      builder.download_and_prepare(
          file_format='array_record',
          download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder
