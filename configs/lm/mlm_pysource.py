"""Masked-LM (BERT-style) self-supervised pre-training of a bidirectional byte Transformer on `pysource`.

    python -m jaxgen.main --config=configs/lm/mlm_pysource.py --workdir=runs/lm/mlm

The encoder of configs/lm/transformer_pysource.py (4 layers, width 256, SwiGLU, RoPE, RMSNorm) without
the causal mask. 15% of positions are selected; of those 80% become MASK (byte id 256, an extra
embedding row), 10% a random byte, 10% stay; the loss is the cross-entropy at the selected positions
only. `token_loss` reports that loss on the test split (fixed masks) and its perplexity. There is no
likelihood and no left-to-right sampling.

Variants: `smoke` (seconds; tests). Expected result: see experiments/results/language.md.
"""

import os

import ml_collections

from jaxgen.core.config import load_config_file, smoke_budget

HERE = os.path.dirname(os.path.abspath(__file__))


def get_config(arg=None):
  args = set((arg or '').split(',')) - {''}
  if args - {'smoke'}:
    raise ValueError(f'configs/lm/mlm_pysource.py takes only the smoke variant; got {arg!r}.')
  config = load_config_file(os.path.join(HERE, 'transformer_pysource.py'))
  config.method.objective = 'masked'
  config.method.mask_prob = 0.15
  config.model.causal = False
  config.evals = ml_collections.ConfigDict({'token_loss': {'every': config.train.eval_every}})
  if 'smoke' in args:
    m = config.model
    m.num_layers, m.num_heads, m.embed_dim, m.mlp_dim = 2, 2, 32, 64
    config.data.seq_len = 32
    smoke_budget(config, steps=4, batch_size=16, eval_examples=32, samples=4)
  return config
