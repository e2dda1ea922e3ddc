"""Analysis over every local device: rows split along their first axis.

The analysis runs row-parallel work: (clip, map) pairs to sonify, clips to
run forward. :func:`rows` runs such a function on every local device at once
(``jax.shard_map`` over a one-axis mesh, the way the trainer splits its
batches), each device on its share of the rows, the rest of the arguments
(the params, a batch of clips the pairs read) replicated. One code path: on
one device, or for one row, it is the function itself.

The rows are padded to a multiple of the devices used by repeating the last
row (its result is computed and dropped), and a call with fewer rows than
devices uses only as many devices as rows, so no device computes nothing
but padding. Each row's result does not depend on the split (the functions
are row-wise), so the output equals one device's to float32 rounding.

Hand-written: ``jax.shard_map`` splits arrays, but padding a ragged row count
to the mesh, choosing the mesh from the row count and keeping one compiled
program per (function, mesh, shapes) are this project's.

Rows that each read one of a batch of clips (the atlas's (clip, map) pairs)
go through :func:`grouped_rows`: the rows are ordered by the clip they read
and cut into one contiguous block per device, and each device receives only
the clips of its block, so no device traces a clip none of its rows reads
(with every clip replicated, each of 8 devices traced all 8 clips of a
batch: the cost of the split on CPU, docs/atlas_budget.md).

Across hosts each process runs :func:`rows` on its own devices with its own
share of the rows (``jax.local_devices()``): no collective, no global array.
"""
import contextlib
import functools
from typing import Any, Callable, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "rows"
# The devices a call without ``devices`` uses; None: every local device.
_DEFAULT_DEVICES: Optional[Tuple[Any, ...]] = None


@contextlib.contextmanager
def only(devices: Sequence[Any]):
  """Within the block, calls without ``devices`` use ``devices`` (e.g. one
  device, to compare with every device, or a benchmark's device count)."""
  global _DEFAULT_DEVICES
  saved, _DEFAULT_DEVICES = _DEFAULT_DEVICES, tuple(devices)
  try:
    yield
  finally:
    _DEFAULT_DEVICES = saved


def device_count() -> int:
  """How many devices :func:`rows` splits over (the block's, or every local
  one)."""
  return len(_DEFAULT_DEVICES or jax.local_devices())


def mesh_for(count: int, devices: Optional[Sequence[Any]] = None) -> Mesh:
  """A one-axis mesh over at most ``count`` of ``devices`` (default: those of
  :func:`only`, else every local device)."""
  if devices is None:
    devices = _DEFAULT_DEVICES or jax.local_devices()
  devices = list(devices)
  return Mesh(np.array(devices[:max(1, min(len(devices), count))]), (AXIS,))


def _pad_rows(a: jax.Array, rows: int) -> jax.Array:
  extra = rows - a.shape[0]
  if not extra:
    return a
  return jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)])


@functools.partial(jax.jit, static_argnums=(0, 1))
def _on_one_device(fn: Callable[..., Any],
                   static: Tuple[Tuple[str, Any], ...],
                   replicated: Tuple[Any, ...], split: Tuple[Any, ...]):
  return fn(*replicated, *split, **dict(static))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _on_mesh(fn: Callable[..., Any], static: Tuple[Tuple[str, Any], ...],
             mesh: Mesh, replicated: Tuple[Any, ...], split: Tuple[Any, ...]):
  kwargs = dict(static)

  def per_device(replicated, split):
    return fn(*replicated, *split, **kwargs)

  return jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(AXIS)),
                       out_specs=P(AXIS), check_vma=False)(replicated, split)


