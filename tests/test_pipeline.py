"""Input pipeline: crops, determinism, resumption, sharding, eval batches."""
import json
import os
import threading
import time

import numpy as np
import pytest

from sonify_jax.audio_io import AudioReadError
from sonify_jax.data import pipeline
from sonify_jax.data.sources import ArraySource

# Clip i holds BASE * (i + 1) + sample_index, so every crop value says which
# clip and which sample it came from (exact in float32 below 2**24).
BASE = 100000


def _tagged_source(lengths, multilabel=False, num_classes=5):
  audios = [BASE * (i + 1) + np.arange(n, dtype=np.float64)
            for i, n in enumerate(lengths)]
  if multilabel:
    labels = [np.eye(num_classes)[i % num_classes] +
              np.eye(num_classes)[(i + 1) % num_classes]
              for i in range(len(lengths))]
  else:
    labels = [i % num_classes for i in range(len(lengths))]
  return ArraySource(audios, labels, num_classes, multilabel=multilabel)


def _decode(crop):
  """(clip index, sample positions) of a crop's nonzero samples."""
  values = crop[crop != 0].astype(np.int64)
  clips = np.unique(values // BASE - 1)
  assert len(clips) <= 1, "a crop mixes clips"
  return (int(clips[0]) if len(clips) else None), values % BASE


def _take(iterator, k):
  with iterator:
    return [next(iterator) for _ in range(k)]


LENGTHS = [30000, 45000, 41000, 52000, 60000, 40000, 44000, 33000]


def test_two_crops_disjoint_contiguous_and_inside_the_clip():
  source = _tagged_source(LENGTHS)
  batches = _take(pipeline.train_batches(
      source, global_batch_size=8, crop_samples=15000, num_crops=2, seed=3,
      include_index=True), 6)
  order_seen = set()
  for batch in batches:
    assert batch["audio"].shape == (8, 2, 15000)
    assert batch["audio"].dtype == np.float32
    assert batch["label"].dtype == np.int32
    for row in range(8):
      index = batch["index"][row]
      assert batch["label"][row] == index % 5
      spans = []
      for crop in batch["audio"][row]:
        clip, pos = _decode(crop)
        assert clip == index
        # Full crops: 15000 consecutive samples of the clip.
        assert len(pos) == 15000
        np.testing.assert_array_equal(np.diff(pos), 1)
        assert pos[0] >= 0 and pos[-1] < LENGTHS[index]
        spans.append((pos[0], pos[-1] + 1))
      (a0, a1), (b0, b1) = spans
      assert a1 <= b0 or b1 <= a0, "crops overlap"
      order_seen.add(a0 < b0)
  assert order_seen == {True, False}  # either crop may be the earlier one


def test_short_clips_are_split_and_zero_padded():
  # 30000 < 2 * 20000: two halves of 15000 samples, each padded to 20000
  # (7001: halves of 3500, the last sample dropped); with one crop, 7001
  # samples go whole into a zero crop.
  source = _tagged_source([30000, 7001])
  with pipeline.train_batches(source, global_batch_size=2, crop_samples=20000,
                              num_crops=2, seed=0, include_index=True,
                              prefetch=0) as it:
    batch = next(it)
    assert it.stats.short_clips == 2
  for row in range(2):
    length = [30000, 7001][batch["index"][row]]
    piece = length // 2
    for j, crop in enumerate(batch["audio"][row]):
      _, pos = _decode(crop)
      # Piece j is samples [j * piece, (j + 1) * piece), contiguous in crop.
      np.testing.assert_array_equal(pos, np.arange(j * piece, (j + 1) * piece))
      nonzero = np.nonzero(crop)[0]
      assert nonzero[-1] - nonzero[0] + 1 == piece
  one = _take(pipeline.train_batches(source, global_batch_size=4,
                                     crop_samples=20000, num_crops=1,
                                     seed=1, include_index=True), 3)
  offsets = set()
  for batch in one:
    for row in np.nonzero(batch["index"] == 1)[0]:
      crop = batch["audio"][row, 0]
      _, pos = _decode(crop)
      np.testing.assert_array_equal(pos, np.arange(7001))
      offsets.add(int(np.nonzero(crop)[0][0]))
  assert len(offsets) > 1  # padding is placed at random, not always at end


def test_crop_offsets_are_uniform_over_valid_positions():
  # One crop of 10 from 12 samples: start uniform over 0..2.
  rng = np.random.default_rng(0)
  starts = [pipeline.crop_offsets(rng, 12, 10, 1)[0][0] for _ in range(3000)]
  freq = np.bincount(starts, minlength=3) / 3000
  np.testing.assert_allclose(freq, 1 / 3, atol=5 * np.sqrt(2 / 9 / 3000))
  # Two crops of 4 from 9 samples: non-overlapping placements are
  # (0,4),(0,5),(1,5) and the swapped orders.
  pairs = {tuple(s for s, _, _ in pipeline.crop_offsets(rng, 9, 4, 2))
           for _ in range(500)}
  assert pairs == {(0, 4), (0, 5), (1, 5), (4, 0), (5, 0), (5, 1)}


def test_independent_crops_cover_every_pair_of_positions():
  # disjoint=False: each crop's start uniform over 0..length-crop on its own,
  # so overlapping (even equal) pairs occur; a short clip goes in whole.
  rng = np.random.default_rng(1)
  pairs = [tuple(s for s, _, _ in pipeline.crop_offsets(rng, 6, 4, 2, False))
           for _ in range(2000)]
  assert set(pairs) == {(a, b) for a in range(3) for b in range(3)}
  counts = np.bincount([3 * a + b for a, b in pairs], minlength=9) / 2000
  np.testing.assert_allclose(counts, 1 / 9, atol=5 * np.sqrt(8 / 81 / 2000))
  for clip_start, at, size in pipeline.crop_offsets(rng, 3, 5, 2, False):
    assert (clip_start, size) == (0, 3) and 0 <= at <= 2
  source = _tagged_source([30000, 7001])
  batches = _take(pipeline.train_batches(
      source, global_batch_size=2, crop_samples=20000, num_crops=2, seed=0,
      include_index=True, disjoint_crops=False), 2)
  for batch in batches:
    for row, index in enumerate(batch["index"]):
      for crop in batch["audio"][row]:
        clip, pos = _decode(crop)
        assert clip == index
        assert len(pos) == (20000 if index == 0 else 7001)
        np.testing.assert_array_equal(np.diff(pos), 1)


def test_epochs_cover_every_clip_once_in_fresh_orders():
  source = _tagged_source([2000] * 12)
  batches = _take(pipeline.train_batches(
      source, global_batch_size=4, crop_samples=100, num_crops=1, seed=5,
      include_index=True, prefetch=0), 9)
  order = np.concatenate([b["index"] for b in batches])
  epochs = order.reshape(3, 12)
  for epoch in epochs:
    assert sorted(epoch) == list(range(12))
  assert not np.array_equal(epochs[0], epochs[1])
  other = _take(pipeline.train_batches(
      source, global_batch_size=4, crop_samples=100, num_crops=1, seed=6,
      include_index=True, prefetch=0), 3)
  assert not np.array_equal(np.concatenate([b["index"] for b in other]),
                            epochs[0])


def test_resumed_iterator_equals_uninterrupted_run():
  source = _tagged_source(LENGTHS)
  kwargs = dict(global_batch_size=3, crop_samples=8000, num_crops=2, seed=11)
  full = _take(pipeline.train_batches(source, **kwargs), 9)
  resumed = _take(pipeline.train_batches(source, start_step=5, **kwargs), 4)
  for a, b in zip(full[5:], resumed):
    np.testing.assert_array_equal(a["audio"], b["audio"])
    np.testing.assert_array_equal(a["label"], b["label"])
  # Same with reader threads: order and content do not depend on threading.
  threaded = _take(pipeline.train_batches(source, start_step=5, num_workers=3,
                                          **kwargs), 4)
  for a, b in zip(resumed, threaded):
    np.testing.assert_array_equal(a["audio"], b["audio"])


def test_process_shards_are_disjoint_and_union_is_the_global_batch():
  source = _tagged_source(LENGTHS, multilabel=True)
  kwargs = dict(global_batch_size=8, crop_samples=5000, num_crops=2, seed=2,
                include_index=True, prefetch=0)
  whole = _take(pipeline.train_batches(source, **kwargs), 3)
  shards = [_take(pipeline.train_batches(source, process_index=p,
                                         process_count=4, **kwargs), 3)
            for p in range(4)]
  for step in range(3):
    parts = [shards[p][step] for p in range(4)]
    assert all(part["audio"].shape == (2, 2, 5000) for part in parts)
    assert all(part["label"].shape == (2, 5) for part in parts)
    for key in ("audio", "label", "index"):
      np.testing.assert_array_equal(
          np.concatenate([part[key] for part in parts]), whole[step][key])
    # Disjoint rows: the crops of different shards are different samples.
    flat = [tuple(part["audio"][r, 0, :3]) for part in parts for r in range(2)]
    assert len(set(flat)) == 8


def test_nonfinite_samples_are_zeroed_and_counted():
  clean = np.linspace(0.1, 0.9, 1000)
  bad = clean.copy()
  bad[[3, 500]] = [np.nan, np.inf]
  source = ArraySource([bad, np.zeros(1000)], [0, 1], 2)
  it = pipeline.train_batches(source, global_batch_size=2, crop_samples=1000,
                              num_crops=1, seed=0, include_index=True,
                              prefetch=0)
  batch = next(it)
  row = int(np.nonzero(batch["index"] == 0)[0][0])
  expected = clean.astype(np.float32).copy()
  expected[[3, 500]] = 0
  np.testing.assert_array_equal(batch["audio"][row, 0], expected)
  assert np.all(np.isfinite(batch["audio"]))
  assert it.stats.nonfinite_clips == 1 and it.stats.silent_clips == 1
  assert "NaN" in it.stats.summary()


class _FlakySource(ArraySource):
  """Clip 1 cannot be decoded; every read is counted."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.reads = []

  def __getitem__(self, index):
    self.reads.append(index)
    if index == 1:
      raise AudioReadError("corrupt.wav: not audio")
    return super().__getitem__(index)


def test_unreadable_clips_are_skipped_reported_and_deterministic():
  def run():
    source = _FlakySource([np.full(100, i + 1.0) for i in range(4)],
                          [0, 1, 2, 3], 4)
    batches = _take(pipeline.train_batches(
        source, global_batch_size=4, crop_samples=50, num_crops=1, seed=0,
        include_index=True, prefetch=0), 4)
    return source, batches
  source, batches = run()
  _, again = run()
  for batch, other in zip(batches, again):
    np.testing.assert_array_equal(batch["audio"], other["audio"])
    assert 1 not in batch["index"]
    # The label travels with the substituted clip.
    np.testing.assert_array_equal(batch["label"], batch["index"])
    np.testing.assert_array_equal(batch["audio"][:, 0, 0],
                                  batch["index"] + 1.0)
  assert source.reads.count(1) == 1  # reported once, then remembered


def test_eval_batches_cover_every_clip_once_with_masks():
  lengths = [500, 1200, 90, 1200, 700, 30, 999]
  rng = np.random.default_rng(0)
  clips = [rng.uniform(0.1, 1, n).astype(np.float32) for n in lengths]
  source = ArraySource(clips, list(range(7)), 7)
  batches = list(pipeline.eval_batches(source, batch_size=3,
                                       include_index=True))
  assert len(batches) == 3
  seen = []
  for batch in batches:
    longest = max(lengths[i] for i in batch["index"] if i >= 0)
    assert batch["audio"].shape == batch["mask"].shape == (3, longest)
    for row in range(3):
      i = batch["index"][row]
      assert batch["valid"][row] == (i >= 0)
      if i < 0:
        assert not batch["audio"][row].any() and not batch["mask"][row].any()
        continue
      seen.append(i)
      n = lengths[i]
      np.testing.assert_array_equal(batch["audio"][row, :n], clips[i])
      assert not batch["audio"][row, n:].any()
      np.testing.assert_array_equal(batch["mask"][row],
                                    np.arange(longest) < n)
      assert batch["label"][row] == i
  assert seen == list(range(7))  # source order, each once
  assert batches[-1]["valid"].tolist() == [True, False, False]


def test_eval_truncation_padding_and_multilabel():
  source = _tagged_source([5000, 300, 2500], multilabel=True)
  batches = list(pipeline.eval_batches(source, batch_size=2, max_samples=2000,
                                       min_samples=2100, pad_multiple=1000,
                                       prefetch=0))
  assert [b["audio"].shape for b in batches] == [(2, 3000), (2, 3000)]
  np.testing.assert_array_equal(batches[0]["mask"].sum(1), [2000, 300])
  _, pos = _decode(batches[0]["audio"][0])
  np.testing.assert_array_equal(pos, np.arange(2000))  # the clip's start
  assert batches[1]["label"].shape == (2, 5)
  assert not batches[1]["label"][1].any() and not batches[1]["valid"][1]


def test_eval_unreadable_clip_is_invalid_not_replaced():
  source = _FlakySource([np.ones(10)] * 3, [0, 1, 2], 3)
  with pipeline.eval_batches(source, batch_size=4) as it:
    (batch,) = list(it)
    assert list(it.stats.unreadable) == [1]
  assert batch["valid"].tolist() == [True, False, True, False]
  assert not batch["mask"][1].any()


def test_errors_propagate_and_close_stops_the_thread():
  class Broken(ArraySource):
    def __getitem__(self, index):
      raise RuntimeError("disk on fire")
  source = Broken([np.ones(10)], [0], 1)
  it = pipeline.train_batches(source, global_batch_size=1, crop_samples=5,
                              num_crops=1, seed=0)
  with pytest.raises(RuntimeError, match="disk on fire"):
    next(it)
  before = threading.active_count()
  it = pipeline.train_batches(_tagged_source([100] * 4), global_batch_size=2,
                              crop_samples=10, num_crops=1, seed=0,
                              prefetch=1)
  next(it)
  it.close()
  # grain stops its reader threads without waiting for them: they end as
  # soon as their current read does.
  deadline = time.time() + 10
  while threading.active_count() > before and time.time() < deadline:
    time.sleep(0.05)
  assert threading.active_count() <= before


@pytest.mark.parametrize("kwargs, match", [
    (dict(global_batch_size=6, process_count=4), "multiple"),
    (dict(process_index=2, process_count=2), "process_index"),
    (dict(crop_samples=0), "crop_samples"),
    (dict(seed=-1), "seed"),
    (dict(num_crops=1.5), "num_crops"),
])
def test_bad_arguments(kwargs, match):
  args = dict(global_batch_size=4, crop_samples=10, num_crops=1, seed=0)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    pipeline.train_batches(_tagged_source([100]), **args)


def test_bad_clips_rejected_clearly():
  with pytest.raises(ValueError, match="no clips"):
    pipeline.train_batches(ArraySource([], [], 2), global_batch_size=1,
                           crop_samples=4, num_crops=1, seed=0)

  class TwoD(ArraySource):
    def __getitem__(self, index):
      return {"audio": np.ones((10, 2)), "label": 0, "id": "x"}
  it = pipeline.train_batches(TwoD([np.ones(3)], [0], 1),
                              global_batch_size=1, crop_samples=4,
                              num_crops=1, seed=0, prefetch=0)
  with pytest.raises(ValueError, match=r"\[time\]"):
    next(it)


def test_embedded_source_through_the_pipeline():
  catalog = pytest.importorskip("sonify_jax.data.catalog")
  try:
    source = catalog.get_source("embedded", "train")
  except (FileNotFoundError, NotImplementedError) as error:
    pytest.skip(f"embedded data not available: {error}")
  with pipeline.train_batches(source, global_batch_size=4, crop_samples=20000,
                              num_crops=2, seed=0) as it:
    batch = next(it)
  assert batch["audio"].shape == (4, 2, 20000)
  assert np.all(np.isfinite(batch["audio"]))
  assert batch["label"].min() >= 0
  assert batch["label"].max() < source.num_classes


def test_worker_processes_give_the_same_batches_and_stats():
  clips = [BASE * (i + 1) + np.arange(3000.0) for i in range(6)]
  clips[2][10] = np.nan
  source = ArraySource(clips, list(range(6)), 6)
  kwargs = dict(global_batch_size=4, crop_samples=1000, num_crops=2, seed=4,
                include_index=True, prefetch=0)
  threads = pipeline.train_batches(source, **kwargs)
  expected = [next(threads) for _ in range(3)]
  with pipeline.train_batches(source, num_workers=2, worker_type="process",
                              **kwargs) as it:
    got = [next(it) for _ in range(3)]
    assert it.stats.clips_read == threads.stats.clips_read == 12
    assert it.stats.nonfinite_clips == threads.stats.nonfinite_clips >= 1
  for a, b in zip(expected, got):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_next_after_close_stops_instead_of_hanging():
  it = pipeline.train_batches(_tagged_source([100] * 4), global_batch_size=2,
                              crop_samples=10, num_crops=1, seed=0,
                              prefetch=1, num_workers=2)
  next(it)
  it.close()
  drained = 0
  with pytest.raises(StopIteration):
    for _ in range(5):  # at most what was already queued, then stop
      next(it)
      drained += 1
  assert drained <= 1


@pytest.mark.parametrize("workers", [dict(), dict(num_workers=2,
                                                 worker_type="process")])
def test_iterator_state_resumes_the_same_batches(workers):
  # A run that stops after 3 batches and a fresh iterator given its state
  # (grain get_state/set_state) go on with the uninterrupted run's batches.
  source = _tagged_source(LENGTHS)
  kwargs = dict(global_batch_size=4, crop_samples=6000, num_crops=2, seed=7,
                include_index=True, **workers)
  with pipeline.train_batches(source, **kwargs) as it:
    full = [next(it) for _ in range(6)]
  with pipeline.train_batches(source, **kwargs) as it:
    for _ in range(3):
      next(it)
    state = it.get_state()
  assert state["next_step"] == 3
  state = json.loads(json.dumps(state))  # what the checkpoint stores
  with pipeline.train_batches(source, start_step=3, **kwargs) as resumed:
    resumed.set_state(state)
    assert resumed.next_step == 3
    rest = [next(resumed) for _ in range(3)]
  for a, b in zip(full[3:], rest):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_checkpoint_holds_the_iterator_state(tmp_path):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from sonify_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import checkpoints, trainer  # pylint: disable=g-import-not-at-top
  source = _tagged_source(LENGTHS)
  kwargs = dict(global_batch_size=4, crop_samples=6000, num_crops=2, seed=7)
  state = {"w": jnp.arange(3.0)}
  ckpt = checkpoints.Checkpointer(str(tmp_path), keep_last=3)
  with pipeline.train_batches(source, **kwargs) as it:
    ckpt.save(0, state)  # no iterator yet, as the trainer's step 0
    for _ in range(2):
      next(it)
    ckpt.save(2, state, data_iter=it)
    expected = next(it)  # the save took the state at step 2
  ckpt.wait()
  # grain's orbax handler: one JSON per process.
  with open(os.path.join(ckpt.step_dir(2), "data_iter",
                         "process_0-of-1.json")) as f:
    assert json.load(f)["next_step"] == 2
  # The state item still reads alone (load_state, analysis entry points).
  np.testing.assert_array_equal(checkpoints.load_state(str(tmp_path))["w"],
                                [0, 1, 2])
  with pipeline.train_batches(source, start_step=2, **kwargs) as it:
    trainer._restore_input_state(ckpt, it, 2, start_step=2)  # pylint: disable=protected-access
    assert it.next_step == 2
    np.testing.assert_array_equal(next(it)["audio"], expected["audio"])
  with pipeline.train_batches(source, **kwargs) as it:
    assert not ckpt.restore_data_iter(it, 0)  # step 0 has none
    with pytest.raises(UserError, match="input iterator state is at step 2"):
      trainer._restore_input_state(ckpt, it, 2, start_step=5)  # pylint: disable=protected-access
  ckpt.close()


def test_worker_processes_end_with_close():
  import multiprocessing  # pylint: disable=g-import-not-at-top
  before = set(multiprocessing.active_children())
  it = pipeline.train_batches(_tagged_source([3000] * 4), global_batch_size=2,
                              crop_samples=1000, num_crops=1, seed=0,
                              num_workers=2, worker_type="process")
  next(it)
  assert len(set(multiprocessing.active_children()) - before) == 2
  it.close()
  assert not set(multiprocessing.active_children()) - before
