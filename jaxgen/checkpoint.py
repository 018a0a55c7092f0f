"""A thin adapter over `orbax.checkpoint.CheckpointManager`.

Each checkpoint is a Composite of `state` (the TrainState, saved sharded) and
`meta` (JSON: the step and the config it was written with). Saves are async;
keep-last-N plus keep-every-K. Restores go into the *current* mesh's
shardings, so a checkpoint written on 8 devices restores on 1 and the reverse.
A checkpoint whose arrays do not match the current model is refused with one
message naming the mismatching arrays, before Orbax is asked to read it.
"""

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from jaxgen.errors import CheckpointError


def _leaf_name(path) -> str:
  return jax.tree_util.keystr(path, simple=True, separator='.')


def _target_shapes(abstract_state) -> dict:
  leaves = jax.tree_util.tree_flatten_with_path(abstract_state)[0]
  return {_leaf_name(path): tuple(leaf.shape) for path, leaf in leaves}


def _saved_shapes(tree_metadata) -> dict:
  is_array = lambda x: hasattr(x, 'shape') and hasattr(x, 'name')
  leaves = jax.tree_util.tree_leaves(tree_metadata, is_leaf=is_array)
  return {leaf.name: tuple(leaf.shape) for leaf in leaves if is_array(leaf)}


def describe_mismatch(saved: dict, target: dict, limit: int = 5) -> list:
  """Human-readable differences between saved and expected array shapes."""
  problems = []
  # Parameters first: they say most about which part of the model changed.
  for name in sorted(set(saved) | set(target), key=lambda n: (not n.startswith('params.'), n)):
    if name not in target:
      problems.append(f'{name} is in the checkpoint but not in the model')
    elif name not in saved:
      problems.append(f'{name} is in the model but not in the checkpoint')
    elif saved[name] != target[name]:
      problems.append(f'{name} has shape {saved[name]} in the checkpoint but {target[name]} in the model')
  if len(problems) > limit:
    problems = problems[:limit] + [f'... and {len(problems) - limit} more']
  return problems


class Checkpointer:
  """Save/restore TrainStates under WORKDIR/checkpoints."""

  def __init__(self, directory: str, keep: int = 3, keep_period: int = 0, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, keep_period=keep_period or None, enable_async_checkpointing=async_save)
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={'state': ocp.StandardCheckpointHandler(), 'meta': ocp.JsonCheckpointHandler()})

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, meta: dict, force: bool = False) -> bool:
    """Start an async save of `state` at `step` (returns at once; see wait())."""
    return self.manager.save(
        step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        force=force)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def restore(self, abstract_state: Any, shardings: Any, step: Optional[int] = None):
    """Restore (state, meta) at `step` (default latest) into `shardings`.

    Raises CheckpointError when the saved arrays do not match `abstract_state`.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f'No checkpoint in {self.directory}.')
    where = os.path.join(self.directory, str(step))
    try:
      saved = _saved_shapes(self.manager.item_metadata(step)['state'].tree)
    except Exception as e:  # unreadable metadata: a different format or a broken save
      raise CheckpointError(f'The checkpoint at {where} cannot be read ({type(e).__name__}: {e}). '
                            'Start a new run with another --workdir, or delete that step.') from None
    problems = describe_mismatch(saved, _target_shapes(abstract_state))
    if problems:
      raise CheckpointError(
          f'The checkpoint at {where} does not match this config\'s model:\n  - ' + '\n  - '.join(problems) +
          f'\nUse a new --workdir for this config, or rerun with the config the checkpoint was written '
          f'with ({os.path.join(os.path.dirname(self.directory), "config.json")}).')
    target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          abstract_state, shardings)
    restored = self.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    return restored['state'], restored['meta']

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
