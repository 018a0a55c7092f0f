"""`syntax`: the fraction of sampled code-line completions that parse (issue 8's preference task).

The prompts are a fixed subset of `pysource_prompts`' test split (the first 16 bytes of lines of stdlib
code, jaxgen.data.builders.pysource_prompts), read through the pipeline whatever dataset the run trains
on: `num_prompts` of them (a fixed random subset in index order, jaxgen.data.eval_subset), each
sampled `samples_per_prompt` times with a fixed rng by `method.sample(params, rng, num,
prompt=int32 [num, P])`, whose rows hold the prompt in their first P columns. The completion is the
next C = min(48, sample length - P) tokens (an LM trained on shorter windows completes fewer bytes;
a preference method samples exactly P + 48). Metrics:

  syntax_valid       the fraction of completions that end their line within their C bytes with a line
                     that parses (completion_valid)
  completion_bytes   their mean length (completion_length: up to and including the first newline, C
                     without one)
  kl_to_reference    when the method has `sequence_kl(params, prompt_BP, completion_BC, length_B) -> [B]`
                     (preference methods: sum over the completion's tokens of log pi - log pi_ref), its
                     mean over the completions: the sampled estimate of KL(pi || pi_ref) per completion

The first 32 completed lines go to WORKDIR/samples/syntax_<step>.txt (one per line, marked valid or
not), every prompt and its completion (int32 [N, P + C], N = num_prompts * samples_per_prompt, each
prompt's samples together) to syntax_<step>.npy. Sampling uses the method's own settings (an LM's
config.method.temperature / top_k / top_p; a preference method's policy at temperature 1), so compare
runs sampled alike. Byte-level models only: the prompts are bytes.
"""

import os

import jax
import ml_collections
import numpy as np

from jaxgen.core.mesh import replicated, to_host
from jaxgen.data import eval_batches
from jaxgen.data.builders.pysource_prompts import (  # noqa: F401  # re-exported: the property lives with the prompts
    COMPLETION_BYTES, completed_line, completion_length, completion_lengths, completion_valid, completions_valid,
    line_parses)
from jaxgen.data.tokenizers import ByteTokenizer
from jaxgen.errors import ConfigError
from jaxgen.evals import register, require_sampler

PROMPTS_DATASET = 'pysource_prompts'
NUM_WRITTEN = 32  # completed lines written to the .txt


def prompts_config(data_config, num_prompts: int, split: str = 'test') -> ml_collections.ConfigDict:
  """The data config whose eval_batches read `num_prompts` prompts of a split of pysource_prompts (a fixed
  random subset in index order; all of them for 0), from the TFDS data dir of `data_config` (a run's
  config.data)."""
  return ml_collections.ConfigDict(dict(
      name=PROMPTS_DATASET, data_dir=data_config.get('data_dir', ''), train_split='train', eval_split=split,
      binarize='', dequantize=False, max_eval_examples=int(num_prompts), max_train_examples=0, prefetch=0))


def eval_prompts(data_config, num_prompts: int) -> np.ndarray:
  """int32 [n, P]: the fixed evaluation prompts (n = num_prompts, or the whole test split if smaller)."""
  config = prompts_config(data_config, num_prompts)
  batches = list(eval_batches(config, num_prompts))  # every process reads all of them (they are tiny)
  mask = np.concatenate([b['mask'] for b in batches]) > 0
  return np.concatenate([b['x'] for b in batches])[mask].astype(np.int32)


def write_lines(path: str, prompts_NP: np.ndarray, completions_NC: np.ndarray, valid_N: np.ndarray) -> None:
  """One completed line per row: 'valid  ' or 'invalid', a tab, the line (prompt + completion up to its
  newline) with every byte outside printable ASCII written as \\xNN; a completion without a newline ends
  with ' [no newline]'."""
  with open(path, 'w', encoding='ascii') as f:
    for prompt, completion, valid in zip(prompts_NP, completions_NC, valid_N):
      line = ''.join(chr(b) if 32 <= b < 127 else f'\\x{b:02x}' for b in completed_line(prompt, completion))
      ended = (np.asarray(completion) == ord('\n')).any()
      f.write(f"{'valid  ' if valid else 'invalid'}\t{line}{'' if ended else ' [no newline]'}\n")


