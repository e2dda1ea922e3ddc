"""Which checkpoint step an analysis reads: the run's selected one.

A planted answer: a cnn12_tiny run (config demo_supervised.py, ranked by
``eval/accuracy`` on ``validation``) whose steps 0, 2, 4, 6, 8 carry
encoder params drawn from seed = step and validation accuracies 0.40, 0.90,
0.55, 0.50 for steps 2..8, saved through the trainer's ``Checkpointer``
with ``keep_last=1``. The best step (4) is not the last (8), so a study that
read the latest would read other params; the params say which step it read
(the top-k study's activations, the sonify CLI's WAV, the gallery's label).
"""
import os
import shutil

import jax
import numpy as np
import pytest
import soundfile

from cli_harness import CliWorker
from sonify_jax import atomic_io, deconvnet
from sonify_jax.analysis.core import common
from sonify_jax.analysis.core import controls
from sonify_jax.analysis.pages import gallery
from sonify_jax.analysis import run_data
from sonify_jax.errors import UserError
from sonify_jax.models.registry import get_network
from sonify_jax.train import checkpoints

from helpers import strict_load
from test_configs import load as load_config

ARCH = get_network("cnn12_tiny")
ACCURACY = {2: 0.40, 4: 0.90, 6: 0.55, 8: 0.50}   # validation, by step
BEST, LATEST = 4, 8


def _state(step):
  return {"step": np.int32(step),
          "params": {"encoder": common.random_params(ARCH, seed=step)}}


def _make_run(workdir, accuracy, best_metric="eval/accuracy",
              best_mode="max"):
  config = load_config("demo_supervised.py")
  config.best_metric, config.best_mode = best_metric, best_mode
  ckpt = checkpoints.Checkpointer(workdir, keep_last=1, keep_steps=(0,),
                                  best_metric=best_metric,
                                  best_mode=best_mode)
  for step in [0, *sorted(accuracy)]:
    metrics = ({"eval/accuracy": accuracy[step], "eval/loss": 1.0}
               if step in accuracy else None)
    ckpt.save(step, _state(step), metrics=metrics)
  ckpt.close()
  checkpoints.save_run_info(workdir, config, arch=config.model,
                            task=config.task)
  return workdir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  return _make_run(str(tmp_path_factory.mktemp("planted") / "run"), ACCURACY)


