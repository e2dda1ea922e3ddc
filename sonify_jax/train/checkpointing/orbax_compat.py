"""Workarounds for orbax: its false warnings, its failed reads' noise and
errors, and restoring on a topology other than the writer's.

* Orbax warns "Given directory is read only" for every read-only manager,
  and "Requested `tracked_metric`" whenever a run that ranks its steps saves
  one without the metric (step 0, preemption saves): both are what we asked
  for, so they are dropped (``logs.quiet_message``) around those calls.
* A step orbax cannot decode fails with a nested, tensorstore-spec-laden
  exception: ``describe_read_error`` makes one line of it, naming the file.
* When one of orbax's parallel reads of a step fails, the others are left
  orphaned and report "Event loop is closed" / dying coroutines through
  ``sys.unraisablehook``, at any later time (see ``_drop_orphaned_reads``).
"""
import gc
import re
import sys
import traceback
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp

from sonify_jax import logs
from sonify_jax import paths
from sonify_jax.train.checkpointing import layout


def saving_unranked_steps():
  """A block in which orbax's warning about a step saved without the tracked
  metric is dropped: such steps are simply not ranked."""
  return logs.quiet_message("Requested `tracked_metric`")


def read_only_manager(directory: str, best_metric: str = "",
                      best_mode: str = "max") -> ocp.CheckpointManager:
  """A manager that only reads; with ``best_metric`` it also ranks the
  steps by the metrics training saved into them (``best_step``)."""
  if not paths.as_path(directory).is_dir():
    raise layout.NotARunError(
        f"checkpoint directory {directory} does not exist")
  ranking = (dict(best_fn=layout.metric_fn(best_metric), best_mode=best_mode)
             if best_metric else {})
  # Orbax warns "Given directory is read only" for every read-only manager:
  # reading is what we asked for, so the warning is false here.
  with logs.quiet_message("Given directory is read only",
                          "CheckpointManagerOptions.read_only=True"):
    return ocp.CheckpointManager(
        directory,
        options=ocp.CheckpointManagerOptions(read_only=True, **ranking),
        item_handlers=layout.item_handlers())


def local_target(metadata: Any) -> Any:
  """A restore target on this process's first device, built from the saved
  shapes/dtypes, so a checkpoint written on another topology (a TPU slice,
  8 virtual devices) loads on a laptop."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  metadata = getattr(metadata, "tree", metadata)
  return jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
      metadata)


def read_or_explain(read: Callable[[], Any], what: str,
                    verified: bool) -> Any:
  """``read()``; an exception becomes a ``CorruptCheckpointError``.

  Only an unverified (pre-checksum) step can fail this way: a verified one
  has the bytes it was saved with. Such a failure leaves orphaned reads
  behind, whose reports are dropped from then on (``_drop_orphaned_reads``).
  """
  if verified:
    return read()
  try:
    return read()
  except Exception as error:  # pylint: disable=broad-except
    _drop_orphaned_reads()
    gc.collect()  # most orphaned reads die now
    raise layout.CorruptCheckpointError(
        f"{what}: {describe_read_error(error)}") from error


_ORPHANED_READ = "_read_array_index_and_device_put"
_CLOSED_LOOP = "Event loop is closed"


def _is_orphaned_read(unraisable: Any) -> bool:
  """Whether ``sys.unraisablehook``'s argument reports an orphaned read:
  orbax's read coroutine dying with an exception, or tensorstore's callback
  finding the read's event loop closed (raised in asyncio's
  ``call_soon_threadsafe``, called from tensorstore's C++ threads)."""
  code = getattr(unraisable.object, "cr_code", None)
  if getattr(code, "co_name", "") == _ORPHANED_READ:
    return True
  if not (isinstance(unraisable.exc_value, RuntimeError) and
          str(unraisable.exc_value) == _CLOSED_LOOP):
    return False
  frames = traceback.extract_tb(unraisable.exc_traceback)
  return bool(frames) and frames[0].name == "call_soon_threadsafe"


def _drop_orphaned_reads() -> None:
  """From now on, drops the reports of orbax's orphaned reads.

  When one of orbax's parallel reads of a step fails, orbax closes its event
  loop; the other reads' tensorstore callbacks then fail ("Event loop is
  closed") and their coroutines die, garbage-collected with an exception.
  Python prints each of those through ``sys.unraisablehook``, from
  tensorstore's threads, for seconds afterwards, and at any later collection
  (a notebook's next cell, the next case of a test worker): dozens of
  tracebacks far from the one ``error:`` line. They are not exceptions of
  ours to catch, and orbax offers no handle to wait for or cancel the reads
  (closing their coroutines makes asyncio log them instead), so the
  process-wide hook is the only place they can be told apart; and since they
  come at any later time, it stays. It is installed once, on the first
  failed read, drops only those two reports and passes every other on.
  """
  global _HOOK_INSTALLED
  if _HOOK_INSTALLED:
    return
  previous = sys.unraisablehook

  def hook(unraisable):
    if not _is_orphaned_read(unraisable):
      previous(unraisable)

  sys.unraisablehook = hook
  _HOOK_INSTALLED = True


_HOOK_INSTALLED = False


def describe_read_error(error: BaseException) -> str:
  """One line from orbax/tensorstore's nested, spec-laden read errors."""
  while error.__cause__ is not None or error.__context__ is not None:
    error = error.__cause__ or error.__context__
  text = str(error).split(" [tensorstore_spec=")[0].strip()
  detail = text.splitlines()[0] if text else type(error).__name__
  files = re.findall(r'local file "([^"]+)"', text)
  if len(detail) > 200:
    detail = "..." + detail[-200:]
  return (f"{files[-1]} is unreadable ({detail})" if files
          else f"{type(error).__name__}: {detail}")
