"""`samples` and `reconstructions`: PNG grids (scatter plots for 2-D data; .txt for text) plus raw .npy.

Files go to WORKDIR/samples/<name>_<step>.png (or .txt) and .npy. Sampling uses a fixed
rng (`seed`), so the same checkpoint always gives the same picture.
"""

import functools
import os

import jax
import numpy as np

from jaxgen.core.mesh import replicated, round_up_to_shards, shard_batch, to_host
from jaxgen.data import TrainLoader
from jaxgen.data.tokenizers import ByteTokenizer
from jaxgen.evals import register, require_sampler
from jaxgen.logging import save_image_grid, save_scatter


def write_text(path: str, examples: np.ndarray, tokenizer=None) -> None:
  """Token sequences [N, L] as one UTF-8 text file: each under a header line, decoded to bytes by
  `tokenizer` (default: the ids are bytes, 0..255), read as UTF-8 with undecodable bytes replaced by
  U+FFFD, and the document separator (the 0 byte: every tokenizer decodes its separator to it,
  jaxgen.data.tokenizers) written as a line '[EOF]'."""
  tokenizer = tokenizer or ByteTokenizer()
  with open(path, 'w', encoding='utf-8') as f:
    for i, sequence in enumerate(np.asarray(examples).reshape(len(examples), -1)):
      text = tokenizer.decode(sequence).decode('utf-8', errors='replace').replace('\0', '\n[EOF]\n')
      f.write(f'===== sample {i} =====\n{text}\n')


def write_examples(ctx, name: str, step: int, examples: np.ndarray, columns=None) -> str:
  """Save examples as a grid PNG (images), scatter PNG (2-D points) or .txt (text) and .npy; returns the
  PNG (text: .txt) path."""
  directory = os.path.join(ctx.workdir, 'samples')
  stem = os.path.join(directory, f'{name}_{step:07d}')
  if ctx.is_main:
    os.makedirs(directory, exist_ok=True)
    np.save(stem + '.npy', examples)
    if ctx.info.kind == 'text':
      write_text(stem + '.txt', examples, getattr(ctx.info, 'tokenizer', None))
    elif ctx.info.kind == 'image':
      save_image_grid(stem + '.png', examples, columns=columns, scale=max(1, 64 // ctx.info.shape[0]))
    elif examples.ndim == 2 and examples.shape[1] == 2:
      save_scatter(stem + '.png', examples)
  return stem + ('.txt' if ctx.info.kind == 'text' else '.png')


@register('samples')
class SamplesEvaluator:
  """Config: every, num (default 64), seed."""
  KEYS = ('num', 'seed')

  def __init__(self, eval_config, ctx):
    require_sampler(ctx.method, 'samples')
    self.ctx = ctx
    self.num = int(eval_config.get('num', 64))
    self.seed = int(eval_config.get('seed', 0))
    self._sample = jax.jit(functools.partial(ctx.method.sample, num=self.num), out_shardings=replicated(ctx.mesh))

  def __call__(self, state, step):
    examples = to_host(self._sample(state.eval_params(), jax.random.PRNGKey(self.seed)))
    write_examples(self.ctx, 'samples', step, examples)
    return {}


@register('reconstructions')
class ReconstructionsEvaluator:
  """Rows alternate real eval examples and their reconstructions. Config: every, num (default 32), seed.

  The examples are a fixed random draw from the eval split (sorted splits would
  otherwise show one class only).
  """
  KEYS = ('num', 'seed')

  def __init__(self, eval_config, ctx):
    self.ctx = ctx
    self.num = round_up_to_shards(int(eval_config.get('num', 32)), ctx.mesh)
    self.seed = int(eval_config.get('seed', 0))
    self._examples = TrainLoader(ctx.config.data, self.num, self.seed, jax.process_index(), jax.process_count(),
                                 split=ctx.config.data.eval_split)
    # Returns the real examples too, gathered onto every process, beside their reconstructions.
    self._reconstruct = jax.jit(lambda params, batch, rng: (batch['x'], ctx.method.reconstruct(params, batch, rng)),
                                out_shardings=replicated(ctx.mesh))

  def __call__(self, state, step):
    batch = self._examples.batch(0)
    real, recon = self._reconstruct(state.eval_params(), shard_batch(batch, self.ctx.mesh),
                                    jax.random.PRNGKey(self.seed))
    real, recon = to_host(real), to_host(recon)
    columns = 8
    rows = []
    for start in range(0, self.num, columns):  # real row, then its reconstruction row
      rows += [real[start:start + columns], recon[start:start + columns]]
    write_examples(self.ctx, 'reconstructions', step, np.concatenate(rows), columns=columns)
    return {}
