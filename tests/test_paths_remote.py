"""gs:// paths through etils.epath: atomic writes, run.json, checksum
manifests and the catalog's data_dir check on a non-local URL.

etils.epath 1.15 routes only gs://, s3://, az://, hf:// to a non-os.path
backend (its fsspec backend; ``memory://`` and ``file://`` are refused or
taken as local), and gs:// needs gcsfs and a network. So the test registers
an in-memory fsspec filesystem under the ``gs``/``gcs`` protocols: epath's
own fsspec backend then serves every ``gs://`` call from memory, and an
``os.path`` call on such a URL would find nothing (the test also checks that
nothing is written to the local working directory).
"""
import importlib
import json

from etils.epath import backend as epath_backend
import fsspec
from fsspec.implementations.memory import MemoryFileSystem
import numpy as np
import pytest

from sonify_jax import atomic_io
from sonify_jax import paths
from sonify_jax.data import catalog
from sonify_jax.train import checkpoints


class _FakeGcs(MemoryFileSystem):
  protocol = ("gs", "gcs")
  store = {}
  pseudo_dirs = [""]

  def __init__(self, *args, finalize_on_close=None, **kwargs):
    del finalize_on_close  # gcsfs's option, passed by epath
    super().__init__(*args, **kwargs)


@pytest.fixture
def fake_gcs(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # a gs:// URL taken as local would land here
  _FakeGcs.store.clear()
  _FakeGcs.pseudo_dirs[:] = [""]
  for protocol in ("gs", "gcs"):
    fsspec.register_implementation(protocol, _FakeGcs, clobber=True)
  epath_backend.fsspec_backend._get_filesystem.cache_clear()
  yield _FakeGcs()
  epath_backend.fsspec_backend._get_filesystem.cache_clear()
  registered = importlib.import_module("fsspec.registry")._registry  # pylint: disable=protected-access
  for protocol in ("gs", "gcs"):
    registered.pop(protocol, None)
  _FakeGcs.store.clear()
  assert not list(tmp_path.iterdir()), "a gs:// path was written locally"


def test_epath_routes_gs_through_fsspec(fake_gcs):
  path = paths.as_path("gs://bucket/x.txt")
  assert path._backend is epath_backend.fsspec_backend  # pylint: disable=protected-access
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
  assert [name.rpartition("/bucket/")[2] for name in stored] == [
      "runs/x/final_metrics.json"]


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
