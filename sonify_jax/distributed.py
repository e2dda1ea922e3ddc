"""Multi-process (multi-host) JAX set-up and the per-process helpers.

One Python process runs on every host of a Cloud TPU pod slice (a v3-32 has 4
hosts with 8 TPU cores each). All processes run the same program; jitted steps
over a mesh of *all* devices (``jax.devices()``) then act on global arrays of
which each process only holds its own rows. The contract with the trainer:

1. Call :func:`initialize_if_needed` first thing in ``main()``, before any JAX
   computation (it is a no-op for a plain single-process run).
2. Each process reads only its own share of every global batch:
   ``pipeline.train_batches(..., process_index=jax.process_index(),
   process_count=jax.process_count())`` yields ``[global_batch / count, ...]``.
3. :func:`global_batch` turns those process-local numpy batches into global
   ``jax.Array`` s sharded over the mesh's data axis, so the step sees the
   global batch on axis 0 exactly as in a single-process run.
4. Orbax checkpointing is called by *every* process (it writes each process's
   shards and lets only the primary write metadata); logging, summaries and
   other side effects are done only where :func:`is_chief` is True.

Local multi-process runs (tests, debugging on one machine) configure the
processes explicitly, by arguments or by the ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` environment variables; on Cloud
TPU VMs JAX detects all three from the VM's metadata.
"""
import dataclasses
import os
from typing import Any, Optional, Sequence

from absl import logging
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
  """How :func:`initialize_if_needed` resolved the process set-up.

  mode: 'single' (nothing to initialize), 'explicit' (coordinator, count and
    id given by arguments or environment), 'cloud_tpu' (JAX auto-detects from
    the TPU VM metadata) or 'already' (initialized before this call).
  """
  mode: str
  coordinator_address: Optional[str] = None
  num_processes: Optional[int] = None
  process_id: Optional[int] = None


def _env_int(name: str) -> Optional[int]:
  value = os.environ.get(name)
  if value is None or value.strip() == "":
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"environment variable {name}={value!r} is not an "
                     "integer") from None


def _on_cloud_tpu_vm() -> bool:
  """True on a Cloud TPU VM with TPU chips attached (set by ``import jax``)."""
  try:
    from jax._src import cloud_tpu_init  # pylint: disable=g-import-not-at-top
    return bool(cloud_tpu_init.running_in_cloud_tpu_vm)
  except (ImportError, AttributeError):  # private API moved: assume not TPU.
    return False


def resolve_config(coordinator_address: Optional[str] = None,
                   num_processes: Optional[int] = None,
                   process_id: Optional[int] = None,
                   on_cloud_tpu: Optional[bool] = None) -> DistributedConfig:
  """Decides what :func:`initialize_if_needed` would do; pure, no side effects.

  Arguments win over the environment variables; with neither, a Cloud TPU VM
  means auto-detection and anything else a single process.

  Raises:
    ValueError: on a partial or inconsistent explicit configuration.
  """
  coordinator_address = (coordinator_address or
                         os.environ.get(ENV_COORDINATOR) or None)
  if num_processes is None:
    num_processes = _env_int(ENV_NUM_PROCESSES)
  if process_id is None:
    process_id = _env_int(ENV_PROCESS_ID)
  if num_processes is not None:
    if num_processes < 1:
      raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if num_processes == 1:
      if process_id not in (None, 0):
        raise ValueError(f"process_id={process_id} with num_processes=1")
      return DistributedConfig("single", num_processes=1, process_id=0)
    if coordinator_address is None or process_id is None:
      raise ValueError(
          f"num_processes={num_processes} also needs coordinator_address "
          f"(or ${ENV_COORDINATOR}) and process_id (or ${ENV_PROCESS_ID}); "
          f"got coordinator_address={coordinator_address!r}, "
          f"process_id={process_id!r}")
    if not 0 <= process_id < num_processes:
      raise ValueError(f"process_id must be in [0, {num_processes}), got "
                       f"{process_id}")
    if ":" not in coordinator_address:
      raise ValueError("coordinator_address must be 'host:port', got "
                       f"{coordinator_address!r}")
    return DistributedConfig("explicit", coordinator_address, num_processes,
                             process_id)
  if process_id is not None:
    raise ValueError(f"process_id={process_id} given without num_processes")
  if on_cloud_tpu is None:
    on_cloud_tpu = _on_cloud_tpu_vm()
  if on_cloud_tpu:
    # The coordinator address alone may be given (e.g. a fixed port); JAX
    # detects count and id from the TPU metadata.
    return DistributedConfig("cloud_tpu", coordinator_address)
  return DistributedConfig("single", num_processes=1, process_id=0)


