"""Read and write PyTorch `.pth` state dicts without importing torch.

Both formats that `torch.save` has written are understood:

* zip (torch >= 1.6, the default since): an uncompressed zip archive whose
  records all sit under one folder `<prefix>/`: `data.pkl` (the object,
  pickled), `data/<key>` (each storage's raw bytes), `byteorder` ('little' or
  'big'; absent means little) and `version`. A storage is pickled as the
  persistent id `('storage', storage_type, key, location, numel)`.
* legacy (torch < 1.6, or `_use_new_zipfile_serialization=False`): one stream
  of pickles: the magic number 0x1950a86a20f9469cfc6c, the protocol version
  1001, a sys_info dict, the object (storages as persistent ids
  `('storage', storage_type, root_key, location, numel, view_metadata)`), the
  list of storage keys, then for each key an 8-byte little-endian element count
  followed by the storage's little-endian bytes.

In both, a tensor is the call `torch._utils._rebuild_tensor_v2(storage,
storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`; its
elements are read through (offset, size, stride), so views and transposed
tensors come back right.

Safety: unpickling runs no code from the file. `find_class` resolves only
`collections.OrderedDict`, the torch rebuild functions (replaced by local
numpy ones) and the torch storage classes (replaced by dtype markers); any
other global is refused with a `CheckpointError`.

`save_state_dict` writes the same bytes-level structure (protocol-2 pickles with
GLOBAL opcodes naming `torch._utils._rebuild_tensor_v2`, `torch.FloatStorage`,
`collections.OrderedDict`), which `torch.load` reads, with `weights_only=True`
too.
"""

import collections
import dataclasses
import io
import os
import pickle
import struct
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

from jaxgen.errors import CheckpointError

MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
PROTOCOL_VERSION = 1001
PICKLE_PROTOCOL = 2  # torch.save's default
_ZIP_MAGIC = b'PK\x03\x04'
_ZIP_ALIGNMENT = 64  # torch aligns each storage record's data to 64 bytes in the archive

# torch storage class name -> numpy dtype (element type of the storage).
STORAGE_DTYPES = {
    'DoubleStorage': np.dtype(np.float64),
    'FloatStorage': np.dtype(np.float32),
    'HalfStorage': np.dtype(np.float16),
    'BFloat16Storage': np.dtype(ml_dtypes.bfloat16),
    'LongStorage': np.dtype(np.int64),
    'IntStorage': np.dtype(np.int32),
    'ShortStorage': np.dtype(np.int16),
    'CharStorage': np.dtype(np.int8),
    'ByteStorage': np.dtype(np.uint8),
    'BoolStorage': np.dtype(np.bool_),
    'UntypedStorage': np.dtype(np.uint8),
}
# numpy dtype -> torch storage class name, for writing.
_STORAGE_NAMES = {dtype: name for name, dtype in STORAGE_DTYPES.items() if name != 'UntypedStorage'}


class _Global:
  """A stand-in for a torch global, named by (module, name); pickled as a GLOBAL opcode."""

  def __init__(self, module: str, name: str):
    self.module = module
    self.name = name

  def __call__(self, *args, **kwargs):  # save_reduce insists that a reduce function be callable
    raise TypeError(f'{self!r} is a marker for pickling, not a function')

  def __repr__(self):
    return f'<torch global {self.module}.{self.name}>'


class _StorageType(_Global):
  """torch.<X>Storage: the element dtype of a storage."""

  def __init__(self, name: str):
    super().__init__('torch', name)
    self.dtype = STORAGE_DTYPES[name]


_REBUILD_TENSOR_V2 = _Global('torch._utils', '_rebuild_tensor_v2')
_STORAGE_TYPES = {}


def _storage_type(name: str) -> _StorageType:
  """One marker per storage class, so a pickle names each class once and refers back to it."""
  if name not in _STORAGE_TYPES:
    _STORAGE_TYPES[name] = _StorageType(name)
  return _STORAGE_TYPES[name]


# ---------------------------------------------------------------------------------------------
# Reading


@dataclasses.dataclass(eq=False)
class _Storage:
  """A root storage of the file; `data` is filled once its bytes have been read."""
  key: str
  dtype: np.dtype
  numel: int
  data: Any = None


