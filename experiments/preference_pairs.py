"""Preference pairs for the syntax task (issue 8) from a pre-trained byte LM: the TFDS dataset syntax_pairs/<config>.

  python experiments/preference_pairs.py --sft=runs/lm/transformer --samples=4 --max_prompts=0 [--data_dir=...]

1. Loads the run in --sft (jaxgen.train.load_trained: its latest checkpoint, EMA parameters when it has
   them) and rebuilds its method to sample P + C = 16 + 48 = 64 tokens (config.data.seq_len = 64; when
   the network's parameters depend on the length — learned positions — it samples at the trained
   length instead, which must be >= 64, and keeps the first 64). Sampling draws from the policy
   itself: --temperature (default 1), no top-k / top-p truncation.
2. For every prompt of pysource_prompts' train and test splits (jaxgen.data.builders.pysource_prompts;
   with --max_prompts=N > 0 a fixed random subset of N per split, jaxgen.data.eval_subset) draws
   --samples completions of C = 48 bytes, --batch_size prompts per jitted call; the rng of call b of
   split s, draw k, is fold_in(fold_in(fold_in(PRNGKey(seed), s), b), k), so the dataset is a pure
   function of (run, step, flags).
3. Labels each completion with completion_valid (the completed line parses). A prompt with at least one
   valid and one invalid completion gives one pair: chosen = its first valid completion, rejected = its
   first invalid one, with their lengths (completion_length: up to and including the first newline).
4. Writes them with tfds.dataset_builders.store_as_tfds_dataset as `syntax_pairs`, builder config
   `<run directory name>-<8 hex digits>` (a sha256 of the run's absolute path, checkpoint step and the
   flags above), version 1.0.0, ArrayRecord, into the TFDS data dir of the pipeline (--data_dir, else
   the run's config.data.data_dir, else $JAXGEN_DATA_DIR, else the TFDS default), replacing an earlier
   build of the same name. Features: prompt uint8 [16], chosen / rejected uint8 [48], chosen_len /
   rejected_len int32. tfds.builder('syntax_pairs/<config>', data_dir=...) reads it from its files (TFDS
   needs no registered class for a prepared dataset), so `config.data.name = 'syntax_pairs/<config>'`
   trains on it (DataInfo kind 'pairs', jaxgen.data.pipeline); the script checks that by opening it.

Prints per split: prompts, completions, the fraction of valid completions (the SFT model's base rate),
mean completion bytes, and pairs; then the name to use as config.data.name. One process (all devices
of this host).
"""

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time

from absl import app, flags

_SFT = flags.DEFINE_string('sft', 'runs/lm/transformer', 'Workdir of the pre-trained (SFT) language model run.')
_SAMPLES = flags.DEFINE_integer('samples', 4, 'Completions drawn per prompt.')
_MAX_PROMPTS = flags.DEFINE_integer('max_prompts', 0, 'Prompts per split (a fixed random subset); 0 = all.')
_DATA_DIR = flags.DEFINE_string('data_dir', '', 'TFDS data dir to write to (default: as the pipeline resolves it).')
_BATCH = flags.DEFINE_integer('batch_size', 256, 'Prompts per jitted sampling call.')
_TEMPERATURE = flags.DEFINE_float('temperature', 1.0, 'Sampling temperature (no top-k / top-p).')
_SEED = flags.DEFINE_integer('seed', 0, 'Sampling seed.')

DATASET = 'syntax_pairs'
VERSION = '1.0.0'
SPLITS = ('train', 'test')


def sampling_method(config, method, params, length: int, temperature: float):
  """The method that samples the syntax task's `length` tokens with the trained `params`.

  A text LM is rebuilt to draw at `temperature` from its whole distribution (top_k 0, top_p 1) with
  config.data.seq_len = length, or at its trained length when its parameters depend on the length
  (learned positions), which must then be >= `length`. Any other method is used as it is."""
  import flax.linen as nn
  import jax
  import numpy as np
  from jaxgen.errors import ConfigError
  if method.info.kind != 'text':
    return method

  def rebuilt(seq_len):
    new = config.copy_and_resolve_references()
    with new.unlocked():
      new.data.seq_len = seq_len
      new.method.temperature, new.method.top_k, new.method.top_p = float(temperature), 0, 1.0
    return type(method)(new, dataclasses.replace(method.info, shape=(seq_len,)))

  short = rebuilt(length)
  example = {'x': jax.ShapeDtypeStruct((1, length), np.int32)}
  abstract = nn.unbox(jax.eval_shape(short.init, jax.random.PRNGKey(0), example)).params
  if (jax.tree.structure(abstract) == jax.tree.structure(params)
      and all(a.shape == p.shape for a, p in zip(jax.tree.leaves(abstract), jax.tree.leaves(params)))):
    return short
  trained = int(method.info.shape[0])
  if trained < length:
    raise ConfigError(f'the run samples {trained} tokens and its parameters fix that length; the syntax task '
                      f'needs {length} (a 16-byte prompt and 48 bytes of completion).')
  return rebuilt(trained)


