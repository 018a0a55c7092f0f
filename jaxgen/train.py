"""The one train loop for every family (no per-family forks).

init or resume -> jitted, sharded step -> periodic log / eval / checkpoint.

* The state is initialised straight into its shardings: `eval_shape(init)`
  gives the abstract (logically annotated) state, `state_shardings` maps it to
  the mesh, and `jit(init, out_shardings=...)` materialises each shard where it
  lives, so full parameters never sit on one host.
* The step is `jit(method.train_step + step count + EMA, donate_argnums=0)`,
  compiled ahead of time so its compile time is measured and logged at step 0.
* Metrics stay on the device until the log cadence; then they are fetched in
  one transfer, checked for NaN/Inf, averaged and written.
* A workdir with a checkpoint resumes from it; the batch for step k depends
  only on (seed, k, process), so a resumed run is bit-for-bit the uninterrupted one.
* SIGTERM (preemption) saves a checkpoint at the current step and exits cleanly.
"""

import dataclasses
import json
import math
import os
import signal
import threading
import time
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils

from jaxgen import data, evals, methods
from jaxgen.checkpoint import Checkpointer
from jaxgen.core import config as config_lib
from jaxgen.core.mesh import batch_shards, batch_sharding, make_mesh, replicated, shard_batch, state_shardings, to_host
from jaxgen.data.tokenizers import save_tokenizer
from jaxgen.errors import CheckpointError, ConfigError, NonFiniteError
from jaxgen.logging import MetricWriter, ProgressBar


@dataclasses.dataclass
class Run:
  """Everything a run needs, built once by `setup`."""
  config: Any
  workdir: str
  mesh: Any
  info: Any
  method: Any
  loader: Any
  shardings: Any
  state: Any
  checkpointer: Checkpointer
  writer: MetricWriter
  evaluators: dict
  is_main: bool
  resumed: bool


def _param_count(params) -> int:
  return int(sum(math.prod(np.shape(x)) for x in jax.tree.leaves(params)))


def _check_batch_size(config, mesh) -> None:
  """The training batch must split evenly (evaluation batches are rounded up and padded instead)."""
  size, shards = int(config.train.batch_size), batch_shards(mesh)
  if size % shards:
    raise ConfigError(f'config.train.batch_size={size} must be divisible by {shards}: the batch is split over '
                      f'the mesh data x fsdp axes ({dict(mesh.shape)}) and {jax.process_count()} process(es).')


def setup(config, workdir: str, devices: Optional[Sequence[jax.Device]] = None, restore: bool = True,
          eval_names=None, record_config: bool = True) -> Run:
  """Build mesh, data, method, state (fresh or restored), checkpointer, writer and evaluators (all, or `eval_names`).

  With `record_config` (training) the config is written to WORKDIR/config.json; evaluation passes
  False, so that the file keeps recording how the run was trained.
  """
  config_lib.validate(config)
  workdir = os.path.abspath(workdir)
  is_main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)

  mesh = make_mesh(config.mesh, devices)
  _check_batch_size(config, mesh)
  loader = data.TrainLoader(config.data, config.train.batch_size, config.train.seed,
                            jax.process_index(), jax.process_count())
  info = loader.info
  method = methods.get(config.method.name)(config, info)

  rng = jax.random.PRNGKey(config.train.seed)
  example = shard_batch(loader.batch(0), mesh)
  abstract = jax.eval_shape(method.init, rng, example)
  shardings = state_shardings(abstract, mesh, config.mesh.rules)
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'), keep=config.train.keep_checkpoints,
                              keep_period=config.train.keep_period)
  resumed = restore and checkpointer.latest_step() is not None
  if resumed:
    state, _ = checkpointer.restore(nn.unbox(abstract), shardings)
  else:
    init = jax.jit(lambda r, b: nn.unbox(method.init(r, b)), out_shardings=shardings)
    state = init(rng, example)
    sources = init_sources(method, config)
    if sources:
      state = init_from(state, sources, mesh, shardings)

  if is_main and record_config:  # written after a successful restore, so a mismatch keeps the old config.json
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))
    if info.tokenizer is not None:  # text: the tokenizer that sampling and evaluation decode with
      save_tokenizer(info.tokenizer, workdir)
  writer = MetricWriter(workdir, enabled=is_main)
  ctx = evals.EvalContext(method=method, config=config, info=info, mesh=mesh, workdir=workdir, is_main=is_main)
  return Run(config=config, workdir=workdir, mesh=mesh, info=info, method=method, loader=loader,
             shardings=shardings, state=state, checkpointer=checkpointer, writer=writer,
             evaluators=evals.build_all(config, ctx, eval_names), is_main=is_main, resumed=resumed)


