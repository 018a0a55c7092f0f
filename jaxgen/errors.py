"""User-facing errors.

Anything a user can cause (a bad config key, a dataset that is not prepared, an
incompatible checkpoint, a NaN loss, wrong shapes) is raised as a `JaxgenError`
whose message says what happened and what to do. `jaxgen.main` prints that
message alone, without a traceback from deep inside JAX.
"""


class JaxgenError(Exception):
  """An error the user can fix; its message is the whole story."""


class ConfigError(JaxgenError):
  """The config has an unknown key, a bad value, or an inconsistent combination."""


class DataError(JaxgenError):
  """A dataset is missing, not prepared, or has the wrong shape."""


class CheckpointError(JaxgenError):
  """A checkpoint cannot be restored into the current run."""


class NonFiniteError(JaxgenError):
  """Training produced NaN or Inf."""
