"""Byte-level LSTM and GRU language models on `pysource`, sized to match the Transformer (3.2M parameters).

    python -m jaxgen.main --config=configs/lm/rnn_pysource.py:lstm --workdir=runs/lm/lstm
    python -m jaxgen.main --config=configs/lm/rnn_pysource.py:gru --workdir=runs/lm/gru

LSTM: 2 layers of 512 over 128-wide byte embeddings (3,576,064 parameters); GRU: 2 layers of 592 (3,570,816).
Same data, budget and optimizer as configs/lm/transformer_pysource.py (windows of 256 bytes, batch 16, 1,500 steps,
AdamW 1e-3 with warm-up and cosine decay, clip 1). Time is an `nn.scan` over the window.

Variants: `lstm` (default) or `gru`, optionally with `smoke` (seconds; tests).
Expected result: see experiments/results/language.md.
"""

import os

import ml_collections

from jaxgen.core.config import load_config_file, smoke_budget

HERE = os.path.dirname(os.path.abspath(__file__))


def get_config(arg=None):
  args = set((arg or '').split(',')) - {''}
  if args - {'lstm', 'gru', 'smoke'} or {'lstm', 'gru'} <= args:
    raise ValueError(f'configs/lm/rnn_pysource.py takes lstm or gru, optionally with smoke; got {arg!r}.')
  config = load_config_file(os.path.join(HERE, 'transformer_pysource.py'))
  cell = 'gru' if 'gru' in args else 'lstm'
  config.model = ml_collections.ConfigDict({'arch': cell, 'num_layers': 2, 'embed_dim': 128, 'hidden_dim': 512 if cell == 'lstm' else 592,
                                            'dtype': 'float32'})
  if 'smoke' in args:
    config.model.embed_dim, config.model.hidden_dim = 16, 32
    config.data.seq_len = 32
    smoke_budget(config, steps=4, batch_size=16, eval_examples=32, samples=4)
  return config
