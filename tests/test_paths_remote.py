"""gs:// paths through etils.epath, on a fake bucket (``fake_gcs.py``: a
local folder served under the gs protocol, outside the working directory):
atomic writes, run.json, checksum manifests, the catalog's data_dir, a
training run's whole workdir (metrics.jsonl, TensorBoard events, listening
set, orbax checkpoints, resume) and an analysis study's --workdir. Every test
also checks that nothing was written to the local working directory.
"""
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fake_gcs as fake_gcs_lib
from sonify_jax import atomic_io
from sonify_jax import paths
from sonify_jax.data import catalog
from sonify_jax.errors import UserError
from sonify_jax.train import checkpoints
from sonify_jax.train import logging_utils

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fake_gcs(tmp_path, monkeypatch):
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)  # a gs:// URL taken as local would land here
  uninstall = fake_gcs_lib.install(str(tmp_path / "bucket_root"),
                                   monkeypatch.setattr)
  yield fake_gcs_lib.FakeGcs()
  uninstall()
  assert not list(cwd.iterdir()), "a gs:// path was written locally"


def test_epath_routes_gs_through_fsspec(fake_gcs):
  path = paths.as_path("gs://bucket/x.txt")
  assert type(path._backend).__name__ == "_FileSystemSpecBackend"  # pylint: disable=protected-access
  assert paths.resolve("gs://bucket/a/b") == "gs://bucket/a/b"
  assert paths.split("gs://bucket/a/b") == ("gs://bucket/a", "b")


def test_atomic_json_on_gs_is_strict_and_keeps_old_on_failure(fake_gcs):
  url = "gs://bucket/runs/x/final_metrics.json"
  atomic_io.write_json(url, {"loss": np.float32("nan"), "acc": 0.5})

  def reject(token):
    raise ValueError(f"non-strict JSON constant {token}")
  with fake_gcs.open(url, "r") as f:
    assert json.load(f, parse_constant=reject) == {"loss": None, "acc": 0.5}
  with pytest.raises(RuntimeError):
    with atomic_io.atomic_path(url) as tmp:
      with open(tmp, "w") as f:
        f.write("half")
      raise RuntimeError("interrupted")
  with fake_gcs.open(url, "r") as f:
    assert json.load(f) == {"loss": None, "acc": 0.5}
  stored = fake_gcs.find("gs://bucket")  # no temp object left behind
  assert stored == ["bucket/runs/x/final_metrics.json"]


def test_run_info_round_trip_on_gs(fake_gcs):
  workdir = "gs://bucket/runs/x"
  written = checkpoints.save_run_info(workdir, {"model": "cnn12_tiny"},
                                      num_classes=3)
  assert written == "gs://bucket/runs/x/checkpoints/run.json"
  assert fake_gcs.exists(written)
  for where in (workdir, workdir + "/checkpoints"):
    info = checkpoints.load_run_info(where)
    assert info == {"config": {"model": "cnn12_tiny"}, "num_classes": 3}
  with pytest.raises(checkpoints.NotARunError):
    checkpoints.load_run_info("gs://bucket/runs/missing")


def test_checksum_manifest_on_gs_detects_a_changed_file(fake_gcs):
  step_dir = "gs://bucket/runs/x/checkpoints/5"
  files = {"state/a.bin": b"\x00" * 100, "state/sub/b.bin": b"abc",
           "_METADATA": b"{}"}
  for rel, data in files.items():
    with fake_gcs.open(f"{step_dir}/{rel}", "wb") as f:
      f.write(data)
  checkpoints.save_run_info("gs://bucket/runs/x", {"model": "m"})
  assert checkpoints.split_step_dir(step_dir) == (
      "gs://bucket/runs/x/checkpoints", 5)

  checkpoints.write_checksums(step_dir)
  with fake_gcs.open(f"{step_dir}/{checkpoints.CHECKSUMS_FILE}", "r") as f:
    recorded = json.load(f)["files"]
  assert {rel: v["bytes"] for rel, v in recorded.items()} == {
      rel: len(data) for rel, data in files.items()}
  assert checkpoints.verify_checksums(step_dir)

  with fake_gcs.open(f"{step_dir}/state/sub/b.bin", "wb") as f:
    f.write(b"abd")  # same size, different bytes
  with pytest.raises(checkpoints.CorruptCheckpointError, match="b.bin"):
    checkpoints.verify_checksums(step_dir)
  fake_gcs.rm(f"{step_dir}/state/a.bin")
  with pytest.raises(checkpoints.CorruptCheckpointError, match="missing"):
    checkpoints.verify_checksums(step_dir)


