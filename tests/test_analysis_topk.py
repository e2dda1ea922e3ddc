"""Top-k study: streaming top-k against brute force, batching invariance,
sonifications against deconvnet.sonify, length handling, errors."""
import json
import os

import helpers
import numpy as np
import pytest
import soundfile

from sonify_jax import deconvnet, plotting
from sonify_jax.analysis.core import common
from sonify_jax.analysis.studies import topk
from sonify_jax.data.sources import ArraySource
from sonify_jax.models.registry import CNN12_TINY

ARCH = CNN12_TINY
LAYERS = (2, 4)


@pytest.fixture(scope="module")
def params():
  return common.random_params(ARCH, seed=0)


def _source(n=11, length=400, seed=0, lengths=None):
  rng = np.random.default_rng(seed)
  lengths = lengths or [length] * n
  audios = [0.2 * rng.standard_normal(t).astype(np.float32) for t in lengths]
  return ArraySource(audios, [i % 3 for i in range(len(audios))], 3)


def _brute_force(values, k):
  # Stable argsort of -value: descending value, smaller index first on ties.
  order = np.argsort(-values, axis=0, kind="stable")[:k].T
  return np.take_along_axis(values.T, order, 1), order


def test_running_topk_matches_sort_with_ties_and_any_chunking():
  rng = np.random.default_rng(1)
  values = rng.integers(0, 6, size=(50, 7)).astype(np.float64)  # many ties
  want_v, want_i = _brute_force(values, 4)
  for chunks in ([50], [1] * 50, [7, 13, 30], [3, 47]):
    top = common.RunningTopK(7, 4)
    start = 0
    for size in chunks:
      top.update(values[start:start + size], np.arange(start, start + size))
      start += size
    np.testing.assert_array_equal(top.indices, want_i)
    np.testing.assert_array_equal(top.values, want_v)


def test_running_topk_fewer_clips_than_k():
  top = common.RunningTopK(2, 5)
  top.update(np.array([[1.0, 2.0], [3.0, 0.5]]), np.array([10, 11]))
  np.testing.assert_array_equal(top.indices, [[11, 10, -1, -1, -1],
                                              [10, 11, -1, -1, -1]])


def test_stream_topk_equals_brute_force_and_ignores_batch_size(params):
  source = _source()
  audio = np.stack([source[i]["audio"] for i in range(len(source))])
  results = [topk.stream_topk(params, ARCH, source, LAYERS, k=3,
                              batch_size=b, progress=False) for b in (3, 8)]
  for layer in LAYERS:
    # Independent path: the deconvnet's own per-layer activation function.
    acts = np.asarray(deconvnet.feature_map_activations(
        params, audio, layer, ARCH))
    want_v, want_i = _brute_force(acts, 3)
    for result in results:
      np.testing.assert_array_equal(result[layer].indices, want_i)
      np.testing.assert_allclose(result[layer].values, want_v, rtol=1e-5,
                                 atol=1e-6)


def test_run_topk_writes_sonifications_of_the_top_clips(params, tmp_path,
                                                        monkeypatch):
  drawn = helpers.record_figures(monkeypatch)
  # Mixed lengths: per-length batches; one clip shorter than the receptive
  # field of layer 4 (82 samples) is zero-padded up to it.
  source = _source(lengths=[400, 400, 60, 400, 400])
  index = topk.run_topk(params, ARCH, source, str(tmp_path), layers=LAYERS,
                        k=2, max_maps=2, batch_size=4, figure_maps=2,
                        pair_figures=False, progress=False)
  on_disk = json.loads((tmp_path / "topk.json").read_text())
  assert on_disk["layers"].keys() == index["layers"].keys() == {"2", "4"}
  for layer in LAYERS:
    maps = index["layers"][str(layer)]
    assert len(maps) == 2
    helpers.read_png(tmp_path / index["figures"][str(layer)])
    panels = drawn[os.path.basename(index["figures"][str(layer)])]
    assert len(panels) == 2 * 4   # a row per map: (input, sonification) x 2
    for row, (m, entries) in enumerate(maps.items()):
      assert [e["rank"] for e in entries] == [0, 1]
      assert entries[0]["activation"] >= entries[1]["activation"]
      for e in entries:
        clip = common.fit_length(source[e["clip_index"]]["audio"],
                                 ARCH.min_input_length(4))
        got_in, sr = soundfile.read(tmp_path / e["input_wav"])
        got_son, _ = soundfile.read(tmp_path / e["sonification_wav"])
        assert sr == 8000
        want = np.asarray(deconvnet.sonify(params, clip[None], layer,
                                           [int(m)], ARCH))[0, 0]
        np.testing.assert_allclose(got_in, clip, atol=1.5 / 32767)
        np.testing.assert_allclose(got_son, np.clip(want, -1, 1),
                                   atol=2e-4)
        # Its figure panels: the spectrograms of this clip and of sonify()'s
        # result (bins within 60 dB of the peak: float rounding moves the
        # floor), in the map's row, in rank order.
        for col, wave in ((0, clip), (1, want)):
          _, _, db = plotting.log_spectrogram(wave, 8000)
          panel = panels[4 * row + 2 * e["rank"] + col]
          assert panel["title"].startswith(f"map {m}: ")
          loud = db > db.max() - 60
          np.testing.assert_allclose(np.reshape(panel["arrays"][0],
                                                db.shape)[loud], db[loud],
                                     atol=0.05)


def test_max_maps_picks_strongest_top1():
  top = common.RunningTopK(4, 1)
  top.update(np.array([[0.1, 0.9, 0.5, 0.9]]), np.array([0]))
  np.testing.assert_array_equal(topk.select_maps(top, max_maps=2), [1, 3])
  with pytest.raises(ValueError, match="out of range"):
    topk.select_maps(top, maps=[4])


def test_bad_input_errors(params, tmp_path):
  bad = ArraySource([np.full(400, np.nan, np.float32)], [0], 1)
  with pytest.raises(ValueError, match="NaN"):
    topk.stream_topk(params, ARCH, bad, LAYERS, progress=False)
  with pytest.raises(ValueError, match="outside 1..11"):
    topk.stream_topk(params, ARCH, _source(), [12], progress=False)
  with pytest.raises(ValueError, match="no clips"):
    topk.stream_topk(params, ARCH, ArraySource([], [], 1), LAYERS,
                     progress=False)
  with pytest.raises(ValueError, match="k must be"):
    topk.stream_topk(params, ARCH, _source(), LAYERS, k=0, progress=False)
