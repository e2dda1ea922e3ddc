"""Orbax checkpoints of training runs, and loading encoders out of them.

Layout of a run's workdir::

  workdir/checkpoints/<step>/default/...   orbax checkpoint of the TrainState
  workdir/checkpoints/<step>/data_iter/    the input iterator's grain state
                                           (one JSON per process)
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

Corruption: once a step is on disk, process 0 writes
``<step>/checksums.json`` (sha256 and size of every file of the step; orbax
keeps no checksums of its own). Every load verifies them first and names the
file that changed; a step without the file (older runs) loads with a warning.

Where a run is expected, a step folder is accepted too:
``RUN/checkpoints/800`` means RUN at step 800. Bad paths, steps and files
raise ``UserError`` (one ``error:`` line at the entry points).

Which step a loader reads (``choose_step``): without a step, the step the
run *selected* on validation: the one ``WORKDIR/final_metrics.json`` names
(the checkpoint training scored on the test split), else the step orbax
ranks best by the run's ``best_metric``/``best_mode`` (the metrics training
saved into each step); runs that rank nothing (SimCLR without a validation
metric) give their latest step. ``LATEST`` asks for the last step, an int
for that one. The retention above keeps the best step, so the selected step
is on disk unless someone deleted it (then a ``UserError`` says so).
"""
import dataclasses
import gc
import hashlib
import io
import json
import re
import sys
import time
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from absl import logging
import grain
import jax
import orbax.checkpoint as ocp

from sonify_jax import logs

from sonify_jax import atomic_io
from sonify_jax import paths
from sonify_jax.errors import UserError

CHECKPOINT_SUBDIR = "checkpoints"
RUN_INFO_FILE = "run.json"
CHECKSUMS_FILE = "checksums.json"
FINAL_METRICS = "final_metrics.json"   # next to checkpoints/, by the trainer
LATEST = "latest"                      # a step request: the last step saved
# Items of a step: the TrainState under orbax's default item name (so
# single-item readers such as ``load_state`` read it as before) and the
# training input iterator's state (grain's orbax handler).
STATE_ITEM = "default"
DATA_ITER_ITEM = "data_iter"


class NotARunError(UserError, FileNotFoundError):
  """A path that holds no sonify_jax run (also a FileNotFoundError)."""


class CorruptCheckpointError(UserError):
  """A checkpoint file differs from the checksum recorded when it was saved."""

_policies = ocp.checkpoint_managers

# A step request: None (the run's selected step), LATEST, or a step number.
StepRequest = Union[None, str, int]


def parse_step(text: Optional[str]) -> StepRequest:
  """A ``--step`` flag value: '' / None / 'best' -> None (the run's selected
  step), 'latest' -> ``LATEST``, digits -> that int."""
  text = "" if text is None else str(text).strip().lower()
  if text in ("", "best", "selected"):
    return None
  if text == LATEST:
    return LATEST
  if text.lstrip("-").isdigit():   # -1 too: refused as "no step -1"
    return int(text)
  raise UserError(f"--step must be a step number, 'best' or 'latest', got "
                  f"{text!r}")


def _metric_fn(metric: str):
  """Orbax's ``best_fn``: a step's saved metrics -> the ranked value."""
  return lambda metrics: float(metrics[metric])


def split_step_dir(path: str, step: Optional[int] = None
                   ) -> Tuple[str, Optional[int]]:
  """``(run path, step)``: a step folder ``RUN/checkpoints/800`` becomes
  ``(RUN/checkpoints, 800)``; any other path is returned with ``step``.

  Raises:
    NotARunError: ``path`` does not exist.
    UserError: a step folder and a different ``step`` were both given.
  """
  path = paths.resolve(path)
  if not paths.as_path(path).exists():
    raise NotARunError(f"{path} does not exist")
  parent, name = paths.split(path)
  if name.isdigit() and (paths.split(parent)[1] == CHECKPOINT_SUBDIR or
                         paths.as_path(parent, RUN_INFO_FILE).exists()):
    if step is not None and int(step) != int(name):
      raise UserError(f"{path} is the folder of step {name} but step {step} "
                      "was asked for")
    return parent, int(name)
  return path, step