def test_catalog_checks_a_gs_data_dir(fake_gcs):
  with pytest.raises(FileNotFoundError, match="gs://bucket/tfds"):
    catalog.get_source("fsd50k", "train", data_dir="gs://bucket/tfds")


def test_catalog_reads_a_dataset_prepared_in_a_gs_data_dir(fake_gcs,
                                                          tmp_path):
  """TFDS reads dataset_info through epath; array_record's reader is handed
  the gs:// shard URLs (read here from the fake bucket's bytes)."""
  from sonify_jax.data import builders  # pylint: disable=g-import-not-at-top
  from sonify_jax.data import embedded  # pylint: disable=g-import-not-at-top
  rows = embedded.read_manifest()[:8]
  tree = tmp_path / "words"
  for k, row in enumerate(rows):
    target = tree / ("yes" if k % 2 else "no") / f"s{k}_{row['file']}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(os.path.join(embedded.EMBEDDED_DIR, row["file"]), target)
  local_dir = str(tmp_path / "tfds")
  builders.build("folder", str(tree), local_dir, split_percent="50/25/25")
  for folder, _, files in os.walk(local_dir):
    for name in files:
      full = os.path.join(folder, name)
      fake_gcs.put_file(full, "gs://bucket/tfds/" + os.path.relpath(
          full, local_dir))
  local = catalog.get_source("folder:words", "train", local_dir)
  remote = catalog.get_source("folder:words", "train", "gs://bucket/tfds")
  assert len(remote) == len(local) > 0
  for i in range(len(local)):
    assert remote[i]["id"] == local[i]["id"]
    np.testing.assert_array_equal(remote[i]["audio"], local[i]["audio"])
    assert int(remote[i]["label"]) == int(local[i]["label"])
  assert fake_gcs_lib.ARRAY_RECORD_URLS and all(
      url.startswith("gs://bucket/tfds/")
      for url in fake_gcs_lib.ARRAY_RECORD_URLS)
  with pytest.raises(FileNotFoundError, match="not prepared"):
    catalog.get_source("folder:other", "train", "gs://bucket/tfds")
  with pytest.raises(UserError, match="built into a local folder"):
    builders.build("folder", str(tree), "gs://bucket/tfds2")


def test_sonify_out_on_gs_replaces_the_folder_whole(fake_gcs, tmp_path):
  from sonify_jax import audio_io  # pylint: disable=g-import-not-at-top
  from sonify_jax import sonify_files  # pylint: disable=g-import-not-at-top
  clip = str(tmp_path / "clip.wav")
  t = np.arange(4000) / 8000.0
  audio_io.write_wav(clip, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(
      np.float32))
  params, arch = sonify_files.load_model(None, None, "cnn12_tiny", 0)
  out = "gs://bucket/sonify/clip"
  sonify_files.sonify_file(clip, 1, "0,1", out, params, arch)
  clip_url = "gs://bucket/clips/clip.wav"  # --audio on gs:// too
  fake_gcs.put_file(clip, clip_url)
  maps, index = sonify_files.sonify_file(clip_url, 1, "2", out, params, arch)
  assert index == out + "/index.json"
  with fake_gcs.open(index, "r") as f:
    written = json.load(f)
  entries = written["sonifications"]
  assert written["audio"] == clip_url
  assert [e["map"] for e in entries] == maps == [2]
  stored = sorted(os.path.relpath(n, "bucket/sonify/clip")
                  for n in fake_gcs.find(out))
  # The second run replaced the first: no map 0 or 1 files are left.
  assert stored == sorted(["index.json", "input.wav", entries[0]["wav"],
                           entries[0]["png"]])
  with fake_gcs.open(out + "/input.wav", "rb") as f, open(clip, "rb") as g:
    assert f.read() == g.read()
  with pytest.raises(audio_io.AudioReadError,
                     match="no such audio file: gs://bucket/clips/nope.wav"):
    sonify_files.sonify_file("gs://bucket/clips/nope.wav", 1, "0", out, params,
                           arch)
  fake_gcs.pipe_file("gs://bucket/clips/bad.wav", b"RIFF not audio")
  with pytest.raises(audio_io.AudioReadError,
                     match="cannot decode gs://bucket/clips/bad.wav"):
    sonify_files.sonify_file("gs://bucket/clips/bad.wav", 1, "0", out, params,
                           arch)
  fake_gcs.pipe_file("gs://bucket/sonify/other/mine.txt", b"keep")
  with pytest.raises(UserError, match="holds other files"):
    sonify_files.sonify_file(clip, 1, "0", "gs://bucket/sonify/other", params,
                           arch)


