"""Orbax checkpoints of training runs, and loading encoders out of them.

Layout of a run's workdir::

  workdir/checkpoints/<step>/...   orbax checkpoints of the whole TrainState
  workdir/checkpoints/run.json     the run's config + arch name + num_classes

Retention: the last ``keep_last`` checkpoints, the best one by an eval metric
(when the run has one), and every step in ``keep_steps`` (the snapshots the
feature-evolution analysis listens to; those are never deleted). Orbax writes
each checkpoint to a temporary directory and renames it when complete, so a
killed run never leaves a half-written checkpoint that restore would pick.

Saves are asynchronous (orbax writes in a background thread while training
goes on): ``Checkpointer.save`` returns once the arrays are copied off the
devices. A save is *finished* when orbax has renamed it into place; the
Checkpointer notices that before the next save, before a restore, in
``wait()`` and at ``close()``, and then calls :meth:`Checkpointer._finished`
once per step: the one place for work that needs the step complete on disk.
"""
import json
import os
import tempfile
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import jax
import orbax.checkpoint as ocp

CHECKPOINT_SUBDIR = "checkpoints"
RUN_INFO_FILE = "run.json"

_policies = ocp.checkpoint_managers


def checkpoint_dir(path: str) -> str:
  """The checkpoint directory of a workdir (``path/checkpoints``), or ``path``
  itself when it already is one."""
  path = os.path.abspath(os.fspath(path))
  if os.path.basename(path) == CHECKPOINT_SUBDIR:
    return path
  sub = os.path.join(path, CHECKPOINT_SUBDIR)
  if not os.path.isdir(sub) and os.path.exists(
      os.path.join(path, RUN_INFO_FILE)):
    return path
  return sub


def _atomic_write_text(path: str, text: str) -> None:
  directory = os.path.dirname(path)
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_",
                             suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def save_run_info(workdir: str, config: Any, **extra) -> str:
  """Writes the config (and e.g. arch, num_classes) next to the checkpoints.

  Args:
    workdir: the run's workdir.
    config: an ml_collections ConfigDict (or a plain dict).
    **extra: JSON-able facts the config does not hold (num_classes, ...).

  Returns:
    The path written. Only process 0 writes.
  """
  path = os.path.join(checkpoint_dir(workdir), RUN_INFO_FILE)
  if jax.process_index() != 0:
    return path
  config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  info = {"config": config_dict, **extra}
  _atomic_write_text(path, json.dumps(info, indent=2, sort_keys=True,
                                      default=repr))
  return path


def load_run_info(path: str) -> Dict[str, Any]:
  """The run.json of a workdir or checkpoint dir."""
  info_path = os.path.join(checkpoint_dir(path), RUN_INFO_FILE)
  if not os.path.exists(info_path):
    raise FileNotFoundError(
        f"{info_path} not found: {path!r} is not a sonify_jax run/checkpoint "
        "directory")
  with open(info_path) as f:
    return json.load(f)


