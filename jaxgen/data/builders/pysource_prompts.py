"""TFDS builder `pysource_prompts`: one-line Python code prompts from the stdlib, and the syntax property.

The offline task of preference learning (issue 8): a byte-level LM trained on the stdlib is given the
first `PROMPT_BYTES` = 16 bytes of a real line of code and completes it with `COMPLETION_BYTES` = 48
bytes; a completion is preferred when the line it completes is a complete line of Python
(`ast.parse` accepts it). The unit is ONE LINE.

Prompts. A source line qualifies when, stripped of its indentation and trailing whitespace (and
'\\r'), it is at least `MIN_LINE_BYTES` = 24 bytes long, pure ASCII, not a comment ('#'), does not
start with a quote character (' or ", e.g. a docstring line), and is itself a complete line:
`line_parses(line)`, while its first 16 bytes are not (so ending the line at once, a bare newline, is
never a valid completion: the model has to write code). Its prompt is its first 16 bytes. The files are pysource's (the same `.py`
files of the running interpreter's stdlib, `pysource.source_files`) with the same split rule (a file
is `test` iff crc32(path) % 10 == 0). Identical lines are deduplicated within a split, and a split's
examples are its distinct lines in sorted (bytes) order, each with the first file (in path order)
holding it. Features: `prompt` uint8 [16], `line` (the full stripped line: the reference), `path`.
Like pysource, each Python version is its own builder config (`py3.11.7`); `pysource_prompts` alone
means the running interpreter's.

The property (used by the builder, `jaxgen.evals.syntax`, experiments/preference_pairs.py and the
preference methods):

  line_parses(line)        is `line` a complete line of Python on its own (below)
  completion_valid(p, c)   does prompt p + completion c end its line (a '\\n' within c) with a
                           complete line: line_parses(p + c[:first '\\n'])
  completion_length(c)     the bytes of c the model chose: index of its first '\\n' + 1 (the newline
                           ends the line, so it is part of the choice), or len(c) without one
  completions_valid / completion_lengths   the same over arrays [N, P] / [N, C] (any integer dtype)

line_parses decodes the bytes as UTF-8 (failure: False), strips them, and is False for an empty
line, a line holding a line break ('\\n', '\\r') or ending with a backslash (a continuation), and
otherwise True when `ast.parse` accepts one of these programs built around it:

  line                         a simple statement, or a compound one on one line (`if x: y()`),
                               or a comment (valid Python, though prompts exclude comments)
  line + '\\n pass'            a block header: `def f(x):`, `for a in b:  # comment`
  'if 1:\\n pass\\n' + line     clause headers that cannot stand alone: `elif x:`, `else: y()`
                               (with '\\n pass' after a bare header, as for every prefix here)
  'try:\\n pass\\n' + line      `except E:`, `except* E as e: raise`, `finally:`
  'match _:\\n ' + line         `case 1:`, `case _: return x`
  line + '\\n case _:\\n  pass'  `match x:` (a match statement needs a case block)
  line + '\\n pass\\nfinally:\\n pass'   `try:` (a try statement needs a handler)
  line + '\\ndef _(): pass'    a decorator: `@property`

Each wrapper is tried only for the lines it can accept (a header contains ':'; a clause starts with
its keyword), so a line that is not complete costs at most four parses. A wrapper adds only complete
lines before the line, or a line break and lines after it: a line that opens a bracket (or a string)
and continues on the next one stays open in every wrapper, so it does not parse — that is the point.
`ast.parse` checks syntax only, so `return x`, `break` or `yield x` at top level are complete lines
(their context errors come from the compiler, not the parser). The property is of the line alone: an
argument line inside a call, `key=value,`, is a complete line (a tuple assignment) wherever it stood.
"""

import ast
import os
import platform
import re
import sys

import numpy as np
import tensorflow_datasets as tfds

from jaxgen.data.builders import pysource

PROMPT_BYTES = 16        # P: the prompt is the first P bytes of a line
COMPLETION_BYTES = 48    # C: the bytes sampled after the prompt
MIN_LINE_BYTES = 24      # shortest line a prompt is taken from
NEWLINE = ord('\n')
QUOTES = (b"'", b'"')

# The programs ast.parse is tried on besides the line itself (module docstring), by the line's first
# word; each only for lines it can accept, so a line that is not complete costs at most four parses.
_BLOCK = '{}\n pass'                      # a block header: the line contains ':'
_CLAUSE_WRAPPERS = {
    'elif': ('if 1:\n pass\n{}', 'if 1:\n pass\n{}\n pass'),
    'else': ('if 1:\n pass\n{}', 'if 1:\n pass\n{}\n pass'),
    'except': ('try:\n pass\n{}', 'try:\n pass\n{}\n pass'),
    'finally': ('try:\n pass\n{}', 'try:\n pass\n{}\n pass'),
    'case': ('match _:\n {}', 'match _:\n {}\n  pass'),
    'match': ('{}\n case _:\n  pass',),
    'try': ('{}\n pass\nfinally:\n pass',),
    '@': ('{}\ndef _(): pass',),
}
_FIRST_WORD = re.compile(r'@|[^\W\d]\w*')


def _parses(program: str) -> bool:
  try:
    ast.parse(program)
    return True
  except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: NUL bytes (Python < 3.11.4)
    return False


