"""atomic_io: strict JSON (parsed with a parser that rejects NaN) and
temp-then-rename writes that leave nothing behind on failure."""
import os

import numpy as np
import pytest

from sonify_jax import atomic_io
import helpers


def test_non_finite_numbers_become_null(tmp_path):
  path = atomic_io.write_json(
      str(tmp_path / "r.json"),
      {"nan": np.float32("nan"), "inf": [np.inf, -np.inf, 2.5],
       "arr": np.arange(3), "flag": np.bool_(True)})
  assert helpers.strict_load(path) == {
      "nan": None, "inf": [None, None, 2.5], "arr": [0, 1, 2], "flag": True}


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
  path = str(tmp_path / "out.txt")
  atomic_io.write_text(path, "old")
  with pytest.raises(RuntimeError):
    with atomic_io.atomic_path(path) as tmp:
      with open(tmp, "w") as f:
        f.write("half")
      raise RuntimeError("interrupted")
  assert open(path).read() == "old"
  assert os.listdir(tmp_path) == ["out.txt"]


def test_temp_name_keeps_extension(tmp_path):
  with atomic_io.atomic_path(str(tmp_path / "fig.png")) as tmp:
    assert tmp.endswith(".png")
    open(tmp, "w").close()
  assert os.listdir(tmp_path) == ["fig.png"]


def test_written_files_get_the_umask_mode_not_mkstemps(tmp_path):
  mask = os.umask(0o022)
  try:
    path = atomic_io.write_text(str(tmp_path / "a.txt"), "x")
  finally:
    os.umask(mask)
  assert os.stat(path).st_mode & 0o777 == 0o666 & ~atomic_io._UMASK  # pylint: disable=protected-access


def test_atomic_dir_replaces_the_folder_whole(tmp_path):
  out = str(tmp_path / "out")
  with atomic_io.atomic_dir(out) as tmp:
    atomic_io.write_text(os.path.join(tmp, "a.txt"), "first")
    atomic_io.write_text(os.path.join(tmp, "b.txt"), "first")
  with atomic_io.atomic_dir(out) as tmp:
    assert not os.path.exists(os.path.join(tmp, "a.txt"))  # starts empty
    atomic_io.write_text(os.path.join(tmp, "a.txt"), "second")
  assert os.listdir(out) == ["a.txt"]
  assert open(os.path.join(out, "a.txt")).read() == "second"
  assert sorted(os.listdir(tmp_path)) == ["out"]


def test_atomic_dir_interrupted_leaves_the_old_folder(tmp_path):
  out = str(tmp_path / "out")
  with atomic_io.atomic_dir(out) as tmp:
    atomic_io.write_text(os.path.join(tmp, "a.txt"), "old")
  with pytest.raises(KeyboardInterrupt):
    with atomic_io.atomic_dir(out) as tmp:
      atomic_io.write_text(os.path.join(tmp, "a.txt"), "new")
      raise KeyboardInterrupt
  assert os.listdir(out) == ["a.txt"]
  assert open(os.path.join(out, "a.txt")).read() == "old"
  assert sorted(os.listdir(tmp_path)) == ["out"]
  with pytest.raises(RuntimeError):  # a first run that fails leaves nothing
    with atomic_io.atomic_dir(str(tmp_path / "new")):
      raise RuntimeError("failed")
  assert sorted(os.listdir(tmp_path)) == ["out"]
