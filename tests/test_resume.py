"""A SIGKILLed or SIGTERMed (preempted) training run, restarted with the same
command, ends with the params of an uninterrupted run (real
`python -m sonify_jax.main` processes). The SIGKILL case is marked slow: the
SIGTERM one also restarts from a checkpoint with its input iterator state."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from sonify_jax.train import checkpoints
from sonify_jax.train import logging_utils

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL_STEPS = 20
FIRST_CHECKPOINT = 8


def _command(workdir):
  return [
      sys.executable, "-m", "sonify_jax.main",
      f"--config={os.path.join(REPO, 'configs', 'demo_simclr.py')}"
      f":steps={TOTAL_STEPS}",
      f"--workdir={workdir}",
      "--config.batch_size=8",
      f"--config.checkpoint_every_steps={FIRST_CHECKPOINT}",
      "--config.keep_steps=()",
      "--config.log_every_steps=4",
      "--config.progress=False",
      # Slow steps down so the kill lands mid-run on any machine.
      "--config.step_delay_s=0.15",
      "--logtostderr",
  ]


def _env(cache_dir):
  env = dict(os.environ)
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  # The three processes share compiled executables (same programs, so the
  # same numerics), which saves two of the three compilations.
  env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  return env


def _complete(directory, step):
  # Orbax renames a finished checkpoint to its step number (and writes its
  # metadata) only once it is complete.
  path = os.path.join(directory, str(step))
  return os.path.isdir(path) and os.path.exists(
      os.path.join(path, "_CHECKPOINT_METADATA"))


def _run(workdir, log_path, cache_dir):
  with open(log_path, "w") as log:
    subprocess.run(_command(workdir), cwd=REPO, env=_env(cache_dir),
                   stdout=log,
                   stderr=subprocess.STDOUT, check=True, timeout=300)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
  """An uninterrupted run, and the compilation cache the others share."""
  tmp_path = tmp_path_factory.mktemp("reference")
  reference = str(tmp_path / "reference")
  cache_dir = str(tmp_path / "jax_cache")
  _run(reference, tmp_path / "reference.log", cache_dir)
  return reference, cache_dir


def _assert_same_final_state(reference, resumed):
  final_ref = checkpoints.load_state(reference)
  final_res = checkpoints.load_state(resumed)
  assert int(final_ref["step"]) == int(final_res["step"]) == TOTAL_STEPS
  ref_leaves = jax.tree_util.tree_leaves_with_path(final_ref)
  res_leaves = jax.tree_util.tree_leaves(final_res)
  assert len(ref_leaves) == len(res_leaves) > 0
  for (path, a), b in zip(ref_leaves, res_leaves):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0,
                               atol=1e-6, err_msg=jax.tree_util.keystr(path))
  # Training kept moving after the resume point (keep_last=2 kept 16).
  before = checkpoints.load_state(reference, step=2 * FIRST_CHECKPOINT)
  assert not np.allclose(before["params"]["encoder"]["block1"]["kernel"],
                         final_res["params"]["encoder"]["block1"]["kernel"])
  # The restarted run logged the steps after the resume point.
  steps = {r["step"] for r in logging_utils.read_jsonl(
      os.path.join(resumed, "metrics.jsonl"))}
  assert TOTAL_STEPS in steps


def _interrupt(workdir, log_path, cache_dir, ready, sig):
  """Starts a run, sends ``sig`` once ``ready()`` is true, returns its exit
  status."""
  with open(log_path, "w") as log:
    proc = subprocess.Popen(_command(workdir), cwd=REPO, env=_env(cache_dir),
                            stdout=log, stderr=subprocess.STDOUT)
    try:
      deadline = time.time() + 240
      while not ready():
        assert proc.poll() is None, open(log_path).read()
        assert time.time() < deadline, "the run did not get there in time"
        time.sleep(0.05)
      proc.send_signal(sig)
      proc.wait(timeout=60)
    finally:
      if proc.poll() is None:
        proc.kill()
  return proc.returncode


@pytest.mark.slow   # ~1.5 min on 2 cores; the SIGTERM test below resumes too
def test_sigkill_and_restart_matches_uninterrupted_run(reference_run,
                                                       tmp_path):
  reference, cache_dir = reference_run
  resumed = str(tmp_path / "resumed")
  ckpt_dir = os.path.join(resumed, "checkpoints")
  returncode = _interrupt(resumed, tmp_path / "killed.log", cache_dir,
                          lambda: _complete(ckpt_dir, FIRST_CHECKPOINT),
                          signal.SIGKILL)
  assert returncode == -signal.SIGKILL
  # It really was killed mid-run.
  killed_at = checkpoints.available_steps(resumed)
  assert TOTAL_STEPS not in killed_at and FIRST_CHECKPOINT in killed_at
  # The checkpoint holds the input iterator's grain state at its step.
  with open(os.path.join(ckpt_dir, str(max(killed_at)), "data_iter",
                         "process_0-of-1.json")) as f:
    assert json.load(f)["next_step"] == max(killed_at)

  _run(resumed, tmp_path / "resumed.log", cache_dir)
  log = open(tmp_path / "resumed.log").read()
  assert f"resumed from checkpoint step {max(killed_at)}" in log
  assert f"input iterator resumed at step {max(killed_at)}" in log
  _assert_same_final_state(reference, resumed)


def _logged_steps(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return set()
  return {r["step"] for r in logging_utils.read_jsonl(path)}


def test_sigterm_saves_the_current_step_exits_0_and_resumes(reference_run,
                                                            tmp_path):
  """Preemption: SIGTERM mid-run saves at the step it lands in (between the
  periodic checkpoints), exits 0, and the rerun ends where the uninterrupted
  run does."""
  reference, cache_dir = reference_run
  resumed = str(tmp_path / "preempted")
  first_log = 4   # --config.log_every_steps
  returncode = _interrupt(resumed, tmp_path / "preempted.log", cache_dir,
                          lambda: first_log in _logged_steps(resumed),
                          signal.SIGTERM)
  log = open(tmp_path / "preempted.log").read()
  assert returncode == 0, log
  saved = checkpoints.available_steps(resumed)
  # The last checkpoint is the step the signal landed in (after the first
  # logged step, before the end); before it, at most the init (always
  # kept) and the periodic one.
  preempted_at = max(saved)
  assert first_log <= preempted_at < TOTAL_STEPS, saved
  assert set(saved) - {preempted_at} <= {0, FIRST_CHECKPOINT}, saved
  assert f"preempted: saved step {preempted_at}" in log
  # The checkpoint holds the input iterator's grain state at its step.
  with open(os.path.join(resumed, "checkpoints", str(preempted_at),
                         "data_iter", "process_0-of-1.json")) as f:
    assert json.load(f)["next_step"] == preempted_at

  _run(resumed, tmp_path / "resumed.log", cache_dir)
  log = open(tmp_path / "resumed.log").read()
  assert f"resumed from checkpoint step {preempted_at}" in log
  assert f"input iterator resumed at step {preempted_at}" in log
  _assert_same_final_state(reference, resumed)
