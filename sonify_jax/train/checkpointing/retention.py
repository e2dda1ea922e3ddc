"""The ``Checkpointer``: saves a run's steps and decides which stay on disk.

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
once per step: the one place for work that needs the step complete on disk
(process 0 writes the step's checksums there).
"""
from typing import Any, Mapping, Optional, Sequence

import grain
import jax
import orbax.checkpoint as ocp

from sonify_jax import paths
from sonify_jax.train.checkpointing import checksums
from sonify_jax.train.checkpointing import layout
from sonify_jax.train.checkpointing import orbax_compat
from sonify_jax.train.checkpointing.layout import DATA_ITER_ITEM, STATE_ITEM

_policies = ocp.checkpoint_managers


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
    self.directory = layout.checkpoint_dir(workdir)
    self.keep_steps = frozenset(int(s) for s in keep_steps)
    self.best_metric = best_metric
    policies = [_policies.LatestN(n=keep_last)]
    if self.keep_steps:
      policies.append(_policies.CustomSteps(sorted(self.keep_steps)))
    best_fn = None
    if best_metric:
      best_fn = layout.metric_fn(best_metric)
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
    self.manager = ocp.CheckpointManager(
        self.directory, options=options, item_handlers=layout.item_handlers())
    self._unfinished = []   # steps saved whose write may still be running

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def all_steps(self) -> Sequence[int]:
    return list(self.manager.all_steps())

  def best_step(self) -> Optional[int]:
    """The step with the best ``best_metric`` so far (None: none ranked)."""
    if not self.best_metric:
      return None
    return self.manager.best_step()

  def save(self, step: int, state: Any,
           metrics: Optional[Mapping[str, float]] = None,
           data_iter: Any = None) -> None:
    """Saves ``state`` as ``step``; ``metrics`` ranks it for 'best';
    ``data_iter`` (a grain iterator, e.g. ``pipeline.train_batches``) has its
    ``get_state()`` saved in the same step (taken now, before returning)."""
    if metrics is not None and self.best_metric:
      if self.best_metric not in metrics:
        metrics = None
      else:
        metrics = {k: float(v) for k, v in metrics.items()}
    else:
      metrics = None
    self.wait()
    with orbax_compat.saving_unranked_steps():
      items = {STATE_ITEM: ocp.args.StandardSave(state)}
      if data_iter is not None:
        items[DATA_ITER_ITEM] = grain.checkpoint.CheckpointSave(data_iter)
      self.manager.save(int(step), args=ocp.args.Composite(**items),
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
    (renamed into place by orbax), on every process: process 0 records the
    step's checksums."""
    if jax.process_index() == 0 and paths.as_path(self.step_dir(step)).is_dir():
      # (unless retention removed it)
      checksums.write_checksums(self.step_dir(step))

  def step_dir(self, step: int) -> str:
    return paths.join(self.directory, str(int(step)))

  def restore(self, state_template: Any, step: Optional[int] = None) -> Any:
    """The TrainState at ``step`` (latest if None), shaped like the template.

    The template's shardings are used for the restored arrays.
    """
    self.wait()
    step = self.latest_step() if step is None else int(step)
    if step is None:
      raise layout.NotARunError(f"no checkpoint in {self.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
    return checksums.verified_restore(self.manager, self.directory, step,
                                      abstract)

  def restore_data_iter(self, data_iter: Any, step: int) -> bool:
    """Sets ``data_iter``'s state to the one saved with ``step``.

    Returns False (leaving ``data_iter`` as it is) when the step holds no
    iterator state (step 0, runs saved before it was recorded). Call after
    ``restore``, which verifies the step's checksums.
    """
    self.wait()
    if not paths.as_path(self.step_dir(step), DATA_ITER_ITEM).is_dir():
      return False
    self.manager.restore(int(step), args=ocp.args.Composite(**{
        DATA_ITER_ITEM: grain.checkpoint.CheckpointRestore(data_iter)}))
    return True

  def close(self) -> None:
    self.wait()
    self.manager.close()
