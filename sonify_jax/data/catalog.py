"""One entry point to every dataset: ``get_source(name, split, data_dir)``.

Names:
  'embedded_keywords', 'embedded_events', 'embedded' -- shipped with the
      repo (splits 'train', 'validation', 'test', 'train_all'; see
      ``embedded``); ``data_dir`` optionally points at a regenerated copy (a
      folder holding manifest.csv).
  'audioset' (multilabel; splits 'balanced_train', 'unbalanced_train',
      'eval'; 'train_all' = every built train split, 'validation' = the
      deterministic 10 % holdout of 'train_all' by clip-id hash (the thesis'
      model-selection set; ``holdout``), 'train' = the other 90 %, 'test' =
      'eval'),
  'fsd50k' (multilabel; 'train', 'validation', 'test'; 'val', 'eval'),
  'speech_commands' (35 words), 'speech_commands12' (the official
      12-class task), 'voxceleb1' (single-label; 'train', 'validation',
      'test'; 'val'),
  'folder:<name>' (your own labelled folders, single-label; 'train',
      'validation', 'test'; 'val'; plain 'folder' when data_dir holds exactly
      one) -- read from ``data_dir``, where
      ``python -m sonify_jax.data.builders`` prepared them.

TFDS split expressions ('train[:10%]', 'a+b') pass through for the built
datasets.
"""
import re
from typing import Optional

from sonify_jax import paths
from sonify_jax.data import embedded
from sonify_jax.data import holdout
from sonify_jax.data.sources import ClipSource
from sonify_jax.errors import UserError

EMBEDDED_NAMES = tuple(embedded.GROUPS)
BUILT_NAMES = ("audioset", "fsd50k", "speech_commands", "speech_commands12",
               "voxceleb1", "folder")
NAMES = EMBEDDED_NAMES + BUILT_NAMES
FOLDER_PREFIX = "folder:"

_ALIASES = {
    "audioset": {"test": "eval", "evaluation": "eval"},
    "fsd50k": {"val": "validation", "eval": "test"},
    "speech_commands": {"val": "validation"},
    "speech_commands12": {"val": "validation"},
    "voxceleb1": {"val": "validation"},
    "folder": {"val": "validation"},
}
# AudioSet's model-selection holdout (thesis ch. 4.3: 10 % of train).
AUDIOSET_VALIDATION_FRACTION = 0.1
_BASE_SPLIT = re.compile(r"^([A-Za-z_]+)(\[.*\])?$")


def list_sources():
  return list(NAMES)


def is_known(name) -> bool:
  """Whether ``name`` names a dataset (one of ``NAMES`` or 'folder:<name>')."""
  return isinstance(name, str) and (
      name in NAMES or (name.startswith(FOLDER_PREFIX)
                        and len(name) > len(FOLDER_PREFIX)))


def get_source(name: str, split: str,
               data_dir: Optional[str] = None) -> ClipSource:
  """The ClipSource of dataset ``name``, split ``split``.

  Args:
    name: one of ``NAMES``.
    split: a split of that dataset (see the module doc).
    data_dir: for built datasets, the TFDS data_dir they were prepared in
      (required); for embedded ones, an optional regenerated copy.

  Raises:
    UserError: unknown name or split, or data_dir missing where needed.
    FileNotFoundError: data_dir or the prepared dataset does not exist.
  """
  if not is_known(name):
    raise UserError(f"unknown dataset {name!r}; known: {list(NAMES)} "
                     f"and 'folder:<name>'")
  if not isinstance(split, str) or not split:
    raise UserError(f"split must be a non-empty string, got {split!r}")
  if data_dir is not None and not paths.as_path(data_dir).is_dir():
    raise FileNotFoundError(f"data_dir {data_dir} does not exist")
  if name in EMBEDDED_NAMES:
    return embedded.EmbeddedSource(name, split, root=data_dir)
  if data_dir is None:
    raise UserError(
        f"dataset {name!r} is read from a prepared TFDS data_dir; pass "
        f"data_dir= (build it first: python -m sonify_jax.data.builders "
        f"--dataset={name} --manual_dir=<official layout> --data_dir=DIR)")
  from sonify_jax.data import builders  # pylint: disable=g-import-not-at-top
  builder = builders.get_builder(name, data_dir)
  if not paths.as_path(builder.data_dir).is_dir() or not paths.as_path(
      builder.data_dir, "dataset_info.json").is_file():
    kind = name.partition(":")[0]
    how = (f"--dataset=folder --name={builder.builder_config.name} "
           f"--manual_dir=<your folder>" if kind == "folder"
           else f"--dataset={name} ...")
    raise FileNotFoundError(
        f"{name} is not prepared in {data_dir} (expected "
        f"{builder.data_dir}); build it with python -m "
        f"sonify_jax.data.builders {how}")
  kind = name.partition(":")[0]
  if kind == "folder":
    name = FOLDER_PREFIX + builder.builder_config.name
  available = list(builder.info.splits)
  if name == "audioset" and split in holdout.SIDES:
    train_all = builders.base.BuiltSource(
        builder, _resolve_split(name, "train_all", available), name=name)
    return holdout.HoldoutSource(train_all, split,
                                 AUDIOSET_VALIDATION_FRACTION,
                                 dataset_dir=builder.data_dir)
  return builders.base.BuiltSource(builder, _resolve_split(
      kind, split, available), name=name)


def _resolve_split(name: str, split: str, available) -> str:
  """Maps aliases to TFDS split names and checks every part exists."""
  aliases = dict(_ALIASES.get(name, {}))
  if name == "audioset":
    aliases["train_all"] = "+".join(s for s in ("balanced_train",
                                            "unbalanced_train")
                                if s in available) or "balanced_train"
  parts = []
  for part in split.split("+"):
    part = part.strip()
    match = _BASE_SPLIT.match(part)
    if not match:
      raise UserError(f"bad split expression {split!r}")
    base_split, slicing = match.group(1), match.group(2) or ""
    resolved = aliases.get(base_split, base_split)
    for piece in resolved.split("+"):
      if piece not in available:
        raise UserError(f"unknown split {base_split!r} for {name}; "
                         f"available: {sorted(available)} (aliases "
                         f"{sorted(aliases)})")
    if slicing and "+" in resolved:
      raise UserError(f"cannot slice the alias {base_split!r}; slice "
                       f"{resolved} explicitly")
    parts.append(resolved + slicing)
  return "+".join(parts)
