"""Orbax checkpoints of training runs, and loading encoders out of them.

The one module callers import (``checkpoints.Checkpointer``,
``checkpoints.load_encoder``, ...); each job lives in its own module of
``sonify_jax.train.checkpointing`` and its public names are re-exported
here:

* ``layout``: a run's files (``RUN/checkpoints/<step>/``, ``run.json``,
  ``final_metrics.json``); a step folder stands for its run at that step;
* ``retention``: ``Checkpointer`` saves asynchronously and keeps the last
  ``keep_last`` steps, the best one by the run's metric and ``keep_steps``;
* ``checksums``: process 0 records sha256 of every file of a finished step
  and every load verifies them first (a step without them loads with a
  warning, once each of its arrays has been read synchronously);
* ``selection``: which step a loader reads (``choose_step``): without a
  step, the one the run selected on validation, else ``LATEST`` or a step
  number;
* ``orbax_compat``: orbax's false warnings and failed reads.

This module itself loads encoders and whole states (``load_encoder``,
``load_state``) onto the local device, whatever topology wrote them. Bad
paths, steps and files raise ``UserError`` (one ``error:`` line at the entry
points).
"""
from typing import Any, Dict, Sequence, Tuple

import jax
import orbax.checkpoint as ocp

from sonify_jax import paths
from sonify_jax.errors import UserError
from sonify_jax.train.checkpointing import checksums
from sonify_jax.train.checkpointing import orbax_compat
from sonify_jax.train.checkpointing import selection
# The public names of the parts, as callers have always used them.
from sonify_jax.train.checkpointing.checksums import (verify_checksums,
                                                      write_checksums)
from sonify_jax.train.checkpointing.layout import (
    CHECKPOINT_SUBDIR, CHECKSUMS_FILE, DATA_ITER_ITEM, FINAL_METRICS, LATEST,
    RUN_INFO_FILE, STATE_ITEM, CorruptCheckpointError, NotARunError,
    checkpoint_dir, load_run_info, save_run_info, split_step_dir)
from sonify_jax.train.checkpointing.retention import Checkpointer
from sonify_jax.train.checkpointing.selection import (StepChoice,
                                                      StepRequest,
                                                      choose_step,
                                                      parse_step)

__all__ = [
    "CHECKPOINT_SUBDIR", "CHECKSUMS_FILE", "DATA_ITER_ITEM", "FINAL_METRICS",
    "LATEST", "RUN_INFO_FILE", "STATE_ITEM", "Checkpointer",
    "CorruptCheckpointError", "NotARunError", "StepChoice", "StepRequest",
    "available_steps", "checkpoint_dir", "choose_step", "load_encoder",
    "load_run_info", "load_state", "parse_step", "save_run_info",
    "split_step_dir", "verify_checksums", "write_checksums"]

def available_steps(path: str) -> Sequence[int]:
  """Steps with a complete checkpoint under a workdir or checkpoint dir."""
  path, _ = split_step_dir(path)
  manager = orbax_compat.read_only_manager(checkpoint_dir(path))
  try:
    return sorted(manager.all_steps())
  finally:
    manager.close()


def _restore_raw(path: str, step: StepRequest
                 ) -> Tuple[Dict[str, Any], int]:
  manager, directory, step, config = selection.open_for_choice(path, step)
  try:
    step = selection.choose(manager, directory, step, config).step
    verified = checksums.verify_step(paths.join(directory, str(step)))
    target = orbax_compat.local_target(orbax_compat.read_or_explain(
        lambda: manager.item_metadata(step)[STATE_ITEM],
        f"cannot read the metadata of step {step} of {directory}", verified))
    raw = checksums.verified_restore(manager, directory, step, target,
                                     verified)
  finally:
    manager.close()
  return raw, step


def load_encoder(path: str, step: StepRequest = None
                 ) -> Tuple[Dict[str, Any], str]:
  """The params of a run's encoder, and the arch name they belong to.

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
  manager, directory, step, config = selection.open_for_choice(path, step)
  try:
    step = selection.choose(manager, directory, step, config).step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
    return checksums.verified_restore(manager, directory, step, abstract)
  finally:
    manager.close()