def _graft(tree, source: dict, shardings, what: str):
  """`tree` with every leaf whose key path is in `source` (path -> array) replaced by a copy of that
  array placed with its sharding in `shardings`; ConfigError on a shape mismatch. Returns (tree, leaves
  replaced). A copy, never an alias: one source array may fill several leaves (a DPO policy and its
  frozen reference, params and their EMA), and the jitted train step donates the state's buffers."""
  paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
  target_shardings = jax.tree.leaves(shardings)
  replaced, out = 0, []
  for (path, leaf), sharding in zip(paths_leaves, target_shardings):
    key = jax.tree_util.keystr(path)
    if key in source:
      if np.shape(source[key]) != np.shape(leaf):
        raise ConfigError(f'config.init_from: {what}{key} has shape {np.shape(source[key])} in the pretrained run '
                          f'but {np.shape(leaf)} here; the architectures differ (compare the two config.json).')
      leaf = jax.device_put(source[key], sharding, may_alias=False)
      replaced += 1
    out.append(leaf)
  return jax.tree_util.tree_unflatten(treedef, out), replaced


def init_sources(method, config) -> list:
  """[(params entry or None for all params, workdir, entry of that run's params or None)]: the runs a
  fresh state starts from. Default: all parameters from config.init_from; a method may name several
  (a DPO policy and its frozen reference from one run, a PPO reward model from another)."""
  if hasattr(method, 'init_sources'):
    return [source for source in method.init_sources() if source[1]]
  return [(None, config.init_from, None)] if config.get('init_from') else []


def init_from(state, sources, mesh, shardings):
  """A fresh `state` whose parameters (and EMA copy) start from the trained parameters of other runs
  (`sources` from init_sources; each run's latest checkpoint, not its EMA copy): fine-tuning. Leaves
  are matched by key path; leaves only this run has (LoRA adapters, a new head) keep their
  initialisation, and the optimizer state starts fresh. ConfigError when no parameter of a source
  matches, or a shape differs."""
  loaded = {}
  for target, workdir, source_key in sources:
    if workdir not in loaded:
      loaded[workdir] = load_trained(workdir, mesh, final_params=True)[2]
    source_params = loaded[workdir][source_key] if source_key else loaded[workdir]
    source = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(source_params)[0]}
    trees = {'params': (state.params, shardings.params), 'ema_params': (state.ema_params, shardings.ema_params)}
    for field, (tree, tree_shardings) in trees.items():
      if tree is None:
        continue
      if target is None:
        tree, replaced = _graft(tree, source, tree_shardings, field)
      else:
        part, replaced = _graft(tree[target], source, tree_shardings[target], f'{field}[{target!r}]')
        tree = dict(tree, **{target: part})
      if field == 'params' and not replaced:
        raise ConfigError(f'init_from {workdir!r}: none of its parameters{f"[{source_key!r}]" if source_key else ""} '
                          f"has a key path of this run's parameters{f'[{target!r}]' if target else ''}; it is a "
                          'different family or network.')
      state = state.replace(**{field: tree})
  return state


def update_ema(ema, params, ema_decay: float, copy_keys=()):
  """The EMA parameters after one step: ema <- decay * ema + (1 - decay) * params.

  When `ema` is a dict it may hold a subset of the keys of `params` (a GAN averages its generator,
  not its discriminator); keys in `copy_keys` are copied from params instead of averaged
  (non-trainable state such as BatchNorm statistics, as StyleGAN copies buffers).
  """
  if isinstance(ema, dict) and isinstance(params, dict):
    return {k: params[k] if k in copy_keys else optax.incremental_update(params[k], ema[k], 1.0 - ema_decay)
            for k in ema}
  return optax.incremental_update(params, ema, 1.0 - ema_decay)


def make_step_fn(method, ema_decay: float):
  """method.train_step plus what every family shares: the step count and the EMA update."""
  copy_keys = tuple(getattr(method, 'ema_copy_keys', ()))

  def step_fn(state, batch):
    new_state, metrics = method.train_step(state, batch)
    new_state = new_state.replace(step=state.step + 1)
    if ema_decay > 0:
      new_state = new_state.replace(ema_params=update_ema(state.ema_params, new_state.params, ema_decay, copy_keys))
    return new_state, metrics

  return step_fn


