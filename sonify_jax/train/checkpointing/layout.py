"""Where a run's checkpoints are, and what a step holds.

Layout of a run's workdir::

  workdir/checkpoints/<step>/default/...   orbax checkpoint of the TrainState
  workdir/checkpoints/<step>/data_iter/    the input iterator's grain state
                                           (one JSON per process)
  workdir/checkpoints/<step>/checksums.json  sha256 of the step's files
  workdir/checkpoints/run.json     the run's config + arch name + num_classes
  workdir/final_metrics.json       the step training scored on the test split

Where a run is expected, a step folder is accepted too:
``RUN/checkpoints/800`` means RUN at step 800. Bad paths raise
``UserError`` (one ``error:`` line at the entry points).
"""
import json
from typing import Any, Dict, Optional, Tuple

import grain
import jax
import orbax.checkpoint as ocp

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
  """A checkpoint file differs from the checksum recorded when it was saved,
  or (a step saved without checksums) cannot be decoded."""


def item_handlers() -> Dict[str, Any]:
  """A step's items: the TrainState and the input iterator's state (every
  manager knows both, so orbax never meets an item it cannot name)."""
  return {STATE_ITEM: ocp.StandardCheckpointHandler(),
          DATA_ITER_ITEM: grain.checkpoint.CheckpointHandler()}


def metric_fn(metric: str):
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


def _read_json(path: str) -> Any:
  try:
    with paths.as_path(path).open("r") as f:
      return json.load(f)
  except ValueError as error:
    raise UserError(f"{path} is not valid JSON ({error})") from None


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
  return _read_json(info_path)


def read_final_metrics(directory: str) -> Dict[str, Any]:
  """The trainer's final_metrics.json of the run whose checkpoint dir is
  ``directory`` ({} when it wrote none)."""
  parent, name = paths.split(directory)
  path = paths.join(parent if name == CHECKPOINT_SUBDIR else directory,
                    FINAL_METRICS)
  if not paths.as_path(path).exists():
    return {}
  return _read_json(path)
