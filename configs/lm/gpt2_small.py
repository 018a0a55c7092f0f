"""GPT-2 small (Radford et al. 2019): 124M parameters, 12 layers x 12 heads x 768, context 1024, tied embeddings.

The nanoGPT OpenWebText recipe (Karpathy's `train_gpt2.py` config; reaches val loss ~2.85 after 600k
iterations on 8xA100), for users who have the data and an accelerator pod:

    python -m jaxgen.main --config=configs/lm/gpt2_small.py --workdir=runs/lm/gpt2_small \
        --config.data.name=huggingface:openwebtext --config.mesh.data=-1 --config.mesh.fsdp=8

  architecture  12 pre-LayerNorm blocks (with biases), learned positions, GELU MLP of 3072, tied
                input/output embeddings, vocabulary 50257 (GPT-2's BPE size): 124,439,808 parameters
                (asserted by tests/test_lm.py)
  data          OpenWebText with `tfds.load('huggingface:openwebtext')` (TFDS's Hugging Face adapter;
                prepare it once with network), windows of 1024 tokens. GPT-2's own BPE is not bundled:
                jaxgen trains a 50257-piece SentencePiece BPE on the training split instead
                (config.data.tokenizer='sentencepiece'), so losses are close to but not identical with
                nanoGPT's; bits per byte (`nll_bpd`) are comparable across tokenizers.
  optimizer     AdamW, lr 6e-4, betas 0.9/0.95, weight decay 0.1, grad clip 1.0, 2,000 warm-up steps,
                cosine decay to 6e-5 at 600,000 steps
  batch         ~0.5M tokens per step: 480 sequences of 1024 in nanoGPT (12 x 5 micro-steps x 8 GPUs);
                here a global batch of 512 sequences, split over the mesh's data x fsdp axes (no
                gradient accumulation: use enough devices, e.g. a v4-32 or 4 x 8 GPUs with fsdp)
  precision     bfloat16 compute, float32 parameters and optimizer state

Variants: `smoke` (the same code path at toy size on the bundled `pysource` bytes, for tests);
`pysource` (the full architecture on the bundled bytes at batch 8: a throughput/MFU benchmark shape,
not a recipe).
"""

import ml_collections

from jaxgen.core.config import base_config, smoke_budget

GPT2_SMALL_PARAMS = 124_439_808


def get_config(arg=None):
  args = set((arg or '').split(',')) - {''}
  if args - {'smoke', 'pysource'}:
    raise ValueError(f'configs/lm/gpt2_small.py variants are smoke and pysource; got {arg!r}.')
  config = base_config()
  config.method.name = 'lm'
  config.method.objective = 'causal'
  config.method.prompt = ''       # --mode=sample: the prompt, or
  config.method.prompt_file = ''  # a text file whose contents are the prompt

  m = config.model
  m.arch = 'transformer'
  m.num_layers, m.num_heads, m.embed_dim, m.mlp_dim = 12, 12, 768, 3072
  m.norm, m.positions, m.activation = 'layernorm', 'learned', 'gelu'
  m.tie_embeddings, m.use_bias = True, True
  m.scan_layers, m.remat = True, True
  m.dtype = 'bfloat16'

  config.data.name = 'huggingface:openwebtext'
  config.data.eval_split = 'train[-1%:]'
  config.data.train_split = 'train[:-1%]'
  config.data.seq_len = 1024
  config.data.tokenizer = 'sentencepiece'
  config.data.vocab_size = 50257
  config.data.sp_model_type = 'bpe'

  config.train.steps = 600_000
  config.train.batch_size = 512
  config.train.log_every = 100
  config.train.eval_every = 2000
  config.train.checkpoint_every = 2000
  config.train.eval_batch_size = 512
  config.data.max_eval_examples = 4096
  o = config.optim
  o.name, o.lr, o.b1, o.b2, o.weight_decay, o.grad_clip = 'adamw', 6e-4, 0.9, 0.95, 0.1, 1.0
  o.schedule, o.warmup_steps, o.final_lr_ratio = 'cosine', 2000, 0.1

  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = -1, 1, 1
  config.evals.nll = ml_collections.ConfigDict({'every': 2000})
  config.evals.samples = ml_collections.ConfigDict({'every': 10000, 'num': 8})

  if 'pysource' in args or 'smoke' in args:
    config.data.name, config.data.tokenizer = 'pysource', 'byte'
    config.data.train_split, config.data.eval_split = 'train', 'test'
    config.train.batch_size = 8
  if 'smoke' in args:
    m.num_layers, m.num_heads, m.embed_dim, m.mlp_dim = 2, 2, 32, 128
    m.dtype = 'float32'
    config.data.seq_len = 32
    smoke_budget(config, steps=4, batch_size=16, eval_examples=32, samples=4)
  return config
