r"""Builds one dataset from its layout.

  python -m sonify_jax.data.builders --dataset=fsd50k \
      --manual_dir=/data/FSD50K --data_dir=/data/tfds --num_workers=16
  python -m sonify_jax.data.builders --dataset=folder \
      --manual_dir=/data/my_sounds --data_dir=/data/tfds \
      --group_regex='^([^_]+)_' --split_percent=80/10/10

A dataset already built in data_dir from the same manual_dir is reused; one
built from another manual_dir (or with other options) is refused unless
--overwrite, which rebuilds it atomically.
"""
from absl import flags

from sonify_jax import cli
from sonify_jax.data import builders
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


def main(argv):
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  name = _DATASET.value
  if _NAME.value:
    if name != "folder":
      raise UserError("--name applies to --dataset=folder only")
    name = f"folder:{_NAME.value}"
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
  print(f"skipped: {sum(len(v) for v in skipped.values())} "
        f"(see {builder.data_dir}/skipped_clips.tsv)")


if __name__ == "__main__":
  flags.mark_flags_as_required(["dataset", "manual_dir", "data_dir"])
  cli.run(main)
