"""Host-side input pipeline: crops, batches, shuffling, sharding, prefetch.

Training (``train_batches``) is an endless stream of global batches that is a
pure function of ``(seed, step)``:

* sample position ``p = step * global_batch_size + row`` belongs to epoch
  ``p // N`` (N clips) and reads clip ``perm_epoch[p % N]``, where
  ``perm_epoch`` is a permutation seeded by ``(seed, epoch)`` -- every clip
  once per epoch, a fresh order each epoch;
* the crop offsets of row ``row`` of step ``step`` come from a generator
  seeded by ``(seed, step, row)``.

So a run resumed at ``start_step`` sees exactly the batches an uninterrupted
run would, and each of ``process_count`` processes computes its own rows
``[process_index * B_local, (process_index + 1) * B_local)`` of every global
batch without talking to the others (disjoint shards whose union is the
global batch).

Crops. ``num_crops`` crops of ``crop_samples`` samples are cut from one clip
without overlap (SimCLR uses two). A clip of ``L >= num_crops * crop_samples``
samples gives crops at uniformly random non-overlapping positions (in random
order). A shorter clip is cut into ``num_crops`` consecutive pieces of
``L // num_crops`` samples each (still disjoint; trailing ``L % num_crops``
samples are dropped) and each piece is placed at a random offset inside an
otherwise zero crop -- zero-padding, at a random place so that the padding is
not always at the end.
With ``disjoint=False`` each crop is placed independently (uniform over the
clip, so two crops may overlap; a clip shorter than a crop is placed whole at
a random offset in a zero crop): two views of the same moment, as image
SimCLR takes two random crops of one picture.

Bad input. Non-finite samples (NaN/Inf) are replaced by zeros, counted in
``stats.nonfinite_clips`` and logged (a few times). Silent clips pass
through (the augmentations guard against them) and are counted. A clip whose
``source[i]`` raises ``AudioReadError`` is reported once, remembered, and
deterministically replaced by the next readable clip in source order.

Evaluation (``eval_batches``) yields whole clips in source order, zero-padded
to the longest clip of the batch, with a mask and a ``valid`` flag for the
padding rows of the last batch (and for unreadable clips, which evaluation
never replaces).

Both iterators decode in a background thread into a bounded queue, so
decoding overlaps the device. ``train_batches`` can spread each batch over
reader threads (cheap, but the GIL caps them at about 1-2k clips/s) or
spawned worker processes (scale with cores); the batches are the same either
way. Close the iterators (``close()`` or ``with``) to stop their threads and
workers early. ``shard_for_devices`` puts a host batch onto a 1-D 'data'
mesh.
"""
import dataclasses
import functools
import multiprocessing
import queue
import threading
from concurrent import futures
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from absl import logging
import numpy as np

from sonify_jax.audio_io import AudioReadError
from sonify_jax.data.sources import ClipSource

Batch = Dict[str, np.ndarray]

# Stream tags keep the shuffling and cropping generators independent.
_SHUFFLE_STREAM = 1
_CROP_STREAM = 2
_MAX_WARNINGS = 5


@dataclasses.dataclass
class PipelineStats:
  """What the pipeline met on the way (counted per clip read)."""
  clips_read: int = 0
  nonfinite_clips: int = 0
  silent_clips: int = 0
  short_clips: int = 0
  unreadable: Dict[int, str] = dataclasses.field(default_factory=dict)

  def merge(self, other: "PipelineStats") -> None:
    """Adds another process's counts (worker processes report theirs)."""
    self.clips_read += other.clips_read
    self.nonfinite_clips += other.nonfinite_clips
    self.silent_clips += other.silent_clips
    self.short_clips += other.short_clips
    self.unreadable.update(other.unreadable)

  def summary(self) -> str:
    return (f"{self.clips_read} clips read, {self.nonfinite_clips} with "
            f"NaN/Inf (zeroed), {self.silent_clips} silent, "
            f"{self.short_clips} shorter than the crops (zero-padded), "
            f"{len(self.unreadable)} unreadable (skipped)")


