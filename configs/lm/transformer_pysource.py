"""A GPT-style byte-level Transformer on `pysource` (the Python standard library's source).

    python -m jaxgen.main --config=configs/lm/transformer_pysource.py --workdir=runs/lm/transformer
    python -m jaxgen.main --config=configs/lm/transformer_pysource.py --workdir=runs/lm/transformer --mode=sample \
        --config.method.prompt='def '        # or --config.method.prompt_file=PATH (the file's text)

4 pre-norm layers, width 256, 4 heads, SwiGLU MLP of 683 (the 8/3 * width of LLaMA, so the MLP has
the parameters of a 1024-wide GELU one), RoPE, RMSNorm, tied byte embeddings: 3.21M parameters, matched
to configs/lm/rnn_pysource.py's LSTM and GRU (experiments/results/language.md compares the three on the
same budget). Windows of 256 bytes, batch 16 (1,500 steps: 6.1M bytes, about half an epoch of the
11 MB training split: a budget this 2-core CPU trains in about an hour), AdamW (lr 1e-3, betas 0.9/0.95, weight decay 0.1, clip 1),
warm-up 100 steps then cosine decay to 1e-4.

Variants (comma-separated): `gelu` (a 1024-wide GELU MLP, learned positions, LayerNorm: the GPT-2 block),
`bf16` (bfloat16 compute), `scan` (nn.scan over layers, with remat), `smoke` (seconds; tests).
Expected result: see experiments/results/language.md (the exact command and budget are there).
"""

import ml_collections

from jaxgen.core.config import base_config, smoke_budget

VARIANTS = {'gelu', 'bf16', 'scan', 'smoke'}


def get_config(arg=None):
  args = set((arg or '').split(',')) - {''}
  if args - VARIANTS:
    raise ValueError(f'configs/lm/transformer_pysource.py variants are {sorted(VARIANTS)}; got {arg!r}.')
  config = base_config()
  config.method.name = 'lm'
  config.method.objective = 'causal'
  config.method.temperature = 0.8
  config.method.top_p = 0.95
  config.method.prompt = ''
  config.method.prompt_file = ''  # or a text file whose contents are the prompt

  m = config.model
  m.arch = 'transformer'
  m.num_layers = 4
  m.num_heads = 4
  m.embed_dim = 256
  m.mlp_dim = 683
  m.norm = 'rmsnorm'
  m.positions = 'rope'
  m.activation = 'swiglu'
  m.tie_embeddings = True
  m.use_bias = False
  m.scan_layers = 'scan' in args
  m.remat = 'scan' in args
  m.dtype = 'bfloat16' if 'bf16' in args else 'float32'
  if 'gelu' in args:
    m.mlp_dim, m.activation, m.positions, m.norm = 1024, 'gelu', 'learned', 'layernorm'

  config.data.name = 'pysource'
  config.data.seq_len = 256
  config.data.tokenizer = 'byte'

  config.train.steps = 1500
  config.train.batch_size = 16
  config.train.log_every = 50
  config.train.eval_every = 1500
  config.train.checkpoint_every = 250
  config.train.eval_batch_size = 256
  config.optim.name = 'adamw'
  config.optim.lr = 1e-3
  config.optim.b1, config.optim.b2 = 0.9, 0.95
  config.optim.weight_decay = 0.1
  config.optim.grad_clip = 1.0
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 100
  config.optim.final_lr_ratio = 0.1

  config.evals.nll = ml_collections.ConfigDict({'every': 1500})
  config.evals.samples = ml_collections.ConfigDict({'every': 1500, 'num': 8})

  if 'smoke' in args:
    m.num_layers, m.num_heads, m.embed_dim, m.mlp_dim = 2, 2, 32, 64
    config.data.seq_len = 32
    smoke_budget(config, steps=4, batch_size=16, eval_examples=32, samples=4)
  return config