@dataclasses.dataclass(eq=False)
class _StorageSlice:
  """A storage as a tensor sees it: `numel` elements of `root` from element `offset` on."""
  root: _Storage
  offset: int
  numel: int


@dataclasses.dataclass(eq=False)
class _LazyTensor:
  """A tensor whose storage bytes may not have been read yet (legacy files store them last)."""
  storage: _StorageSlice
  offset: int
  size: tuple
  stride: tuple


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
  del requires_grad, backward_hooks, metadata  # no meaning for numpy arrays
  if not isinstance(storage, _StorageSlice):
    raise CheckpointError(f'_rebuild_tensor_v2 got {type(storage).__name__} where a storage was expected.')
  size, stride = tuple(size), tuple(stride)
  if len(size) != len(stride) or not all(isinstance(v, int) for v in size + stride + (storage_offset,)):
    raise CheckpointError(f'Malformed tensor: size {size}, stride {stride}, offset {storage_offset}.')
  return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks):
  del requires_grad, backward_hooks
  return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
  del requires_grad, backward_hooks, state
  return data


def _rebuild_from_type_v2(func, new_type, args, state):
  del new_type, state  # Tensor or Parameter: both become numpy arrays
  return func(*args)


_ALLOWED_GLOBALS = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter_with_state,
    ('torch._tensor', '_rebuild_from_type_v2'): _rebuild_from_type_v2,
    ('torch', 'Tensor'): _Global('torch', 'Tensor'),
    ('torch.nn.parameter', 'Parameter'): _Global('torch.nn.parameter', 'Parameter'),
}


def _decode(value):
  return value.decode('ascii') if isinstance(value, bytes) else value


class _RestrictedUnpickler(pickle.Unpickler):
  """Resolves only the globals a state dict needs; storages come back as `_StorageSlice`s."""

  def __init__(self, file, roots: dict, source: str):
    super().__init__(file, encoding='utf-8')
    self._roots = roots
    self._source = source

  def find_class(self, module, name):
    if module == 'torch' and name in STORAGE_DTYPES:
      return _storage_type(name)
    if (module, name) in _ALLOWED_GLOBALS:
      return _ALLOWED_GLOBALS[(module, name)]
    raise CheckpointError(f'{self._source} refers to the Python global {module}.{name}, which a plain state dict '
                          'of tensors does not need; refusing to unpickle it (a pickle can run arbitrary code). '
                          'Only tensors, dicts, lists and numbers are read.')

  def persistent_load(self, pid):
    if not isinstance(pid, tuple) or not pid or _decode(pid[0]) != 'storage':
      raise CheckpointError(f'{self._source}: unsupported persistent id {pid!r:.100} (only tensor storages are read).')
    if len(pid) == 5:  # zip format
      _, storage_type, key, _location, numel = pid
      view = None
    elif len(pid) == 6:  # legacy format
      _, storage_type, key, _location, numel, view = pid
    else:
      raise CheckpointError(f'{self._source}: malformed storage id {pid!r:.100}.')
    if not isinstance(storage_type, _StorageType):
      raise CheckpointError(f'{self._source}: storage of unknown type {storage_type!r}.')
    key = str(_decode(key))
    root = self._roots.get(key)
    if root is None:
      root = self._roots[key] = _Storage(key, storage_type.dtype, int(numel))
    if view is None:
      return _StorageSlice(root, 0, root.numel)
    _view_key, offset, view_numel = view
    return _StorageSlice(root, int(offset), int(view_numel))


def _materialize(obj, source: str):
  """Replace every `_LazyTensor` inside dicts/lists/tuples by a numpy array (a copy)."""
  if isinstance(obj, _LazyTensor):
    return _tensor_to_numpy(obj, source)
  if isinstance(obj, dict):
    out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
    for key, value in obj.items():
      out[key] = _materialize(value, source)
    return out
  if isinstance(obj, list):
    return [_materialize(v, source) for v in obj]
  if isinstance(obj, tuple):
    return tuple(_materialize(v, source) for v in obj)
  return obj