class _Reader:
  """Reads clips from a source, cleaning and reporting bad input."""

  def __init__(self, source: ClipSource, stats: PipelineStats):
    self.source = source
    self.stats = stats
    self.lock = threading.Lock()
    self._warnings = 0

  def _warn(self, msg: str, *args) -> None:
    with self.lock:
      self._warnings += 1
      if self._warnings <= _MAX_WARNINGS:
        logging.warning(msg, *args)
      elif self._warnings == _MAX_WARNINGS + 1:
        logging.warning("further input warnings suppressed; see stats")

  def read(self, index: int) -> Dict[str, Any]:
    """``source[index]`` with finite float32 audio; skips unreadable clips."""
    n = len(self.source)
    for attempt in range(n):
      i = (index + attempt) % n
      if i in self.stats.unreadable:
        continue
      try:
        example = self.source[i]
      except AudioReadError as error:
        with self.lock:
          self.stats.unreadable[i] = str(error)
        self._warn("skipping unreadable clip %d: %s", i, error)
        continue
      return self._clean(i, example)
    raise AudioReadError(f"none of the {n} clips of {self.source.name!r} "
                         "could be read")

  def _clean(self, index: int, example) -> Dict[str, Any]:
    audio = np.asarray(example["audio"], np.float32)
    if audio.ndim != 1:
      raise ValueError(f"clip {index} of {self.source.name!r}: audio must be "
                       f"[time], got shape {audio.shape}")
    finite = np.isfinite(audio)
    nonfinite = not finite.all()
    if nonfinite:
      audio = np.where(finite, audio, np.float32(0))
      self._warn("clip %d (%s): %d NaN/Inf samples replaced by zeros",
                 index, example.get("id", "?"), int((~finite).sum()))
    silent = not np.any(audio)
    with self.lock:
      self.stats.clips_read += 1
      self.stats.nonfinite_clips += int(nonfinite)
      self.stats.silent_clips += int(silent)
    return {"audio": audio, "label": example["label"], "index": index}


class _Prefetcher:
  """Runs ``produce(i)`` for i = 0, 1, ... in a thread into a bounded queue.

  ``produce`` returns the next item or raises StopIteration; exceptions are
  re-raised in the consumer.
  """
  _DONE = object()

  def __init__(self, produce: Callable[[int], Any], buffer_size: int):
    if buffer_size < 1:
      raise ValueError(f"prefetch buffer must be >= 1, got {buffer_size}")
    self._produce = produce
    self._queue = queue.Queue(maxsize=buffer_size)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True,
                                    name="sonify_jax-input")
    self._finished = False
    self._thread.start()

  def _put(self, item) -> bool:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _run(self):
    i = 0
    try:
      while not self._stop.is_set():
        try:
          item = self._produce(i)
        except StopIteration:
          break
        if not self._put((True, item)):
          return
        i += 1
    except BaseException as error:  # pylint: disable=broad-except
      self._put((False, error))
      return
    self._put((True, self._DONE))

  def __iter__(self):
    return self

  def __next__(self):
    if self._finished:
      raise StopIteration
    while True:
      try:
        ok, item = self._queue.get(timeout=0.5)
        break
      except queue.Empty:
        # Closed, or the thread is gone without a word: never block forever.
        if self._stop.is_set() or not self._thread.is_alive():
          self._finished = True
          raise StopIteration from None
    if not ok:
      self._finished = True
      self.close()
      raise item
    if item is self._DONE:
      self._finished = True
      raise StopIteration
    return item

  def close(self):
    self._stop.set()
    if threading.current_thread() is not self._thread:
      self._thread.join(timeout=10)


class BatchIterator(Iterator[Batch]):
  """An iterator over batches with ``stats``, ``close()`` and ``with``."""

  def __init__(self, produce: Callable[[int], Batch], prefetch: int,
               stats: PipelineStats, pool=None):
    self.stats = stats
    self._pool = pool
    if prefetch > 0:
      self._prefetcher = _Prefetcher(produce, prefetch)
      self._next = self._prefetcher.__next__
    else:
      self._prefetcher = None
      counter = iter(range(2 ** 62))
      self._next = lambda: produce(next(counter))

  def __next__(self) -> Batch:
    return self._next()

  def __iter__(self):
    return self

  def close(self) -> None:
    if self._prefetcher is not None:
      self._prefetcher.close()
    if self._pool is not None:
      # After the prefetch thread is joined nothing is in flight, so waiting
      # is quick and leaves no worker process behind.
      self._pool.shutdown(wait=True, cancel_futures=True)
      self._pool = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass


