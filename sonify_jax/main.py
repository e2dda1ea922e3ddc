r"""Entry point: train one experiment from a config file.

  python -m sonify_jax.main --config=configs/simclr_audioset.py:tau=0.2 \
      --workdir=/path/to/workdir [--config.batch_size=128 ...]

Any config field can be overridden on the command line
(``--config.FIELD=VALUE``); ``--print_config`` prints the resolved config and
exits. ``--verbosity=1`` also shows the libraries' INFO logs. Restarting the same command resumes from the
workdir's latest checkpoint.
"""
import json

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
_PRINT_CONFIG = flags.DEFINE_bool(
    "print_config", False, "Print the resolved config (the config file with "
    "its arg and every --config.FIELD override applied) as JSON and exit.")
flags.mark_flags_as_required(["config"])
flags.register_multi_flags_validator(
    ["workdir", "print_config"],
    lambda f: bool(f["workdir"]) or f["print_config"],
    message="--workdir is required (unless --print_config)")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _PRINT_CONFIG.value:
    print(_CONFIG.value.to_json_best_effort(indent=2, sort_keys=True),
          flush=True)
    return
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
