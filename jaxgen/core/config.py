"""The top-level config keys every experiment shares (DESIGN.md, "Configs").

A config file builds on `base_config()` and fills in `method`, `model`, `data`
and the family's own `method.*` settings. `validate` checks what the train loop
relies on and fails with one clear message.
"""

import difflib
import importlib.util

import ml_collections

from jaxgen.errors import ConfigError


def base_config() -> ml_collections.ConfigDict:
  """Shared keys with defaults; families add theirs under `model` and `method`."""
  c = ml_collections.ConfigDict()
  c.method = ml_collections.ConfigDict({'name': ''})
  c.init_from = ''                 # a run's workdir: start from its (latest, non-EMA) parameters (fine-tuning)
  c.model = ml_collections.ConfigDict()

  c.data = ml_collections.ConfigDict()
  c.data.name = ''                 # TFDS name: 'mnist5k', 'digits', 'toy2d/ring8', 'mnist', ...
  c.data.data_dir = ''             # TFDS data_dir ('' = $JAXGEN_DATA_DIR or ~/tensorflow_datasets)
  c.data.train_split = 'train'
  c.data.eval_split = 'test'
  c.data.binarize = ''             # '' | 'dynamic' (fresh Bernoulli draw per step; test fixed-seed) | 'threshold'
  c.data.dequantize = False        # uniform dequantization: x = (x_int + u) / levels
  c.data.max_eval_examples = 0     # 0 = the whole eval split; N = a fixed random subset of N
  c.data.max_train_examples = 0    # 0 = the whole train split; N = a fixed random subset of N (limited data)
  c.data.image_size = 0            # 0 = images as stored; N = central square crop resized to N x N
  c.data.seq_len = 256             # text (pysource, ...): tokens per example window
  c.data.tokenizer = 'byte'        # text: 'byte' | 'sentencepiece' (trained on the train split, cached)
  c.data.vocab_size = 1024         # sentencepiece vocabulary size
  c.data.sp_model_type = 'bpe'     # sentencepiece 'bpe' | 'unigram'
  c.data.path_prefix = ''          # datasets with a `path` feature: keep documents under these comma-separated prefixes
  c.data.exclude_labels = ()       # labels removed from every split (held-out-class anomaly detection)
  c.data.prefetch = 2              # host batches prepared ahead of the device

  c.train = ml_collections.ConfigDict()
  c.train.steps = 1000
  c.train.batch_size = 128         # global batch, over all processes and devices
  c.train.seed = 0
  c.train.log_every = 50
  c.train.eval_every = 1000
  c.train.eval_at_start = False    # also evaluate the initial state (step 0) of a fresh run: e.g. a fine-tune's 'before'
  c.train.checkpoint_every = 500
  c.train.keep_checkpoints = 3     # keep-last-N
  c.train.keep_period = 0          # also keep every K-th step (0 = off)
  c.train.ema_decay = 0.0          # 0 = no EMA parameters
  c.train.eval_batch_size = 500

  c.optim = ml_collections.ConfigDict()
  c.optim.name = 'adam'
  c.optim.lr = 1e-3
  c.optim.schedule = 'constant'
  c.optim.warmup_steps = 0
  c.optim.decay_steps = 0
  c.optim.final_lr_ratio = 0.0
  c.optim.decay_rate = 1.0
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.weight_decay = 0.0
  c.optim.momentum = 0.0
  c.optim.grad_clip = 0.0

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  # Logical parameter axis -> mesh axis (None = replicated).
  c.mesh.rules = (('batch', ('data', 'fsdp')), ('embed', 'fsdp'), ('mlp', 'tensor'),
                  ('heads', 'tensor'), ('vocab', 'tensor'), ('conv_in', None), ('conv_out', 'tensor'))

  c.evals = ml_collections.ConfigDict()
  return c


def set_budget(config: ml_collections.ConfigDict, steps: int, batch_size: int, log_every: int, every: int,
               warmup_steps: int, samples: int) -> ml_collections.ConfigDict:
  """Set in place: `steps` steps of `batch_size`, logging every `log_every`, evaluating (every
  evaluator) and checkpointing every `every`, `warmup_steps` of warm-up, `samples` samples."""
  config.train.steps = steps
  config.train.batch_size = batch_size
  config.train.log_every = log_every
  config.train.eval_every = config.train.checkpoint_every = every
  config.optim.warmup_steps = warmup_steps
  for evaluator in config.evals.values():
    evaluator.every = every
  if 'samples' in config.evals:
    config.evals.samples.num = samples
  return config