def checkpoint_dir(path: str) -> str:
  """The checkpoint directory of a workdir (``path/checkpoints``), or ``path``
  itself when it already is one."""
  path = paths.resolve(path)
  if paths.split(path)[1] == CHECKPOINT_SUBDIR:
    return path
  sub = paths.join(path, CHECKPOINT_SUBDIR)
  if not paths.as_path(sub).is_dir() and paths.as_path(
      path, RUN_INFO_FILE).exists():
    return path
  return sub


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with paths.as_path(path).open("rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _size(path: str) -> int:
  return paths.as_path(path).stat().length


def _step_files(step_dir: str) -> Dict[str, str]:
  """Relative path -> absolute path of every file of a step but the
  checksums file itself."""
  return {rel: path for rel, path in paths.files_under(step_dir).items()
          if rel != CHECKSUMS_FILE}


def write_checksums(step_dir: str) -> str:
  """Records sha256 and size of every file of a finished step."""
  files = {rel: {"sha256": _sha256(full), "bytes": _size(full)}
           for rel, full in sorted(_step_files(step_dir).items())}
  return atomic_io.write_json(paths.join(step_dir, CHECKSUMS_FILE),
                              {"algorithm": "sha256", "files": files})


def verify_checksums(step_dir: str) -> bool:
  """Checks a step's files against its checksums; False (with a warning)
  when the step has none (saved before checksums were recorded).

  Raises:
    CorruptCheckpointError: naming the first file that is missing or changed.
  """
  path = paths.join(step_dir, CHECKSUMS_FILE)
  if not paths.as_path(path).exists():
    logging.warning("%s has no %s (saved by an older version): loading it "
                    "unverified", step_dir, CHECKSUMS_FILE)
    return False
  try:
    with paths.as_path(path).open("r") as f:
      recorded = json.load(f)["files"]
  except (ValueError, KeyError, TypeError) as error:
    raise CorruptCheckpointError(f"{path} is unreadable ({error})") from None
  for rel, want in sorted(recorded.items()):
    full = paths.join(step_dir, rel)
    if not paths.as_path(full).is_file():
      raise CorruptCheckpointError(f"checkpoint file {full} is missing")
    if (_size(full) != want["bytes"] or
        _sha256(full) != want["sha256"]):
      raise CorruptCheckpointError(
          f"checkpoint file {full} is corrupt: its sha256 differs from the "
          f"one recorded when step {paths.split(step_dir)[1]} was saved "
          "(load another step, or delete this step's folder to resume from "
          "an earlier one)")
  return True


def save_run_info(workdir: str, config: Any, **extra) -> str:
  """Writes the config (and e.g. arch, num_classes) next to the checkpoints.

  Args:
    workdir: the run's workdir.
    config: an ml_collections ConfigDict (or a plain dict).
    **extra: JSON-able facts the config does not hold (num_classes, ...).

  Returns:
    The path written. Only process 0 writes.
  """
  path = paths.join(checkpoint_dir(workdir), RUN_INFO_FILE)
  if jax.process_index() != 0:
    return path
  config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  info = {"config": config_dict, **extra}
  atomic_io.write_text(path, json.dumps(info, indent=2, sort_keys=True,
                                        default=repr))
  return path


def load_run_info(path: str) -> Dict[str, Any]:
  """The run.json of a workdir, checkpoint dir or step folder."""
  path, _ = split_step_dir(path)
  info_path = paths.join(checkpoint_dir(path), RUN_INFO_FILE)
  if not paths.as_path(info_path).exists():
    raise NotARunError(
        f"{path} is not a sonify_jax run: no {CHECKPOINT_SUBDIR}/"
        f"{RUN_INFO_FILE} (pass a training --workdir, its {CHECKPOINT_SUBDIR}"
        " folder or one step folder in it)")
  try:
    with paths.as_path(info_path).open("r") as f:
      return json.load(f)
  except ValueError as error:
    raise UserError(f"{info_path} is not valid JSON ({error})") from None


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
      best_fn = _metric_fn(best_metric)
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
        self.directory, options=options, item_handlers=_item_handlers())
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
    # Orbax warns when a run that tracks a metric saves a step without one
    # (step 0, preemption saves); such steps are simply not ranked.
    with logs.quiet_message("Requested `tracked_metric`"):
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
      write_checksums(self.step_dir(step))  # unless retention removed it

  def step_dir(self, step: int) -> str:
    return paths.join(self.directory, str(int(step)))

  def restore(self, state_template: Any, step: Optional[int] = None) -> Any:
    """The TrainState at ``step`` (latest if None), shaped like the template.

    The template's shardings are used for the restored arrays.
    """
    self.wait()
    step = self.latest_step() if step is None else int(step)
    if step is None:
      raise NotARunError(f"no checkpoint in {self.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
    return _verified_restore(self.manager, self.directory, step, abstract)

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


def _verified_restore(manager: ocp.CheckpointManager, directory: str,
                      step: int, target: Any,
                      verified: Optional[bool] = None) -> Any:
  """Restores ``step`` after checking its checksums (unless ``verified``
  says it was done); a file orbax cannot decode becomes a
  ``CorruptCheckpointError`` naming the step. Only the train state is read;
  the input iterator's state is ``restore_data_iter``'s."""
  if verified is None:
    verified = verify_checksums(paths.join(directory, str(step)))
  def read():
    return manager.restore(step, args=ocp.args.Composite(**{
        STATE_ITEM: ocp.args.StandardRestore(target)}))[STATE_ITEM]
  return _read_or_explain(read, f"cannot read step {step} of {directory}",
                          verified)


def _read_or_explain(read, what: str, verified: bool) -> Any:
  """``read()``; an exception becomes a ``CorruptCheckpointError``.

  Only an unverified (pre-checksum) step can fail this way. When one read of
  orbax's parallel reads fails, orbax closes its event loop and the others'
  callbacks print "Event loop is closed" tracebacks on stderr, during and
  just after the call: for such steps stderr is held back meanwhile and
  given back only when the read succeeds.
  """
  if verified:
    return read()
  held, saved = io.StringIO(), sys.stderr
  sys.stderr = held
  try:
    result = read()
  except Exception as error:  # pylint: disable=broad-except
    _drop_orphaned_read_reports()
    gc.collect()     # most orphaned reads die now, into ``held``
    time.sleep(0.5)  # let the orphaned reads finish into ``held``
    raise CorruptCheckpointError(f"{what}: {_describe_read_error(error)}"
                                 ) from error
  finally:
    sys.stderr = saved
  saved.write(held.getvalue())
  return result


_ORPHANED_READ = "_read_array_index_and_device_put"


def _drop_orphaned_read_reports() -> None:
  """Silences orbax's orphaned reads of a step that failed to read.

  The other reads of that step die later, as coroutines garbage-collected
  with an exception, and Python prints each through ``sys.unraisablehook``
  ("Exception ignored in ... Traceback") whenever the collection happens:
  after our one ``error:`` line, or in the middle of the next command of a
  notebook. They are expected once a read failed, so this hook drops those
  (orbax's coroutine, by name) and passes everything else on.
  """
  previous = sys.unraisablehook
  if getattr(previous, "drops_orphaned_reads", False):
    return

  def hook(unraisable):
    code = getattr(unraisable.object, "cr_code", None)
    if getattr(code, "co_name", "") == _ORPHANED_READ:
      return
    previous(unraisable)

  hook.drops_orphaned_reads = True
  sys.unraisablehook = hook


def _describe_read_error(error: BaseException) -> str:
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


def _read_only_manager(directory: str, best_metric: str = "",
                       best_mode: str = "max") -> ocp.CheckpointManager:
  """A manager that only reads; with ``best_metric`` it also ranks the
  steps by the metrics training saved into them (``best_step``)."""
  if not paths.as_path(directory).is_dir():
    raise NotARunError(f"checkpoint directory {directory} does not exist")
  ranking = (dict(best_fn=_metric_fn(best_metric), best_mode=best_mode)
             if best_metric else {})
  # Orbax warns "Given directory is read only" for every read-only manager:
  # reading is what we asked for, so the warning is false here.
  with logs.quiet_message("Given directory is read only",
                          "CheckpointManagerOptions.read_only=True"):
    return ocp.CheckpointManager(
        directory,
        options=ocp.CheckpointManagerOptions(read_only=True, **ranking),
        item_handlers=_item_handlers())


def _item_handlers() -> Dict[str, Any]:
  """A step's items: the TrainState and the input iterator's state (every
  manager knows both, so orbax never meets an item it cannot name)."""
  return {STATE_ITEM: ocp.StandardCheckpointHandler(),
          DATA_ITER_ITEM: grain.checkpoint.CheckpointHandler()}


def available_steps(path: str) -> Sequence[int]:
  """Steps with a complete checkpoint under a workdir or checkpoint dir."""
  path, _ = split_step_dir(path)
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


@dataclasses.dataclass(frozen=True)
class StepChoice:
  """Which checkpoint step a loader reads, and why.

  Attributes:
    step: the step.
    why: one line for people, e.g. "best eval/mAP on validation".
    selected_on: the split the step was selected on ('' when it was not
      selected on a split: latest, or asked for).
    selected_by: the metric that selected it, or 'latest' / 'asked'.
    latest: the run's last step.
  """
  step: int
  why: str
  selected_on: str = ""
  selected_by: str = LATEST
  latest: int = -1

  def describe(self) -> str:
    """'step 40: best eval/mAP on validation ...; latest is 60'."""
    latest = (f"; latest is {self.latest}" if self.step != self.latest
              else "")
    return f"step {self.step}: {self.why}{latest}"

  def record(self) -> Dict[str, Any]:
    """The fields a study's JSON records about its checkpoint."""
    return {"checkpoint_step": self.step,
            "checkpoint_selected_on": self.selected_on,
            "checkpoint_selected_by": self.selected_by,
            "checkpoint_latest_step": self.latest,
            "checkpoint_why": self.why}


def _read_final_metrics(directory: str) -> Dict[str, Any]:
  """The trainer's final_metrics.json of the run whose checkpoint dir is
  ``directory`` ({} when it wrote none)."""
  parent, name = paths.split(directory)
  path = paths.join(parent if name == CHECKPOINT_SUBDIR else directory,
                    FINAL_METRICS)
  if not paths.as_path(path).exists():
    return {}
  try:
    with paths.as_path(path).open("r") as f:
      return json.load(f)
  except ValueError as error:
    raise UserError(f"{path} is not valid JSON ({error})") from None


def _choose(manager: ocp.CheckpointManager, directory: str,
            step: StepRequest, config: Mapping[str, Any]) -> StepChoice:
  steps = sorted(manager.all_steps())
  if not steps:
    raise NotARunError(f"no checkpoint in {directory}")
  latest = steps[-1]
  if step == LATEST:
    return StepChoice(latest, "the latest step, asked for", latest=latest)
  if step is not None:
    if int(step) not in steps:
      raise UserError(
          f"no checkpoint for step {step} in {directory}; have {steps}")
    return StepChoice(int(step), "asked for", selected_by="asked",
                      latest=latest)
  final = _read_final_metrics(directory)
  if final.get("selected_on"):
    chosen, metric, split = (int(final["step"]), final["selected_by"],
                             final["selected_on"])
    if chosen not in steps:
      raise UserError(
          f"step {chosen}, the best {metric} on {split} ({FINAL_METRICS}), "
          f"is no longer in {directory} (have {steps}); pass --step=latest "
          "or a step number")
    return StepChoice(chosen, f"best {metric} on {split}, as {FINAL_METRICS}"
                      " records", split, metric, latest)
  metric = config.get("best_metric", "")
  best = manager.best_step() if metric else None
  if best is None:
    why = (f"the latest step (no step has a saved {metric})" if metric else
           "the latest step (the run ranks no checkpoint: no best_metric)")
    return StepChoice(latest, why, latest=latest)
  split = config.get("eval_split", "") or "validation"
  return StepChoice(int(best), f"best {metric} on {split} among the "
                    "saved steps", split, metric, latest)


def _open_for_choice(path: str, step: StepRequest, need_run: bool = False
                     ) -> Tuple[ocp.CheckpointManager, str, StepRequest,
                                Mapping[str, Any]]:
  """(read-only manager ranking by the run's best_metric, checkpoint dir,
  step request, run config); without ``need_run``, checkpoints that have no
  run.json (a bare TrainState, as ``load_state`` reads) rank nothing."""
  path, folder_step = split_step_dir(path, None if step == LATEST else step)
  if folder_step is not None:   # a step folder, or a step number asked for
    step = folder_step
  directory = checkpoint_dir(path)
  try:
    config = load_run_info(path).get("config", {})
  except NotARunError:
    if need_run:
      raise
    config = {}
  manager = _read_only_manager(directory, config.get("best_metric", ""),
                               config.get("best_mode", "max"))
  return manager, directory, step, config


def choose_step(path: str, step: StepRequest = None) -> StepChoice:
  """The step a loader reads for ``step`` (see the module docstring).

  Args:
    path: a run's workdir, its ``checkpoints`` directory or a step folder
      (which is that step).
    step: None for the run's selected step, ``LATEST``, or a step number.

  Raises:
    UserError: the step asked for, or the selected one, is not on disk.
  """
  manager, directory, step, config = _open_for_choice(path, step,
                                                      need_run=True)
  try:
    return _choose(manager, directory, step, config)
  finally:
    manager.close()


def _restore_raw(path: str, step: StepRequest
                 ) -> Tuple[Dict[str, Any], int]:
  manager, directory, step, config = _open_for_choice(path, step)
  try:
    step = _choose(manager, directory, step, config).step
    verified = verify_checksums(paths.join(directory, str(step)))
    target = _local_target(_read_or_explain(
        lambda: manager.item_metadata(step)[STATE_ITEM],
        f"cannot read the metadata of step {step} of {directory}", verified))
    raw = _verified_restore(manager, directory, step, target, verified)
  finally:
    manager.close()
  return raw, step


def load_encoder(path: str, step: StepRequest = None
                 ) -> Tuple[Dict[str, Any], str]:
  """CNN12 params of a run's encoder, and the arch name they belong to.

  Args:
    path: a run's workdir, its ``checkpoints`` directory, or a step folder.
    step: checkpoint step, ``LATEST``, or None: the step folder's, else the
      run's selected step (``choose_step``).

  Returns:
    (encoder params ``{'block1': {'kernel', 'bias'}, ..., 'embedding': ...}``
    as usable by ``deconvnet.sonify``, arch name e.g. ``'cnn12'``).
  """
  info = load_run_info(path)
  raw, _ = _restore_raw(path, step)
  try:
    encoder = raw["params"]["encoder"]
  except (KeyError, TypeError):
    raise UserError(
        f"checkpoint under {path!r} has no params['encoder']") from None
  arch = info.get("arch") or info["config"]["model"]
  return encoder, arch


def load_state(path: str, state_template: Any = None,
               step: StepRequest = None) -> Any:
  """A run's whole TrainState.

  Args:
    path: workdir or checkpoint dir.
    state_template: a TrainState of the same structure (e.g. freshly
      initialised); None returns the raw nested dict of arrays.
    step: as for :func:`load_encoder`.
  """
  if state_template is None:
    return _restore_raw(path, step)[0]
  manager, directory, step, config = _open_for_choice(path, step)
  try:
    step = _choose(manager, directory, step, config).step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
    return _verified_restore(manager, directory, step, abstract)
  finally:
    manager.close()
