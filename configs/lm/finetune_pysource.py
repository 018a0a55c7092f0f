"""Fine-tuning the byte Transformer of transformer_pysource.py on one package of the stdlib (a domain shift).

    # 1. pre-train on the whole stdlib (configs/lm/transformer_pysource.py), then
    python -m jaxgen.main --config=configs/lm/finetune_pysource.py:lora --workdir=runs/lm/ft_lora \
        --config.init_from=runs/lm/transformer
    python -m jaxgen.main --config=configs/lm/finetune_pysource.py:full --workdir=runs/lm/ft_full \
        --config.init_from=runs/lm/transformer

The domain's test bits/byte before fine-tuning is the run's step-0 evaluation (config.train.eval_at_start:
the pre-trained parameters on the domain's test files), after it the final one; both are in the run's
metrics.jsonl.

The domain is `idlelib/` (IDLE, the stdlib's Tk GUI: event handlers, widget code), selected with
config.data.path_prefix on both splits. `full` updates every parameter (AdamW, lr 1e-4); `lora` trains
rank-8 adapters (alpha 16) on the attention and MLP projections only (lr 1e-3), 155,680 parameters
(4.8% of the 3.2M: rank 8 is large next to width 256).
300 steps of 16 windows of 256 bytes (the pre-training batch; 1.2M bytes, about 1.8 epochs of the
domain's 676 KB of training files),
cosine decay, 30 warm-up steps. Without config.init_from the
same command trains from scratch (the no-pre-training baseline).

Variants: `full` (default) or `lora`, optionally with `smoke`.
Expected result: see experiments/results/language.md.
"""

import os

from jaxgen.core.config import load_config_file, smoke_budget

HERE = os.path.dirname(os.path.abspath(__file__))
DOMAIN = 'idlelib/'


def get_config(arg=None):
  args = set((arg or '').split(',')) - {''}
  if args - {'full', 'lora', 'smoke'} or {'full', 'lora'} <= args:
    raise ValueError(f'configs/lm/finetune_pysource.py takes full or lora, optionally with smoke; got {arg!r}.')
  config = load_config_file(os.path.join(HERE, 'transformer_pysource.py' + (':smoke' if 'smoke' in args else '')))
  config.data.path_prefix = DOMAIN
  lora = 'lora' in args
  config.method.lora_rank = 8 if lora else 0
  config.method.lora_alpha = 16.0
  config.optim.lr = 1e-3 if lora else 1e-4
  config.optim.weight_decay = 0.0 if lora else 0.1
  config.train.eval_at_start = True
  if 'smoke' not in args:
    config.train.steps = 300
    config.optim.warmup_steps = 30
    config.train.eval_every = config.train.checkpoint_every = 300
    config.evals.nll.every = config.evals.samples.every = 300
  return config