def line_parses(line: bytes) -> bool:
  """Whether `line` is a complete line of Python on its own (module docstring)."""
  try:
    text = bytes(line).decode('utf-8')
  except UnicodeDecodeError:
    return False
  text = text.strip()
  if not text or '\n' in text or '\r' in text or text.endswith('\\'):
    return False
  if _parses(text):
    return True
  word = _FIRST_WORD.match(text)
  wrappers = _CLAUSE_WRAPPERS.get(word.group() if word else '', ())
  if ':' in text:
    wrappers = (_BLOCK,) + wrappers
  return any(_parses(wrapper.format(text)) for wrapper in wrappers)


def _as_bytes(ids) -> bytes:
  """Bytes from bytes or an integer array of byte values."""
  if isinstance(ids, (bytes, bytearray)):
    return bytes(ids)
  ids = np.asarray(ids)
  if ids.size and (ids.min() < 0 or ids.max() > 255):
    raise ValueError(f'byte values must be in [0, 255]; got [{ids.min()}, {ids.max()}].')
  return ids.astype(np.uint8).tobytes()


def completed_line(prompt, completion) -> bytes:
  """prompt + completion up to (not including) the completion's first '\\n' (all of it without one)."""
  return _as_bytes(prompt) + _as_bytes(completion).split(b'\n', 1)[0]


def completion_length(completion) -> int:
  """Index of the first '\\n' of `completion` + 1, or len(completion) when it has none."""
  completion = _as_bytes(completion)
  end = completion.find(b'\n')
  return len(completion) if end < 0 else end + 1


def completion_valid(prompt, completion) -> bool:
  """Whether the completion ends the line within its bytes and the completed line parses."""
  return b'\n' in _as_bytes(completion) and line_parses(completed_line(prompt, completion))


def completion_lengths(completions_NC) -> np.ndarray:
  """completion_length of each row of [N, C]: int32 [N]."""
  completions_NC = np.asarray(completions_NC)
  newline_NC = completions_NC == NEWLINE
  return np.where(newline_NC.any(-1), newline_NC.argmax(-1) + 1, completions_NC.shape[-1]).astype(np.int32)


def completions_valid(prompts_NP, completions_NC) -> np.ndarray:
  """completion_valid of each row pair of [N, P] and [N, C]: bool [N]."""
  prompts_NP, completions_NC = np.asarray(prompts_NP), np.asarray(completions_NC)
  if prompts_NP.ndim != 2 or completions_NC.ndim != 2 or len(prompts_NP) != len(completions_NC):
    raise ValueError(f'prompts [N, P] and completions [N, C] must have the same N; got {prompts_NP.shape} and '
                     f'{completions_NC.shape}.')
  return np.array([completion_valid(p, c) for p, c in zip(prompts_NP, completions_NC)], bool)


def is_prompt_line(line: bytes) -> bool:
  """Whether a stripped source line qualifies as a prompt's line (module docstring)."""
  return (len(line) >= MIN_LINE_BYTES and line.isascii() and not line.startswith(b'#')
          and not line.startswith(QUOTES) and line == line.strip() and line_parses(line)
          and not line_parses(line[:PROMPT_BYTES]))


def prompt_lines(documents):
  """{line: path} of the distinct qualifying lines of `documents` ((path, bytes) pairs in path order),
  each with the first path holding it."""
  first = {}
  for path, text in documents:
    for raw in text.split(b'\n'):
      line = raw.strip()
      # The cheap tests first; line_parses runs once per distinct candidate.
      if len(line) >= MIN_LINE_BYTES and line not in first and line.isascii():
        first[line] = path
  return {line: path for line, path in first.items() if is_prompt_line(line)}


class PysourcePrompts(pysource.Pysource):
  """One-line code prompts from the stdlib (module docstring: which lines). A Pysource whose examples are
  lines: the same files, version and split rule (its _split_generators), other features."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.', '1.1.0': 'Prompts that parse on their own are excluded.'}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(
      name=pysource.python_tag(), description=f'Lines of the stdlib of Python {platform.python_version()} '
                                              f'({sys.implementation.name}).')]

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(f'{__doc__}\nBuilt from Python {sys.version.split()[0]} ({sys.implementation.name}), '
                     f'stdlib directory {pysource.stdlib_dir()}.'),
        features=tfds.features.FeaturesDict({
            'prompt': tfds.features.Tensor(shape=(PROMPT_BYTES,), dtype=np.uint8),
            'line': tfds.features.Text(),
            'path': tfds.features.Text(),
        }),
        disable_shuffling=True,  # sorted line order
        metadata=tfds.core.MetadataDict(python_version=platform.python_version(),
                                        stdlib_dir=pysource.stdlib_dir(), prompt_bytes=PROMPT_BYTES,
                                        min_line_bytes=MIN_LINE_BYTES),
    )

  def _generate_examples(self, paths):
    root = pysource.stdlib_dir()

    def documents():
      for path in paths:
        with open(os.path.join(root, *path.split('/')), 'rb') as f:
          yield path, f.read()

    lines = prompt_lines(documents())
    for i, line in enumerate(sorted(lines)):
      yield i, {'prompt': np.frombuffer(line[:PROMPT_BYTES], np.uint8), 'line': line, 'path': lines[line]}