def initialize_if_needed(coordinator_address: Optional[str] = None,
                         num_processes: Optional[int] = None,
                         process_id: Optional[int] = None,
                         *,
                         local_device_ids: Optional[Sequence[int]] = None,
                         initialization_timeout: int = 300
                         ) -> DistributedConfig:
  """Calls ``jax.distributed.initialize`` when more than one process runs.

  Must run before any JAX computation. Safe to call more than once.

  Args:
    coordinator_address: 'host:port' of process 0's coordinator service.
    num_processes: total number of processes.
    process_id: this process's id in ``[0, num_processes)``.
    local_device_ids: devices this process may use (GPU set-ups).
    initialization_timeout: seconds to wait for all processes to connect.

  Returns:
    The resolved :class:`DistributedConfig`.

  Raises:
    ValueError: on a partial or inconsistent configuration.
    RuntimeError: if JAX already ran computations in this process.
  """
  if jax.distributed.is_initialized():
    return DistributedConfig("already", num_processes=jax.process_count(),
                             process_id=jax.process_index())
  config = resolve_config(coordinator_address, num_processes, process_id)
  if config.mode == "single":
    return config
  kwargs = dict(coordinator_address=config.coordinator_address,
                num_processes=config.num_processes,
                process_id=config.process_id,
                initialization_timeout=initialization_timeout)
  if local_device_ids is not None:
    kwargs["local_device_ids"] = list(local_device_ids)
  if _backends_ready():
    raise RuntimeError(
        "initialize_if_needed() must be called before any JAX computation "
        "(first thing in main()), but JAX backends are already initialized; "
        f"config: {config}")
  try:
    jax.distributed.initialize(**kwargs)
  except RuntimeError as e:
    raise RuntimeError(
        "jax.distributed.initialize failed; initialize_if_needed() must be "
        "called before any JAX computation (first thing in main()). "
        f"Config: {config}. Cause: {e}") from e
  logging.info("JAX distributed: process %d of %d, %d local / %d global "
               "devices (%s)", jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count(), config.mode)
  return config


def _backends_ready() -> bool:
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    return bool(xla_bridge._backends)  # pylint: disable=protected-access
  except (ImportError, AttributeError):
    return False


def is_chief() -> bool:
  """True on process 0, the one that logs, writes summaries and prints."""
  return jax.process_index() == 0


def batch_sharding(mesh: Mesh, axis_name: str = "data") -> NamedSharding:
  """Sharding of batch arrays: axis 0 split over ``axis_name``."""
  return NamedSharding(mesh, PartitionSpec(axis_name))