def rows(fn: Callable[..., Any], replicated: Tuple[Any, ...],
         split: Tuple[Any, ...], devices: Optional[Sequence[Any]] = None,
         **static: Any) -> Any:
  """``fn(*replicated, *split, **static)``, each device on its share of the
  rows of ``split`` (arrays sharing axis 0).

  ``fn`` must be row-wise (row ``i`` of its outputs depends on row ``i`` of
  ``split`` only) and hashable (a module-level function); ``static``
  hashable values. Returns ``fn``'s outputs (arrays or a tuple of them,
  each with the rows on axis 0). Called outside ``jax.jit`` (it compiles
  ``fn`` itself, once per function, mesh and shapes).
  """
  count = split[0].shape[0]
  mesh = mesh_for(count, devices)
  static = tuple(sorted(static.items()))
  if mesh.size == 1:
    # Placed on that device: arrays another call committed elsewhere (a
    # checkpoint's params on device 0) are moved, not refused.
    device = NamedSharding(mesh, P())
    return _on_one_device(fn, static, jax.device_put(tuple(replicated),
                                                     device),
                          jax.device_put(tuple(split), device))
  padded = -(-count // mesh.size) * mesh.size
  split = tuple(_pad_rows(jnp.asarray(a), padded) for a in split)
  out = _on_mesh(fn, static, mesh,
                 jax.device_put(tuple(replicated), NamedSharding(mesh, P())),
                 jax.device_put(split, NamedSharding(mesh, P(AXIS))))
  return jax.tree_util.tree_map(lambda a: a[:count], out)


def group_layout(group_of_row: np.ndarray, blocks: int
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """How :func:`grouped_rows` places rows that read groups on ``blocks``
  devices.

  Returns ``(row_take [blocks * Q], group_take [blocks * U], local
  [blocks * Q], inverse [rows])``: block ``d`` holds rows
  ``row_take[d*Q:(d+1)*Q]`` (ordered by group; the last row repeated as
  padding), the groups ``group_take[d*U:(d+1)*U]`` they read (the block's
  last repeated as padding) and, per row, its group's position ``local`` in
  its block's groups; ``out[inverse]`` puts the blocks' outputs back in row
  order.
  """
  group_of_row = np.asarray(group_of_row)
  count = group_of_row.shape[0]
  order = np.argsort(group_of_row, kind="stable")
  per_block = -(-count // blocks)
  row_take = np.concatenate([order, np.repeat(order[-1:],
                                              per_block * blocks - count)])
  groups, local = [], []
  for d in range(blocks):
    mine = group_of_row[row_take[d * per_block:(d + 1) * per_block]]
    unique = np.unique(mine)
    groups.append(unique)
    local.append(np.searchsorted(unique, mine))
  width = max(len(g) for g in groups)
  group_take = np.concatenate([np.concatenate(
      [g, np.repeat(g[-1:], width - len(g))]) for g in groups])
  inverse = np.empty(count, np.int64)
  inverse[order] = np.arange(count)
  return (row_take, group_take, np.concatenate(local).astype(np.int32),
          inverse)


def grouped_rows(fn: Callable[..., Any], replicated: Tuple[Any, ...],
                 groups: Tuple[Any, ...], group_of_row: Any,
                 split: Tuple[Any, ...],
                 devices: Optional[Sequence[Any]] = None,
                 **static: Any) -> Any:
  """``fn(*replicated, *groups, group_of_row, *split, **static)``, each
  device on a block of rows and only the groups (clips) they read.

  ``groups``: arrays (or None) whose axis 0 is the group; ``group_of_row``
  ``[rows]`` the group each row reads; ``split``: arrays sharing the rows'
  axis 0. ``fn`` must be row-wise given each row's group. Equal to
  ``rows(fn, replicated + groups, (group_of_row,) + split)`` (to float32
  rounding), without every device receiving every group.
  """
  group_of_row = np.asarray(group_of_row)
  count = group_of_row.shape[0]
  mesh = mesh_for(count, devices)
  if mesh.size == 1:
    return rows(fn, tuple(replicated) + tuple(groups),
                (group_of_row,) + tuple(split), devices, **static)
  row_take, group_take, local, inverse = group_layout(group_of_row,
                                                      mesh.size)
  # Gathered on the host and placed shard by shard (a gather on one device
  # would then be copied to every other).
  take = lambda a, index: None if a is None else np.asarray(a)[index]
  placed = (tuple(take(a, group_take) for a in groups) + (local,)
            + tuple(take(a, row_take) for a in split))
  out = _on_mesh(fn, tuple(sorted(static.items())), mesh,
                 jax.device_put(tuple(replicated), NamedSharding(mesh, P())),
                 jax.device_put(placed, NamedSharding(mesh, P(AXIS))))
  # Back in row order on the host: indexing the sharded array instead would
  # gather across the devices.
  return jax.tree_util.tree_map(lambda a: np.asarray(a)[inverse], out)