# ---------------------------------------------------------------------- crops
def crop_offsets(rng: np.random.Generator, length: int, crop_samples: int,
                 num_crops: int, disjoint: bool = True) -> List[tuple]:
  """Where to cut ``num_crops`` crops from a clip of ``length``.

  Returns one ``(clip_start, crop_start, size)`` per crop: samples
  ``clip[clip_start:clip_start + size]`` go to
  ``crop[crop_start:crop_start + size]`` (the rest of the crop is zero).
  The crops are disjoint unless ``disjoint=False`` (then each is drawn
  independently). See the module docstring for the rule.
  """
  if not disjoint:
    size = min(length, crop_samples)
    starts = rng.integers(0, length - size + 1, size=num_crops)
    ats = rng.integers(0, crop_samples - size + 1, size=num_crops)
    return [(int(s), int(a), size) for s, a in zip(starts, ats)]
  needed = num_crops * crop_samples
  if length >= needed:
    # Sorted uniform draws in [0, slack] plus j * crop_samples give a uniform
    # non-overlapping placement.
    slack = length - needed
    starts = np.sort(rng.integers(0, slack + 1, size=num_crops))
    starts = starts + np.arange(num_crops) * crop_samples
    rng.shuffle(starts)  # either crop may come from earlier in the clip
    return [(int(s), 0, crop_samples) for s in starts]
  piece = length // num_crops
  out = []
  for j in range(num_crops):
    at = int(rng.integers(0, crop_samples - piece + 1))
    out.append((j * piece, at, piece))
  return out


def cut_crops(audio: np.ndarray, offsets: Sequence[tuple],
              crop_samples: int) -> np.ndarray:
  """``[num_crops, crop_samples]`` crops of ``audio`` per ``crop_offsets``."""
  crops = np.zeros((len(offsets), crop_samples), np.float32)
  for j, (start, at, size) in enumerate(offsets):
    crops[j, at:at + size] = audio[start:start + size]
  return crops


def _stack_labels(labels: Sequence, multilabel: bool) -> np.ndarray:
  if multilabel:
    return np.stack([np.asarray(l, np.float32) for l in labels])
  return np.asarray([int(l) for l in labels], np.int32)


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  # Cached: a step reads one or two epochs' orders, and permuting millions
  # of clips (AudioSet) every step would cost more than the step's reads.
  perm = np.random.default_rng([seed, _SHUFFLE_STREAM, epoch]).permutation(n)
  perm.setflags(write=False)
  return perm


def global_batch_indices(num_clips: int, global_batch_size: int, seed: int,
                         step: int) -> np.ndarray:
  """Source indices of the ``global_batch_size`` rows of ``step``."""
  positions = step * global_batch_size + np.arange(global_batch_size)
  epochs = positions // num_clips
  out = np.empty(global_batch_size, np.int64)
  for epoch in np.unique(epochs):
    rows = epochs == epoch
    out[rows] = _epoch_permutation(int(seed), int(epoch), int(num_clips))[
        positions[rows] % num_clips]
  return out


def _check_int(name, value, low):
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
      value < low:
    raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def train_batches(source: ClipSource, *, global_batch_size: int,
                  crop_samples: int, num_crops: int, seed: int,
                  start_step: int = 0, process_index: int = 0,
                  process_count: int = 1, prefetch: int = 2,
                  num_workers: int = 0, worker_type: str = "thread",
                  include_index: bool = False,
                  disjoint_crops: bool = True) -> BatchIterator:
  """Endless training batches of random crops; see the module docstring.

  Args:
    source: a ClipSource (8 kHz mono clips).
    global_batch_size: clips per step over all processes (a multiple of
      ``process_count``).
    crop_samples: samples per crop (20000 = 2.5 s at 8 kHz).
    num_crops: disjoint crops per clip (2 for SimCLR, 1 for supervised).
    seed: int >= 0; batches are a function of (seed, step) only.
    start_step: the first step to yield (resuming).
    process_index, process_count: this process's share of each batch.
    prefetch: batches decoded ahead in a background thread (0: inline).
    num_workers: readers per batch; 0 reads in the prefetch thread.
    worker_type: 'thread' (cheap; decoding partly holds the GIL, so threads
      stop scaling at a few) or 'process' (spawned worker processes, each
      with a copy of ``source``, which must then be picklable; scales with
      cores, costs a few seconds of start-up). Batches are identical either
      way.
    include_index: also yield ``'index'`` int32 [B_local] (source indices).
    disjoint_crops: crops of one clip never overlap (the thesis); False
      draws each crop's position independently (see ``crop_offsets``).

  Returns:
    A BatchIterator of ``{'audio': float32 [B_local, num_crops,
    crop_samples], 'label': int32 [B_local] or float32 [B_local, C]}`` with
    ``B_local = global_batch_size // process_count``.
  """
  n = len(source)
  if n == 0:
    raise ValueError(f"source {getattr(source, 'name', '?')!r} has no clips")
  _check_int("global_batch_size", global_batch_size, 1)
  _check_int("crop_samples", crop_samples, 1)
  _check_int("num_crops", num_crops, 1)
  _check_int("seed", seed, 0)
  _check_int("start_step", start_step, 0)
  _check_int("process_count", process_count, 1)
  _check_int("prefetch", prefetch, 0)
  _check_int("num_workers", num_workers, 0)
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} outside "
                     f"0..{process_count - 1}")
  if global_batch_size % process_count:
    raise ValueError(f"global_batch_size {global_batch_size} is not a "
                     f"multiple of process_count {process_count}")
  if worker_type not in ("thread", "process"):
    raise ValueError(f"worker_type must be 'thread' or 'process', got "
                     f"{worker_type!r}")
  local = global_batch_size // process_count
  first_row = process_index * local
  stats = PipelineStats()
  maker = _RowMaker(source, stats, seed, crop_samples, num_crops,
                    disjoint_crops)
  pool = None
  if num_workers and worker_type == "thread":
    pool = futures.ThreadPoolExecutor(num_workers)
  elif num_workers:
    # spawn, not fork: the parent runs JAX's threads, which fork would copy
    # in an undefined state.
    pool = futures.ProcessPoolExecutor(
        num_workers, mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(source, seed, crop_samples, num_crops, disjoint_crops))
  multilabel = bool(getattr(source, "multilabel", False))

  def produce(i: int) -> Batch:
    step = start_step + i
    indices = global_batch_indices(n, global_batch_size, seed, step)
    args = [(step, r, int(indices[r]))
            for r in range(first_row, first_row + local)]
    if pool is None:
      results = [maker.row(*a) for a in args]
    elif worker_type == "thread":
      results = list(pool.map(lambda a: maker.row(*a), args))
    else:
      chunks = [args[k::num_workers] for k in range(num_workers)]
      results = [None] * len(args)
      for k, (rows, delta) in enumerate(pool.map(_worker_rows, chunks)):
        results[k::num_workers] = rows
        stats.merge(delta)
    batch = {"audio": np.stack([r[0] for r in results]),
             "label": _stack_labels([r[1] for r in results], multilabel)}
    if include_index:
      batch["index"] = np.asarray([r[2] for r in results], np.int32)
    return batch

  return BatchIterator(produce, prefetch, stats, pool)


