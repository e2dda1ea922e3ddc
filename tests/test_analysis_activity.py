"""Activity / band-selectivity study against planted facts: spectral features
of known signals, a planted FIR band-pass in block 1 gives the centroid built
into it, planted dead and always-live maps are counted as such."""
import os

import numpy as np
import pytest
import scipy.signal

from sonify_jax import deconvnet
from sonify_jax.analysis.studies import activity
from sonify_jax.analysis.core import common
from sonify_jax.data.sources import ArraySource
from sonify_jax.models import registry
from sonify_jax.models.registry import CNN12_TINY
import helpers

SR = 8000
# A tiny CNN12 whose block 1 is long enough (101 taps) to hold a narrow FIR
# band-pass; every other block as in CNN12.
PLANTED = registry.cnn12_family("planted", (4,) * 11, embed_dim=8,
                                kernels=(101,) + registry.CNN12_KERNELS[1:])
BANDS = ((500.0, 800.0), (2800.0, 3200.0))  # maps 0 and 1
DEAD, ALWAYS = 2, 3


def _noise_source(n=6, length=4000, seed=0):
  rng = np.random.default_rng(seed)
  return ArraySource([0.3 * rng.standard_normal(length).astype(np.float32)
                      for _ in range(n)], [0] * n, 1)


@pytest.fixture(scope="module")
def planted_params():
  params = common.random_params(PLANTED, seed=0)
  kernel = np.zeros((101, 1, 4), np.float32)
  bias = np.zeros(4, np.float32)
  for m, band in enumerate(BANDS):
    kernel[:, 0, m] = scipy.signal.firwin(101, band, pass_zero=False, fs=SR)
  bias[DEAD] = -1.0    # zero kernel, negative bias: ReLU output always 0
  bias[ALWAYS] = 1.0   # zero kernel, positive bias: output 1 everywhere
  params["block1"] = {"kernel": kernel, "bias": bias}
  # Block 2, map 0 dead too (a dead map below the first layer).
  params["block2"]["kernel"][..., 0] = 0.0
  params["block2"]["bias"][0] = -1.0
  return params


def test_spectral_features_of_known_signals():
  t = np.arange(8000) / SR
  tone = np.sin(2 * np.pi * 1000 * t)
  noise = np.random.default_rng(0).standard_normal(8000)
  centroid, bandwidth = activity.spectral_centroid_bandwidth(
      np.stack([tone, noise, np.zeros(8000)]), SR)
  assert centroid[0] == pytest.approx(1000, abs=15)
  assert bandwidth[0] < 60
  # White noise: uniform over 0..4000 Hz: mean 2000, std 4000 / sqrt(12).
  assert centroid[1] == pytest.approx(2000, abs=60)
  assert bandwidth[1] == pytest.approx(4000 / np.sqrt(12), abs=60)
  assert np.isnan(centroid[2]) and np.isnan(bandwidth[2])


def test_frames_are_weighted_by_energy():
  # A loud 500 Hz half then a 40 dB quieter 3000 Hz half: the energy-weighted
  # centroid sits at 500 Hz, not at the frame average (~1750 Hz).
  t = np.arange(4000) / SR
  x = np.concatenate([np.sin(2 * np.pi * 500 * t),
                      0.01 * np.sin(2 * np.pi * 3000 * t)])
  centroid, _ = activity.spectral_centroid_bandwidth(x, SR)
  assert centroid == pytest.approx(500, abs=30)


def test_counter_rates_against_a_hand_count():
  counter = activity.ActivityCounter(3)
  counter.update(np.array([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0]]),
                 np.array([[0.0, 0.5, 1.0], [0.0, 0.0, 1.0]]))
  counter.update(np.array([[0.0, 0.0, 1.0]]), np.array([[0.0, 0.0, 2.0]]))
  s = counter.summary()
  np.testing.assert_allclose(s["activation_rate"], [0, 1 / 3, 1])
  assert s["live_fraction"] == pytest.approx(2 / 3)
  assert s["always_live_fraction"] == pytest.approx(1 / 3)
  assert s["dead_maps"] == 1
  assert s["mean_activation"] == pytest.approx(4.5 / 9)


def test_planted_band_pass_dead_and_always_live_maps(planted_params):
  got = activity.measure_activity(planted_params, PLANTED, _noise_source(),
                                  layers=(1, 2), k=3, max_maps=None,
                                  progress=False)
  l1 = got["1"]
  np.testing.assert_array_equal(l1["activation_rate"], [1, 1, 0, 1])
  assert l1["dead_maps"] == 1 and l1["live_fraction"] == 0.75
  assert got["2"]["activation_rate"][0] == 0
  band = l1["band"]
  assert band["maps"] == [0, 1, ALWAYS]  # only live maps are studied
  # The always-live map's kernel is zero: its sonification is silent.
  assert band["heard"] == [True, True, False]
  assert band["silent_sonifications"] == 3
  # Sonifications of a band-pass map sit in its band whatever the input
  # (white noise, centroid ~2000 Hz): within 50 Hz of the band centre.
  centroids = band["per_map"]["sonification_centroid"]
  for c, (lo, hi) in zip(centroids, BANDS):
    assert c == pytest.approx((lo + hi) / 2, abs=50)
  for c in band["per_map"]["input_centroid"]:
    assert c == pytest.approx(2000, abs=100)
  # Narrow bands: far narrower than the white-noise input.
  assert band["mean_bandwidth_ratio"] < 0.3
  # The same bands read from the weights alone.
  kernel = l1["kernel_band"]
  for c, b, (lo, hi) in zip(kernel["centroid"], kernel["bandwidth"], BANDS):
    assert c == pytest.approx((lo + hi) / 2, abs=50)
    assert b < 200 < kernel["flat_bandwidth"]
  assert np.isnan(kernel["centroid"][DEAD])  # an all-zero kernel has none


def test_run_writes_strict_json_with_controls(tmp_path, monkeypatch):
  drawn = helpers.record_figures(monkeypatch)
  trained = common.random_params(CNN12_TINY, seed=0)
  untrained = common.random_params(CNN12_TINY, seed=1)
  source = _noise_source(n=4, length=2400)
  result = activity.run_activity(
      {"m": {"trained": (trained, CNN12_TINY),
             "untrained": (untrained, CNN12_TINY)}},
      source, str(tmp_path), layers=(1, 11), k=2,
      max_maps=3, progress=False)
  loaded = helpers.strict_load(os.path.join(tmp_path, "activity.json"))
  # The first panel draws each network's live fraction per layer, which is
  # computed here another way: maps whose block output (the public API's
  # max over time) is positive on at least one of the 4 clips.
  helpers.read_png(os.path.join(tmp_path, "activity.png"))
  clips = np.stack([source[i]["audio"] for i in range(4)])
  first = drawn["activity.png"][0]
  assert first["title"].startswith("fraction of maps live")
  for (_, y), params in zip(first["lines"], (trained, untrained)):
    live = [np.mean(np.any(np.asarray(deconvnet.feature_map_activations(
        params, clips, layer, CNN12_TINY)) > 0, axis=0)) for layer in (1, 11)]
    np.testing.assert_allclose(y, live)
  assert set(loaded["models"]["m"]) == {"1", "11"}
  for entry in loaded["models"]["m"].values():
    assert set(entry) == {"trained", "untrained"}
    assert entry["trained"]["band"]["maps_studied"] <= 3
  assert loaded["clips"] == 4
  assert "untrained" in result["caption"]
  assert "L1 live" in activity.headline(result)
