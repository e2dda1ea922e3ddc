r"""Builds one dataset from its official layout.

  python -m sonify_jax.data.builders --dataset=fsd50k \
      --manual_dir=/data/FSD50K --data_dir=/data/tfds --num_workers=16
"""
from absl import app
from absl import flags

from sonify_jax import cli
from sonify_jax.data import builders

_DATASET = flags.DEFINE_enum("dataset", None, sorted(builders.BUILDERS),
                             "Which dataset to build.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None,
                                  "Dataset root in its official layout.")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "Where the array_record dataset goes.")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", 1,
                                    "Decoding processes.")


def main(argv):
  del argv
  builder = builders.build(_DATASET.value, _MANUAL_DIR.value,
                           _DATA_DIR.value, _NUM_WORKERS.value)
  for split, info in builder.info.splits.items():
    print(f"{split}: {info.num_examples} clips")
  skipped = builder.info.metadata.get("skipped", {})
  print(f"skipped: {sum(len(v) for v in skipped.values())} "
        f"(see {builder.data_dir}/skipped_clips.tsv)")


if __name__ == "__main__":
  flags.mark_flags_as_required(["dataset", "manual_dir", "data_dir"])
  cli.run(main)