class _RowMaker:
  """One training row: read a clip, cut its crops (see ``crop_offsets``)."""

  def __init__(self, source, stats, seed, crop_samples, num_crops,
               disjoint=True):
    self.reader = _Reader(source, stats)
    self.stats = stats
    self.seed, self.crop_samples, self.num_crops = (seed, crop_samples,
                                                    num_crops)
    self.disjoint = disjoint

  def row(self, step: int, row: int, index: int):
    example = self.reader.read(index)
    audio = example["audio"]
    if len(audio) < (self.num_crops if self.disjoint else 1) * \
        self.crop_samples:
      with self.reader.lock:
        self.stats.short_clips += 1
    rng = np.random.default_rng([self.seed, _CROP_STREAM, step, row])
    offsets = crop_offsets(rng, len(audio), self.crop_samples, self.num_crops,
                           self.disjoint)
    return (cut_crops(audio, offsets, self.crop_samples), example["label"],
            example["index"])


_WORKER = {}


def _init_worker(source, seed, crop_samples, num_crops, disjoint_crops):
  _WORKER["maker"] = _RowMaker(source, PipelineStats(), seed, crop_samples,
                               num_crops, disjoint_crops)


def _worker_rows(args):
  """Rows ``args`` in a worker process, with the stats they produced."""
  maker = _WORKER["maker"]
  rows = [maker.row(*a) for a in args]
  delta = maker.stats
  # Fresh counters for the next task; unreadable clips stay known here.
  maker.stats = maker.reader.stats = PipelineStats(
      unreadable=dict(delta.unreadable))
  return rows, delta


