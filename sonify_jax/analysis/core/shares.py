"""Analysis over every host: each process's share of the clips, and what the
processes exchange to give the result one process would.

A study run by ``jax.distributed`` processes (one per host, started the way
the trainer is: ``distributed.initialize_if_needed``) splits its clips among
them: process ``p`` of ``P`` takes the clips whose source index ``i`` has
``i % P == p`` (:class:`Share`), for the streaming top-k pass and for the
(clip, map) pairs it sonifies and writes. What is then merged is small and
exact: per layer, each process's top-k (``[maps, k]`` values and clip
indices: the global top-k is the top-k of their union, ties by the smaller
clip index as ``RunningTopK`` breaks them) and each process's index entries
(JSON). One code path: a single process is the case of one share, and
:func:`gather` is then the identity.

Hand-written: ``multihost_utils.process_allgather`` moves arrays of one
shape; sending JSON of any length (its length first, then the padded bytes)
and merging top-k tables are this project's.
"""
import dataclasses
import json
from typing import Any, Callable, List, Optional, Tuple

import jax
import numpy as np

from sonify_jax.analysis.core import common


@dataclasses.dataclass(frozen=True)
class Share:
  """Process ``index`` of ``count``: the clips with ``i % count == index``."""
  index: int = 0
  count: int = 1

  @classmethod
  def of_process(cls) -> "Share":
    return cls(jax.process_index(), jax.process_count())

  def owns(self, clip):
    """Whether ``clip`` (an index, or an array of them) is this share's."""
    return clip % self.count == self.index

  def clips_of(self, total: int) -> int:
    """How many of the first ``total`` clips are this share's."""
    return len(range(self.index, total, self.count))

  @property
  def chief(self) -> bool:
    return self.index == 0

  def suffix(self) -> str:
    """'' for one process, else '.pPPPofCCC' (a per-process file name)."""
    return "" if self.count == 1 else f".p{self.index:03d}of{self.count:03d}"


def _allgather(array: np.ndarray) -> np.ndarray:
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return np.asarray(multihost_utils.process_allgather(array))


def gather(value: Any, share: Share) -> List[Any]:
  """Every process's ``value`` (JSON-serialisable), in process order; every
  process must call it at the same point."""
  if share.count == 1:
    return [value]
  data = np.frombuffer(json.dumps(value).encode(), np.uint8)
  lengths = _allgather(np.array([data.size], np.int32))[:, 0]
  padded = np.zeros(int(lengths.max()), np.uint8)
  padded[:data.size] = data
  rows = _allgather(padded)
  return [json.loads(bytes(row[:n]).decode()) for row, n in zip(rows, lengths)]


def in_clip_order(keys: np.ndarray, rows: Optional[np.ndarray], share: Share
                  ) -> Tuple[np.ndarray, np.ndarray]:
  """Every process's rows, sorted by key: ``(all keys, all rows)``.

  ``rows[j]`` belongs to ``keys[j]`` (e.g. the clip indices a process
  streamed); keys are distinct across processes. Rows have the same
  trailing shape and dtype in every process that has any (``rows`` may be
  None where ``keys`` is empty). Every process must call this at the same
  point; what it derives from the result is what one process would derive
  from its rows in key order. Rows are None when no process has any.
  """
  keys = np.asarray(keys, np.int64).reshape(-1)
  if share.count == 1:
    if not keys.size and rows is None:
      return keys, None
    order = np.argsort(keys, kind="stable")
    return keys[order], np.asarray(rows)[order]
  part = np.asarray(rows) if keys.size else None
  # A process with no rows does not know the rows' shape: ask the others.
  kinds = gather(None if part is None else [list(part.shape[1:]),
                                            part.dtype.str], share)
  known = [k for k in kinds if k is not None]
  if not known:
    return np.zeros(0, np.int64), None
  tail, dtype = tuple(known[0][0]), np.dtype(known[0][1])
  counts = _allgather(np.array([keys.size], np.int32))[:, 0]
  width = int(counts.max())
  padded = np.zeros((width, *tail), dtype)
  padded_keys = np.full(width, -1, np.int64)
  if part is not None:
    padded[:len(part)] = part
    padded_keys[:keys.size] = keys
  # As bytes: the collectives would narrow float64 and int64 to 32 bits.
  every_row = _allgather(padded.reshape(width, -1).view(np.uint8))
  every_key = _allgather(padded_keys.view(np.uint8)[None])[:, 0]
  all_keys = np.concatenate([every_key[p].view(np.int64)[:n]
                             for p, n in enumerate(counts)])
  all_rows = np.concatenate([every_row[p, :n].view(dtype).reshape(-1, *tail)
                             for p, n in enumerate(counts)])
  order = np.argsort(all_keys, kind="stable")
  return all_keys[order], all_rows[order]


def split_rows(compute: Callable[[np.ndarray], np.ndarray],
               owners: np.ndarray, share: Share) -> np.ndarray:
  """``compute`` of every row, each process computing only its own rows.

  ``owners[r]`` is the clip row ``r`` belongs to (a process owns a clip as
  :meth:`Share.owns` says); ``compute(indices)`` returns one array row per
  index (the same trailing shape and dtype for any indices). Every process
  gets the whole ``[len(owners), ...]`` array in row order, so what it
  derives from it is what one process would derive; every process must call
  this at the same point. A process that owns no row computes nothing.
  """
  owners = np.asarray(owners)
  if share.count == 1 or not owners.size:
    return np.asarray(compute(np.arange(owners.size)))
  mine = np.flatnonzero(share.owns(owners))
  _, rows = in_clip_order(mine, compute(mine) if mine.size else None, share)
  return rows


def sonify_pairs(params, clips: np.ndarray, maps: np.ndarray, layer: int,
                 arch, batch_size: int, share: Share,
                 owners: Optional[np.ndarray] = None, **options) -> np.ndarray:
  """``common.sonify_pairs`` of every (clip, map) pair, each process
  sonifying the pairs whose clip it owns (``owners[p]``, default ``p``:
  the pairs' clips are rows of ``clips``)."""
  clips, maps = np.asarray(clips), np.asarray(maps)
  owners = np.arange(len(clips)) if owners is None else owners
  return split_rows(lambda own: common.sonify_pairs(
      params, clips[own], maps[own], layer, arch, batch_size, **options),
                    owners, share)


def merge_topk(top: common.RunningTopK, share: Share) -> common.RunningTopK:
  """The global top-k from each process's top-k of its own clips."""
  if share.count == 1:
    return top
  # float32 carries the activations exactly (they are float32 outputs);
  # -inf marks an empty slot.
  values = _allgather(top.values.astype(np.float32))     # [P, maps, k]
  indices = _allgather(top.indices.astype(np.int32))
  merged = common.RunningTopK(top.values.shape[0], top.k)
  merged.merge(np.concatenate(values, axis=1), np.concatenate(indices, axis=1))
  return merged
