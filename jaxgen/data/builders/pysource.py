"""TFDS builder `pysource`: the running interpreter's own standard-library source, as bytes.

Text for byte-level models, built offline from the `.py` files of
`sysconfig.get_paths()['stdlib']` (the directory of `os.py`, e.g.
/usr/lib/python3.11). Which files: every `*.py` below that directory whose
relative path has no directory component in `EXCLUDED_DIRS` — installed
packages (`site-packages`, `dist-packages`), byte-code caches and test suites
(`test`, `tests`, `idle_test`: Lib/test alone is 19 of CPython 3.11's 31 MB of
stdlib source, and much of it is generated or deliberately malformed data).
On CPython 3.11.7 that is 734 files, 12.1 MB.

Split rule: a file is `test` iff `zlib.crc32(relative path as UTF-8, '/'
separators) % 10 == 0`, else `train` — a stable hash of the path (not
Python's salted `hash`), so the split of a file never depends on which other
files exist, and is the same on every machine and run.

Features: `text` (the file's bytes, unmodified) and `path` (its relative
path). The contents depend on the Python version, so each version is its own
builder config, named after it (`py3.11.7`; `pysource` alone means the
running interpreter's), and the description records the version and the
directory read. jaxgen's pipeline turns a split into one byte stream — the
files in path order, each followed by a 0 byte (`SEPARATOR`; Python source
cannot contain NUL) — cut into windows of `config.data.seq_len` bytes (see
jaxgen.data.pipeline).
"""

import os
import platform
import sys
import sysconfig
import zlib

import tensorflow_datasets as tfds

# Directory names whose files are left out (see the module docstring).
EXCLUDED_DIRS = frozenset({'site-packages', 'dist-packages', '__pycache__', 'test', 'tests', 'idle_test'})
# The byte that ends each file in a split's byte stream.
SEPARATOR = 0


def python_tag() -> str:
  """The builder config of the running interpreter: 'py' + its full version, e.g. 'py3.11.7'."""
  return 'py' + platform.python_version()


def stdlib_dir() -> str:
  return sysconfig.get_paths()['stdlib']


def is_test(relative_path: str) -> bool:
  """The split rule: test iff crc32 of the '/'-separated relative path is 0 mod 10."""
  return zlib.crc32(relative_path.encode('utf-8')) % 10 == 0


def source_files(root: str = None):
  """Sorted relative paths ('/'-separated) of the `.py` files the dataset holds, below `root`
  (default: the running interpreter's stdlib directory)."""
  root = root or stdlib_dir()
  paths = []
  for directory, subdirs, files in os.walk(root):
    subdirs[:] = sorted(d for d in subdirs if d not in EXCLUDED_DIRS)
    relative = os.path.relpath(directory, root)
    for name in files:
      if name.endswith('.py'):
        path = name if relative == '.' else os.path.join(relative, name)
        paths.append(path.replace(os.sep, '/'))
  return sorted(paths)


class Pysource(tfds.core.GeneratorBasedBuilder):
  """The Python standard library's `.py` files (module docstring: which files, the split rule)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(
      name=python_tag(), description=f'The stdlib of Python {platform.python_version()} '
                                     f'({sys.implementation.name}).')]

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(f'{__doc__}\nBuilt from Python {sys.version.split()[0]} '
                     f'({sys.implementation.name}), stdlib directory {stdlib_dir()}.'),
        features=tfds.features.FeaturesDict({
            'text': tfds.features.Text(),
            'path': tfds.features.Text(),
        }),
        disable_shuffling=True,  # path order
        metadata=tfds.core.MetadataDict(python_version=platform.python_version(), stdlib_dir=stdlib_dir()),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download: the files are this interpreter's
    if self.builder_config.name != python_tag():
      raise ValueError(f'pysource/{self.builder_config.name} can only be built by that Python version; '
                       f'this is {python_tag()}.')
    paths = source_files()
    return {
        'train': self._generate_examples([p for p in paths if not is_test(p)]),
        'test': self._generate_examples([p for p in paths if is_test(p)]),
    }

  def _generate_examples(self, paths):
    root = stdlib_dir()
    for i, path in enumerate(paths):
      with open(os.path.join(root, *path.split('/')), 'rb') as f:
        text = f.read()
      if bytes([SEPARATOR]) in text:
        raise ValueError(f'{path} contains a NUL byte, the separator of pysource byte streams.')
      yield i, {'text': text, 'path': path}
