"""Controls, seeds and intervals, the run's own data, strict JSON.

Three seeds of a tiny classifier (cnn12_tiny, 2 steps, embedded_events) are
trained once for the module; the studies run on a few clips and layers.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats

from sonify_jax import atomic_io
from sonify_jax.analysis import aggregate
from sonify_jax.analysis.studies import coherence
from sonify_jax.analysis.core import common
from sonify_jax.analysis.core import controls
from sonify_jax.analysis.studies import layer_importance
from sonify_jax.analysis.studies import residual
from sonify_jax.analysis import run_data
from sonify_jax.analysis.studies import topk
from sonify_jax.data import catalog
from sonify_jax.errors import UserError
from sonify_jax.train import checkpoints, trainer

import helpers
from helpers import strict_load
from test_configs import load as load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = (0, 1, 2)
LAYERS = (1, 3)
DATASET = "embedded_events"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  import jax  # pylint: disable=g-import-not-at-top
  from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("seeds")
  out = []
  # The seeds share compiled train/eval steps through a compilation cache:
  # one compile instead of three.
  keys = ("jax_compilation_cache_dir",
          "jax_persistent_cache_min_compile_time_secs",
          "jax_persistent_cache_min_entry_size_bytes")
  saved = {k: getattr(jax.config, k) for k in keys}
  compilation_cache.reset_cache()
  jax.config.update("jax_compilation_cache_dir", str(root / "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  try:
    for seed in SEEDS:
      out.append(_train(root, seed))
  finally:
    for k, v in saved.items():
      jax.config.update(k, v)
    compilation_cache.reset_cache()
  return out


def _train(root, seed):
  c = load_config("demo_supervised.py", "steps=2")
  c.progress = False
  for name in ("gain", "noise", "masks", "mix"):
    c.augment[f"use_{name}"] = False
  c.dataset = DATASET
  c.seed = seed
  c.batch_size = 8
  c.eval_batch_size = 8
  c.eval_max_seconds = 0.5
  c.keep_steps = ()  # step 0 is kept anyway
  workdir = str(root / f"seed{seed}")
  trainer.train_and_evaluate(c, workdir)
  return workdir


@pytest.fixture(scope="module")
def source():
  return catalog.get_source(DATASET, "test")


def test_step0_is_kept_and_is_the_seeded_init(runs):
  for workdir in runs:
    assert checkpoints.available_steps(workdir) == [0, 2]
  run = controls.load_run(runs[1], with_head=True)
  assert run.step == 2 and run.untrained_source == "step-0 checkpoint"
  # Independent fact: the step-0 checkpoint is the init the trainer draws
  # from config.seed (what load_run falls back to without one).
  redrawn = controls._reinitialised_encoder(run.info)  # pylint: disable=protected-access
  for name in run.untrained:
    np.testing.assert_array_equal(np.asarray(run.untrained[name]["kernel"]),
                                  np.asarray(redrawn[name]["kernel"]))
  # A run.json saved before compute_dtype existed redraws the same init.
  older = dict(run.info, config={k: v for k, v in run.info["config"].items()
                                 if k != "compute_dtype"})
  redrawn = controls._reinitialised_encoder(older)  # pylint: disable=protected-access
  np.testing.assert_array_equal(np.asarray(run.untrained["block1"]["kernel"]),
                                np.asarray(redrawn["block1"]["kernel"]))
  assert not np.allclose(run.trained["block1"]["kernel"],
                         run.untrained["block1"]["kernel"])
  with pytest.raises(UserError, match="does not exist"):
    controls.load_run(os.path.join(runs[0], "nope"))


def test_random_live_map_is_uniform_over_live_maps_and_seeded():
  rng = np.random.default_rng(0)
  acts = np.maximum(rng.standard_normal((4000, 6)), 0)
  acts[:, 2] = 0.0   # map 2 is never live
  acts[0] = 0.0      # clip 0 has no live map: its argmax (0)
  clips = np.arange(4000)
  maps = controls.random_live_maps(acts, clips, layer=3, seed=7)
  assert maps[0] == 0
  some = np.flatnonzero((acts > 0).any(1))
  assert np.all(acts[some, maps[some]] > 0)
  # Uniform among each clip's live maps: the expected count of map j is the
  # sum over clips of 1/(live maps of the clip) where j is live.
  live = acts[some] > 0
  expected = (live / live.sum(1, keepdims=True)).sum(0)
  observed = np.bincount(maps[some], minlength=6)
  keep = expected > 0
  assert observed[2] == 0
  assert scipy.stats.chisquare(observed[keep], expected[keep]).pvalue > 1e-3
  # Batching cannot change a clip's draw; another seed or layer does.
  half = controls.random_live_maps(acts[2000:], clips[2000:], 3, seed=7)
  np.testing.assert_array_equal(half, maps[2000:])
  assert not np.array_equal(
      controls.random_live_maps(acts, clips, 3, seed=8), maps)
  assert not np.array_equal(
      controls.random_live_maps(acts, clips, 4, seed=7), maps)
  # Padding rows (-1) get the argmax, never a draw.
  assert controls.random_live_maps(acts[5:6], [-1], 3)[0] == acts[5].argmax()


def test_coherence_controls_match_direct_computation(runs, source):
  run = controls.load_run(runs[0])
  got = coherence.stream_coherence(run.trained, run.arch, source, LAYERS,
                                   batch_size=4, clip_samples=4000,
                                   max_clips=5, progress=False,
                                   untrained=run.untrained, seed=3)
  audio = np.stack([common.load_clip(source, i, 1, 4000) for i in range(5)])
  for layer in LAYERS:
    for condition, params in (("trained", run.trained),
                              ("untrained", run.untrained),
                              ("random_map", run.trained)):
      (acts,) = common.layer_activations(params, audio, (layer,), run.arch)
      acts = np.asarray(acts)
      if condition == "random_map":
        maps = [controls.clip_rng(3, layer, i).choice(np.flatnonzero(a > 0))
                for i, a in enumerate(acts)]
      else:
        maps = acts.argmax(1)
      sonifs = common.sonify_pairs(params, audio, np.asarray(maps), layer,
                                   run.arch)
      want = coherence.top_coherence(audio, sonifs).mean()
      assert got["conditions"][condition][layer] == pytest.approx(
          want, abs=1e-5), (condition, layer)


def test_aggregate_matches_scipy_on_planted_numbers(tmp_path, monkeypatch):
  drawn = helpers.record_figures(monkeypatch)
  rng = np.random.default_rng(5)
  values = rng.random((3, 2, 3))  # runs x layers x conditions
  dirs = []
  for r in range(3):
    d = tmp_path / f"run{r}"
    atomic_io.write_json(str(d / "residual.json"), {
        "metric": "mAP", "per_layer": {
            str(l + 1): {c: {"mAP": values[r, l, i], "accuracy": 0.5}
                         for i, c in enumerate(controls.CONDITIONS)}
            for l in range(2)}})
    dirs.append(str(d))
  out = aggregate.aggregate("residual", aggregate.expand_runs(
      [str(tmp_path / "run*")]), str(tmp_path / "agg"))
  saved = strict_load(out["json"])
  cells = saved["tables"][""]["cells"]
  for l in range(2):
    for i, c in enumerate(controls.CONDITIONS):
      v = values[:, l, i]
      lo, hi = scipy.stats.t.interval(0.95, 2, loc=v.mean(),
                                      scale=scipy.stats.sem(v))
      cell = cells[str(l + 1)][f"{c}/mAP"]
      assert cell["n"] == 3
      assert cell["mean"] == pytest.approx(v.mean())
      assert cell["ci_half_width"] == pytest.approx((hi - lo) / 2)
      if c != "trained":
        # Paired differences: scipy's paired t-test interval.
        diff = values[:, l, 0] - v
        res = scipy.stats.ttest_rel(values[:, l, 0], v)
        lo, hi = res.confidence_interval(0.95)
        cell = cells[str(l + 1)][f"trained-{c}/mAP"]
        assert cell["mean"] == pytest.approx(diff.mean())
        assert cell["ci_half_width"] == pytest.approx((hi - lo) / 2)
  # The figure draws the planted means: one curve per condition over the
  # two layers (the mean of the three runs' planted values).
  helpers.read_png(out["figure"])
  (ax,) = drawn[os.path.basename(out["figure"])]
  curves = [y for _, y in ax["lines"]]
  for i in range(len(controls.CONDITIONS)):
    want = values[:, :, i].mean(0)
    assert any(len(y) == 2 and np.allclose(y, want) for y in curves), i
  # One run: no interval, and null (not NaN) in the JSON.
  one = aggregate.aggregate("residual", dirs[:1], str(tmp_path / "one"))
  cell = strict_load(one["json"])["tables"][""]["cells"]["1"]["trained/mAP"]
  assert cell["n"] == 1 and cell["ci_half_width"] is None
  with pytest.raises(UserError, match="matches nothing"):
    aggregate.expand_runs([str(tmp_path / "none*")])


def test_studies_over_seeds_strict_json_and_aggregate(runs, source,
                                                      tmp_path):
  kw = dict(batch_size=4, clip_samples=4000, max_clips=6, progress=False)
  study_dirs = []
  for i, workdir in enumerate(runs):
    run = controls.load_run(workdir, with_head=True)
    out = str(tmp_path / f"coh{i}")
    coherence.run_coherence({"supervised": [run]}, source, out,
                            layers=LAYERS, **kw)
    study_dirs.append(out)
  agg = aggregate.aggregate("coherence", study_dirs, str(tmp_path / "agg"))
  cells = strict_load(agg["json"])["tables"]["models/supervised"]["cells"]
  for layer in LAYERS:
    per_run = [strict_load(os.path.join(d, "coherence.json"))["models"][
        "supervised"]["per_layer"][str(layer)] for d in study_dirs]
    for condition in controls.CONDITIONS:
      v = [r[condition] for r in per_run]
      mean, half = common.t_interval(v)
      cell = cells[str(layer)][condition]
      assert cell["n"] == 3 and cell["values"] == pytest.approx(v)
      assert cell["mean"] == pytest.approx(mean)
      assert cell["ci_half_width"] == pytest.approx(half)
  # Every study's JSON is strict, with the three conditions per layer.
  run = controls.load_run(runs[0], with_head=True)
  residual.run_residual(run.trained, run.head, run.arch, source,
                        str(tmp_path / "res"), layers=LAYERS,
                        untrained=run.untrained, **kw)
  train = catalog.get_source(DATASET, "train")
  layer_importance.run_layer_importance(
      run.trained, run.arch, train, source, str(tmp_path / "li"),
      layers=(1,), modes=("fconly",), probe_steps=20, untrained=run.untrained,
      **kw)
  topk.run_topk(run.trained, run.arch, source, str(tmp_path / "topk"),
                layers=(1,), k=1, max_maps=1, pair_figures=False,
                figure_maps=0, untrained=run.untrained, shared_clips=[0],
                **kw)
  for path, study in (("coh0/coherence.json", "coherence"),
                      ("res/residual.json", "residual"),
                      ("li/layer_importance.json", "layer_importance"),
                      ("topk/topk.json", "topk")):
    saved = strict_load(str(tmp_path / path))
    tables = list(aggregate.find_tables(saved))
    assert tables, study
    for _, table in tables:
      for cell in table.values():
        assert set(cell) == set(controls.CONDITIONS), (study, cell)
  single = strict_load(str(tmp_path / "coh0/coherence.json"))
  assert single["models"]["supervised"]["ci_half_width"] == [None, None]


def test_run_data_defaults_and_class_mismatch(runs):
  info = checkpoints.load_run_info(runs[0])
  source, chosen = run_data.study_source(info, head_classes=6)
  assert chosen["dataset"] == DATASET and chosen["chosen_by"] == "run config"
  assert chosen["split"] == "validation"  # never the test split by default
  assert source.num_classes == 6
  with pytest.raises(UserError, match="16 classes but the classifier "
                     "predicts 6"):
    run_data.study_source(info, dataset="embedded", head_classes=6)
  # An encoder-only run may be studied on any data.
  run_data.study_source(info, dataset="embedded", split="test")


def test_cli_prints_every_metric_and_refuses_mismatch(runs, tmp_path):
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  base = [sys.executable, "-m", "sonify_jax.analysis.run", "--study=residual",
          f"--checkpoint={runs[0]}", "--layers=1", "--max_clips=4",
          "--batch_size=4", "--clip_seconds=0.5"]
  res = subprocess.run(base + [f"--workdir={tmp_path / 'res'}"], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, res.stderr
  for word in ("intact clips", "accuracy", "mAP", "untrained init",
               "random live map"):
    assert word in res.stdout, (word, res.stdout)
  res = subprocess.run(base + [f"--workdir={tmp_path / 'bad'}",
                               "--dataset=embedded"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
  assert res.returncode == 2
  (line,) = [l for l in res.stderr.splitlines() if l.startswith("error:")]
  assert "16 classes but the classifier predicts 6" in line