@register('syntax')
class SyntaxEvaluator:
  """Config: every, num_prompts (default 256), samples_per_prompt (default 1), seed (default 0).
  Metrics: syntax_valid, completion_bytes, and kl_to_reference for methods with sequence_kl."""
  KEYS = ('num_prompts', 'samples_per_prompt', 'seed')

  def __init__(self, eval_config, ctx):
    require_sampler(ctx.method, 'syntax')
    tokenizer = getattr(ctx.info, 'tokenizer', None)
    if tokenizer is not None and not isinstance(tokenizer, ByteTokenizer):
      raise ConfigError(f'config.evals.syntax feeds byte prompts; this run uses the {tokenizer.name} tokenizer. '
                        "Remove config.evals.syntax or train with config.data.tokenizer='byte'.")
    self.ctx = ctx
    num_prompts = int(eval_config.get('num_prompts', 256))
    self.samples_per_prompt = int(eval_config.get('samples_per_prompt', 1))
    if num_prompts < 1 or self.samples_per_prompt < 1:
      raise ConfigError('config.evals.syntax.num_prompts and samples_per_prompt must be >= 1; got '
                        f'{num_prompts} and {self.samples_per_prompt}.')
    self.seed = int(eval_config.get('seed', 0))
    prompts_NP = eval_prompts(ctx.config.data, num_prompts)
    self.prompts_NP = np.repeat(prompts_NP, self.samples_per_prompt, axis=0)
    num, self.prompt_len = self.prompts_NP.shape
    method = ctx.method
    self._sample = jax.jit(lambda params, rng, prompt_NP: method.sample(params, rng, num, prompt=prompt_NP),
                           out_shardings=replicated(ctx.mesh))
    self._kl = None
    if hasattr(method, 'sequence_kl'):
      self._kl = jax.jit(method.sequence_kl, out_shardings=replicated(ctx.mesh))

  def __call__(self, state, step):
    ctx = self.ctx
    params = state.eval_params()
    prompt_NP = jax.device_put(self.prompts_NP, replicated(ctx.mesh))
    samples_NL = to_host(self._sample(params, jax.random.PRNGKey(self.seed), prompt_NP))
    width = min(COMPLETION_BYTES, samples_NL.shape[1] - self.prompt_len)
    if width < 1:
      raise ConfigError(f'config.evals.syntax: the samples have {samples_NL.shape[1]} tokens, no room after the '
                        f'{self.prompt_len}-byte prompts; sample longer sequences (config.data.seq_len).')
    if not np.array_equal(samples_NL[:, :self.prompt_len], self.prompts_NP):
      raise ValueError(f'{type(ctx.method).__name__}.sample did not return the prompts in its first '
                       f'{self.prompt_len} columns.')
    completions_NC = samples_NL[:, self.prompt_len:self.prompt_len + width].astype(np.int32)
    valid_N = completions_valid(self.prompts_NP, completions_NC)
    lengths_N = completion_lengths(completions_NC)
    metrics = {'syntax_valid': float(valid_N.mean()), 'completion_bytes': float(lengths_N.mean())}
    if self._kl is not None:
      kl_N = to_host(self._kl(params, prompt_NP, jax.device_put(completions_NC, replicated(ctx.mesh)),
                              jax.device_put(lengths_N, replicated(ctx.mesh))))
      metrics['kl_to_reference'] = float(np.mean(kl_N))
    if ctx.is_main:
      directory = os.path.join(ctx.workdir, 'samples')
      os.makedirs(directory, exist_ok=True)
      stem = os.path.join(directory, f'syntax_{step:07d}')
      np.save(stem + '.npy', samples_NL[:, :self.prompt_len + width])
      write_lines(stem + '.txt', self.prompts_NP[:NUM_WRITTEN], completions_NC[:NUM_WRITTEN], valid_N[:NUM_WRITTEN])
    return metrics
