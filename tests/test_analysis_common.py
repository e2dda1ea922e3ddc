"""Streaming helpers: batches never mix lengths, cover every clip once,
respect the crop/pad policy; CLI checkpoint parsing."""
import numpy as np
import pytest

from sonify_jax.analysis.core import common
from sonify_jax.analysis.run import parse_checkpoints
from sonify_jax.data.sources import ArraySource


def _source(lengths):
  return ArraySource([np.full(n, i + 1, np.float32)
                      for i, n in enumerate(lengths)],
                     list(range(len(lengths))), len(lengths))


def test_batches_group_equal_lengths_and_cover_each_clip_once():
  lengths = [5, 5, 5, 7, 7, 5, 3]
  batches = list(common.iter_clip_batches(_source(lengths), batch_size=2,
                                          min_samples=4))
  seen = []
  for b in batches:
    assert b["audio"].shape[0] == 2  # padded to the batch size
    idx = b["index"][b["valid"]]
    assert (b["index"][~b["valid"]] == -1).all()
    for row, i in zip(b["audio"][b["valid"]], idx):
      # Each row is its own clip (value i + 1), zero-padded up to 4 samples.
      want = max(lengths[i], 4)
      assert row.shape[0] == want
      np.testing.assert_array_equal(row[:lengths[i]], i + 1)
      np.testing.assert_array_equal(row[lengths[i]:], 0)
    np.testing.assert_array_equal(b["label"][b["valid"]], idx)
    seen.extend(idx.tolist())
  assert seen == list(range(len(lengths)))


def test_fixed_clip_samples_crops_and_pads():
  batches = list(common.iter_clip_batches(_source([3, 9, 6]), batch_size=8,
                                          clip_samples=6, max_clips=2))
  assert len(batches) == 1
  audio = batches[0]["audio"][batches[0]["valid"]]
  np.testing.assert_array_equal(audio, [[1, 1, 1, 0, 0, 0],
                                        [2, 2, 2, 2, 2, 2]])


def test_bad_clips_are_reported_by_index():
  bad = ArraySource([np.ones(4, np.float32), np.array([1.0, np.inf])],
                    [0, 0], 1, ids=["ok", "broken"])
  with pytest.raises(ValueError, match="clip 1 .*'broken'.*NaN or Inf"):
    list(common.iter_clip_batches(bad, 2))
  with pytest.raises(ValueError, match="batch_size"):
    list(common.iter_clip_batches(bad, 0))


def test_parse_checkpoints():
  assert parse_checkpoints(["a=/x,/y", "b=/z"]) == [
      ("a", "/x"), ("model2", "/y"), ("b", "/z")]
