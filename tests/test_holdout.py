"""The id-hash validation holdout (AudioSet's model-selection split)."""
import hashlib
import os

import numpy as np
import pytest

from sonify_jax.data import holdout
from sonify_jax.data.sources import ArraySource


def _source(n, prefix="clip"):
  ids = [f"{prefix}{i:05d}" for i in range(n)]
  return ArraySource([np.zeros(4, np.float32)] * n, [0] * n, 1, ids=ids)


class _CountingSource:
  """Counts record reads (as a built array_record source would do them)."""

  def __init__(self, source):
    self._source, self.reads = source, 0
    self.name, self.split = "counting", "train"
    self.num_classes, self.multilabel = 1, False
    self.class_names = ["0"]

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    self.reads += 1
    return self._source[index]


def test_sides_partition_the_source_by_id_hash():
  source = _source(2000)
  val = holdout.HoldoutSource(source, "validation", 0.1)
  train = holdout.HoldoutSource(source, "train", 0.1)
  val_ids = [val[i]["id"] for i in range(len(val))]
  train_ids = [train[i]["id"] for i in range(len(train))]
  assert not set(val_ids) & set(train_ids)
  assert sorted(val_ids + train_ids) == sorted(source._ids)
  # Independent restatement of the rule, and the share it gives.
  want = {i for i in source._ids if int(hashlib.sha256(
      i.encode()).hexdigest()[:16], 16) < 0.1 * 2**64}
  assert set(val_ids) == want
  assert 0.08 < len(val) / len(source) < 0.12


def test_a_clip_keeps_its_side_whatever_else_is_built():
  small, large = _source(300), _source(900)
  held_small = {e["id"] for e in holdout.HoldoutSource(small, "validation")}
  held_large = {e["id"] for e in holdout.HoldoutSource(large, "validation")}
  assert held_small == {i for i in held_large if int(i[4:]) < 300}


def test_indices_are_cached_beside_the_dataset(tmp_path):
  (tmp_path / "dataset_info.json").write_text('{"v": 1}')
  counting = _CountingSource(_source(200))
  first = holdout.HoldoutSource(counting, "validation", 0.1, str(tmp_path))
  assert counting.reads == 200
  assert os.path.isfile(tmp_path / "holdout_train.json")
  again = holdout.HoldoutSource(counting, "train", 0.1, str(tmp_path))
  assert counting.reads == 200  # read from the cache
  assert len(first) + len(again) == 200
  # A rebuilt dataset (new dataset_info.json) is scanned again.
  (tmp_path / "dataset_info.json").write_text('{"v": 2}')
  holdout.HoldoutSource(counting, "validation", 0.1, str(tmp_path))
  assert counting.reads == 400


def test_bad_arguments():
  with pytest.raises(ValueError, match="side"):
    holdout.HoldoutSource(_source(3), "test")
  with pytest.raises(ValueError, match="fraction"):
    holdout.HoldoutSource(_source(3), "train", 1.5)
