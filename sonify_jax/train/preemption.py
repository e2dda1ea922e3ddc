"""Preemption: a SIGTERM (Cloud TPU spot/preemptible VMs, Kubernetes, Slurm)
makes training save at the current step and exit 0; rerunning the command
resumes from there.

Single process: a SIGTERM handler sets a flag, and the trainer checks it after
each step. Under ``jax.distributed`` JAX's preemption service catches the
signal on whichever host gets it and agrees with every host on a step to
save at; orbax's ``CheckpointManager.reached_preemption(step)`` reports it,
and the trainer asks it at every step on every host.
"""
import signal
import threading
from typing import Optional

from absl import logging
import jax


class Preempted(SystemExit):
  """Raised after the preemption checkpoint is written: exits with status 0
  (the run is not failed; rerunning the command resumes it)."""

  def __init__(self, step: int):
    super().__init__(0)
    self.step = step

  def __str__(self):
    return f"preempted: saved step {self.step}; rerun the command to resume"


class Watch:
  """Watches for a preemption notice between ``start()`` and ``stop()``.

  ``reached(step, manager)`` is True once the run should save at ``step`` and
  stop. ``stop()`` restores the previous SIGTERM handler.
  """

  def __init__(self):
    self._signalled = threading.Event()
    self._previous: Optional[object] = None
    self._installed = False

  def start(self) -> "Watch":
    distributed = jax.process_count() > 1
    if (not distributed and
        threading.current_thread() is threading.main_thread()):
      self._previous = signal.signal(signal.SIGTERM, self._on_signal)
      self._installed = True
    return self

  def stop(self) -> None:
    if self._installed:
      signal.signal(signal.SIGTERM, self._previous)
      self._installed = False

  def _on_signal(self, signum, frame) -> None:
    del frame
    logging.warning("signal %d: saving at the end of this step, then exiting",
                    signum)
    self._signalled.set()

  def reached(self, step: int, manager) -> bool:
    """Whether to save at ``step`` and stop (every host calls this every
    step: the multi-host sync point needs it)."""
    if jax.process_count() > 1 and manager.reached_preemption(step):
      return True
    return self._signalled.is_set()