def host_local_batch_slice(global_batch_size: int,
                           process_index: Optional[int] = None,
                           process_count: Optional[int] = None,
                           mesh: Optional[Mesh] = None,
                           axis_name: str = "data") -> slice:
  """Rows of the global batch that this process loads.

  With ``mesh`` the answer is read off the mesh's batch sharding, so it stays
  right for any device order; it must then be one contiguous block (true for
  a 1-D mesh built from ``jax.devices()``).

  Args:
    global_batch_size: B, divisible by the process count (and by the number of
      devices of the mesh axis when ``mesh`` is given).
    process_index: defaults to ``jax.process_index()``.
    process_count: defaults to ``jax.process_count()``.
    mesh: optional mesh whose ``axis_name`` axis shards the batch.
    axis_name: the mesh axis of the batch.

  Returns:
    ``slice(start, stop)`` of length ``B // process_count``.

  Raises:
    ValueError: if B does not split evenly or the index is out of range.
  """
  pid = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if count < 1 or not 0 <= pid < count:
    raise ValueError(f"process_index {pid} out of range for process_count "
                     f"{count}")
  if global_batch_size < 1 or global_batch_size % count:
    raise ValueError(f"global batch size {global_batch_size} is not "
                     f"divisible by the process count {count}")
  if mesh is None:
    per = global_batch_size // count
    return slice(pid * per, (pid + 1) * per)
  sharding = batch_sharding(mesh, axis_name)
  n_shards = mesh.shape[axis_name]
  if global_batch_size % n_shards:
    raise ValueError(f"global batch size {global_batch_size} is not "
                     f"divisible by the {n_shards} devices of mesh axis "
                     f"{axis_name!r}")
  index_map = sharding.devices_indices_map((global_batch_size,))
  rows = sorted({(idx[0].start or 0, idx[0].stop or global_batch_size)
                 for dev, idx in index_map.items()
                 if dev.process_index == pid})
  if not rows:
    raise ValueError(f"process {pid} holds no device of the mesh")
  start, stop = rows[0][0], rows[-1][1]
  if sum(b - a for a, b in rows) != stop - start:
    raise ValueError(f"process {pid}'s rows of the batch are not contiguous "
                     f"in this mesh: {rows}")
  return slice(start, stop)


def global_batch(local_batch: Any, mesh: Mesh, axis_name: str = "data"
                 ) -> Any:
  """Assembles process-local numpy batches into global sharded jax.Arrays.

  Every leaf ``[B_local, ...]`` becomes a global ``[B_local * process_count,
  ...]`` array split over the mesh's ``axis_name``; row order is process 0's
  rows, then process 1's, and so on (the order of
  :func:`host_local_batch_slice`). Single-process this is a ``device_put``
  (a leaf that already is a ``jax.Array``, e.g. a global batch after a
  jitted augmentation, is moved to the batch sharding on the devices). The one batch placement of the project: the train
  steps, the input pipeline's callers and the multi-host check use it.

  Args:
    local_batch: pytree of arrays with this process's rows on axis 0.
    mesh: the global mesh (all processes' devices).
    axis_name: mesh axis that shards the batch.

  Returns:
    Pytree of the same structure holding global ``jax.Array`` s.

  Raises:
    ValueError: if a leaf is a scalar or its rows do not split evenly over
      this process's devices of the axis.
  """
  sharding = batch_sharding(mesh, axis_name)
  count = jax.process_count()
  local_shards = mesh.shape[axis_name] // count if count else 0

  def put(x):
    if isinstance(x, jax.Array):  # already placed (a global array): moved
      return jax.device_put(x, sharding)
    x = np.asarray(x)
    if x.ndim == 0:
      raise ValueError("batch leaves need a batch axis, got a scalar")
    if local_shards and x.shape[0] % local_shards:
      raise ValueError(f"local batch of {x.shape[0]} rows does not split "
                       f"over this process's {local_shards} devices")
    global_shape = (x.shape[0] * count,) + x.shape[1:]
    return jax.make_array_from_process_local_data(sharding, x, global_shape)

  return jax.tree_util.tree_map(put, local_batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places identical host values on every device of ``mesh`` (replicated).

  Every process must pass the same values (e.g. params initialized from the
  same seed). Works across processes, unlike a plain ``device_put`` of
  process-local data.
  """
  sharding = NamedSharding(mesh, PartitionSpec())

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

  return jax.tree_util.tree_map(put, tree)


def sync(name: str) -> None:
  """Barrier across processes (no-op single-process), e.g. before exiting."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def to_host(tree: Any) -> Any:
  """Fetches replicated or fully addressable arrays to numpy on every process.

  Arrays sharded across processes are all-gathered first, so every process
  gets the full global value (use for metrics / small eval outputs).
  """
  def fetch(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
  return jax.tree_util.tree_map(fetch, tree)
