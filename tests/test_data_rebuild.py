"""A build is reused only for the manual_dir (and options) it was made from;
--overwrite rebuilds atomically, so a failed rebuild keeps the old build."""
import os
import shutil
import subprocess
import sys

import pytest

from sonify_jax.data import catalog
from sonify_jax.errors import UserError

pytest.importorskip("tensorflow_datasets")
pytest.importorskip("array_record")

from sonify_jax.data import builders  # pylint: disable=g-import-not-at-top
from sonify_jax.data.builders import base  # pylint: disable=g-import-not-at-top

from test_data_folder import clips  # pylint: disable=unused-import
from test_data_folder import make_tree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ids(data_dir, name="folder:set"):
  return sorted(ex_id for split in ("train", "validation", "test")
                for ex_id in (catalog.get_source(name, split, data_dir)[i]["id"]
                              for i in range(len(catalog.get_source(
                                  name, split, data_dir)))))


@pytest.fixture
def two_sources(tmp_path, clips):  # pylint: disable=redefined-outer-name
  """Folders a/set and b/set (same dataset name; b lacks two files) and a
  data_dir holding the build of a/set."""
  a, b = str(tmp_path / "a" / "set"), str(tmp_path / "b" / "set")
  make_tree(a, clips)
  shutil.copytree(a, b)
  for rel in ("go/anna_0.wav", "yes/dora_1.mp3"):
    os.remove(os.path.join(b, rel))
  data_dir = str(tmp_path / "tfds")
  builders.build("folder", a, data_dir)
  return a, b, data_dir


def _nothing_left_over(data_dir):
  """No staging folder in data_dir, no old build beside the current one."""
  assert not [f for f in os.listdir(data_dir) if f.startswith(".rebuild")]
  assert os.listdir(os.path.join(data_dir, "folder_8khz", "set")) == ["1.0.0"]


def _source_dir(data_dir):
  return builders.get_builder("folder:set", data_dir).info.metadata[
      "source"]["manual_dir"]


def test_same_source_is_reused_other_sources_are_refused(two_sources,
                                                          tmp_path):
  a, b, data_dir = two_sources
  before = _ids(data_dir)
  assert builders.build("folder", a, data_dir) is not None  # a no-op
  with pytest.raises(UserError, match=f"built from {a}, not {b}.*--overwrite"):
    builders.build("folder", b, data_dir)
  with pytest.raises(UserError, match="inside manual_dir"):
    builders.build("folder", a, os.path.join(a, "tfds"))
  with pytest.raises(UserError, match="not a directory"):
    builders.build("folder", str(tmp_path / "gone" / "set"), data_dir)
  with pytest.raises(UserError, match="other options: split_percent"):
    builders.build("folder", a, data_dir, split_percent="70/15/15")
  open(os.path.join(a, "go", "new_0.wav"), "wb").close()
  with pytest.raises(UserError, match="now holds"):
    builders.build("folder", a, data_dir)
  assert _ids(data_dir) == before and _source_dir(data_dir) == a


def test_overwrite_rebuilds_from_the_new_source(two_sources):
  a, b, data_dir = two_sources
  before = _ids(data_dir)
  builders.build("folder", b, data_dir, overwrite=True)
  after = _ids(data_dir)
  assert sorted(set(before) - set(after)) == ["go/anna_0.wav",
                                              "yes/dora_1.mp3"]
  assert _source_dir(data_dir) == b
  assert [r["id"] for r in base.read_skip_report(builders.get_builder(
      "folder:set", data_dir).data_dir)] == ["yes/eve_0.wav"]
  _nothing_left_over(data_dir)


def test_failed_rebuild_leaves_the_old_build(two_sources, monkeypatch):
  a, b, data_dir = two_sources
  before = _ids(data_dir)
  calls = []

  def fail_midway(item):
    calls.append(item.key)
    if len(calls) > 5:
      raise RuntimeError("disk full")
    return base.decode_clip(item.path, item.segment)

  monkeypatch.setattr(base, "decode_item", fail_midway)
  with pytest.raises(RuntimeError, match="disk full"):
    builders.build("folder", b, data_dir, overwrite=True)
  monkeypatch.undo()
  assert _ids(data_dir) == before and _source_dir(data_dir) == a
  _nothing_left_over(data_dir)


def test_cli_refusal_is_one_error_line(two_sources):
  _, b, data_dir = two_sources
  env = dict(os.environ, PYTHONPATH=REPO)
  result = subprocess.run(
      [sys.executable, "-m", "sonify_jax.data.builders", "--dataset=folder",
       f"--manual_dir={b}", f"--data_dir={data_dir}"],
      capture_output=True, text=True, env=env, cwd=REPO, check=False)
  assert result.returncode == 2
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "--overwrite" in errors[0], result.stderr
  assert "Traceback" not in result.stderr
