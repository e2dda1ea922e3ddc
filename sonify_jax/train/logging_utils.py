"""Metric logging for trainers: TensorBoard (tensorboardX), metrics.jsonl, progress.

TensorBoard event files are written by tensorboardX (no TensorFlow needed):
scalars, audio (the listening set's sonifications, see ``train/listen.py``)
and images (their log-spectrograms). ``metrics.jsonl`` holds the same scalars
one JSON record per line, for scripts. The progress bar is tqdm.

Only process 0 writes; :class:`MetricWriter` and :class:`Progress` are no-ops
on other processes so call sites need not branch.

A ``gs://`` workdir (any non-local ``etils.epath`` URL): both files are
written in a local stand-in folder (``mirror.Mirror``; an existing
metrics.jsonl is pulled first, so a resumed run appends) and uploaded whole
through epath at most every ``push_secs`` while scalars arrive, on
:meth:`MetricWriter.flush` and on close. A killed run's bucket copy lacks at
most the last ``push_secs``.
"""
import json
import math
import os
import sys
import time
from typing import Any, Dict, List, Mapping

import numpy as np
import tensorboardX
import tqdm

from sonify_jax import mirror
from sonify_jax import paths
from sonify_jax.data.sources import SAMPLE_RATE

METRICS_FILE = "metrics.jsonl"


def read_jsonl(path: str) -> List[Dict[str, Any]]:
  """Records of a metrics.jsonl; a torn last line (killed run) is skipped."""
  records = []
  with paths.as_path(path).open("r") as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return records


class MetricWriter:
  """Scalars, audio and images to TensorBoard event files in ``workdir``;
  scalars also to ``workdir/metrics.jsonl``.

  A restarted run appends (a new event file; in metrics.jsonl later lines for
  a step win). Writes only when ``enabled`` (process 0). ``workdir`` may be a
  ``gs://`` URL (see the module docstring for ``push_secs``).
  """

  def __init__(self, workdir: str, enabled: bool = True,
               push_secs: float = 60.0):
    self.enabled = enabled
    self._events = None
    self._jsonl = None
    self._mirror = None
    self._push_secs = push_secs
    self._pushed_at = time.monotonic()
    if enabled:
      self._mirror = mirror.Mirror(workdir)
      os.makedirs(self._mirror.local, exist_ok=True)
      self._mirror.pull([METRICS_FILE])
      # flush_secs: a run killed between flushes loses at most that much.
      self._events = tensorboardX.SummaryWriter(logdir=self._mirror.local,
                                                flush_secs=10)
      # An append-only log: each line is written whole and flushed; a torn
      # last line from a killed run is skipped by read_jsonl.
      self._jsonl = open(os.path.join(self._mirror.local, METRICS_FILE), "a")

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    if not self.enabled or not scalars:
      return
    values = {k: float(np.asarray(v)) for k, v in scalars.items()}
    for tag, value in values.items():
      self._events.add_scalar(tag, value, global_step=int(step))
    record = {"step": int(step), "time": time.time()}
    # JSON has no NaN/inf; keep them visible as strings.
    record.update({k: (v if math.isfinite(v) else str(v))
                   for k, v in values.items()})
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    if (self._mirror.remote and
        time.monotonic() - self._pushed_at >= self._push_secs):
      self.flush()

  def write_audio(self, step: int, tag: str, audio: np.ndarray,
                  sample_rate: int = SAMPLE_RATE) -> None:
    """A mono clip ``[time]`` in [-1, 1] (clipped) as a WAV audio summary."""
    if not self.enabled:
      return
    audio = np.clip(np.asarray(audio, np.float32).reshape(-1), -1.0, 1.0)
    self._events.add_audio(tag, audio, global_step=int(step),
                           sample_rate=sample_rate)

  def write_figure(self, step: int, tag: str, figure) -> None:
    """A matplotlib figure as an image summary (the figure is closed)."""
    if not self.enabled:
      return
    self._events.add_figure(tag, figure, global_step=int(step), close=True)

  def flush(self) -> None:
    if self.enabled:
      self._events.flush()
      self._mirror.push()
      self._pushed_at = time.monotonic()

  def close(self) -> None:
    if self.enabled:
      self._events.close()
      self._jsonl.close()
      try:
        self._mirror.push()
      finally:
        self._mirror.close()


class Progress:
  """One tqdm bar on process 0: step/total, steps/s, ETA, and the loss."""

  def __init__(self, total: int, initial: int, enabled: bool = True,
               desc: str = "train"):
    self.enabled = enabled
    self._bar = None
    if enabled:
      self._bar = tqdm.tqdm(total=total, initial=initial, desc=desc,
                            unit="step", dynamic_ncols=True, file=sys.stderr,
                            mininterval=1.0)

  def update(self, step: int, n: int = 1, **postfix) -> None:
    del step  # tqdm counts.
    if self._bar is None:
      return
    if postfix:
      self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()},
                            refresh=False)
    self._bar.update(n)

  def write(self, text: str) -> None:
    if self._bar is not None:
      self._bar.write(text, file=sys.stderr)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
