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
  ``sys.unraisablehook``, at any later time: a step without checksums is
  therefore read synchronously first (``read_every_array``), so orbax never
  starts a read that fails.
"""
import re
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint._src.serialization import tensorstore_utils
import tensorstore as ts

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
  """``read()``; for an unverified (pre-checksum) step, an exception becomes
  a ``CorruptCheckpointError``.

  Callers check the step first (``checksums.verify_step``): a verified one
  has the bytes it was saved with, and an unverified one has had every array
  read by ``read_every_array``, so neither fails here because of its files.
  """
  if verified:
    return read()
  try:
    return read()
  except Exception as error:  # pylint: disable=broad-except
    raise layout.CorruptCheckpointError(
        f"{what}: {describe_read_error(error)}") from error


# Where an array's metadata lies in an item's key-value store: zarr v2
# (orbax's default) or zarr v3, each with its TensorStore driver.
_ARRAY_METADATA = ((".zarray", "zarr"), ("zarr.json", "zarr3"))


def read_every_array(item_dir: str, what: str) -> int:
  """Reads every array of an orbax item folder (``<step>/default``) once,
  one at a time, each read waited for before the next starts; returns how
  many there were.

  Orbax reads a step's arrays in parallel on an event loop that it closes as
  soon as one read fails; the reads still under way then finish on
  TensorStore's threads into the closed loop, and Python reports each of
  them ("Event loop is closed", dying coroutines) through
  ``sys.unraisablehook``, at any later time. A step without checksums is
  read here first, synchronously and without an event loop, so a file that
  does not decode is found before orbax starts a read: nothing is left
  running when the error is raised. The key-value store is the one orbax
  reads (its own spec builder: OCDBT or not, local or ``gs://``).

  Raises:
    CorruptCheckpointError: ``what``, then the file that does not decode.
  """
  ocdbt = paths.as_path(item_dir, "manifest.ocdbt").exists()
  kv_spec = tensorstore_utils.build_kvstore_tspec(
      paths.resolve(item_dir), use_ocdbt=ocdbt)
  kv_spec.pop("cache_pool", None)   # names a resource of orbax's context
  count = 0
  try:
    keys = ts.KvStore.open(kv_spec).result().list().result()
    for key in sorted(k.decode() for k in keys):
      for name, driver in _ARRAY_METADATA:
        if key == name or key.endswith("/" + name):
          array = ts.open({"driver": driver, "kvstore": {
              **kv_spec, "path": key[:-len(name)]}},
                          open=True, read=True).result()
          array.read().result()
          count += 1
  except Exception as error:  # pylint: disable=broad-except
    raise layout.CorruptCheckpointError(
        f"{what}: {describe_read_error(error)}") from None
  return count


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
