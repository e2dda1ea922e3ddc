"""Checksums of a step's files, and restores that check them first.

Once a step is on disk, process 0 writes ``<step>/checksums.json`` (sha256
and size of every file of the step; orbax keeps no checksums of its own).
Every load verifies them first and names the file that changed; a step
without the file (older runs) loads with a warning, after each of its arrays
has been read once synchronously (``verify_step``), so a bad file stops the
load before orbax starts reading.
"""
import hashlib
import json
from typing import Any, Dict, Optional

from absl import logging
import orbax.checkpoint as ocp

from sonify_jax import atomic_io
from sonify_jax import paths
from sonify_jax.train.checkpointing import layout
from sonify_jax.train.checkpointing import orbax_compat
from sonify_jax.train.checkpointing.layout import (CHECKSUMS_FILE,
                                                   CorruptCheckpointError)


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with paths.as_path(path).open("rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _size(path: str) -> int:
  return paths.as_path(path).stat().length


def _step_files(step_dir: str) -> Dict[str, str]:
  """Relative path -> absolute path of every file of a step but the
  checksums file itself."""
  return {rel: path for rel, path in paths.files_under(step_dir).items()
          if rel != CHECKSUMS_FILE}


def write_checksums(step_dir: str) -> str:
  """Records sha256 and size of every file of a finished step."""
  files = {rel: {"sha256": _sha256(full), "bytes": _size(full)}
           for rel, full in sorted(_step_files(step_dir).items())}
  return atomic_io.write_json(paths.join(step_dir, CHECKSUMS_FILE),
                              {"algorithm": "sha256", "files": files})


def verify_checksums(step_dir: str) -> bool:
  """Checks a step's files against its checksums; False (with a warning)
  when the step has none (saved before checksums were recorded).

  Raises:
    CorruptCheckpointError: naming the first file that is missing or changed.
  """
  path = paths.join(step_dir, CHECKSUMS_FILE)
  if not paths.as_path(path).exists():
    logging.warning("%s has no %s (saved by an older version): loading it "
                    "unverified", step_dir, CHECKSUMS_FILE)
    return False
  try:
    with paths.as_path(path).open("r") as f:
      recorded = json.load(f)["files"]
  except (ValueError, KeyError, TypeError) as error:
    raise CorruptCheckpointError(f"{path} is unreadable ({error})") from None
  for rel, want in sorted(recorded.items()):
    full = paths.join(step_dir, rel)
    if not paths.as_path(full).is_file():
      raise CorruptCheckpointError(f"checkpoint file {full} is missing")
    if (_size(full) != want["bytes"] or
        _sha256(full) != want["sha256"]):
      raise CorruptCheckpointError(
          f"checkpoint file {full} is corrupt: its sha256 differs from the "
          f"one recorded when step {paths.split(step_dir)[1]} was saved "
          "(load another step, or delete this step's folder to resume from "
          "an earlier one)")
  return True


def verify_step(step_dir: str) -> bool:
  """Checks a step before orbax reads it: its checksums (True), or, for a
  step saved without them, that every array of its train state decodes
  (False, with a warning): each is read once, one at a time
  (``orbax_compat.read_every_array``). Either way orbax then never starts a
  read that fails mid-way, whose orphaned parallel reads would be reported
  through ``sys.unraisablehook`` long after the error.

  Raises:
    CorruptCheckpointError: naming the file that is missing, changed or
      does not decode.
  """
  if verify_checksums(step_dir):
    return True
  directory, step = paths.split(step_dir)
  orbax_compat.read_every_array(paths.join(step_dir, layout.STATE_ITEM),
                                f"cannot read step {step} of {directory}")
  return False


def verified_restore(manager: ocp.CheckpointManager, directory: str,
                     step: int, target: Any,
                     verified: Optional[bool] = None) -> Any:
  """Restores ``step`` after checking it (``verify_step``, unless
  ``verified`` gives its result); a file orbax cannot decode becomes a
  ``CorruptCheckpointError`` naming the step. Only the train state is read;
  the input iterator's state is ``Checkpointer.restore_data_iter``'s."""
  if verified is None:
    verified = verify_step(paths.join(directory, str(step)))
  def read():
    return manager.restore(step, args=ocp.args.Composite(**{
        layout.STATE_ITEM: ocp.args.StandardRestore(target)}))[
            layout.STATE_ITEM]
  return orbax_compat.read_or_explain(
      read, f"cannot read step {step} of {directory}", verified)