class Checkpointer:
  """Saves/restores a run's TrainState with the retention described above.

  Args:
    workdir: the run's workdir (checkpoints go to ``workdir/checkpoints``).
    keep_last: how many of the most recent checkpoints to keep.
    keep_steps: steps whose checkpoints are never deleted.
    best_metric: metric name ranking checkpoints (e.g. ``'eval/mAP'``); ''
      for none.
    best_mode: 'max' or 'min'.
  """

  def __init__(self, workdir: str, *, keep_last: int = 3,
               keep_steps: Sequence[int] = (), best_metric: str = "",
               best_mode: str = "max"):
    if keep_last < 1:
      raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    if best_mode not in ("max", "min"):
      raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
    self.directory = checkpoint_dir(workdir)
    self.keep_steps = frozenset(int(s) for s in keep_steps)
    self.best_metric = best_metric
    policies = [_policies.LatestN(n=keep_last)]
    if self.keep_steps:
      policies.append(_policies.CustomSteps(sorted(self.keep_steps)))
    best_fn = None
    if best_metric:
      best_fn = lambda m: float(m[best_metric])  # pylint: disable=unnecessary-lambda-assignment
      # BestN sorts ascending and keeps the tail: reverse for 'min'.
      policies.append(_policies.BestN(
          get_metric_fn=best_fn, reverse=best_mode == "min", n=1,
          keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=_policies.AnyPreservationPolicy(policies),
        # The preservation policy decides; best_fn only makes orbax write the
        # metrics into each step, so a restarted run still knows the best.
        best_fn=best_fn, best_mode=best_mode,
        # Training goes on while orbax writes; orbax itself waits for the
        # previous save before starting the next.
        enable_async_checkpointing=True,
        cleanup_tmp_directories=True,
        create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options)
    self._unfinished = []   # steps saved whose write may still be running

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def all_steps(self) -> Sequence[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state: Any,
           metrics: Optional[Mapping[str, float]] = None) -> None:
    """Saves ``state`` as ``step``; ``metrics`` ranks it for 'best'."""
    if metrics is not None and self.best_metric:
      if self.best_metric not in metrics:
        metrics = None
      else:
        metrics = {k: float(v) for k, v in metrics.items()}
    else:
      metrics = None
    self.wait()
    self.manager.save(int(step), args=ocp.args.StandardSave(state),
                      metrics=metrics, force=True)
    self._unfinished.append(int(step))

  def wait(self) -> None:
    """Blocks until every save so far is on disk (then runs ``_finished``)."""
    self.manager.wait_until_finished()
    steps, self._unfinished = self._unfinished, []
    for step in steps:
      self._finished(step)

  def _finished(self, step: int) -> None:
    """Runs once per saved step, after its checkpoint is complete on disk
    (renamed into place by orbax), on every process."""
    del step

  def restore(self, state_template: Any, step: Optional[int] = None) -> Any:
    """The TrainState at ``step`` (latest if None), shaped like the template.

    The template's shardings are used for the restored arrays.
    """
    self.wait()
    step = self.latest_step() if step is None else int(step)
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def close(self) -> None:
    self.wait()
    self.manager.close()


def _read_only_manager(directory: str) -> ocp.CheckpointManager:
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"checkpoint directory {directory} does not exist")
  return ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(read_only=True),
      item_handlers=ocp.StandardCheckpointHandler())


def available_steps(path: str) -> Sequence[int]:
  """Steps with a complete checkpoint under a workdir or checkpoint dir."""
  manager = _read_only_manager(checkpoint_dir(path))
  try:
    return sorted(manager.all_steps())
  finally:
    manager.close()


def _local_target(metadata: Any) -> Any:
  """A restore target on this process's first device, built from the saved
  shapes/dtypes, so a checkpoint written on another topology (a TPU slice,
  8 virtual devices) loads on a laptop."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  metadata = getattr(metadata, "tree", metadata)
  return jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
      metadata)


def _restore_raw(path: str, step: Optional[int]) -> Tuple[Dict[str, Any], int]:
  directory = checkpoint_dir(path)
  manager = _read_only_manager(directory)
  try:
    steps = sorted(manager.all_steps())
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {directory}")
    if step is None:
      step = steps[-1]
    elif int(step) not in steps:
      raise ValueError(
          f"no checkpoint for step {step} in {directory}; have {steps}")
    raw = manager.restore(int(step), args=ocp.args.StandardRestore(
        _local_target(manager.item_metadata(int(step)))))
  finally:
    manager.close()
  return raw, int(step)


def load_encoder(path: str, step: Optional[int] = None
                 ) -> Tuple[Dict[str, Any], str]:
  """CNN12 params of a run's encoder, and the arch name they belong to.

  Args:
    path: a run's workdir, or its ``checkpoints`` directory.
    step: checkpoint step; the latest if None.

  Returns:
    (encoder params ``{'block1': {'kernel', 'bias'}, ..., 'embedding': ...}``
    as usable by ``deconvnet.sonify``, arch name e.g. ``'cnn12'``).
  """
  info = load_run_info(path)
  raw, _ = _restore_raw(path, step)
  try:
    encoder = raw["params"]["encoder"]
  except (KeyError, TypeError):
    raise ValueError(
        f"checkpoint under {path!r} has no params['encoder']") from None
  arch = info.get("arch") or info["config"]["model"]
  return encoder, arch


def load_state(path: str, state_template: Any = None,
               step: Optional[int] = None) -> Any:
  """A run's whole TrainState.

  Args:
    path: workdir or checkpoint dir.
    state_template: a TrainState of the same structure (e.g. freshly
      initialised); None returns the raw nested dict of arrays.
    step: checkpoint step; the latest if None.
  """
  if state_template is None:
    return _restore_raw(path, step)[0]
  manager = _read_only_manager(checkpoint_dir(path))
  try:
    step = manager.latest_step() if step is None else int(step)
    if step is None:
      raise FileNotFoundError(f"no checkpoint under {path}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))
  finally:
    manager.close()
