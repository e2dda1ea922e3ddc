r"""Builds one dataset from its layout.

  python -m sonify_jax.data.builders --dataset=fsd50k \
      --manual_dir=/data/FSD50K --data_dir=/data/tfds --num_workers=16
  python -m sonify_jax.data.builders --dataset=folder \
      --manual_dir=/data/my_sounds --data_dir=/data/tfds \
      --group_regex='^([^_]+)_' --split_percent=80/10/10

A dataset already built in data_dir from the same manual_dir is reused; one
built from another manual_dir (or with other options) is refused unless
--overwrite, which rebuilds it atomically. Every flag is checked before
anything is read or written: its value against its domain (``FLAG_DOMAINS``)
while the flags are parsed, then the rules between flags (``check_flags``). The last line counts
the skipped clips by kind (undecodable, truncated, non-finite, shorter than
the receptive field, ...); each is listed with its reason in
``skipped_clips.tsv``.
"""
import os

from absl import flags

from sonify_jax import cli
from sonify_jax import flag_check
from sonify_jax.data import builders
from sonify_jax.data.builders import base
from sonify_jax.domains import (Choice, Either, Int, OrNone, Path, Regex,
                                Text)
from sonify_jax.errors import UserError

_DATASET = flags.DEFINE_string(
    "dataset", None, f"Which dataset to build: one of "
    f"{sorted(builders.BUILDERS)}, or folder:<name>.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None,
                                  "Dataset root in its layout.")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "Where the array_record dataset goes.")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", 1,
                                    "Decoding processes.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Rebuild a dataset already in data_dir that was "
    "built from another manual_dir or with other options (atomically: the "
    "old build stays until the new one is complete).")
_NAME = flags.DEFINE_string(
    "name", None, "folder: the dataset's name (default: the manual_dir's "
    "folder name); read it back as folder:<name>.")
_GROUP_REGEX = flags.DEFINE_string(
    "group_regex", None, "folder: regex searched in each file's path within "
    "its class folder; its first group is the group key kept on one side of "
    "the seeded split (e.g. '^([^_]+)_' for a speaker prefix).")
_SPLIT_PERCENT = flags.DEFINE_string(
    "split_percent", None, "folder: train/validation/test shares of the "
    "seeded split (default 80/10/10); unused when validation_list.txt or "
    "testing_list.txt exists.")
_SPLIT_SEED = flags.DEFINE_integer("split_seed", None,
                                   "folder: seed of the split (default 0).")

_SHARE = r"\s*\d+(\.\d*)?\s*"
# Every flag's domain, checked while the flags are parsed (flag_check);
# what involves several flags or the file system is check_flags'.
FLAG_DOMAINS = {
    "dataset": OrNone(Either(
        Choice(sorted(builders.BUILDERS)), Text(r"folder:.+"),
        f"one of {', '.join(sorted(builders.BUILDERS))}, or folder:<name>")),
    "manual_dir": OrNone(Path(empty_ok=False,
                              meaning="the dataset's root folder")),
    "data_dir": OrNone(Path(empty_ok=False, meaning="not a file")),
    "num_workers": Int(1, meaning="decoding processes"),
    "overwrite": flag_check.ANY,
    "name": OrNone(Text(r"[A-Za-z0-9_][A-Za-z0-9_ .-]*",
                        "letters, digits, '_', ' ', '.' or '-'")),
    "group_regex": OrNone(Regex()),
    "split_percent": OrNone(Text(f"{_SHARE}/{_SHARE}/{_SHARE}",
                                 "train/validation/test shares such as "
                                 "80/10/10")),
    "split_seed": OrNone(Int(0)),
}
flag_check.register(FLAG_DOMAINS)


def check_flags() -> str:
  """Raises UserError for what the flags' domains (``FLAG_DOMAINS``,
  checked while parsing) cannot say: a missing --manual_dir, flags that
  contradict each other, shares that do not make a split. Returns the
  dataset's catalogue name."""
  name = _DATASET.value
  kind = name.partition(":")[0]
  if not os.path.isdir(_MANUAL_DIR.value):
    raise UserError(f"--manual_dir={_MANUAL_DIR.value}: not a directory "
                    f"(the dataset's root folder)")
  folder_only = [f"--{n}" for n, v in (
      ("name", _NAME.value), ("group_regex", _GROUP_REGEX.value),
      ("split_percent", _SPLIT_PERCENT.value),
      ("split_seed", _SPLIT_SEED.value)) if v is not None]
  if folder_only and kind != "folder":
    raise UserError(f"{', '.join(folder_only)} apply to --dataset=folder "
                    f"only, not --dataset={name}")
  if _NAME.value is not None:
    if ":" in name:
      raise UserError(f"--name={_NAME.value} and --dataset={name} both name "
                      f"the dataset; pass one")
    name = f"folder:{_NAME.value}"
  if _SPLIT_PERCENT.value is not None:  # train > 0: a share of something
    try:
      builders.folder.parse_split_percent(_SPLIT_PERCENT.value)
    except UserError as error:
      raise UserError(f"--{error}") from None
  return name


def main(argv):
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  name = check_flags()
  options = {k: v for k, v in (("group_regex", _GROUP_REGEX.value),
                               ("split_percent", _SPLIT_PERCENT.value),
                               ("split_seed", _SPLIT_SEED.value))
             if v is not None}
  builder = builders.build(name, _MANUAL_DIR.value, _DATA_DIR.value,
                           _NUM_WORKERS.value, overwrite=_OVERWRITE.value,
                           **options)
  metadata = builder.info.metadata
  print(f"{builder.data_dir}: {metadata['num_classes']} classes")
  for key in ("split_method", "background_noise"):
    if key in metadata:
      print(f"{key}: {metadata[key]}")
  for split, info in builder.info.splits.items():
    print(f"{split}: {info.num_examples} clips")
  skipped = metadata.get("skipped", {})
  print(f"skipped: {base.skip_summary(skipped)}; see "
        f"{builder.data_dir}/{base.REPORT_NAME}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["dataset", "manual_dir", "data_dir"])
  cli.run(main)