def _same(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(leaves_a) == len(leaves_b) and all(
      np.array_equal(x, y) for x, y in zip(leaves_a, leaves_b))


def test_training_keeps_the_best_step_from_pruning(run_dir):
  # keep_last=1 pruned 2 and 6, but not the best (4) nor step 0.
  assert checkpoints.available_steps(run_dir) == [0, BEST, LATEST]


def test_default_is_the_best_step_on_validation(run_dir):
  choice = checkpoints.choose_step(run_dir)
  assert (choice.step, choice.latest) == (BEST, LATEST)
  assert choice.selected_on == "validation"
  assert choice.selected_by == "eval/accuracy"
  assert choice.describe().startswith(f"step {BEST}: best eval/accuracy on "
                                      "validation")
  assert checkpoints.choose_step(run_dir, checkpoints.LATEST).step == LATEST
  assert checkpoints.choose_step(run_dir, 0).step == 0
  folder = os.path.join(run_dir, "checkpoints", str(LATEST))
  assert checkpoints.choose_step(folder).step == LATEST
  with pytest.raises(UserError, match=r"step 6 .*have \[0, 4, 8\]"):
    checkpoints.choose_step(run_dir, 6)   # pruned


def test_loaders_read_the_selected_params(run_dir):
  run = controls.load_run(run_dir)
  assert run.step == BEST and run.choice.step == BEST
  assert _same(run.trained, common.random_params(ARCH, seed=BEST))
  assert _same(run.untrained, common.random_params(ARCH, seed=0))
  latest = controls.load_run(run_dir, checkpoints.LATEST)
  assert _same(latest.trained, common.random_params(ARCH, seed=LATEST))
  params, _ = checkpoints.load_encoder(run_dir)
  assert _same(params, common.random_params(ARCH, seed=BEST))


def test_parse_step():
  assert checkpoints.parse_step(None) is None
  assert checkpoints.parse_step("best") is None
  assert checkpoints.parse_step("Latest") == checkpoints.LATEST
  assert checkpoints.parse_step("40") == 40
  with pytest.raises(UserError, match="--step"):
    checkpoints.parse_step("last-but-one")


def test_min_mode_and_unranked_runs(tmp_path):
  loss = {2: 0.9, 4: 0.2, 6: 0.5}   # ranked by 'min': step 4
  run = _make_run(str(tmp_path / "min"), loss, best_mode="min")
  assert checkpoints.choose_step(run).step == 4
  # No best_metric (a SimCLR run without validation): the latest step.
  unranked = _make_run(str(tmp_path / "simclr"), ACCURACY, best_metric="")
  choice = checkpoints.choose_step(unranked)
  assert choice.step == LATEST and choice.selected_on == ""
  assert "ranks no checkpoint" in choice.why


def test_final_metrics_record_and_a_deleted_selected_step(run_dir, tmp_path):
  run = str(tmp_path / "run")
  shutil.copytree(run_dir, run)
  record = {"split": "test", "step": LATEST, "selected_on": "validation",
            "selected_by": "eval/accuracy", "metrics": {}}
  atomic_io.write_json(os.path.join(run, checkpoints.FINAL_METRICS), record)
  assert checkpoints.choose_step(run).step == LATEST   # the record wins
  record["step"] = 6
  atomic_io.write_json(os.path.join(run, checkpoints.FINAL_METRICS), record)
  with pytest.raises(UserError, match="step 6, the best eval/accuracy on "
                     r"validation .* is no longer in .*have \[0, 4, 8\]"):
    checkpoints.choose_step(run)


def test_study_reads_and_records_the_selected_step(run_dir, tmp_path):
  worker = CliWorker("sonify_jax.analysis.run")
  base = ["--study=topk", f"--checkpoint={run_dir}", "--layers=1", "--k=1",
          "--max_maps=2", "--max_clips=3", "--batch_size=3",
          "--clip_seconds=0.25", "--pair_figures=false"]
  try:
    best = worker.run(*base, f"--workdir={tmp_path / 'best'}")
    latest = worker.run(*base, f"--workdir={tmp_path / 'latest'}",
                        "--step=latest")
  finally:
    worker.close()
  assert best.code in (0, None), best.stderr[-2000:]
  assert latest.code in (0, None), latest.stderr[-2000:]
  assert (f"step {BEST}: best eval/accuracy on validation" in best.stdout and
          f"latest is {LATEST}" in best.stdout), best.stdout
  assert f"step {LATEST}: the latest step, asked for" in latest.stdout
  # The gallery of both says which step each model is.
  page = gallery.write_gallery(str(tmp_path / "site"), {
      "best": str(tmp_path / "best"), "latest": str(tmp_path / "latest")})
  with open(page) as f:
    text = f.read()
  assert (f", checkpoint step {BEST} (best eval/accuracy on validation"
          in text)
  assert f", checkpoint step {LATEST} (the latest step, asked for)" in text
  info = checkpoints.load_run_info(run_dir)
  source = run_data.study_source(info)[0]
  for folder, step in (("best", BEST), ("latest", LATEST)):
    saved = strict_load(str(tmp_path / folder / "topk.json"))
    assert saved["checkpoint_step"] == step
    assert saved["checkpoint_selected_on"] == (
        "validation" if step == BEST else "")
    assert [r["checkpoint_step"] for r in saved["checkpoints"]] == [step]
    # The activations reported are those of that step's params.
    params = common.random_params(ARCH, seed=step)
    for map_index, entries in saved["layers"]["1"].items():
      clip = common.load_clip(source, entries[0]["clip_index"],
                              ARCH.min_input_length(1), 2000)
      strength = deconvnet.feature_map_activations(params, clip[None], 1,
                                                   ARCH)[0]
      assert entries[0]["activation"] == pytest.approx(
          float(strength[int(map_index)]), rel=1e-5)


def test_evolution_marks_the_selected_step(run_dir, tmp_path):
  # Every kept step is sonified; the selected one (4, not the latest 8)
  # picks the maps and is recorded and marked.
  worker = CliWorker("sonify_jax.analysis.run")
  try:
    result = worker.run("--study=evolution", f"--checkpoint={run_dir}",
                        "--layers=1", "--maps_per_layer=2", "--max_clips=3",
                        "--batch_size=3", "--clip_seconds=0.25",
                        f"--workdir={tmp_path / 'evo'}")
  finally:
    worker.close()
  assert result.code in (0, None), result.stderr[-2000:]
  saved = strict_load(str(tmp_path / "evo" / "evolution.json"))
  assert saved["steps"] == [0, BEST, LATEST]
  assert saved["selected_step"] == saved["checkpoint_step"] == BEST
  info = checkpoints.load_run_info(run_dir)
  source = run_data.study_source(info)[0]
  params = common.random_params(ARCH, seed=BEST)
  for entry in saved["layers"]["1"]:
    clip = common.load_clip(source, entry["clip_index"],
                            ARCH.min_input_length(1), 2000)
    strength = deconvnet.feature_map_activations(params, clip[None], 1, ARCH)
    assert entry["activation"] == pytest.approx(
        float(strength[0, entry["map"]]), rel=1e-5)
  text = "".join(gallery._evolution_html(  # pylint: disable=protected-access
      "run", str(tmp_path / "evo"), str(tmp_path / "site")))
  assert f"step {BEST} (selected)" in text
  assert f"step {LATEST} (selected)" not in text


def test_sonify_cli_uses_the_selected_step(run_dir, tmp_path):
  rate = 8000
  t = np.arange(rate // 2) / rate
  clip = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
  wav = str(tmp_path / "tone.wav")
  soundfile.write(wav, clip, rate, subtype="FLOAT")
  worker = CliWorker("sonify_jax.sonify")
  try:
    result = worker.run(f"--audio={wav}", "--layer=2", "--maps=0",
                        f"--out={tmp_path / 'out'}",
                        f"--checkpoint={run_dir}")
  finally:
    worker.close()
  assert result.code in (0, None), result.stderr[-2000:]
  assert f"step {BEST}: best eval/accuracy on validation" in result.stdout
  index = strict_load(tmp_path / "out" / "index.json")
  assert index["checkpoint_step"] == BEST
  assert index["checkpoint_selected_on"] == "validation"
  written, _ = soundfile.read(str(tmp_path / "out" / "layer2_map0.wav"),
                              dtype="float32")
  for step in (BEST, LATEST):
    expected = np.clip(np.asarray(deconvnet.sonify(
        common.random_params(ARCH, seed=step), clip[None], 2, [0],
        ARCH))[0, 0], -1, 1)
    close = np.allclose(written, expected, atol=2 / 32768)
    assert close == (step == BEST), step   # PCM-16 of step 4's, not 8's
