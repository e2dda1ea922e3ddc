"""atomic_io: strict JSON (parsed with a parser that rejects NaN) and
temp-then-rename writes that leave nothing behind on failure."""
import json
import os

import numpy as np
import pytest

from sonify_jax import atomic_io


def _strict_load(path):
  def reject(token):
    raise ValueError(f"non-strict JSON constant {token}")
  with open(path) as f:
    return json.load(f, parse_constant=reject)


def test_non_finite_numbers_become_null(tmp_path):
  path = atomic_io.write_json(
      str(tmp_path / "r.json"),
      {"nan": np.float32("nan"), "inf": [np.inf, -np.inf, 2.5],
       "arr": np.arange(3), "flag": np.bool_(True)})
  assert _strict_load(path) == {"nan": None, "inf": [None, None, 2.5],
                                "arr": [0, 1, 2], "flag": True}


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
