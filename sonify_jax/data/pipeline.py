"""Host-side input streams on grain: crops, batches, shuffling.

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
``source[i]`` raises ``AudioReadError`` is reported once, remembered (per
reading process), and deterministically replaced by the next readable clip in
source order.

Evaluation (``eval_batches``) yields whole clips in source order, zero-padded
to the longest clip of the batch, with a mask and a ``valid`` flag for the
padding rows of the last batch (and for unreadable clips, which evaluation
never replaces).

What grain does and what is ours. Both streams are ``grain.MapDataset``s over
the ``ClipSource`` (index -> example): training maps this host's row
positions ``q`` to ``(step, row, clip)`` and then to the row's crops, then
batches ``B_local`` rows; evaluation maps clip indices to clips and batches
them with padding. grain runs the reads: reader threads and the prefetch
buffer (``grain.ReadOptions``), spawned worker processes
(``IterDataset.mp_prefetch``), closing them, and the checkpointable iterator
state (``get_state``/``set_state``, saved with the orbax checkpoint through
``grain.checkpoint``). What is ours is the math grain has no notion of:
the epoch permutations and crop generators keyed by ``(seed, step, row)``
(so batches do not depend on threads, workers or where a run resumed), the
crop rule, the bad-input rules, and ``PipelineStats``. (grain's own
``shuffle`` would order the clips differently: keeping our permutations keeps
the batches bit-identical to those of runs trained before the move to grain,
and a position -> clip rule makes each host's share a plain slice.) Each row
carries a small report of what its read met; the consumer-side
``BatchIterator`` pops the reports off each batch into ``stats`` and logs the
warnings, so the counts are those of the batches consumed, also when worker
processes read.

Parallelism (``train_batches`` arguments -> grain):

* ``prefetch=P`` -> ``ReadOptions(prefetch_buffer_size=P * B_local)`` rows
  decoded ahead of the consumer; ``prefetch=0`` reads inline in the
  consumer (no thread) with ``num_workers=0``, at most one batch ahead with
  reader threads;
* ``worker_type='thread', num_workers=W`` -> ``ReadOptions(num_threads=W)``
  reader threads (1 when W is 0); decoding partly holds the GIL, so threads
  stop scaling at a few;
* ``worker_type='process', num_workers=W`` -> ``mp_prefetch(
  MultiprocessingOptions(num_workers=W, per_worker_buffer_size=max(P, 1)))``:
  W spawned processes, each computing whole batches (steps ``k, k + W, ...``)
  from its own copy of the dataset (the source must be picklable). Scales with
  cores; costs a few seconds of start-up.

The batches are the same either way. Close the iterators (``close()`` or
``with``) to stop their threads and worker processes early (grain also stops
them when the iterator is garbage-collected or the interpreter exits).
Batches go onto the devices with ``distributed.global_batch``.
"""
import functools
from typing import Any, Dict, List, Optional, Sequence

import grain
import numpy as np

from sonify_jax.audio_io import AudioReadError
from sonify_jax.data import batch_iterator
from sonify_jax.data.batch_iterator import BatchIterator, PipelineStats
from sonify_jax.data.sources import ClipSource

Batch = batch_iterator.Batch

# Stream tags keep the shuffling and cropping generators independent.
_SHUFFLE_STREAM = 1
_CROP_STREAM = 2
# Training streams are endless; grain's datasets have a length, so use one no
# run reaches.
_ENDLESS = 2 ** 62


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
  # of clips (AudioSet) every row would cost more than the row's read.
  perm = np.random.default_rng([seed, _SHUFFLE_STREAM, epoch]).permutation(n)
  perm.setflags(write=False)
  return perm


def _clip_indices(num_clips: int, seed: int,
                  positions: np.ndarray) -> np.ndarray:
  """Source indices of sample positions (``step * global_batch + row``)."""
  epochs = positions // num_clips
  out = np.empty(len(positions), np.int64)
  for epoch in np.unique(epochs):
    rows = epochs == epoch
    out[rows] = _epoch_permutation(int(seed), int(epoch), int(num_clips))[
        positions[rows] % num_clips]
  return out