def _tensor_to_numpy(tensor: _LazyTensor, source: str) -> np.ndarray:
  storage = tensor.storage
  data = storage.root.data
  if data is None:
    raise CheckpointError(f'{source}: the bytes of storage {storage.root.key!r} are missing from the file.')
  if storage.offset + storage.numel > data.shape[0]:
    raise CheckpointError(f'{source}: storage view [{storage.offset}, {storage.offset + storage.numel}) lies outside '
                          f'storage {storage.root.key!r} of {data.shape[0]} elements.')
  flat = data[storage.offset:storage.offset + storage.numel]
  size, stride, offset = tensor.size, tensor.stride, tensor.offset
  if any(s < 0 for s in size) or any(s < 0 for s in stride) or offset < 0:
    raise CheckpointError(f'{source}: negative size/stride/offset in tensor {size} {stride} {offset}.')
  if 0 in size:
    return np.zeros(size, flat.dtype)
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= flat.shape[0]:
    raise CheckpointError(f'{source}: tensor of size {size}, stride {stride}, offset {offset} reads past the end of '
                          f'its storage of {flat.shape[0]} elements.')
  view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size,
                                         strides=tuple(s * flat.itemsize for s in stride), writeable=False)
  return np.array(view, copy=True)


def _load_zip(raw: bytes, source: str):
  with zipfile.ZipFile(io.BytesIO(raw)) as archive:
    names = archive.namelist()
    pickles = sorted((n for n in names if n.endswith('/data.pkl') and n.count('/') == 1), key=len)
    if not pickles:
      if any(n.endswith('constants.pkl') for n in names):
        raise CheckpointError(f'{source} is a TorchScript archive, not a torch.save file of a state dict.')
      raise CheckpointError(f'{source} is a zip archive without <prefix>/data.pkl: not a torch.save file.')
    prefix = pickles[0][:-len('data.pkl')]
    byteorder = 'little'
    if prefix + 'byteorder' in names:
      byteorder = archive.read(prefix + 'byteorder').decode('ascii').strip()
      if byteorder not in ('little', 'big'):
        raise CheckpointError(f'{source}: unknown byteorder record {byteorder!r}.')
    roots = {}
    obj = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), roots, source).load()
    for key, root in roots.items():
      name = f'{prefix}data/{key}'
      if name not in names:
        raise CheckpointError(f'{source}: record {name} for storage {key!r} is missing.')
      data = archive.read(name)
      if len(data) != root.numel * root.dtype.itemsize:
        raise CheckpointError(f'{source}: record {name} has {len(data)} bytes, expected '
                              f'{root.numel} x {root.dtype.itemsize}.')
      dtype = root.dtype.newbyteorder('<' if byteorder == 'little' else '>') if root.dtype.itemsize > 1 else root.dtype
      root.data = np.frombuffer(data, dtype).astype(root.dtype)
  return _materialize(obj, source)


def _load_legacy(raw: bytes, source: str):
  f = io.BytesIO(raw)
  not_torch = (f'{source} is not a torch.save file: neither the zip nor the legacy format (the pre-2018 tar '
               'format is not supported; re-save such a file with a current torch).')
  try:
    magic = _RestrictedUnpickler(f, {}, source).load()
  except Exception as e:  # any garbage: the file does not start with the legacy magic-number pickle
    raise CheckpointError(not_torch) from e
  if magic != MAGIC_NUMBER:
    raise CheckpointError(not_torch)
  protocol = _RestrictedUnpickler(f, {}, source).load()
  if protocol != PROTOCOL_VERSION:
    raise CheckpointError(f'{source}: unsupported legacy protocol version {protocol!r} (expected {PROTOCOL_VERSION}).')
  _RestrictedUnpickler(f, {}, source).load()  # sys_info; the storage bytes are little-endian whatever it says
  roots = {}
  obj = _RestrictedUnpickler(f, roots, source).load()
  keys = _RestrictedUnpickler(f, {}, source).load()
  for key in keys:
    key = str(_decode(key))
    if key not in roots:
      raise CheckpointError(f'{source}: storage {key!r} is listed but no tensor uses it.')
    root = roots[key]
    header = f.read(8)
    if len(header) != 8:
      raise CheckpointError(f'{source} is truncated (storage {key!r}).')
    (numel,) = struct.unpack('<q', header)
    nbytes = numel * root.dtype.itemsize
    data = f.read(nbytes)
    if numel != root.numel or len(data) != nbytes:
      raise CheckpointError(f'{source}: storage {key!r} has {len(data)} bytes / {numel} elements, expected '
                            f'{root.numel} elements of {root.dtype}.')
    root.data = np.frombuffer(data, root.dtype.newbyteorder('<')).astype(root.dtype)
  return _materialize(obj, source)


