"""Benchmark: language-model training throughput and model FLOP utilisation (MFU), and decoding speed
with and without the KV cache — every figure from one process, so the ratios are meaningful on a noisy host.

  python experiments/lm_throughput.py                          # widths 256, 512, 768; prints Markdown
  python experiments/lm_throughput.py --widths=768 --dtype=bfloat16 --batch=16 --seq_len=1024

1. Peak: the best throughput of one jitted square matmul (n = 1024, 2048, 4096) in the benchmark's
   dtype, 2 n^3 FLOPs each — the machine's measured matmul ceiling, the denominator of MFU.
2. Training: for each width, `--layers` Transformer blocks of configs/lm/transformer_pysource.py with
   GELU MLPs of 4x width (the GPT-2 block), --heads heads of 64, byte vocabulary, timed by
   experiments/timing.py (jitted steps with real pysource batches, compile and one warm-up excluded).
   Model FLOPs per token, as in PaLM (Chowdhery et al. 2022, appendix B): 6 N + 12 L D T, N the
   parameters that take part in matmuls (all but the position table; the tied embedding counts once,
   as the output projection), L layers, D width, T sequence length (the attention scores and mixing).
   MFU = tokens/s x FLOPs per token / peak. Rematerialisation and the optimizer are not model FLOPs.
3. Decoding: tokens/s of `method.sample` (batch --decode_batch, the whole window after a 4-byte
   prompt) with the KV cache (one position per step) and without it (the whole prefix every step).
"""

import functools
import math
import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import time_steps  # noqa: E402

_WIDTHS = flags.DEFINE_list('widths', ['256', '512', '768'], 'Transformer widths to time.')
_LAYERS = flags.DEFINE_integer('layers', 4, 'Transformer blocks.')
_SEQ = flags.DEFINE_integer('seq_len', 256, 'Tokens per training window.')
_BATCH = flags.DEFINE_integer('batch', 16, 'Training batch (windows).')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed training steps per width.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype of model and peak.')
_DECODE_BATCH = flags.DEFINE_integer('decode_batch', 8, 'Sequences decoded at once.')
_DECODE_WIDTHS = flags.DEFINE_list('decode_widths', None, 'Widths whose decoding is timed (default: all of --widths; '
                                     'the no-cache baseline recomputes the window per token: minutes per width on a CPU).')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def best_seconds(fn, *args, repeats=3):
  """The fastest of `repeats` synchronised calls (after a warm-up call that compiles)."""
  import jax
  jax.block_until_ready(fn(*args))
  best = math.inf
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return best


def peak_matmul_flops(dtype) -> tuple:
  """(best FLOP/s, n) of an n x n @ n x n matmul over n in 1024, 2048, 4096."""
  import jax
  import jax.numpy as jnp
  results = []
  for n in (1024, 2048, 4096):
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
    seconds = best_seconds(jax.jit(jnp.matmul), a, b)
    results.append((2 * n ** 3 / seconds, n))
  return max(results)


def lm_config(width: int):
  from jaxgen.core.config import load_config_file
  config = load_config_file(os.path.join(REPO, 'configs/lm/transformer_pysource.py'))
  m = config.model
  m.embed_dim, m.num_heads, m.mlp_dim, m.num_layers = width, max(1, width // 64), 4 * width, _LAYERS.value
  m.activation, m.positions, m.norm, m.dtype = 'gelu', 'learned', 'layernorm', _DTYPE.value
  config.data.seq_len = _SEQ.value
  config.train.batch_size = _BATCH.value
  config.evals = {}
  return config


def matmul_params(config, params) -> int:
  """Parameters taking part in matmuls: all but the learned position table."""
  import jax
  total = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = jax.tree_util.keystr(path)
    if 'pos' not in name.lower():
      total += math.prod(leaf.shape)
  return total


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  import flax.linen as nn
  from jaxgen.data import get_info
  from jaxgen.methods import lm

  dtype = jnp.bfloat16 if _DTYPE.value == 'bfloat16' else jnp.float32
  peak, peak_n = peak_matmul_flops(dtype)
  print(f'backend {jax.default_backend()} {jax.devices()[0].device_kind}, {jax.device_count()} device(s), '
        f'{os.cpu_count()} CPUs; dtype {_DTYPE.value}')
  print(f'peak matmul: {peak / 1e9:.1f} GFLOP/s ({peak_n}x{peak_n})\n')
  print(f'| width | layers | params | tokens/step | steps/s | tokens/s | model GFLOP/s | MFU |')
  print('|---|---|---|---|---|---|---|---|')
  decode_rows = []
  for width in map(int, _WIDTHS.value):
    config = lm_config(width)
    info = get_info(config.data)
    method = lm.LanguageModel(config, info)
    example = {'x': jnp.zeros((1, _SEQ.value), jnp.int32)}
    params = nn.unbox(jax.eval_shape(method.init, jax.random.PRNGKey(0), example)).params
    n = matmul_params(config, params)
    flops_per_token = 6 * n + 12 * _LAYERS.value * width * _SEQ.value
    timing = time_steps(config, jax.devices()[:1], _STEPS.value)
    tokens_per_sec = timing['examples_per_sec'] * _SEQ.value
    model_flops = tokens_per_sec * flops_per_token
    print(f'| {width} | {_LAYERS.value} | {n / 1e6:.2f}M | {_BATCH.value * _SEQ.value} | '
          f'{timing["steps_per_sec"]:.3f} | {tokens_per_sec:,.0f} | {model_flops / 1e9:.1f} | '
          f'{model_flops / peak:.1%} |', flush=True)

    if _DECODE_WIDTHS.value is not None and str(width) not in _DECODE_WIDTHS.value:
      continue
    state = nn.unbox(jax.jit(method.init)(jax.random.PRNGKey(0), example))
    num = _DECODE_BATCH.value
    prompt = (100, 101, 102, 32)
    row = {'width': width}
    for cache in (True, False):
      sample = jax.jit(functools.partial(method.sample, num=num, prompt=prompt, kv_cache=cache))
      seconds = best_seconds(sample, state.params, jax.random.PRNGKey(0), repeats=2)
      row[cache] = num * (_SEQ.value - len(prompt)) / seconds
    decode_rows.append(row)

  print(f'\nDecoding {_DECODE_BATCH.value} sequences of {_SEQ.value} tokens (4-token prompt):\n')
  print('| width | tokens/s with KV cache | tokens/s recomputing the prefix | ratio |')
  print('|---|---|---|---|')
  for row in decode_rows:
    print(f'| {row["width"]} | {row[True]:,.0f} | {row[False]:,.0f} | {row[True] / row[False]:.1f}x |')


if __name__ == '__main__':
  app.run(main)