def global_batch_indices(num_clips: int, global_batch_size: int, seed: int,
                         step: int) -> np.ndarray:
  """Source indices of the ``global_batch_size`` rows of ``step``."""
  return _clip_indices(num_clips, seed, step * global_batch_size +
                       np.arange(global_batch_size, dtype=np.int64))


def _check_int(name, value, low):
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
      value < low:
    raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


class _TrainRow:
  """Row position ``q`` of this host -> that row's crops (grain map).

  ``q = step * B_local + r`` is row ``first_row + r`` of global batch
  ``step``; the clip comes from ``global_batch_indices`` and the crops from
  a generator seeded by ``(seed, step, row)``, so the row does not depend on
  which thread or process computes it.
  """

  def __init__(self, source, *, seed, global_batch_size, local, first_row,
               crop_samples, num_crops, disjoint):
    self.reader = batch_iterator.ClipReader(source)
    self.num_clips = len(source)
    self.seed, self.global_batch_size = seed, global_batch_size
    self.local, self.first_row = local, first_row
    self.crop_samples, self.num_crops = crop_samples, num_crops
    self.disjoint = disjoint

  def __call__(self, q: int) -> Dict[str, Any]:
    step, r = divmod(int(q), self.local)
    row = self.first_row + r
    position = np.asarray([step * self.global_batch_size + row], np.int64)
    index = int(_clip_indices(self.num_clips, self.seed, position)[0])
    report = batch_iterator.new_report()
    example = self.reader.read_or_next(index, report)
    audio = example["audio"]
    needed = (self.num_crops if self.disjoint else 1) * self.crop_samples
    report["short"] = len(audio) < needed
    rng = np.random.default_rng([self.seed, _CROP_STREAM, step, row])
    offsets = crop_offsets(rng, len(audio), self.crop_samples, self.num_crops,
                           self.disjoint)
    return {"audio": cut_crops(audio, offsets, self.crop_samples),
            "label": example["label"], "index": example["index"],
            batch_iterator.REPORT: report}