def dataset_config_name(workdir: str, step: int, settings: dict) -> str:
  """`<run directory name>-<8 hex digits of sha256(abs path, step, settings)>`, e.g. 'transformer-1a2b3c4d'."""
  path = os.path.abspath(workdir)
  digest = hashlib.sha256(json.dumps([path, step, settings], sort_keys=True).encode()).hexdigest()[:8]
  stem = ''.join(c if c.isalnum() else '_' for c in os.path.basename(path.rstrip('/')).lower()) or 'run'
  return f'{stem}-{digest}'


def sample_split(sample, params, prompts_config, batch_size: int, samples: int, rng):
  """(prompts uint8 [N, P], completions uint8 [N, samples, C]) of one split, N its (chosen) prompts."""
  import jax
  import numpy as np
  from jaxgen.data import eval_batches
  from jaxgen.data.builders.pysource_prompts import COMPLETION_BYTES, PROMPT_BYTES
  prompts, completions = [], []
  for b, batch in enumerate(eval_batches(prompts_config, batch_size)):
    real = batch['mask'] > 0
    draws = [np.asarray(sample(params, jax.random.fold_in(jax.random.fold_in(rng, b), k), batch['x']))
             for k in range(samples)]
    completions.append(np.stack(draws, axis=1)[real, :, PROMPT_BYTES:PROMPT_BYTES + COMPLETION_BYTES])
    prompts.append(batch['x'][real])
    if not all(np.array_equal(d[real, :PROMPT_BYTES], batch['x'][real]) for d in draws):
      raise ValueError('the sampler did not return the prompts in its first 16 columns.')
  return np.concatenate(prompts).astype(np.uint8), np.concatenate(completions).astype(np.uint8)


def make_pairs(prompts_NP, completions_NSC):
  """(pair examples, valid [N, S], lengths [N, S]): one pair per prompt with a valid and an invalid completion
  (chosen = the first valid, rejected = the first invalid)."""
  import numpy as np
  from jaxgen.data.builders.pysource_prompts import completion_lengths, completions_valid
  n, s, c = completions_NSC.shape
  valid_NS = completions_valid(np.repeat(prompts_NP, s, axis=0), completions_NSC.reshape(n * s, c)).reshape(n, s)
  lengths_NS = completion_lengths(completions_NSC.reshape(n * s, c)).reshape(n, s)
  pairs = []
  for i in np.flatnonzero(valid_NS.any(1) & ~valid_NS.all(1)):
    chosen, rejected = int(np.argmax(valid_NS[i])), int(np.argmin(valid_NS[i]))
    pairs.append({'prompt': prompts_NP[i], 'chosen': completions_NSC[i, chosen],
                  'rejected': completions_NSC[i, rejected], 'chosen_len': np.int32(lengths_NS[i, chosen]),
                  'rejected_len': np.int32(lengths_NS[i, rejected])})
  return pairs, valid_NS, lengths_NS


def features():
  import numpy as np
  import tensorflow_datasets as tfds
  from jaxgen.data.builders.pysource_prompts import COMPLETION_BYTES, PROMPT_BYTES
  return tfds.features.FeaturesDict({
      'prompt': tfds.features.Tensor(shape=(PROMPT_BYTES,), dtype=np.uint8),
      'chosen': tfds.features.Tensor(shape=(COMPLETION_BYTES,), dtype=np.uint8),
      'rejected': tfds.features.Tensor(shape=(COMPLETION_BYTES,), dtype=np.uint8),
      'chosen_len': tfds.features.Scalar(dtype=np.int32),
      'rejected_len': tfds.features.Scalar(dtype=np.int32),
  })


