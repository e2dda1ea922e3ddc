r"""Entry point: train one experiment from a config file.

  python -m sonify_jax.main --config=configs/simclr_audioset.py:tau=0.2 \
      --workdir=/path/to/workdir [--config.batch_size=128 ...]

Any config field can be overridden on the command line
(``--config.FIELD=VALUE``); ``--print_config`` prints the resolved config and
exits. ``--verbosity=1`` also shows the libraries' INFO logs. Restarting the same command resumes from the
workdir's latest checkpoint.

Bad input is refused before anything is compiled, read or written: the
config file is loaded by ``config_files.load_config`` (a missing file, a
syntax error, an exception on import or no ``get_config`` is one
``error:`` line), every field is checked by ``config_check.validate``, and
the workdir must be a folder (or creatable) before JAX starts.
"""
import json
import os

from absl import app
from absl import flags
from absl import logging

from sonify_jax import cli
from sonify_jax import config_check
from sonify_jax import config_files
from sonify_jax.errors import UserError

_CONFIG = config_files.define_config_flag(
    "config", "Experiment config file (configs/*.py[:arg]).",
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


def check_workdir(workdir: str) -> None:
  """Raises UserError unless ``workdir`` is a folder or can be made one
  (local paths; a gs:// workdir is checked by the trainer)."""
  if "://" in workdir:
    return
  path = os.path.abspath(os.path.expanduser(workdir))
  if os.path.exists(path) and not os.path.isdir(path):
    raise UserError(f"--workdir={workdir}: Not a directory (a file is "
                    f"there; pass a folder)")
  parent = path
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise UserError(f"--workdir={workdir}: Not a directory: {parent} is a "
                    f"file")
  if not os.access(parent, os.W_OK | os.X_OK):
    raise UserError(f"--workdir={workdir}: cannot write in {parent}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config_check.validate(_CONFIG.value, check_paths=not _PRINT_CONFIG.value)
  if _PRINT_CONFIG.value:
    print(_CONFIG.value.to_json_best_effort(indent=2, sort_keys=True),
          flush=True)
    return
  check_workdir(_WORKDIR.value)
  # Imported after flag parsing so that --helpfull stays fast and JAX sees
  # XLA_FLAGS/JAX_PLATFORMS set by the caller.
  import jax  # pylint: disable=g-import-not-at-top
  from sonify_jax import distributed  # pylint: disable=g-import-not-at-top
  distributed.initialize_if_needed()  # multi-host: before any JAX work
  from sonify_jax.train import trainer  # pylint: disable=g-import-not-at-top
  # The one rule that needs JAX: the global batch splits over the devices.
  trainer.validate_config(_CONFIG.value, jax.device_count())
  logging.info("JAX devices: %d (%s), process %d of %d", jax.device_count(),
               jax.devices()[0].platform, jax.process_index(),
               jax.process_count())
  final = trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if jax.process_index() == 0:
    print(json.dumps({"final_metrics": final}, sort_keys=True), flush=True)


if __name__ == "__main__":
  cli.run(main)
