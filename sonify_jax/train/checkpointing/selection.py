"""Which checkpoint step a loader reads, and why (``choose_step``).

Without a step, the step the run *selected* on validation: the one
``WORKDIR/final_metrics.json`` names (the checkpoint training scored on the
test split), else the step orbax ranks best by the run's
``best_metric``/``best_mode`` (the metrics training saved into each step);
runs that rank nothing (SimCLR without a validation metric) give their
latest step. ``LATEST`` asks for the last step, an int for that one. The
retention (``retention.Checkpointer``) keeps the best step, so the selected
step is on disk unless someone deleted it (then a ``UserError`` says so).
"""
import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import orbax.checkpoint as ocp

from sonify_jax.errors import UserError
from sonify_jax.train.checkpointing import layout
from sonify_jax.train.checkpointing import orbax_compat
from sonify_jax.train.checkpointing.layout import (FINAL_METRICS, LATEST,
                                                   NotARunError)

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


def choose(manager: ocp.CheckpointManager, directory: str,
           step: StepRequest, config: Mapping[str, Any]) -> StepChoice:
  """The step of ``directory`` (read by ``manager``) that ``step`` asks for,
  given the run's ``config``."""
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
  final = layout.read_final_metrics(directory)
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


def open_for_choice(path: str, step: StepRequest, need_run: bool = False
                    ) -> Tuple[ocp.CheckpointManager, str, StepRequest,
                               Mapping[str, Any]]:
  """(read-only manager ranking by the run's best_metric, checkpoint dir,
  step request, run config); without ``need_run``, checkpoints that have no
  run.json (a bare TrainState, as ``load_state`` reads) rank nothing."""
  path, folder_step = layout.split_step_dir(
      path, None if step == LATEST else step)
  if folder_step is not None:   # a step folder, or a step number asked for
    step = folder_step
  directory = layout.checkpoint_dir(path)
  try:
    config = layout.load_run_info(path).get("config", {})
  except NotARunError:
    if need_run:
      raise
    config = {}
  manager = orbax_compat.read_only_manager(
      directory, config.get("best_metric", ""),
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
  manager, directory, step, config = open_for_choice(path, step,
                                                     need_run=True)
  try:
    return choose(manager, directory, step, config)
  finally:
    manager.close()
