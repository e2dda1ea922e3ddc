"""The data a study reads: the run's own, unless the user says otherwise.

A run's ``checkpoints/run.json`` holds its config (dataset, data_dir, splits)
and the classes its head predicts. By default a study reads that dataset's
``validation`` split where it has one (analysis never looks at the test
split when it need not), else the run's ``eval_split``, else ``test``. An
explicit ``--dataset``/``--split`` is honoured, but a classifier run whose
head predicts another number of classes than that data has is refused with
one line: the numbers would be meaningless.
"""
from typing import Any, Dict, Optional, Tuple

from sonify_jax.analysis.core import common
from sonify_jax.errors import UserError

DEFAULT_SPLITS = ("validation",)


def _get(dataset: str, split: str, data_dir: Optional[str]):
  from sonify_jax.data import catalog  # pylint: disable=g-import-not-at-top
  return catalog.get_source(dataset, split, data_dir)


def run_dataset(info: Dict[str, Any]) -> Tuple[str, Optional[str]]:
  """(dataset name, data_dir or None) from a run's run.json."""
  config = info.get("config", {})
  return config.get("dataset", "embedded"), (config.get("data_dir") or None)


def default_split(info: Dict[str, Any], dataset: str,
                  data_dir: Optional[str]) -> str:
  """``validation`` if the dataset has it, else the run's eval_split, else
  ``test``."""
  config = info.get("config", {})
  for split in DEFAULT_SPLITS + (config.get("eval_split") or "test",):
    try:
      _get(dataset, split, data_dir)
      return split
    except (ValueError, FileNotFoundError):
      continue
  return "test"


def study_source(info: Optional[Dict[str, Any]], dataset: Optional[str] = None,
                 split: Optional[str] = None, data_dir: Optional[str] = None,
                 head_classes: Optional[int] = None, what: str = "eval"):
  """The ClipSource a study reads, and how it was chosen.

  Args:
    info: the run's run.json (None: no run, e.g. the gallery).
    dataset, split, data_dir: explicit choices (None: the run's).
    head_classes: classes the run's classifier head predicts (None for an
      encoder-only run).
    what: what the split is for, in messages.
  Returns:
    ``(source, {'dataset', 'split', 'data_dir', 'chosen_by'})``.
  Raises:
    UserError: unknown dataset/split, or a class-count mismatch.
  """
  info = info or {}
  run_name, run_dir = run_dataset(info)
  explicit = dataset is not None or split is not None
  name = dataset or run_name
  if data_dir is None and name == run_name:
    data_dir = run_dir
  split = split or default_split(info, name, data_dir)
  try:
    source = _get(name, split, data_dir)
  except (ValueError, FileNotFoundError) as e:
    raise UserError(f"cannot read {what} data {name}/{split}: "
                    f"{str(e).splitlines()[0]}") from None
  if head_classes is not None and int(source.num_classes) != int(head_classes):
    given = "--dataset/--split" if explicit else "the run's config"
    raise UserError(
        f"{name}/{split} ({given}) has {source.num_classes} classes but the "
        f"classifier predicts {head_classes}; use the run's own dataset "
        f"({run_name}: omit --dataset) or a dataset with its classes")
  chosen = "explicit" if explicit else "run config"
  common.log(f"{what} data: {name}/{split} ({len(source)} clips, "
             f"{source.num_classes} classes; {chosen})")
  return source, {"dataset": name, "split": split, "data_dir": data_dir,
                  "chosen_by": chosen}