def load(path) -> Any:
  """The object in a torch.save file, with every tensor as a numpy array. Runs no pickled code."""
  path = os.fspath(path)
  with open(path, 'rb') as f:
    raw = f.read()
  try:
    if raw[:4] == _ZIP_MAGIC:
      return _load_zip(raw, path)
    return _load_legacy(raw, path)
  except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error, UnicodeDecodeError) as e:
    raise CheckpointError(f'{path} is corrupt or not a torch.save file: {e}') from e


def load_state_dict(path) -> dict:
  """{key: np.ndarray} from a torch.save'd state dict (zip or legacy format), in file order."""
  obj = load(path)
  if not isinstance(obj, dict):
    raise CheckpointError(f'{path} holds a {type(obj).__name__}, not a state dict.')
  bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
  if bad:
    raise CheckpointError(f'{path} is not a flat state dict of tensors: entries {bad[:5]} are not tensors '
                          f'(a training checkpoint? load it with torch and save model.state_dict()).')
  return dict(obj)


# ---------------------------------------------------------------------------------------------
# Writing


@dataclasses.dataclass(eq=False)
class StridedTensor:
  """A tensor as torch stores it: a 1-D `storage`, an element `offset`, a `shape` and element `stride`s.

  `save_state_dict` writes numpy arrays as contiguous tensors; a StridedTensor
  writes a view (transposed, offset, sharing a storage with other tensors when
  they share the same `storage` array object) the way torch.save writes one.
  """
  storage: np.ndarray
  offset: int
  shape: tuple
  stride: tuple

  def to_numpy(self) -> np.ndarray:
    flat = np.asarray(self.storage)
    view = np.lib.stride_tricks.as_strided(flat[self.offset:], shape=tuple(self.shape),
                                           strides=tuple(s * flat.itemsize for s in self.stride), writeable=False)
    return np.array(view, copy=True)


class _WriteStorage:

  def __init__(self, key: str, data: np.ndarray):
    name = _STORAGE_NAMES.get(data.dtype.newbyteorder('='))
    if name is None:
      raise ValueError(f'Cannot save arrays of dtype {data.dtype} as a torch tensor.')
    self.key = key
    self.type = _storage_type(name)
    self.data = data.astype(data.dtype.newbyteorder('<'), copy=False)  # torch files are little-endian


class _WriteTensor:

  def __init__(self, storage: _WriteStorage, offset: int, shape: tuple, stride: tuple):
    self.args = (storage, int(offset), tuple(int(n) for n in shape), tuple(int(s) for s in stride), False,
                 collections.OrderedDict())


class _TorchPickler(pickle._Pickler):  # the Python pickler: its save_global can be overridden
  """Pickles `_WriteTensor`s the way torch does; markers become GLOBAL opcodes without importing torch."""

  def __init__(self, file, legacy: bool):
    super().__init__(file, protocol=PICKLE_PROTOCOL)
    self.legacy = legacy

  def persistent_id(self, obj):
    if isinstance(obj, _WriteStorage):
      pid = ('storage', obj.type, obj.key, 'cpu', int(obj.data.shape[0]))
      return pid + (None,) if self.legacy else pid  # legacy ids end with view_metadata (None: not a view)
    return None

  def reducer_override(self, obj):
    if isinstance(obj, _Global):
      return obj.name  # a string: pickle calls save_global(obj, name)
    if isinstance(obj, _WriteTensor):
      return (_REBUILD_TENSOR_V2, obj.args)
    return NotImplemented

  def save_global(self, obj, name=None):
    if not isinstance(obj, _Global):
      return super().save_global(obj, name)
    self.write(pickle.GLOBAL + obj.module.encode('utf-8') + b'\n' + obj.name.encode('utf-8') + b'\n')
    self.memoize(obj)


