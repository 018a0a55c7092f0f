"""Preference learning on the stdlib line-completion task: a reward model, DPO and RLHF with PPO.

The pipeline (experiments/results/language.md has the numbers and the exact commands):

    # 0. the SFT policy: the byte Transformer pre-trained on pysource
    python -m jaxgen.main --config=configs/lm/transformer_pysource.py --workdir=runs/lm/transformer
    # 1. preference pairs from its completions, labelled by ast.parse (prints the dataset name)
    python experiments/preference_pairs.py --sft=runs/lm/transformer
    # 2. reward model and DPO on those pairs, PPO against the reward model
    python -m jaxgen.main --config=configs/preference/syntax.py:reward_model --workdir=runs/pref/rm \
        --config.init_from=runs/lm/transformer --config.data.name=syntax_pairs/<name printed in step 1>
    python -m jaxgen.main --config=configs/preference/syntax.py:dpo --workdir=runs/pref/dpo \
        --config.init_from=runs/lm/transformer --config.data.name=syntax_pairs/<name>
    python -m jaxgen.main --config=configs/preference/syntax.py:ppo --workdir=runs/pref/ppo \
        --config.init_from=runs/lm/transformer --config.method.reward_from=runs/pref/rm

A prompt is the first 16 bytes of a stdlib line, a completion 48 sampled bytes of which the part through
the first newline counts; a completed line that parses with ast.parse is preferred (jaxgen/evals/syntax.py).
The network is configs/lm/transformer_pysource.py's (it must match the init_from run). Every variant
reports `syntax_valid` (the fraction of sampled completions that parse, on the test prompts) and, for DPO
and PPO, `kl_to_reference`; DPO and PPO also evaluate at step 0 (config.train.eval_at_start), where the
policy is still the SFT model, so one run's metrics.jsonl holds the before and after.

  reward_model  Bradley-Terry on the pairs: AdamW lr 1e-4, batch 32, 300 steps; `preference_accuracy`
                on the test pairs.
  dpo           beta 0.1, AdamW lr 1e-5 (the DPO paper's 1e-6 is for 6B-parameter models; a 3M byte
                model needs more), batch 32, 300 steps.
  ppo           64 prompts per iteration, 2 epochs x 2 minibatches, clip 0.2, KL coefficient 0.05,
                GAE gamma 1, lambda 0.95, AdamW lr 1e-5, 150 iterations.

Variants: reward_model | dpo | ppo, optionally with `smoke` (tiny network, toy data; tests).
"""

import os

import ml_collections

from jaxgen.core.config import load_config_file, smoke_budget

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = ('reward_model', 'dpo', 'ppo')


def get_config(arg=None):
  args = set((arg or '').split(',')) - {''}
  methods = args & set(METHODS)
  if args - set(METHODS) - {'smoke'} or len(methods) != 1:
    raise ValueError(f'configs/preference/syntax.py takes one of {METHODS}, optionally with smoke; got {arg!r}.')
  (method,) = methods
  lm = load_config_file(os.path.join(HERE, '..', 'lm', 'transformer_pysource.py' + (':smoke' if 'smoke' in args else '')))
  config = lm
  config.method = ml_collections.ConfigDict({'name': method, 'completion_len': 48})
  if method == 'dpo':
    config.method.beta = 0.1
    config.method.label_smoothing = 0.0
  if method == 'ppo':
    config.method.update(dict(reward_from='', kl_coef=0.05, gamma=1.0, lam=0.95, clip_eps=0.2, value_clip=0.2,
                              vf_coef=0.5, ppo_epochs=2, minibatches=2, temperature=1.0))
  config.data.name = 'pysource_prompts' if method == 'ppo' else 'syntax_pairs'
  config.data.seq_len = lm.data.seq_len if 'smoke' not in args else 72  # the network length (prompt 16 + 48 + 1 fit)

  config.train.steps = 150 if method == 'ppo' else 300
  config.train.batch_size = 64 if method == 'ppo' else 32
  config.train.log_every = 10
  config.train.eval_every = config.train.checkpoint_every = config.train.steps
  config.train.eval_at_start = method != 'reward_model'  # step 0: the SFT policy's numbers (the 'before')
  config.train.eval_batch_size = 256
  o = config.optim
  o.name, o.lr, o.b1, o.b2, o.weight_decay, o.grad_clip = 'adamw', 1e-4 if method == 'reward_model' else 1e-5, 0.9, 0.95, 0.0, 1.0
  o.schedule, o.warmup_steps, o.final_lr_ratio = 'constant', 10, 1.0

  config.evals = ml_collections.ConfigDict()
  if method == 'reward_model':
    config.evals.preference_accuracy = ml_collections.ConfigDict({'every': config.train.steps})
  else:
    config.evals.syntax = ml_collections.ConfigDict({'every': config.train.steps, 'num_prompts': 256})
  if method == 'dpo':
    config.evals.preference_accuracy = ml_collections.ConfigDict({'every': config.train.steps})

  if 'smoke' in args:
    smoke_budget(config, steps=2, batch_size=8, eval_examples=16, samples=4)
    config.optim.warmup_steps = 0
    if 'syntax' in config.evals:
      config.evals.syntax.num_prompts = 8
  return config