def build_pairs(sft: str, samples: int = 4, max_prompts: int = 0, data_dir: str = '', batch_size: int = 256,
                temperature: float = 1.0, seed: int = 0, log=print) -> dict:
  """Build syntax_pairs/<config> from the run in `sft` (module docstring); returns {'name': the
  config.data.name to use, 'data_dir', 'splits': {split: {prompts, completions, valid_fraction,
  completion_bytes, pairs}}}."""
  import jax
  import ml_collections
  import tensorflow_datasets as tfds
  from jaxgen import data
  from jaxgen.checkpoint import Checkpointer
  from jaxgen.data.builders.pysource_prompts import COMPLETION_BYTES, PROMPT_BYTES
  from jaxgen.errors import ConfigError, DataError
  from jaxgen.evals.syntax import prompts_config
  from jaxgen.train import load_trained

  if samples < 2:
    raise ConfigError(f'--samples={samples}: a pair needs a valid and an invalid completion of one prompt; use >= 2.')
  config, method, params = load_trained(sft)
  checkpointer = Checkpointer(os.path.join(sft, 'checkpoints'), async_save=False)
  try:
    step = int(checkpointer.latest_step())
  finally:
    checkpointer.close()
  tokenizer = getattr(method.info, 'tokenizer', None)
  if tokenizer is not None and tokenizer.name != 'byte':
    raise ConfigError(f'{sft} uses the {tokenizer.name} tokenizer; the syntax task feeds byte prompts to a byte LM.')
  method = sampling_method(config, method, params, PROMPT_BYTES + COMPLETION_BYTES, temperature)
  root = data.data_dir(ml_collections.ConfigDict({'data_dir': data_dir or config.data.get('data_dir', '')}))
  settings = dict(samples=samples, max_prompts=max_prompts, batch_size=batch_size, temperature=temperature, seed=seed)
  name = dataset_config_name(sft, step, settings)
  log(f'SFT run {os.path.abspath(sft)} at step {step}; {samples} completions of {COMPLETION_BYTES} bytes per '
      f'prompt at temperature {temperature}; writing {DATASET}/{name} to {root}')

  sample = jax.jit(lambda p, rng, prompt_BP: method.sample(p, rng, prompt_BP.shape[0], prompt=prompt_BP))
  rng = jax.random.PRNGKey(seed)
  stats, split_pairs = {}, {}
  for s, split in enumerate(SPLITS):
    start = time.time()
    prompts = prompts_config(ml_collections.ConfigDict({'data_dir': root}), max_prompts, split)
    prompts_NP, completions_NSC = sample_split(sample, params, prompts, batch_size, samples, jax.random.fold_in(rng, s))
    pairs, valid_NS, lengths_NS = make_pairs(prompts_NP, completions_NSC)
    split_pairs[split] = [(i, pair) for i, pair in enumerate(pairs)]
    stats[split] = dict(prompts=len(prompts_NP), completions=int(valid_NS.size),
                        valid_fraction=float(valid_NS.mean()), completion_bytes=float(lengths_NS.mean()),
                        pairs=len(pairs))
    log(f'{split}: {stats[split]["prompts"]} prompts, {stats[split]["completions"]} completions, valid fraction '
        f'{stats[split]["valid_fraction"]:.4f}, mean completion bytes {stats[split]["completion_bytes"]:.2f}, '
        f'{len(pairs)} pairs ({time.time() - start:.0f} s)')
    if not pairs:
      raise DataError(f'split {split!r}: no prompt got both a valid and an invalid completion (valid fraction '
                      f'{valid_NS.mean():.3f}); raise --samples or change --temperature.')

  target = os.path.join(root, DATASET, name, VERSION)
  if os.path.exists(target):
    shutil.rmtree(target)
  tfds.dataset_builders.store_as_tfds_dataset(
      name=DATASET, version=VERSION, features=features(), split_datasets=split_pairs, config=name, data_dir=root,
      file_format='array_record', disable_shuffling=True,
      description=(f'Syntax preference pairs (experiments/preference_pairs.py) from the run {os.path.abspath(sft)} '
                   f'at step {step}, settings {json.dumps(settings, sort_keys=True)}; per split: '
                   f'{json.dumps(stats, sort_keys=True)}.'))
  dataset = f'{DATASET}/{name}'
  check = ml_collections.ConfigDict(dict(name=dataset, data_dir=root, train_split='train', eval_split='test',
                                         binarize='', dequantize=False))
  info = data.get_info(check)
  expected = {split: stats[split]['pairs'] for split in SPLITS}
  if info.kind != 'pairs' or info.num_examples != expected:
    raise DataError(f'{dataset} reads back as kind {info.kind!r} with {info.num_examples} examples; wrote {expected}.')
  log(f"config.data.name = '{dataset}'  (data dir {root})")
  return {'name': dataset, 'data_dir': root, 'splits': stats}


def main(argv):
  del argv
  from absl import logging
  from jaxgen.errors import JaxgenError
  logging.set_verbosity(logging.ERROR)  # TFDS and Orbax chatter off, as in jaxgen.main
  try:
    build_pairs(_SFT.value, _SAMPLES.value, _MAX_PROMPTS.value, _DATA_DIR.value, _BATCH.value, _TEMPERATURE.value,
                _SEED.value)
  except JaxgenError as e:
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  app.run(main)