def test_mirror_pushes_changed_files_and_pulls_a_tree(fake_gcs):
  from sonify_jax import mirror  # pylint: disable=g-import-not-at-top
  dest = "gs://bucket/m"
  with mirror.staged(dest) as m:
    assert m.remote and not os.path.commonpath([m.local, os.getcwd()]) == (
        os.getcwd())
    for rel, text in (("a.txt", "a"), ("sub/deep/b.txt", "b")):
      os.makedirs(os.path.dirname(os.path.join(m.local, rel)), exist_ok=True)
      with open(os.path.join(m.local, rel), "w") as f:
        f.write(text)
    assert m.push() == 2 and m.push() == 0  # nothing changed since
    with open(os.path.join(m.local, "a.txt"), "a") as f:
      f.write("+")
    assert m.push() == 1
  with mirror.staged(dest) as m:  # pulls what is there
    with open(os.path.join(m.local, "sub", "deep", "b.txt")) as f:
      assert f.read() == "b"
    assert m.push() == 0  # pulled files are not pushed back unchanged
  with pytest.raises(RuntimeError):
    with mirror.staged(dest) as m:
      with open(os.path.join(m.local, "c.txt"), "w") as f:
        f.write("c")
      raise RuntimeError("study failed")
  assert sorted(fake_gcs.find(dest)) == ["bucket/m/a.txt",
                                         "bucket/m/sub/deep/b.txt"]
  assert fake_gcs.cat_file(dest + "/a.txt") == b"a+"
  assert not os.path.exists(m.local)  # the stand-in is removed


def test_aggregate_reads_and_writes_gs_like_local(fake_gcs, tmp_path):
  """The same study JSONs aggregated from a gs:// glob and from local
  folders give the same tables; the outputs land in the bucket."""
  from sonify_jax.analysis import aggregate  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for seed in range(3):
    result = {"metric": "mAP", "per_layer": {
        str(layer): {condition: {"mAP": float(rng.uniform())}
                     for condition in ("trained", "untrained", "random_map")}
        for layer in (1, 3)}}
    local = tmp_path / f"res/seed{seed}/residual.json"
    local.parent.mkdir(parents=True)
    atomic_io.write_json(str(local), result)
    fake_gcs.put_file(str(local), f"gs://bucket/res/seed{seed}/residual.json")
  runs = aggregate.expand_runs(["gs://bucket/res/seed*"])
  assert runs == [f"gs://bucket/res/seed{s}" for s in range(3)]
  remote = aggregate.aggregate("residual", runs, "gs://bucket/res/all")
  expected = aggregate.aggregate(
      "residual", aggregate.expand_runs([str(tmp_path / "res/seed*")]),
      str(tmp_path / "all"))
  assert remote["tables"] == expected["tables"]
  assert remote["json"] == "gs://bucket/res/all/aggregate_residual.json"
  with fake_gcs.open(remote["json"], "r") as f:
    assert json.load(f)["tables"] == json.loads(json.dumps(
        expected["tables"]))
  assert fake_gcs.exists(remote["figure"])


def _gs_run_config(steps):
  from test_configs import load as load_config  # pylint: disable=g-import-not-at-top
  c = load_config("demo_supervised.py", f"steps={steps}")
  c.progress = False
  for name in ("gain", "noise", "masks", "mix"):
    c.augment[f"use_{name}"] = False  # not what this test is about
  c.batch_size = 8
  c.eval_batch_size = 8
  c.eval_every_steps = c.checkpoint_every_steps = c.log_every_steps = 2
  c.eval_max_seconds = 1.0
  c.test_split = ""
  c.listen_clips, c.listen_seconds, c.listen_layers = 1, 0.5, (1,)
  return c


def _bucket_copy(fake_gcs, url, local_dir):
  """The objects under ``url`` copied to ``local_dir`` (for readers that
  take a local folder, such as TensorBoard's)."""
  for name in fake_gcs.find(url):
    target = os.path.join(local_dir, os.path.relpath(name, url.split("://")[1]))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    fake_gcs.get_file(name, target)
  return local_dir


