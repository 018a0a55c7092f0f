"""The data side of preference learning (issue 8): the syntax property (line_parses, completion_valid,
completion_length), the `pysource_prompts` builder, the pipeline's 'prompts' and 'pairs' kinds,
experiments/preference_pairs.py on a tiny LM end to end, and the `syntax` evaluator."""

import functools
import importlib.util
import os
import pathlib
import shutil
import sys
import zlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxgen import data, train
from jaxgen.core.mesh import make_mesh
from jaxgen.core.state import TrainState
from jaxgen.data import pipeline
from jaxgen.data.builders import pysource
from jaxgen.data.builders.pysource_prompts import (
    COMPLETION_BYTES, MIN_LINE_BYTES, PROMPT_BYTES, completion_length, completion_lengths, completion_valid,
    completions_valid, line_parses)
from jaxgen.data.tokenizers import ByteTokenizer
from jaxgen.errors import ConfigError, DataError
from jaxgen.evals import EvalContext, syntax
from jaxgen.logging import read_metrics
from jaxgen.methods.base import Method
from tests.test_train import config_file

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_script(filename: str = 'preference_pairs.py'):
  """experiments/<filename> as a module, executed once per process: it defines absl flags at import,
  and pytest may import this test file under two module names (the other test file imports it as a package)."""
  name = 'experiments_' + filename[:-len('.py')]
  if name not in sys.modules:
    spec = importlib.util.spec_from_file_location(name, ROOT / 'experiments' / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
  return sys.modules[name]


def data_config(name='pysource_prompts', data_dir='', **overrides):
  c = dict(name=name, data_dir=str(data_dir), train_split='train', eval_split='test', binarize='', dequantize=False,
           max_eval_examples=0, max_train_examples=0, prefetch=0)
  c.update(overrides)
  return ml_collections.ConfigDict(c)


# ---- the property ------------------------------------------------------------------------------

LINES = [
    # simple statements
    (b'x = f(a, b) + 1', True), (b'return self._value', True), (b'import os.path as osp', True),
    (b'print "hi"', False), (b'x = 1; y = 2', True), (b'  x = 1  ', True),
    # block headers, alone and with a comment
    (b'def f(x, *args, **kw):', True), (b'async def main():', True), (b'class A(B, metaclass=M):', True),
    (b'for a, b in items:  # pairs', True), (b'with open(p) as f:', True), (b'while True:', True), (b'try:', True),
    (b'if x:', True), (b'if x: return 1', True), (b'def f(x): return x', True),
    # clause headers that cannot stand alone
    (b'else:', True), (b'elif x > 1:', True), (b'else: return 1', True), (b'except ValueError as e:', True),
    (b'except* OSError:', True), (b'finally:', True), (b'match command.split():', True), (b'case [x, y]:', True),
    (b'case _: return x', True), (b'case = 1', True), (b'try: x()', False), (b'else', False), (b'if x', False),
    # decorators
    (b'@property', True), (b'@functools.wraps(f)', True), (b'@', False),
    # unbalanced brackets and continuations
    (b'x = f(a,', False), (b'x = [a for a in', False), (b'd = {1:', False), (b'f = lambda:', False),
    (b'foo=bar, baz=qux),', False), (b'}', False), (b'x = 1 + \\', False), (b'x = 1; \\', False),
    (b'if x: \\', False), (b'def f(x,', False),
    # strings
    (b"s = 'abc", False), (b's = """doc', False), (b's = "a # b"', True), (b"s = f'{x!r:>10}'", True),
    (b'x = f"{a"', False), (b'"""One line docstring."""', True), (b'Return the value of x.', False),
    # comments: valid Python (prompts exclude them separately)
    (b'# a comment', True), (b'x = 1  # call (', True),
    # bytes that are not a line of UTF-8 Python
    (b'x = "\xc3\xa9"', True), (b'x = "\xff"', False), (b'x = 1\0', False), (b'', False), (b'   ', False),
    (b'x = 1\ny = 2', False), (b'x=1\ry=2', False), (b'x = 1\r', True),
]


@pytest.mark.parametrize('line,expected', LINES)
def test_line_parses_on_hand_written_lines(line, expected):
  assert line_parses(line) is expected


def test_completion_valid_and_length_on_hand_cases_and_their_vectorised_forms():
  def pad(b):
    return b + b' ' * (COMPLETION_BYTES - len(b))

  cases = [  # (prompt, completion, valid, length)
      (b'x = foo(a, b) + ', pad(b'bar\n(((('), True, 4),          # what follows the newline does not count
      (b'x = foo(a, b) + ', pad(b'\n'), False, 1),                # 'x = foo(a, b) + ' is not complete
      (b'def expovariate(', pad(b'self, lambd):\n'), True, 14),   # a block header
      (b'def expovariate(', pad(b'self, lambd)\n'), False, 13),
      (b'cache[rtype].rem', pad(b'ove(x)\n'), True, 7),
      (b'cache[rtype].rem', pad(b'ove(x)'), False, COMPLETION_BYTES),   # no newline: the line never ended
      (b'cache[rtype].rem', b'ove(x) + y' + b' ' * 37 + b'\n', True, COMPLETION_BYTES),  # the last byte ends it
      (b'elif cte == "quo', pad(b'ted":\n'), True, 6),
      (b'x = "\xc3\xa9" + "abcd', pad(b'e"\n'), True, 3),
      (b'x = "\xc3\xa9" + "abcd', pad(b'\xff"\n'), False, 3),            # not UTF-8
  ]
  for prompt, completion, valid, length in cases:
    assert len(prompt) == PROMPT_BYTES and len(completion) == COMPLETION_BYTES
    assert completion_valid(prompt, completion) is valid, (prompt, completion)
    assert completion_length(completion) == length
    # integer arrays give the same answers as bytes
    ids = (np.frombuffer(prompt, np.uint8).astype(np.int32), np.frombuffer(completion, np.uint8).astype(np.int64))
    assert completion_valid(*ids) is valid and completion_length(ids[1]) == length
  prompts = np.stack([np.frombuffer(p, np.uint8) for p, _, _, _ in cases]).astype(np.int32)
  completions = np.stack([np.frombuffer(c, np.uint8) for _, c, _, _ in cases]).astype(np.int32)
  np.testing.assert_array_equal(completions_valid(prompts, completions), [v for _, _, v, _ in cases])
  lengths = completion_lengths(completions)
  assert lengths.dtype == np.int32
  np.testing.assert_array_equal(lengths, [n for _, _, _, n in cases])
  np.testing.assert_array_equal(completion_lengths(np.full((2, 5), ord('a'))), [5, 5])
  with pytest.raises(ValueError):
    completion_valid(b'x', np.array([300]))


# ---- the builder -------------------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def _split_examples(split):
  """(prompts, lines, paths) of a split of pysource_prompts, decoded in one vectorised read."""
  builder = pipeline._builder('pysource_prompts', data.data_dir(data_config()))
  arrays = pipeline._decode_all(builder, split, ('prompt', 'line', 'path'))
  return ([bytes(p) for p in arrays['prompt']], [bytes(t) for t in arrays['line']],
          [bytes(t).decode() for t in arrays['path']])


def test_builder_prompts_follow_the_rules_and_are_every_qualifying_test_line():
  stored = {}
  for split in ('train', 'test'):
    prompts, lines, paths = _split_examples(split)
    assert lines == sorted(set(lines))                                    # deduplicated, sorted
    for prompt, line, path in zip(prompts, lines, paths):
      assert len(line) >= MIN_LINE_BYTES and line.isascii() and line == line.strip()
      assert not line.startswith((b'#', b'"', b"'"))
      assert prompt == line[:PROMPT_BYTES] and len(prompt) == PROMPT_BYTES
      assert (zlib.crc32(path.encode()) % 10 == 0) == (split == 'test')   # the split rule
    stored[split] = (lines, paths)
  builder = pipeline._builder('pysource_prompts', data.data_dir(data_config()))
  assert builder.info.metadata['python_version'] == pysource.python_tag()[2:]
  # Spot-check the full rule (it re-parses) on a fixed sample of training lines, and that each line is in its file.
  lines, paths = stored['train']
  rng = np.random.default_rng(0)
  for i in rng.choice(len(lines), 300, replace=False):
    assert line_parses(lines[i]) and not line_parses(lines[i][:PROMPT_BYTES])  # a bare newline never completes it
    with open(os.path.join(pysource.stdlib_dir(), paths[i]), 'rb') as f:
      assert lines[i] in {raw.strip() for raw in f.read().split(b'\n')}
  # The test split is exactly the qualifying lines of the test files, each with the first file (path order) holding it.
  expected = {}
  for path in sorted(p for p in pysource.source_files() if pysource.is_test(p)):
    with open(os.path.join(pysource.stdlib_dir(), path), 'rb') as f:
      for raw in f.read().split(b'\n'):
        line = raw.strip()
        if (len(line) >= 24 and line.isascii() and line[:1] not in (b'#', b'"', b"'") and line not in expected
                and line_parses(line) and not line_parses(line[:PROMPT_BYTES])):
          expected[line] = path
  lines, paths = stored['test']
  assert dict(zip(lines, paths)) == expected
  assert 1000 < len(stored['test'][0]) < len(stored['train'][0])


# ---- the pipeline ------------------------------------------------------------------------------

def test_prompts_kind_batches_are_int32_prompts_deterministic_by_step():
  config = data_config()
  info = data.get_info(config)
  assert (info.kind, info.shape, info.levels, info.num_classes) == ('prompts', (PROMPT_BYTES,), 256, None)
  assert isinstance(info.tokenizer, ByteTokenizer)
  prompts, _, _ = _split_examples('train')
  assert info.num_examples['train'] == len(prompts)
  loader = data.TrainLoader(config, 8, seed=3)
  batch = loader.batch(5)
  assert set(batch) == {'x'} and batch['x'].dtype == np.int32 and batch['x'].shape == (8, PROMPT_BYTES)
  assert {bytes(row.astype(np.uint8)) for row in batch['x']} <= set(prompts)
  np.testing.assert_array_equal(data.TrainLoader(config, 8, seed=3).batch(5)['x'], batch['x'])
  assert not np.array_equal(loader.batch(6)['x'], batch['x'])
  batches = list(data.eval_batches(data_config(max_eval_examples=20), 16))
  assert [set(b) for b in batches] == [{'x', 'mask'}] * 2 and batches[1]['mask'].sum() == 4
  with pytest.raises(ConfigError, match="tokenizer='byte'"):
    data.get_info(data_config(tokenizer='sentencepiece'))
  with pytest.raises(ConfigError, match='path_prefix'):
    data.get_info(data_config(path_prefix='json/'))


def _pair_features(completion=COMPLETION_BYTES, drop=()):
  features = {
      'prompt': tfds.features.Tensor(shape=(PROMPT_BYTES,), dtype=np.uint8),
      'chosen': tfds.features.Tensor(shape=(completion,), dtype=np.uint8),
      'rejected': tfds.features.Tensor(shape=(completion,), dtype=np.uint8),
      'chosen_len': tfds.features.Scalar(dtype=np.int32),
      'rejected_len': tfds.features.Scalar(dtype=np.int32),
  }
  return tfds.features.FeaturesDict({k: v for k, v in features.items() if k not in drop})


def _pair(i):
  return {'prompt': np.full(PROMPT_BYTES, i, np.uint8), 'chosen': np.arange(COMPLETION_BYTES, dtype=np.uint8) + i,
          'rejected': np.full(COMPLETION_BYTES, 200 - i, np.uint8), 'chosen_len': np.int32(i + 1),
          'rejected_len': np.int32(COMPLETION_BYTES - i)}


def test_pairs_kind_reads_a_stored_pairs_dataset_through_the_loaders(tmp_path):
  splits = {'train': [(i, _pair(i)) for i in range(10)], 'test': [(i, _pair(50 + i)) for i in range(3)]}
  tfds.dataset_builders.store_as_tfds_dataset(name='syntax_pairs', version='1.0.0', features=_pair_features(),
                                              split_datasets=splits, config='tiny', data_dir=tmp_path,
                                              file_format='array_record', disable_shuffling=True)
  config = data_config('syntax_pairs/tiny', tmp_path)
  info = data.get_info(config)
  assert (info.kind, info.shape, info.levels, info.num_examples) == ('pairs', (PROMPT_BYTES,), 256,
                                                                     {'train': 10, 'test': 3})
  assert isinstance(info.tokenizer, ByteTokenizer)
  loader = data.TrainLoader(config, 4, seed=0)
  batch = loader.batch(1)
  shapes = {k: (v.dtype, v.shape) for k, v in batch.items()}
  assert shapes == {'x': (np.int32, (4, PROMPT_BYTES)), 'chosen': (np.int32, (4, COMPLETION_BYTES)),
                    'rejected': (np.int32, (4, COMPLETION_BYTES)), 'chosen_len': (np.int32, (4,)),
                    'rejected_len': (np.int32, (4,))}
  for row in range(4):  # each row is one stored pair, its fields together
    i = int(batch['x'][row, 0])
    expected = _pair(i)
    np.testing.assert_array_equal(batch['x'][row], expected['prompt'])
    for key in ('chosen', 'rejected', 'chosen_len', 'rejected_len'):
      np.testing.assert_array_equal(batch[key][row], expected[key])
  later = data.TrainLoader(config, 4, seed=0)
  for step in (0, 1, 7):
    for key, value in loader.batch(step).items():
      np.testing.assert_array_equal(later.batch(step)[key], value)
  epoch = np.concatenate([loader.batch(s)['x'][:, 0] for s in range(5)])[:10]  # 20 draws: epoch 0 first
  assert sorted(epoch) == list(range(10))
  (batch,) = list(data.eval_batches(config, 4))
  np.testing.assert_array_equal(batch['x'][:, 0], [50, 51, 52, 52])  # the last example repeated as padding
  np.testing.assert_array_equal(batch['mask'], [1, 1, 1, 0])
  np.testing.assert_array_equal(batch['chosen_len'], [51, 52, 53, 53])
  with pytest.raises(ConfigError, match="tokenizer='byte'"):
    data.get_info(data_config('syntax_pairs/tiny', tmp_path, tokenizer='sentencepiece'))
  tfds.dataset_builders.store_as_tfds_dataset(
      name='syntax_pairs', version='1.0.0', features=_pair_features(drop=('rejected_len',)),
      split_datasets={'train': [(0, {k: v for k, v in _pair(0).items() if k != 'rejected_len'})]}, config='broken',
      data_dir=tmp_path, file_format='array_record')
  with pytest.raises(DataError, match='rejected_len'):
    data.get_info(data_config('syntax_pairs/broken', tmp_path))


# ---- the syntax evaluator on a method with known completions --------------------------------------

class KnownCompletions(Method):
  """Samples, for each prompt row, the completion a table gives its prompt (the first table row with that
  prompt); sequence_kl = length / 4 + params['shift']."""

  def __init__(self, table_prompts, table_completions):
    super().__init__(None, None)
    self.table_prompts = jnp.asarray(table_prompts, jnp.int32)
    self.table_completions = jnp.asarray(table_completions, jnp.int32)

  def sample(self, params, rng, num, prompt=None):
    assert prompt.shape == (num, PROMPT_BYTES)
    index = jnp.argmax(jnp.all(prompt[:, None, :] == self.table_prompts[None], axis=-1), axis=-1)
    return jnp.concatenate([prompt, self.table_completions[index], jnp.zeros((num, 3), jnp.int32)], axis=1)

  def sequence_kl(self, params, prompt_BP, completion_BC, length_B):
    assert completion_BC.shape[1] == COMPLETION_BYTES
    return length_B.astype(jnp.float32) / 4 + params['shift']


def test_syntax_evaluator_reports_the_exact_fraction_length_and_kl_of_known_completions(tmp_path):
  num_prompts = 40
  # The evaluator's prompts, found independently: the fixed subset of the test split's lines.
  _, lines, _ = _split_examples('test')
  chosen = [lines[i] for i in data.eval_subset(len(lines), num_prompts)]
  table = {}  # prompt -> (completion, whether it is valid); the first line with a prompt decides
  for i, line in enumerate(chosen):
    rest = line[PROMPT_BYTES:]
    if i % 3 == 0 and len(rest) < COMPLETION_BYTES:
      entry = (rest + b'\n', True)                 # the reference line: valid (the builder's lines parse)
    elif i % 3 == 1 and b'#' not in line[:PROMPT_BYTES]:
      entry = (b'(\n', False)                      # ends the line with a bracket never closed (not in a comment)
    else:
      entry = (b'a' * COMPLETION_BYTES, False)     # never ends the line
    table.setdefault(line[:PROMPT_BYTES], (entry[0].ljust(COMPLETION_BYTES, b'#'), entry[1]))
  rows = [table[line[:PROMPT_BYTES]][0] for line in chosen]
  expected_valid = np.array([table[line[:PROMPT_BYTES]][1] for line in chosen])
  expected_lengths = np.array([c.index(b'\n') + 1 if b'\n' in c else COMPLETION_BYTES for c in rows])
  assert 0 < expected_valid.sum() < num_prompts

  method = KnownCompletions(np.stack([np.frombuffer(p, np.uint8) for p in table]),
                            np.stack([np.frombuffer(c, np.uint8) for c, _ in table.values()]))
  config = ml_collections.ConfigDict({'data': data_config('pysource'), 'train': {'eval_every': 1}})
  info = data.DataInfo(name='pysource', kind='text', shape=(64,), levels=256, num_classes=None, num_examples={},
                       dequantized=False, tokenizer=ByteTokenizer())
  state = TrainState(step=jnp.zeros((), jnp.int32), params={'shift': jnp.float32(1.5)}, opt_state=None)
  results = {}
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = make_mesh(ml_collections.ConfigDict({'data': -1, 'fsdp': 1, 'tensor': 1}), devices)
    ctx = EvalContext(method=method, config=config, info=info, mesh=mesh, workdir=str(tmp_path), is_main=True)
    evaluator = syntax.SyntaxEvaluator(ml_collections.ConfigDict({'num_prompts': num_prompts,
                                                                  'samples_per_prompt': 2}), ctx)
    results[len(devices)] = evaluator(state, 7)
  assert results[1] == results[len(jax.devices())]
  metrics = results[1]
  assert metrics['syntax_valid'] == pytest.approx(expected_valid.mean(), abs=1e-12)
  assert metrics['completion_bytes'] == pytest.approx(expected_lengths.mean(), abs=1e-9)
  assert metrics['kl_to_reference'] == pytest.approx(expected_lengths.mean() / 4 + 1.5, abs=1e-5)
  written = (tmp_path / 'samples' / 'syntax_0000007.txt').read_text().splitlines()
  assert len(written) == 32
  for k, text in enumerate(written):  # rows are prompts repeated samples_per_prompt times
    line, valid = chosen[k // 2], expected_valid[k // 2]
    assert text.startswith('valid  \t' if valid else 'invalid\t')
    assert text.split('\t', 1)[1].startswith(line[:PROMPT_BYTES].decode())
    if valid:  # the completed line is the reference line
      assert text == 'valid  \t' + line.decode()
  saved = np.load(tmp_path / 'samples' / 'syntax_0000007.npy')
  assert saved.shape == (2 * num_prompts, PROMPT_BYTES + COMPLETION_BYTES)
  assert [bytes(r.astype(np.uint8)) for r in saved[:4]] == [chosen[0][:PROMPT_BYTES] + rows[0]] * 2 + [
      chosen[1][:PROMPT_BYTES] + rows[1]] * 2


def test_syntax_evaluator_rejects_runs_without_byte_tokens():
  class Sampler(Method):
    def sample(self, params, rng, num, prompt=None):
      return prompt

  info = data.DataInfo(name='pysource', kind='text', shape=(64,), levels=1024, num_classes=None, num_examples={},
                       dequantized=False, tokenizer=type('SP', (), {'name': 'sentencepiece-bpe-1024'})())
  ctx = EvalContext(method=Sampler(None, info), config=None, info=info, mesh=None, workdir='', is_main=True)
  with pytest.raises(ConfigError, match='byte prompts'):
    syntax.SyntaxEvaluator(ml_collections.ConfigDict(), ctx)


# ---- a tiny LM end to end: the evaluator in training, then preference pairs ------------------------

@pytest.fixture(scope='module')
def lstm_run(tmp_path_factory):
  """A 2-step LSTM smoke run that evaluates `syntax` through the train loop."""
  workdir = tmp_path_factory.mktemp('lstm')
  config = config_file('lm/rnn_pysource.py', 'lstm,smoke')
  config.train.steps, config.train.eval_every, config.train.checkpoint_every = 2, 2, 2
  config.evals = ml_collections.ConfigDict({'syntax': {'num_prompts': 6, 'samples_per_prompt': 2}})
  train.train_and_evaluate(config, str(workdir), devices=jax.devices()[:1])
  return workdir


def test_an_lm_trained_on_pysource_windows_is_scored_by_the_syntax_evaluator(lstm_run):
  (record,) = [r for r in read_metrics(str(lstm_run)) if r['split'] == 'eval']
  assert 0.0 <= record['syntax_valid'] <= 1.0 and 'kl_to_reference' not in record
  # The smoke LM samples 32 tokens: 16 of prompt, 16 of completion.
  assert 1.0 <= record['completion_bytes'] <= 16.0
  written = (lstm_run / 'samples' / 'syntax_0000002.txt').read_text().splitlines()
  assert len(written) == 12 and all(t.startswith(('valid  \t', 'invalid\t')) for t in written)


def test_preference_pairs_from_a_tiny_lm_give_valid_chosen_and_invalid_rejected(lstm_run, monkeypatch, request):
  # The trained LSTM's output layer set to emit ')' or '\n' whatever it reads, each with probability 1/2:
  # a completion is k closing brackets then a newline (k geometric). No prompt parses alone (the builder's
  # rule), so a completion is valid iff the prompt plus k brackets is a complete line: prompts cut inside
  # a call or a subscript, for the right k.
  bias = np.full(256, -30.0, np.float32)
  bias[ord(')')], bias[ord('\n')] = np.log(0.5), np.log(0.5)
  load_trained = train.load_trained

  def spaces_and_newlines(workdir, *args, **kwargs):
    config, method, params = load_trained(workdir, *args, **kwargs)
    head = params['lm']['head']
    params['lm']['head'] = {'kernel': jnp.zeros_like(head['kernel']), 'bias': jnp.asarray(bias)}
    return config, method, params

  monkeypatch.setattr(train, 'load_trained', spaces_and_newlines)
  script = load_script()
  messages = []
  # Into the pipeline's data dir ($JAXGEN_DATA_DIR, set by conftest), where pysource_prompts already is.
  result = script.build_pairs(str(lstm_run), samples=4, max_prompts=40, batch_size=20, log=messages.append)
  name = result['name']
  assert name.startswith('syntax_pairs/lstm') and result['data_dir'] == data.data_dir(data_config())
  written = os.path.join(result['data_dir'], name)
  request.addfinalizer(lambda: shutil.rmtree(written, ignore_errors=True))  # the data dir outlives the test
  assert any(f"config.data.name = '{name}'" in m for m in messages)
  config = data_config(name)
  info = data.get_info(config)
  assert info.kind == 'pairs'
  for split in ('train', 'test'):
    stats = result['splits'][split]
    assert stats['prompts'] == 40 and stats['completions'] == 160
    assert 0 < stats['pairs'] == info.num_examples[split] <= 40
    batches = list(data.eval_batches(config, 16, split=split))
    real = np.concatenate([b['mask'] for b in batches]) > 0
    pairs = {k: np.concatenate([b[k] for b in batches])[real] for k in batches[0] if k != 'mask'}
    for i in range(len(pairs['x'])):
      prompt = bytes(pairs['x'][i].astype(np.uint8))
      chosen, rejected = (bytes(pairs[k][i].astype(np.uint8)) for k in ('chosen', 'rejected'))
      assert completion_valid(prompt, chosen) and not completion_valid(prompt, rejected)
      assert pairs['chosen_len'][i] == completion_length(chosen)
      assert pairs['rejected_len'][i] == completion_length(rejected)
      # What the output layer allows: closing brackets, then a newline (or none within 48 bytes).
      end = pairs['chosen_len'][i]
      assert chosen[:end] == b')' * (end - 1) + b'\n'
      assert line_parses(prompt + b')' * (end - 1)) and not line_parses(prompt)
      assert set(rejected[:pairs['rejected_len'][i] - 1]) <= {ord(')')}
    assert 0 < stats['valid_fraction'] < 1
  loader = data.TrainLoader(config, 4, seed=0)
  assert loader.batch(0)['chosen'].shape == (4, COMPLETION_BYTES)
  # The dataset's name: the run directory and a digest of (absolute path, step, settings), stable across calls.
  settings = dict(samples=4, max_prompts=40, batch_size=20, temperature=1.0, seed=0)
  assert name == 'syntax_pairs/' + script.dataset_config_name(str(lstm_run), 2, settings)
  config_name = name.split('/')[1]
  assert script.dataset_config_name(str(lstm_run), 3, settings) != config_name
  assert script.dataset_config_name(str(lstm_run), 2, dict(settings, seed=1)) != config_name