def _collate_train(rows: Sequence[Dict[str, Any]], multilabel: bool,
                   include_index: bool) -> Batch:
  """grain batch_fn: stacks B_local rows; keeps their reports as a list."""
  batch = {"audio": np.stack([r["audio"] for r in rows]),
           "label": _stack_labels([r["label"] for r in rows], multilabel)}
  if include_index:
    batch["index"] = np.asarray([r["index"] for r in rows], np.int32)
  batch[batch_iterator.REPORT] = [r[batch_iterator.REPORT] for r in rows]
  return batch


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
    prefetch: batches decoded ahead (grain's prefetch buffer); 0 with
      ``num_workers=0``: inline, no thread.
    num_workers: grain reader threads (``worker_type='thread'``; 0 means one)
      or worker processes (``'process'``).
    worker_type: 'thread' (cheap; decoding partly holds the GIL, so threads
      stop scaling at a few) or 'process' (grain's ``mp_prefetch``: spawned
      worker processes, each with a copy of ``source``, which must then be
      picklable; scales with cores, costs a few seconds of start-up).
      Batches are identical either way.
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
  make_row = _TrainRow(source, seed=seed, global_batch_size=global_batch_size,
                       local=local, first_row=process_index * local,
                       crop_samples=crop_samples, num_crops=num_crops,
                       disjoint=disjoint_crops)
  collate = functools.partial(
      _collate_train, multilabel=bool(getattr(source, "multilabel", False)),
      include_index=include_index)

  def make(first_step: int):
    rows = grain.MapDataset.range(first_step * local, _ENDLESS).map(make_row)
    if worker_type == "process" and num_workers:
      # Each worker process computes whole batches (every num_workers-th
      # step) and reads inline; grain interleaves them back in step order.
      batches = rows.batch(local, batch_fn=collate).to_iter_dataset(
          grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
      batch_iterator.enable_grain_worker_processes()
      return iter(batches.mp_prefetch(grain.MultiprocessingOptions(
          num_workers=num_workers, per_worker_buffer_size=max(prefetch, 1))))
    buffer_rows = max(prefetch, 1 if num_workers else 0) * local
    read = grain.ReadOptions(
        num_threads=max(num_workers, 1) if buffer_rows else 0,
        prefetch_buffer_size=buffer_rows)
    return iter(rows.to_iter_dataset(read).batch(local, batch_fn=collate))

  return BatchIterator(make, start_step, PipelineStats(),
                       unreadable_rule="skipped: the next readable clip "
                       "takes its place")


class _EvalClip:
  """Clip index -> the clip, truncated; unreadable: None (grain map)."""

  def __init__(self, source, max_samples):
    self.reader = batch_iterator.ClipReader(source)
    self.max_samples = max_samples

  def __call__(self, index: int) -> Dict[str, Any]:
    report = batch_iterator.new_report()
    try:
      example = self.reader.read(int(index), report)
    except AudioReadError:
      # Never substitute another clip in evaluation: the row stays zero
      # and invalid, and the clip is reported.
      example = None
    if example is not None:
      example["audio"] = example["audio"][:self.max_samples]
    return {"example": example, "index": int(index), batch_iterator.REPORT: report}


def _collate_eval(clips: Sequence[Dict[str, Any]], batch_size: int,
                  min_samples: int, pad_multiple: int, multilabel: bool,
                  num_classes: int, include_index: bool) -> Batch:
  """grain batch_fn: pads clips into ``batch_size`` rows with a mask."""
  examples = [c["example"] for c in clips]
  audios = [e["audio"] if e else np.zeros(0, np.float32) for e in examples]
  length = max([len(a) for a in audios] + [min_samples])
  length = -(-length // pad_multiple) * pad_multiple
  audio = np.zeros((batch_size, length), np.float32)
  mask = np.zeros((batch_size, length), np.float32)
  for r, a in enumerate(audios):
    audio[r, :len(a)] = a
    mask[r, :len(a)] = 1.0
  pad_label = np.zeros(num_classes, np.float32) if multilabel else 0
  labels = [e["label"] if e else pad_label for e in examples]
  labels += [pad_label] * (batch_size - len(examples))
  valid = np.zeros(batch_size, bool)
  valid[:len(examples)] = [e is not None for e in examples]
  batch = {"audio": audio, "mask": mask,
           "label": _stack_labels(labels, multilabel), "valid": valid}
  if include_index:
    indices = [c["index"] for c in clips]
    batch["index"] = np.asarray(
        indices + [-1] * (batch_size - len(indices)), np.int32)
  batch[batch_iterator.REPORT] = [c[batch_iterator.REPORT] for c in clips]
  return batch


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
    prefetch: batches decoded ahead by grain reader threads (0: inline).
    include_index: also yield ``'index'`` int32 [B] (-1 for padding rows).
    log_every: log progress every this many batches (0: never).

  Returns:
    A BatchIterator of ``{'audio': float32 [B, T], 'mask': float32 [B, T]
    (1 on the clip's samples), 'label': int32 [B] or float32 [B, C],
    'valid': bool [B] (False for padding rows and for unreadable clips, which
    are reported in ``stats.unreadable``, never replaced)}``; T is the
    batch's longest (truncated) clip, padded per ``min_samples``/
    ``pad_multiple``.
  """
  n = len(source)
  _check_int("batch_size", batch_size, 1)
  _check_int("min_samples", min_samples, 1)
  _check_int("pad_multiple", pad_multiple, 1)
  _check_int("prefetch", prefetch, 0)
  if max_samples is not None:
    _check_int("max_samples", max_samples, 1)
  multilabel = bool(getattr(source, "multilabel", False))
  collate = functools.partial(
      _collate_eval, batch_size=batch_size, min_samples=min_samples,
      pad_multiple=pad_multiple, multilabel=multilabel,
      num_classes=int(getattr(source, "num_classes", 0)) if multilabel else 0,
      include_index=include_index)
  batches = grain.MapDataset.range(n).map(
      _EvalClip(source, max_samples)).batch(batch_size, batch_fn=collate)

  def make(first_batch: int):
    read = grain.ReadOptions(num_threads=prefetch, prefetch_buffer_size=prefetch)
    return iter(batches[first_batch:].to_iter_dataset(read))

  return BatchIterator(make, 0, PipelineStats(), log_every=log_every,
                       total=len(batches),
                       unreadable_rule="marked invalid, never replaced")