def jit_step(run: Run):
  """make_step_fn of the run's method, jitted with the run's state shardings and a batch sharded over
  the mesh's batch axes; the input state is donated."""
  return jax.jit(make_step_fn(run.method, float(run.config.train.ema_decay)),
                 in_shardings=(run.shardings, batch_sharding(run.mesh)),
                 out_shardings=(run.shardings, replicated(run.mesh)), donate_argnums=0)


class _Preemption:
  """Turns SIGTERM into a flag the loop polls; on several processes JAX's sync point does this."""

  def __init__(self):
    self.requested = False
    self._previous = None
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    self.requested = True

  def should_stop(self, step: int) -> bool:
    if jax.process_count() > 1:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.requested

  def restore(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class _MetricBuffer:
  """Per-step device metrics kept until the log cadence, then fetched in one transfer.

  `add` waits for the step `max_in_flight` steps back, so the host never runs
  unboundedly ahead of the devices (the devices still have that many steps
  queued, so they do not idle). Unbounded queues of collective programs can
  stall XLA's virtual CPU devices, and they hide where time goes.
  """

  def __init__(self, max_in_flight: int = 2):
    self.pending = []
    self.max_in_flight = max_in_flight

  def add(self, step: int, metrics) -> None:
    self.pending.append((step, metrics))
    if len(self.pending) > self.max_in_flight:
      jax.block_until_ready(self.pending[-1 - self.max_in_flight][1])

  def flush(self, last_checkpoint: str) -> Optional[dict]:
    """Fetch, check every step's metrics for NaN/Inf, and return their means (None if empty)."""
    if not self.pending:
      return None
    fetched = jax.tree.map(to_host, [m for _, m in self.pending])
    for (step, _), values in zip(self.pending, fetched):
      bad = {k: float(v) for k, v in values.items() if not np.all(np.isfinite(v))}
      if bad:
        name, value = next(iter(bad.items()))
        raise NonFiniteError(
            f'Training diverged: {name} = {value} at step {step}. {last_checkpoint} '
            'Lower config.optim.lr or set config.optim.grad_clip (e.g. 1.0) and rerun the same command.')
    self.pending = []
    return {k: float(np.mean([v[k] for v in fetched])) for k in fetched[0]}


def _checkpoint_note(checkpointer: Checkpointer) -> str:
  checkpointer.wait()
  step = checkpointer.latest_step()
  if step is None:
    return 'There is no checkpoint yet; a rerun starts from scratch.'
  return f'The last good checkpoint is step {step} in {checkpointer.directory}; rerunning resumes from it.'


def _meta(run: Run, step: int) -> dict:
  return {'step': int(step), 'method': run.config.method.name, 'data': run.config.data.name}


def run_evaluators(run: Run, step: int, names=None) -> dict:
  """Run the evaluators (all, or `names`) on the current state; write and return their metrics."""
  metrics = {}
  for name, (_, evaluator) in run.evaluators.items():
    if names is None or name in names:
      metrics.update(evaluator(run.state, step))
  run.writer.write(step, 'eval', metrics)
  return metrics


def _evaluate_and_report(run: Run, progress, step: int, names=None) -> None:
  """run_evaluators, then one progress line with the metrics."""
  metrics = run_evaluators(run, step, names)
  if metrics:
    progress.write(f'step {step}: ' + ', '.join(f'{k}={v:.4g}' for k, v in metrics.items()))


def train_and_evaluate(config, workdir: str, devices: Optional[Sequence[jax.Device]] = None):
  """Train `config` in `workdir` (resuming if it holds a checkpoint); returns the final TrainState."""
  run = setup(config, workdir, devices)
  cfg = config.train
  start = int(to_host(run.state.step))
  total = int(cfg.steps)
  step_fn = jit_step(run)
  batches = run.loader.iterate(start)
  preemption = _Preemption()
  progress = ProgressBar(start, total, cfg.batch_size, enabled=run.is_main)
  buffer = _MetricBuffer()
  step = start
  try:
    if step < total:
      first = shard_batch(next(batches), run.mesh)
      t0 = time.perf_counter()
      compiled = step_fn.lower(run.state, first).compile()
      compile_seconds = time.perf_counter() - t0
      if not run.resumed:
        run.writer.write(0, 'train', {'param_count': _param_count(run.state.params),
                                      'compile_seconds': compile_seconds})
      progress.write(f'{"Resumed at" if run.resumed else "Starting at"} step {step}/{total}; '
                     f'{_param_count(run.state.params):,} parameters; step compiled in {compile_seconds:.1f}s; '
                     f'mesh {dict(run.mesh.shape)}.')
      if cfg.eval_at_start and not run.resumed:  # the starting point's numbers (fine-tuning: before)
        _evaluate_and_report(run, progress, step)
      batch = first
      while step < total:
        run.state, metrics = compiled(run.state, batch)
        step += 1
        buffer.add(step, metrics)
        stop = preemption.should_stop(step)
        due_eval = [n for n, (every, _) in run.evaluators.items() if step % every == 0 or step == total]
        if step % cfg.log_every == 0 or step == total or stop or due_eval or step % cfg.checkpoint_every == 0:
          means = buffer.flush(_checkpoint_note(run.checkpointer))
          if step % cfg.log_every == 0 or step == total or stop:
            means.update(progress.update(step, means.get('loss')))
            run.writer.write(step, 'train', means)
        if step % cfg.checkpoint_every == 0 or step == total or stop:
          run.checkpointer.save(step, run.state, _meta(run, step), force=stop)
        if stop:
          run.checkpointer.wait()
          progress.write(f'Preempted (SIGTERM) at step {step}: checkpoint saved in '
                         f'{run.checkpointer.directory}; rerun the same command to resume.')
          break
        if due_eval:
          _evaluate_and_report(run, progress, step, due_eval)
        if step < total:
          batch = shard_batch(next(batches), run.mesh)
  finally:
    preemption.restore()
    run.loader.close()
    progress.close()
    run.checkpointer.close()
    run.writer.close()
  return run.state


def evaluate(config, workdir: str, names=None) -> dict:
  """--mode=eval / sample: restore the latest checkpoint and run the evaluators on it."""
  run = setup(config, workdir, eval_names=names, record_config=False)
  try:
    if not run.resumed:
      raise CheckpointError(f'No checkpoint in {run.checkpointer.directory}: train first '
                            f'(the same command with --mode=train).')
    step = int(to_host(run.state.step))
    return run_evaluators(run, step, names)
  finally:
    run.checkpointer.close()
    run.writer.close()


def write_run_info(workdir: str, config_spec: str, argv) -> None:
  """WORKDIR/run.json: the config file (and variant) and the command line that trained the run.

  config.json holds the resolved values; run.json says where they came from, for
  the leaderboard and for rerunning. Rewritten by each training invocation.
  """
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'run.json'), 'w') as f:
    json.dump({'config': config_spec, 'argv': list(argv)}, f, indent=2)


