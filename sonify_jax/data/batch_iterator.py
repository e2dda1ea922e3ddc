"""The iterator every input stream hands out, and what it reports.

``BatchIterator`` is a grain ``DatasetIterator`` over batches made on demand
by ``make(step)`` (a pure function of the step, so a checkpoint of the
iterator is just its next step); it counts what the rows report
(``PipelineStats``: unreadable and replaced clips) and warns a few times,
then sums up. ``ClipReader`` reads a source's clips cleaned, turning a
failed decode into a report. ``data/pipeline.py`` builds the training and
evaluation streams on them.
"""
import dataclasses
from typing import Any, Callable, Dict, Optional

from absl import flags
from absl import logging
import grain
import numpy as np

from sonify_jax.audio_io import AudioReadError
from sonify_jax.data.sources import ClipSource

Batch = Dict[str, np.ndarray]

MAX_WARNINGS = 5
# Key of the per-row reports that travel with the data to the consumer.
REPORT = "_report"


@dataclasses.dataclass
class PipelineStats:
  """What the batches consumed so far met (counted per clip read)."""
  clips_read: int = 0
  nonfinite_clips: int = 0
  silent_clips: int = 0
  short_clips: int = 0
  unreadable: Dict[int, str] = dataclasses.field(default_factory=dict)

  def summary(self) -> str:
    return (f"{self.clips_read} clips read, {self.nonfinite_clips} with "
            f"NaN/Inf (zeroed), {self.silent_clips} silent, "
            f"{self.short_clips} shorter than the crops (zero-padded), "
            f"{len(self.unreadable)} unreadable (skipped)")


def new_report() -> Dict[str, Any]:
  """What reading one row met; plain data, so it crosses process bounds."""
  return {"read": 0, "nonfinite": None, "silent": False, "short": False,
          "unreadable": []}


class ClipReader:
  """Reads clips from a source as finite float32 audio, with a report.

  Runs wherever grain reads (a reader thread, a worker process); remembers
  the unreadable clips it met, so each is tried once per process.
  """

  def __init__(self, source: ClipSource):
    self.source = source
    self._unreadable: Dict[int, str] = {}

  def __getstate__(self):
    # Worker processes start with a fresh memory.
    return {"source": self.source}

  def __setstate__(self, state):
    self.__init__(state["source"])

  def read(self, index: int, report: Dict[str, Any]) -> Dict[str, Any]:
    """``source[index]`` cleaned; raises AudioReadError (reported)."""
    try:
      example = self.source[index]
    except AudioReadError as error:
      self._unreadable[index] = str(error)
      report["unreadable"].append((int(index), str(error)))
      raise
    return self._clean(index, example, report)

  def read_or_next(self, index: int,
                   report: Dict[str, Any]) -> Dict[str, Any]:
    """``source[index]``, or the next readable clip in source order."""
    n = len(self.source)
    for attempt in range(n):
      i = (index + attempt) % n
      if i in self._unreadable:
        continue
      try:
        return self.read(i, report)
      except AudioReadError:
        continue
    raise AudioReadError(f"none of the {n} clips of {self.source.name!r} "
                         "could be read")

  def _clean(self, index: int, example,
             report: Dict[str, Any]) -> Dict[str, Any]:
    audio = np.asarray(example["audio"], np.float32)
    if audio.ndim != 1:
      raise ValueError(f"clip {index} of {self.source.name!r}: audio must be "
                       f"[time], got shape {audio.shape}")
    finite = np.isfinite(audio)
    if not finite.all():
      audio = np.where(finite, audio, np.float32(0))
      report["nonfinite"] = (int(index), str(example.get("id", "?")),
                             int((~finite).sum()))
    report["read"] += 1
    report["silent"] = not np.any(audio)
    return {"audio": audio, "label": example["label"], "index": index}


class BatchIterator(grain.DatasetIterator):
  """Batches with ``stats``, ``close()``, ``with`` and a checkpointable state.

  Wraps the grain iterator ``make(start)`` (``start``: the first step, or
  batch, to yield): pops each batch's row reports into ``stats`` and logs
  their warnings (a few). ``get_state()`` is ``{'start_step', 'next_step',
  'grain'}`` (the grain iterator's own state); ``set_state`` rebuilds the
  grain iterator at ``start_step`` and hands it its state, so it goes on at
  ``next_step``. ``grain.checkpoint.CheckpointSave(it)`` saves it with orbax.
  """

  def __init__(self, make: Callable[[int], Any], start: int,
               stats: PipelineStats, *, unreadable_rule: str,
               log_every: int = 0, total: Optional[int] = None):
    super().__init__()
    self.stats = stats
    self._unreadable_rule = unreadable_rule
    self._make = make
    self._start = self._next_step = int(start)
    self._inner = make(self._start)
    self._log_every, self._total = log_every, total
    self._warnings = 0

  @property
  def next_step(self) -> int:
    """The step (or batch) the next ``next()`` yields."""
    return self._next_step

  def __next__(self) -> Batch:
    if self._closed:
      raise StopIteration
    if self._log_every and (self._next_step % self._log_every == 0) and (
        self._total is None or self._next_step < self._total):
      logging.info("eval batches: %d/%s", self._next_step, self._total)
    try:
      batch = next(self._inner)
    except StopIteration:
      raise
    except BaseException:
      self.close()  # stop the other readers; the error is the answer
      raise
    for report in batch.pop(REPORT):
      self._record(report)
    self._next_step += 1
    return batch

  def _warn(self, msg: str, *args) -> None:
    self._warnings += 1
    if self._warnings <= MAX_WARNINGS:
      logging.warning(msg, *args)
    elif self._warnings == MAX_WARNINGS + 1:
      logging.warning("further input warnings suppressed; see stats")

  def _record(self, report: Dict[str, Any]) -> None:
    stats = self.stats
    for index, message in report["unreadable"]:
      if index not in stats.unreadable:
        stats.unreadable[index] = message
        self._warn("unreadable clip %d (%s): %s", index,
                   self._unreadable_rule, message)
    stats.clips_read += report["read"]
    stats.silent_clips += int(report["silent"])
    stats.short_clips += int(report["short"])
    if report["nonfinite"] is not None:
      stats.nonfinite_clips += 1
      self._warn("clip %d (%s): %d NaN/Inf samples replaced by zeros",
                 *report["nonfinite"])

  def get_state(self) -> Dict[str, Any]:
    return {"start_step": self._start, "next_step": self._next_step,
            "grain": self._inner.get_state()}

  def set_state(self, state: Dict[str, Any]) -> None:
    self._inner.close()
    self._closed = False
    self._start = int(state["start_step"])
    self._inner = self._make(self._start)
    self._inner.set_state(state["grain"])
    self._next_step = int(state["next_step"])

  def start_prefetch(self) -> None:
    self._inner.start_prefetch()

  def close(self) -> None:
    """Stops grain's reader threads and worker processes."""
    inner = getattr(self, "_inner", None)  # None: __init__ failed
    if not self._closed and inner is not None:
      self._closed = True
      inner.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def enable_grain_worker_processes() -> None:
  """Call before grain's ``mp_prefetch``: it reads an absl flag of its own,
  which raises when absl has not parsed the command line (tests, notebooks,
  library use); marking that one flag present lets grain read its default,
  as grain itself does for its other flags."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS["grain_enable_multiprocess_worker_profiling"].present = True
