r"""Entry point: train one experiment from a config file.

  python -m sonify_jax.main --config=configs/simclr_audioset.py:tau=0.2 \
      --workdir=/path/to/workdir [--config.batch_size=128 ...]

Any config field can be overridden on the command line
(``--config.FIELD=VALUE``). Restarting the same command resumes from the
workdir's latest checkpoint.
"""
import json
import logging as py_logging

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from sonify_jax import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py[:arg]).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, metrics and TensorBoard "
    "events; an existing run there is resumed.")
flags.mark_flags_as_required(["config", "workdir"])


def _quiet_orbax(record) -> bool:
  # Orbax logs several INFO lines per checkpoint through absl; keep its
  # warnings and errors, drop the chatter that buries the progress bar.
  return record.levelno >= py_logging.WARNING or (
      "/orbax/" not in record.pathname.replace("\\", "/"))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.get_absl_logger().addFilter(_quiet_orbax)
  # Imported after flag parsing so that --helpfull stays fast and JAX sees
  # XLA_FLAGS/JAX_PLATFORMS set by the caller.
  import jax  # pylint: disable=g-import-not-at-top
  from sonify_jax import distributed  # pylint: disable=g-import-not-at-top
  distributed.initialize_if_needed()  # multi-host: before any JAX work
  from sonify_jax.train import trainer  # pylint: disable=g-import-not-at-top
  logging.info("JAX devices: %d (%s), process %d of %d", jax.device_count(),
               jax.devices()[0].platform, jax.process_index(),
               jax.process_count())
  final = trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if jax.process_index() == 0:
    print(json.dumps({"final_metrics": final}, sort_keys=True), flush=True)


if __name__ == "__main__":
  cli.run(main)
