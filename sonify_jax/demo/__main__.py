r"""The README's main command: the whole story on the embedded default data.

  python -m sonify_jax.demo --workdir /tmp/sonify_demo [--quick]

Trains a small contrastive (SimCLR) and a small supervised CNN12 on the data
the repo ships, runs the coherence, top-k and feature-evolution studies on
both, writes the listening gallery and prints where it is (a few minutes on a
2-core CPU; ``--quick`` is a smoke run whose outputs mean nothing).
Re-running with the same workdir resumes the trainings from their checkpoints.
"""
from absl import flags

from sonify_jax import cli
from sonify_jax import paths
from sonify_jax.demo import story
from sonify_jax.errors import UserError

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/sonify_demo",
                               "Where everything is written.")
_QUICK = flags.DEFINE_bool("quick", False, "A few steps only (smoke run).")
_STEPS = flags.DEFINE_integer("steps", None,
                              "Training steps per model (default 800).")


def main(argv):
  del argv
  if not paths.is_local(_WORKDIR.value):
    raise UserError(f"--workdir {_WORKDIR.value}: the CPU demo runs in a "
                    "local folder (copy it to a bucket afterwards if wanted)")
  story.run_story(_WORKDIR.value, quick=_QUICK.value, steps=_STEPS.value)


if __name__ == "__main__":
  cli.run(main)