def _contiguous_strides(shape) -> tuple:
  strides, step = [], 1
  for n in reversed(shape):
    strides.append(step)
    step *= max(int(n), 1)
  return tuple(reversed(strides))


def _prepare(state_dict) -> tuple[collections.OrderedDict, list]:
  """(OrderedDict of _WriteTensors, storages in key order)."""
  storages = {}  # id(storage array) -> _WriteStorage

  def storage_for(array):
    if id(array) not in storages:
      storages[id(array)] = _WriteStorage(str(len(storages)), array)
    return storages[id(array)]

  out = collections.OrderedDict()
  keep_alive = []  # ids must stay unique while we build
  for key, value in state_dict.items():
    if not isinstance(key, str):
      raise ValueError(f'state dict keys must be strings, got {key!r}.')
    if isinstance(value, StridedTensor):
      flat = value.storage if isinstance(value.storage, np.ndarray) else np.asarray(value.storage)
      if flat.ndim != 1:
        raise ValueError(f'{key}: StridedTensor.storage must be 1-D.')
      last = value.offset + sum((n - 1) * s for n, s in zip(value.shape, value.stride))
      if len(value.shape) != len(value.stride) or (0 not in tuple(value.shape) and last >= flat.shape[0]):
        raise ValueError(f'{key}: shape {value.shape} / stride {value.stride} / offset {value.offset} do not fit '
                         f'a storage of {flat.shape[0]} elements.')
      keep_alive.append(flat)
      out[key] = _WriteTensor(storage_for(flat), value.offset, value.shape, value.stride)
    else:
      array = np.asarray(value)
      array = array if array.flags.c_contiguous else array.copy(order='C')  # (ascontiguousarray makes 0-d 1-d)
      flat = array.reshape(-1)
      keep_alive.append(flat)
      out[key] = _WriteTensor(storage_for(flat), 0, array.shape, _contiguous_strides(array.shape))
  return out, sorted(storages.values(), key=lambda s: s.key)  # torch writes storages sorted by key string


def _pickle(obj, legacy: bool = False) -> bytes:
  buffer = io.BytesIO()
  _TorchPickler(buffer, legacy).dump(obj)
  return buffer.getvalue()


def _zip_write(archive: zipfile.ZipFile, name: str, data: bytes, align: bool):
  info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
  info.compress_type = zipfile.ZIP_STORED
  if align:  # pad the local header's extra field so the data starts on a 64-byte boundary, as torch does
    start = archive.fp.tell() + 30 + len(name.encode('utf-8')) + 4
    pad = -start % _ZIP_ALIGNMENT
    info.extra = b'FB' + struct.pack('<H', pad) + b'Z' * pad
  archive.writestr(info, data)


def save_state_dict(path, state_dict, legacy: bool = False) -> None:
  """Write {key: array or StridedTensor} as a torch.save file that torch.load reads.

  legacy=False writes the zip format (torch >= 1.6), legacy=True the older
  pickle stream. Storages are little-endian, located on 'cpu'.
  """
  path = os.fspath(path)
  tensors, storages = _prepare(state_dict)
  data_pkl = _pickle(tensors, legacy)
  tmp = path + '.tmp'
  with open(tmp, 'wb') as f:
    if legacy:
      for header in (MAGIC_NUMBER, PROTOCOL_VERSION,
                     dict(protocol_version=PROTOCOL_VERSION, little_endian=True,
                          type_sizes=dict(short=2, int=4, long=8))):
        f.write(_pickle(header))
      f.write(data_pkl)
      f.write(_pickle([s.key for s in storages]))
      for storage in storages:
        f.write(struct.pack('<q', storage.data.shape[0]))
        f.write(storage.data.tobytes())
    else:
      prefix = 'archive/'
      with zipfile.ZipFile(f, 'w', zipfile.ZIP_STORED) as archive:
        _zip_write(archive, prefix + 'data.pkl', data_pkl, align=False)
        _zip_write(archive, prefix + 'byteorder', b'little', align=False)
        for storage in storages:
          _zip_write(archive, f'{prefix}data/{storage.key}', storage.data.tobytes(), align=True)
        _zip_write(archive, prefix + 'version', b'3\n', align=False)
  os.replace(tmp, path)