def load_trained(workdir: str, mesh=None, final_params: bool = False):
  """(config, method, eval params) of the finished run in `workdir`, restored onto `mesh`;
  with `final_params`, the last trained parameters instead of their EMA copy.

  Reads WORKDIR/config.json and the latest checkpoint; used to load a run as a
  tool of another one (e.g. the classifier behind sample-quality features).
  `mesh` defaults to one over all devices built from the run's config.mesh.
  """
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise CheckpointError(f'{workdir} holds no jaxgen run (no config.json): train one there first.')
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  mesh = mesh or make_mesh(config.mesh)
  info = data.get_info(config.data)
  method = methods.get(config.method.name)(config, info)
  x_dtype = np.int32 if info.kind == 'text' else np.float32
  example = {'x': jax.ShapeDtypeStruct((batch_shards(mesh),) + tuple(info.shape), x_dtype)}
  if info.num_classes:
    example['label'] = jax.ShapeDtypeStruct((batch_shards(mesh),), np.int32)
  abstract = jax.eval_shape(method.init, jax.random.PRNGKey(0), example)
  shardings = state_shardings(abstract, mesh, config.mesh.rules)
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'), async_save=False)
  try:
    if checkpointer.latest_step() is None:
      raise CheckpointError(f'No checkpoint in {checkpointer.directory}: train the run in {workdir} first.')
    state, _ = checkpointer.restore(nn.unbox(abstract), shardings)
  finally:
    checkpointer.close()
  return config, method, (state.params if final_params else state.eval_params())