def smoke_budget(config: ml_collections.ConfigDict, steps: int, batch_size: int, eval_examples: int,
                 samples: int, eval_every: int = 0) -> ml_collections.ConfigDict:
  """Shrink `config` in place to the seconds-long run a `:smoke` variant is: `steps` steps of
  `batch_size` (no warm-up), logging every steps // 2, evaluating (every evaluator) and
  checkpointing every `eval_every` (default steps // 2), on `eval_examples` test examples, with
  `samples` samples. Returns `config`."""
  config.data.max_eval_examples = eval_examples
  config.train.eval_batch_size = batch_size
  return set_budget(config, steps, batch_size, log_every=max(1, steps // 2),
                    every=eval_every or max(1, steps // 2), warmup_steps=0, samples=samples)


CPU_COMPARISON_STEPS = 1000
CPU_COMPARISON_BATCH = 32


def cpu_comparison_budget(config: ml_collections.ConfigDict, samples: int = 16) -> ml_collections.ConfigDict:
  """Set `config` in place to the equal budget of the `:cpu` variants, the likelihood
  comparison of experiments/results/likelihood.md: CPU_COMPARISON_STEPS steps of
  CPU_COMPARISON_BATCH (about 7 epochs of mnist5k), 50 warm-up steps, then one evaluation
  (every evaluator, the whole test split) and checkpoint at the end, with `samples` samples.
  Every family gets the same examples seen, so the families can be ranked at that budget.
  Model sizes stay the config's business (shrunk where a step would take seconds). No parameter
  averaging (ema_decay 0): after 1000 steps an EMA of decay 0.999 still gives the initial
  parameters weight 0.999^1000 = 0.37, and the evaluated model would be far worse than the trained one."""
  config.train.ema_decay = 0.0
  return set_budget(config, CPU_COMPARISON_STEPS, CPU_COMPARISON_BATCH, log_every=50,
                    every=CPU_COMPARISON_STEPS, warmup_steps=50, samples=samples)


def lock(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Lock the config so that an unknown override key is an error, not a new key."""
  config.lock()
  return config


def _all_keys(config, prefix=''):
  for key, value in config.items():
    name = f'{prefix}{key}'
    yield name
    if isinstance(value, ml_collections.ConfigDict):
      yield from _all_keys(value, name + '.')


def unknown_key_message(config, key: str) -> str:
  """'config.x.y is not a valid key; did you mean ...' with the closest valid keys."""
  keys = list(_all_keys(config))
  close = difflib.get_close_matches(key, keys, n=5, cutoff=0.5)
  parent = key.rsplit('.', 1)[0] if '.' in key else ''
  siblings = sorted(k for k in keys if parent and k.startswith(parent + '.') and k.count('.') == key.count('.'))
  msg = f'config.{key} is not a valid config key.'
  if close:
    msg += ' Did you mean: ' + ', '.join(f'config.{k}' for k in close) + '?'
  if siblings:
    msg += ' Valid keys under config.' + parent + ': ' + ', '.join(s.rsplit('.', 1)[1] for s in siblings) + '.'
  return msg


def validate(config) -> None:
  """Check the keys the train loop relies on; raise ConfigError with what to fix."""
  for key in ('method.name', 'data.name'):
    section, name = key.split('.')
    if not config[section].get(name):
      raise ConfigError(f'config.{key} must be set.')
  t = config.train
  for key in ('steps', 'batch_size', 'log_every', 'eval_every', 'checkpoint_every'):
    if int(t[key]) <= 0:
      raise ConfigError(f'config.train.{key} must be positive, got {t[key]}.')
  if not 0.0 <= float(t.ema_decay) < 1.0:
    raise ConfigError(f'config.train.ema_decay must be in [0, 1), got {t.ema_decay}.')
  if config.data.binarize not in ('', 'dynamic', 'threshold'):
    raise ConfigError(f"config.data.binarize={config.data.binarize!r} is not one of '', 'dynamic', 'threshold'.")


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """get_config(arg) of 'path/to/file.py[:arg]' (no command-line overrides, not locked).

  Config files use it to build on a sibling config instead of repeating it.
  """
  path, _, arg = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('_jaxgen_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()
