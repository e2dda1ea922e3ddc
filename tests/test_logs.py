"""Logs a person can read: --help and --print_config exit 0, library INFO is
hidden by default, known-false orbax warnings are gone, progress lines print
each state once."""
import json
import logging as py_logging
import os
import subprocess
import sys

import jax.numpy as jnp
import pytest

from sonify_jax import logs
from sonify_jax.analysis.core import common
from sonify_jax.train import checkpoints

from test_configs import load

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



def _entry_points():
  """Every file that runs a main (through cli.run, or absl's app.run, which
  this test then catches), as python arguments: -m for package modules,
  a path for benchmarks and scripts."""
  found = []
  for top in ("sonify_jax", "launch", "benchmarks", "scripts"):
    for root, _, files in os.walk(os.path.join(REPO, top)):
      for name in sorted(files):
        path = os.path.join(root, name)
        if not name.endswith(".py") or path.endswith(os.path.join(
            "sonify_jax", "cli.py")):
          continue
        text = open(path).read()
        if "cli.run(main" not in text and "app.run(main" not in text:
          continue
        rel = os.path.relpath(path, REPO)
        if top in ("benchmarks", "scripts"):
          found.append([rel])
        else:
          module = rel[:-len(".py")].replace(os.sep, ".")
          found.append(["-m", module[:-len(".__main__")]
                        if module.endswith(".__main__") else module])
  return found


def _env():
  env = dict(os.environ)
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  return env


def test_entry_points_are_found():
  found = _entry_points()
  for expected in (["-m", "sonify_jax.main"], ["-m", "sonify_jax.demo"],
                   ["-m", "sonify_jax.data.builders"],
                   ["benchmarks/input_bench.py"]):
    assert expected in found, found


def _source(args):
  """The file an entry point's python arguments run."""
  if args[0] != "-m":
    return os.path.join(REPO, args[0])
  base = os.path.join(REPO, *args[1].split("."))
  return base + ".py" if os.path.isfile(base + ".py") else os.path.join(
      base, "__main__.py")


def test_every_entry_point_runs_main_through_cli_run():
  """The fast form of the next test: --help exits 0 under cli.run, not
  under absl's app.run (which exits 1), and each entry point uses it
  (tests/test_bad_input.py runs --help of the main commands in-process)."""
  for args in _entry_points():
    text = open(_source(args)).read()
    assert "cli.run(main" in text and "app.run(main" not in text, args


@pytest.mark.slow   # ~2 min on 2 cores: a python process per entry point
def test_help_exits_0_for_every_entry_point():
  procs = [(args, subprocess.Popen(
      [sys.executable, *args, "--help"], cwd=REPO, env=_env(),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
           for args in _entry_points()]
  for args, proc in procs:
    out, err = proc.communicate(timeout=300)
    # cli.run, not absl's app.run (which exits 1 for --help).
    assert proc.returncode == 0, (args, err[-2000:])
    assert "--helpfull" in out, (args, out[-500:])


def test_print_config_prints_the_resolved_config_and_exits_0():
  result = subprocess.run(
      [sys.executable, "-m", "sonify_jax.main",
       "--config=configs/demo_simclr.py:steps=7",
       "--config.batch_size=16", "--print_config"],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  printed = json.loads(result.stdout)
  # The config file's own fields, with its arg and the override applied.
  expected = json.loads(load("demo_simclr.py", "steps=7")
                        .to_json_best_effort())
  expected["batch_size"] = 16
  assert printed == expected
  assert printed["total_steps"] == 7


def _record(pathname, level):
  return py_logging.LogRecord("x", level, pathname, 1, "msg", (), None)


def test_library_info_is_hidden_but_own_info_and_warnings_are_not():
  site = os.path.dirname(os.path.dirname(py_logging.__file__))
  library = os.path.join(site, "site-packages", "orbax", "checkpoint",
                         "checkpoint_manager.py")
  own = os.path.join(REPO, "sonify_jax", "train", "trainer.py")
  keep = logs.LibraryInfoFilter().filter
  assert not keep(_record(library, py_logging.INFO))
  assert not keep(_record(library, py_logging.DEBUG))
  assert keep(_record(library, py_logging.WARNING))
  assert keep(_record(own, py_logging.INFO))
  assert keep(_record(os.path.join(REPO, "launch", "tpu_vm.py"),
                      py_logging.INFO))


def test_reading_a_checkpoint_gives_no_false_warnings(tmp_path, caplog):
  ckpt = checkpoints.Checkpointer(str(tmp_path), keep_last=1,
                                  best_metric="eval/mAP")
  with caplog.at_level(py_logging.WARNING):
    ckpt.save(0, {"w": jnp.ones(3)})   # no metric at step 0
    ckpt.close()
    assert checkpoints.available_steps(str(tmp_path)) == [0]
  messages = [r.getMessage() for r in caplog.records]
  assert not [m for m in messages if "read only" in m or "read_only" in m
              or "tracked_metric" in m], messages
  # The filter is scoped: outside the block orbax's warnings still show.
  with caplog.at_level(py_logging.WARNING):
    checkpoints.ocp.CheckpointManager(
        str(tmp_path / "checkpoints"),
        options=checkpoints.ocp.CheckpointManagerOptions(read_only=True))
  assert any("read only" in r.getMessage() for r in caplog.records)


def test_reading_a_checkpoint_with_input_state_gives_no_warning(tmp_path,
                                                               caplog):
  # Training saves the grain iterator state beside the TrainState; analysis
  # loaders read the state alone and must not warn about the other item.
  from sonify_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from sonify_jax.data.sources import ArraySource  # pylint: disable=g-import-not-at-top
  source = ArraySource([jnp.ones(3000)] * 4, [0, 1, 0, 1], 2)
  ckpt = checkpoints.Checkpointer(str(tmp_path), keep_last=2)
  with pipeline.train_batches(source, global_batch_size=2, crop_samples=1000,
                              num_crops=1, seed=0) as it:
    next(it)
    ckpt.save(1, {"w": jnp.arange(3.0)}, data_iter=it)
  ckpt.close()
  with caplog.at_level(py_logging.WARNING):
    state = checkpoints.load_state(str(tmp_path))
  assert list(state["w"]) == [0, 1, 2]
  assert not [r.getMessage() for r in caplog.records
              if r.levelno >= py_logging.WARNING], caplog.text
  # The iterator state is there (the quiet read did not skip a real item).
  assert os.path.isdir(os.path.join(ckpt.step_dir(1), "data_iter"))


def test_progress_prints_each_state_once(capsys):
  bar = common.Progress("study", total=4, every=0.0)
  bar.update(2)
  bar.update(2)
  bar.close()
  lines = capsys.readouterr().err.splitlines()
  assert [l.split(" (")[0] for l in lines] == ["[study] 2/4 clips",
                                               "[study] 4/4 clips"]
