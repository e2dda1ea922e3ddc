"""A step that fails to read leaves nothing running behind its error.

Orbax reads a step's arrays in parallel on an event loop it closes when one
read fails; the reads still under way then report "Event loop is closed" /
dying coroutines through ``sys.unraisablehook`` whenever they finish or are
collected (a notebook's next cell, the next case of a test worker). Steps
with checksums are verified before orbax reads them; a step saved without
them (older runs: "unverified") has each array read once synchronously
first (``checksums.verify_step``), so orbax never starts a read that fails,
and no process-wide hook is needed to hide the reports.
"""
import gc
import glob
import os
import shutil
import sys
import time

import jax
import numpy as np
import pytest

from sonify_jax.train import checkpoints, optim
from sonify_jax.train import state as state_lib


@pytest.fixture(scope="module")
def state():
  """A cnn12_tiny SimCLR TrainState (also the restore template)."""
  model = state_lib.SimCLRModel(arch_name="cnn12_tiny", dropout_rate=0.1,
                                proj_hidden=32, proj_out=16)
  return state_lib.create_train_state(
      model, optim.make_optimizer(1e-3, 0.0, 1, 10), jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, state):
  """A run with steps 0 and 2 (TrainState checkpoints + run.json)."""
  workdir = str(tmp_path_factory.mktemp("reads") / "run")
  ckpt = checkpoints.Checkpointer(workdir, keep_last=2)
  for step in (0, 2):
    ckpt.save(step, state.replace(step=state.step + step))
  ckpt.close()
  checkpoints.save_run_info(workdir, {"model": "cnn12_tiny", "task": "simclr"},
                            arch="cnn12_tiny", task="simclr", num_classes=16)
  return workdir


def _garble(path):
  """Random bytes over the last two thirds of a file."""
  data = bytearray(open(path, "rb").read())
  start = len(data) // 3
  data[start:] = np.random.default_rng(0).integers(
      0, 256, len(data) - start, np.uint8).tobytes()
  with open(path, "wb") as f:
    f.write(bytes(data))


def _plant(run_dir, tmp_path, which):
  """A copy of the run whose step 2 has no checksums and garbled files:
  every data file (the b-tree root too), or only the array values (the
  index decodes, reads of the arrays fail mid-way)."""
  run = str(tmp_path / "run")
  shutil.copytree(run_dir, run)
  pattern = {"every_data_file": "**/d/*",
             "array_values": "**/ocdbt.process_*/d/*"}[which]
  files = [f for f in glob.glob(f"{run}/checkpoints/2/{pattern}",
                                recursive=True) if os.path.isfile(f)]
  assert files
  for path in files:
    _garble(path)
  os.remove(os.path.join(run, "checkpoints", "2", checkpoints.CHECKSUMS_FILE))
  return run


@pytest.mark.parametrize("which", ["every_data_file", "array_values"])
def test_a_failed_unverified_read_reports_nothing_later(
    run_dir, state, tmp_path, monkeypatch, which):
  reports = []
  record = reports.append
  monkeypatch.setattr(sys, "unraisablehook", record)
  run = _plant(run_dir, tmp_path, which)
  # (a) every loader stops with the one error naming the step and the file.
  with pytest.raises(checkpoints.CorruptCheckpointError,
                     match=r"step 2 .*/checkpoints/2/.* is unreadable"):
    checkpoints.load_encoder(run)
  with pytest.raises(checkpoints.CorruptCheckpointError, match="step 2"):
    checkpoints.load_state(run, state, step=2)
  ckpt = checkpoints.Checkpointer(run, keep_last=2)
  try:
    with pytest.raises(checkpoints.CorruptCheckpointError, match="step 2"):
      ckpt.restore(state)   # what a resumed training run does
  finally:
    ckpt.close()
  # ... and the remedy the error names works: another step loads.
  params, arch = checkpoints.load_encoder(run, step=0)
  assert arch == "cnn12_tiny" and "block1" in params
  # (b) nothing is reported later, and no hook was installed to hide it.
  for _ in range(5):
    gc.collect()
    time.sleep(0.2)
  assert sys.unraisablehook is record
  assert not reports, [(r.exc_value, r.object, r.err_msg) for r in reports]


def test_an_intact_unverified_step_loads_as_saved(run_dir, tmp_path, caplog):
  """The synchronous read of an unverified step changes nothing it loads."""
  intact, _ = checkpoints.load_encoder(run_dir, step=2)
  run = str(tmp_path / "run")
  shutil.copytree(run_dir, run)
  os.remove(os.path.join(run, "checkpoints", "2", checkpoints.CHECKSUMS_FILE))
  with caplog.at_level("WARNING"):
    loaded, _ = checkpoints.load_encoder(run, step=2)
  assert "unverified" in caplog.text
  jax.tree.map(np.testing.assert_array_equal, loaded, intact)
