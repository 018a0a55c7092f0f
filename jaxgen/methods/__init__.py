"""Method registry: `config.method.name` -> Method subclass.

Families register themselves with `@register('name')`; `get(name)` imports the
built-in family modules lazily so that `import jaxgen` stays cheap.
"""

import importlib

from jaxgen.errors import ConfigError

_REGISTRY = {}
# Built-in families: method name -> module that registers it.
_BUILTIN = {
    'vae': 'jaxgen.methods.vae',
}


def register(name):
  def wrap(cls):
    _REGISTRY[name] = cls
    cls.name = name
    return cls
  return wrap


def get(name):
  if name not in _REGISTRY and name in _BUILTIN:
    importlib.import_module(_BUILTIN[name])
  if name not in _REGISTRY:
    known = sorted(set(_REGISTRY) | set(_BUILTIN))
    raise ConfigError(f'config.method.name={name!r} is not a known method; known: {", ".join(known)}.')
  return _REGISTRY[name]