def eval_batches(source: ClipSource, *, batch_size: int,
                 max_samples: Optional[int] = None, min_samples: int = 1,
                 pad_multiple: int = 1, prefetch: int = 2,
                 include_index: bool = False,
                 log_every: int = 0) -> BatchIterator:
  """Whole clips in source order, one pass.

  Args:
    source: a ClipSource.
    batch_size: rows per batch; the last batch is padded with invalid rows.
    max_samples: clips longer than this keep their first ``max_samples``.
    min_samples: pad every batch to at least this length (e.g. the encoder's
      receptive field ``arch.min_input_length(11)``).
    pad_multiple: round the batch length up to a multiple of this (fewer
      distinct shapes for jit; the mask marks the padding).
    prefetch: batches decoded ahead in a background thread (0: inline).
    include_index: also yield ``'index'`` int32 [B] (-1 for padding rows).
    log_every: log progress every this many batches (0: never).

  Returns:
    A BatchIterator of ``{'audio': float32 [B, T], 'mask': float32 [B, T]
    (1 on the clip's samples), 'label': int32 [B] or float32 [B, C],
    'valid': bool [B] (False for padding rows and for unreadable clips, which
    are reported in ``stats.unreadable``, never replaced)}``; T is the batch's longest (truncated) clip, padded
    per ``min_samples``/``pad_multiple``.
  """
  n = len(source)
  _check_int("batch_size", batch_size, 1)
  _check_int("min_samples", min_samples, 1)
  _check_int("pad_multiple", pad_multiple, 1)
  _check_int("prefetch", prefetch, 0)
  if max_samples is not None:
    _check_int("max_samples", max_samples, 1)
  stats = PipelineStats()
  reader = _Reader(source, stats)
  multilabel = bool(getattr(source, "multilabel", False))
  num_batches = -(-n // batch_size)

  def produce(b: int) -> Batch:
    if b >= num_batches:
      raise StopIteration
    if log_every and b % log_every == 0:
      logging.info("eval batches: %d/%d", b, num_batches)
    indices = list(range(b * batch_size, min(n, (b + 1) * batch_size)))
    examples = []
    for i in indices:
      try:
        examples.append(reader._clean(i, source[i]))  # pylint: disable=protected-access
      except AudioReadError as error:
        # Never substitute another clip in evaluation: the row stays zero
        # and invalid, and the clip is reported.
        stats.unreadable[i] = str(error)
        reader._warn("eval clip %d unreadable, marked invalid: %s", i, error)  # pylint: disable=protected-access
        examples.append(None)
    audios = [e["audio"][:max_samples] if e else np.zeros(0, np.float32)
              for e in examples]
    length = max([len(a) for a in audios] + [min_samples])
    length = -(-length // pad_multiple) * pad_multiple
    audio = np.zeros((batch_size, length), np.float32)
    mask = np.zeros((batch_size, length), np.float32)
    for r, a in enumerate(audios):
      audio[r, :len(a)] = a
      mask[r, :len(a)] = 1.0
    if multilabel:
      pad_label = np.zeros(source.num_classes, np.float32)
    else:
      pad_label = 0
    labels = [e["label"] if e else pad_label for e in examples]
    labels += [pad_label] * (batch_size - len(examples))
    valid = np.zeros(batch_size, bool)
    valid[:len(examples)] = [e is not None for e in examples]
    batch = {"audio": audio, "mask": mask,
             "label": _stack_labels(labels, multilabel), "valid": valid}
    if include_index:
      batch["index"] = np.asarray(
          indices + [-1] * (batch_size - len(indices)), np.int32)
    return batch

  if prefetch == 0:
    return BatchIterator(_finite(produce, num_batches), 0, stats)
  return BatchIterator(produce, prefetch, stats)


def _finite(produce, count):
  def wrapped(i):
    if i >= count:
      raise StopIteration
    return produce(i)
  return wrapped


# ------------------------------------------------------------- device arrays
def shard_for_devices(batch: Batch, mesh, axis_name: str = "data") -> Dict:
  """Put this process's batch onto a 1-D data mesh as global jax.Arrays.

  Every array is split along axis 0 over ``mesh``'s ``axis_name`` axis
  (``NamedSharding(mesh, P(axis_name))``). With several processes each one
  passes its own ``B_local`` rows and the global array has
  ``B_local * process_count`` rows, assembled by
  ``jax.make_array_from_process_local_data`` without any copy between hosts.
  ``B_local`` must be a multiple of the process's local device count.

  Args:
    batch: dict of numpy arrays with the local batch on axis 0.
    mesh: a ``jax.sharding.Mesh`` with an ``axis_name`` axis.

  Returns:
    dict of ``jax.Array`` with the global batch on axis 0.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding, PartitionSpec  # pylint: disable=g-import-not-at-top
  sharding = NamedSharding(mesh, PartitionSpec(axis_name))
  local_devices = sum(1 for d in mesh.devices.flat
                      if d.process_index == jax.process_index())
  out = {}
  for name, value in batch.items():
    value = np.asarray(value)
    if value.ndim == 0 or value.shape[0] % max(local_devices, 1):
      raise ValueError(f"batch[{name!r}] has shape {value.shape}: axis 0 "
                       f"must be a multiple of the {local_devices} local "
                       "devices")
    global_shape = (value.shape[0] * jax.process_count(),) + value.shape[1:]
    out[name] = jax.make_array_from_process_local_data(sharding, value,
                                                       global_shape)
  return out


to_global_array = shard_for_devices