# ~30 s (70 s beside another worker): two trainings, a study and the gallery
# on gs://. The fast tests above cover the gs:// path layer each of them
# writes through (atomic JSON, manifests, run info, sonify, aggregate).
@pytest.mark.slow
def test_training_workdir_on_gs_writes_everything_there_and_resumes(
    fake_gcs, tmp_path):
  from tensorboard.backend.event_processing import event_accumulator as ea  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import trainer  # pylint: disable=g-import-not-at-top
  workdir = "gs://bucket/run"
  trainer.train_and_evaluate(_gs_run_config(2), workdir)
  assert checkpoints.available_steps(workdir)[-1] == 2
  final = trainer.train_and_evaluate(_gs_run_config(4), workdir)  # resumes
  assert checkpoints.available_steps(workdir)[-2:] == [2, 4]
  assert int(checkpoints.load_state(workdir)["step"]) == 4
  assert checkpoints.load_run_info(workdir)["config"]["model"] == "cnn12_tiny"

  # metrics.jsonl: the first run's step 2, then the resumed run's step 4
  # appended to it (a restart from 0 would log step 2 twice).
  records = logging_utils.read_jsonl(workdir + "/metrics.jsonl")
  assert [r["step"] for r in records if "train/loss" in r] == [2, 4]
  assert final["eval/accuracy"] == [
      r for r in records if "eval/accuracy" in r][-1]["eval/accuracy"]
  assert fake_gcs.exists(workdir + "/" + "listen_set.json")

  # One event file per run, readable by TensorBoard from a local copy.
  local = _bucket_copy(fake_gcs, workdir, str(tmp_path / "events"))
  assert len(glob.glob(os.path.join(local, "events.out.tfevents.*"))) == 2
  acc = ea.EventAccumulator(local, size_guidance={
      ea.SCALARS: 0, ea.AUDIO: 0, ea.IMAGES: 0})
  acc.Reload()
  losses = {e.step: e.value for e in acc.Scalars("train/loss")}
  by_step = {r["step"]: r["train/loss"] for r in records if "train/loss" in r}
  assert sorted(losses) == [2, 4]
  np.testing.assert_allclose([losses[2], losses[4]],
                             [by_step[2], by_step[4]], rtol=1e-6)
  audio_tags = acc.Tags()["audio"]
  assert "listen/clip0/input" in audio_tags
  assert any(t.startswith("listen/clip0/layer1/map") for t in audio_tags)
  assert acc.Tags()["images"]

  # An analysis study reads the gs:// run and writes its WAV/PNG/JSON to a
  # gs:// --workdir (a subprocess with the same fake bucket).
  out = "gs://bucket/out"
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.path.join(
      REPO, "tests"), JAX_PLATFORMS="cpu")
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, "tests", "fake_gcs.py"),
       fake_gcs_lib.FakeGcs.root, "sonify_jax.analysis.run", "--study=topk",
       f"--workdir={out}", f"--checkpoint={workdir}", "--layers=1",
       "--max_maps=2", "--k=2", "--max_clips=8", "--batch_size=8",
       "--clip_seconds=0.5"],
      cwd=os.getcwd(), env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"{out}/topk.json" in result.stdout
  with fake_gcs.open(out + "/topk.json", "r") as f:
    index = json.load(f)
  stored = [os.path.relpath(n, "bucket/out") for n in fake_gcs.find(out)]
  assert "topk.json" in stored
  assert any(n.endswith(".wav") for n in stored)
  assert any(n.endswith(".png") for n in stored)
  assert index

  # The gallery reads that gs:// topk folder and writes its page to gs://.
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, "tests", "fake_gcs.py"),
       fake_gcs_lib.FakeGcs.root, "sonify_jax.analysis.run",
       "--study=gallery", "--workdir=gs://bucket/site",
       f"--checkpoint=tiny={out}"],
      cwd=os.getcwd(), env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "gallery: gs://bucket/site/index.html" in result.stdout
  with fake_gcs.open("gs://bucket/site/index.html", "r") as f:
    page = f.read()
  site = [os.path.relpath(n, "bucket/site")
          for n in fake_gcs.find("gs://bucket/site")]
  wavs = [n for n in site if n.endswith(".wav")]
  assert wavs and all(n in page for n in wavs)  # the page links its audio
