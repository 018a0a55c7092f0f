"""The device mesh and how arrays are laid out on it.

One mesh over the axes ('data', 'fsdp', 'tensor') for every family. Batches are
split over ('data', 'fsdp'); parameters carry logical axis names
(`nn.with_logical_partitioning`) that `config.mesh.rules` maps to mesh axes, so
the same model runs data-parallel, FSDP or tensor-parallel by changing config.
"""

import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from jaxgen.errors import ConfigError

AXES = ('data', 'fsdp', 'tensor')
BATCH_AXES = ('data', 'fsdp')


def mesh_shape(mesh_config, num_devices: int) -> tuple:
  """Resolve config.mesh sizes (-1 = the rest of the devices) to a full shape."""
  sizes = [int(mesh_config[a]) for a in AXES]
  if sizes.count(-1) > 1:
    raise ConfigError(f'config.mesh: at most one of data/fsdp/tensor may be -1, got {dict(zip(AXES, sizes))}.')
  known = math.prod(s for s in sizes if s != -1)
  if known <= 0 or num_devices % known:
    raise ConfigError(f'config.mesh {dict(zip(AXES, sizes))} does not divide the {num_devices} available devices.')
  sizes = [num_devices // known if s == -1 else s for s in sizes]
  if math.prod(sizes) != num_devices:
    raise ConfigError(f'config.mesh {dict(zip(AXES, sizes))} uses {math.prod(sizes)} devices, '
                      f'but {num_devices} are available; set one axis to -1.')
  return tuple(sizes)


def make_mesh(mesh_config, devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """The ('data', 'fsdp', 'tensor') mesh over `devices` (default: all devices of all processes)."""
  devices = list(devices) if devices is not None else jax.devices()
  shape = mesh_shape(mesh_config, len(devices))
  return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over data x fsdp, replicated over tensor."""
  return NamedSharding(mesh, P(BATCH_AXES))


def batch_shards(mesh: Mesh) -> int:
  """How many pieces a batch is cut into: the batch axes' devices, and at least one per process."""
  return math.lcm(math.prod(mesh.shape[a] for a in BATCH_AXES), jax.process_count())


def round_up_to_shards(size: int, mesh: Mesh) -> int:
  """The smallest multiple of batch_shards(mesh) >= size: an evaluation batch every mesh can split."""
  shards = batch_shards(mesh)
  return -(-size // shards) * shards


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def _mesh_axes_for(logical_spec, shape, mesh: Mesh, rules: dict) -> P:
  """Map one leaf's logical names to mesh axes; a dim not divisible stays replicated."""
  axes = []
  used = set()
  for name, dim in zip(tuple(logical_spec) + (None,) * (len(shape) - len(logical_spec)), shape):
    target = rules.get(name) if name is not None else None
    mesh_axes = (target,) if isinstance(target, str) else tuple(target or ())
    mesh_axes = tuple(a for a in mesh_axes if a not in used and mesh.shape[a] > 1)
    size = math.prod(mesh.shape[a] for a in mesh_axes)
    if not mesh_axes or dim % size:
      axes.append(None)
      continue
    used.update(mesh_axes)
    axes.append(mesh_axes[0] if len(mesh_axes) == 1 else mesh_axes)
  return P(*axes)


def state_shardings(abstract_state, mesh: Mesh, rules):
  """NamedShardings for a (possibly boxed) abstract state, from its logical axis names.

  Leaves without logical names are replicated. Returns a tree shaped like the
  *unboxed* state, ready for `jit(..., out_shardings=...)`.
  """
  rules = dict(rules)
  logical = nn.get_partition_spec(abstract_state)
  shapes = nn.unbox(abstract_state)
  return jax.tree.map(
      lambda spec, leaf: NamedSharding(mesh, _mesh_axes_for(spec, np.shape(leaf), mesh, rules)),
      logical, shapes, is_leaf=lambda x: isinstance(x, P))


def shard_batch(local_batch: dict, mesh: Mesh) -> dict:
  """Global arrays from this process's share of a batch, split over the batch axes.

  Each process passes only the examples it read; the global batch is their
  concatenation in process order (see jaxgen.data.TrainLoader).
  """
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}


def to_host(x) -> np.ndarray:
  """A numpy copy of a replicated or fully addressable array, on every process."""
  if getattr(x, 'is_fully_addressable', True):
    return np.asarray(x)
  if not x.is_fully_replicated:
    raise ValueError('to_host needs a fully addressable or fully replicated array.')
  return np.asarray(x.addressable_data(0))


def gather_to_host(x) -> np.ndarray:
  """The whole of a (possibly multi-host, batch-sharded) array as numpy, on every process."""
  if getattr(x, 'is_fully_addressable', True) or x.is_fully_replicated:
    return to_host(x)
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))
