"""Name -> class registries whose built-in entries are imported on first use.

Methods and evaluators register themselves with `@registry.register('name')`;
`registry.get(name)` imports the built-in module that defines `name` only when
asked, so `import jaxgen` stays cheap and a config names its family by string.
"""

import importlib

from jaxgen.errors import ConfigError


class Registry:

  def __init__(self, config_key: str, builtin: dict):
    """`config_key` names the config entry in error messages; `builtin` maps name -> module."""
    self.config_key = config_key
    self.builtin = dict(builtin)
    self.entries = {}

  def register(self, name: str):
    def wrap(cls):
      self.entries[name] = cls
      return cls
    return wrap

  def get(self, name: str):
    if name not in self.entries and name in self.builtin:
      importlib.import_module(self.builtin[name])
    if name not in self.entries:
      known = ', '.join(sorted(set(self.entries) | set(self.builtin)))
      raise ConfigError(f'{self.config_key} {name!r} is not known; known: {known}.')
    return self.entries[name]
