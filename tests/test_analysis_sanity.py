"""The sanity (cascading randomisation) and pitch studies.

Properties and planted answers: randomising a block to the weights it
already has changes nothing (every similarity is 1); randomising to other
weights changes the plain-gradient sonification; the "unrelated audio"
reference never pairs a clip with itself; the pitch score counts exactly the
frames within 50 cents; a network whose sonification is the half-wave
rectified input keeps a planted tone's f0 on (nearly) every voiced frame,
and the JSON of both studies is strict.
"""
import html
import json
import os

import numpy as np
import pytest

from sonify_jax.analysis.core import common
from sonify_jax.analysis.core import controls
from sonify_jax.analysis.studies import pitch
from sonify_jax.analysis.studies import sanity
from sonify_jax.data import sources
from sonify_jax.models.network import Conv, MaxPool, Network, ReLU

RATE = 8000
TOY = Network("toy", ((Conv("c1", 4, 9), ReLU(), MaxPool(2, 2)),
                      (Conv("c2", 3, 5), ReLU())), RATE)


def _tones(freqs, seconds=0.5):
  t = np.arange(int(seconds * RATE)) / RATE
  audios = [(0.6 * np.sin(2 * np.pi * f * t) + 0.2 * np.sin(4 * np.pi * f * t)
             ).astype(np.float32) for f in freqs]
  return sources.ArraySource(audios, [0] * len(audios), 1, name="tones")


def _strict(path):
  def refuse(constant):
    raise AssertionError(f"non-strict JSON constant {constant}")
  with open(path) as f:
    return json.load(f, parse_constant=refuse)


def test_randomised_replaces_exactly_the_named_blocks():
  a, b = common.random_params(TOY, 0), common.random_params(TOY, 1)
  mixed = sanity.randomised(a, b, TOY, [2])
  assert mixed["c1"] is a["c1"] and mixed["c2"] is b["c2"]
  assert sanity.block_param_names(TOY, 1) == ("c1",)


def test_other_clip_never_pairs_a_clip_with_itself():
  rows = np.array([0, 0, 1, 2, 2, 2])
  other = sanity._other_clip(rows)  # pylint: disable=protected-access
  assert np.all(rows[other] != rows)
  assert list(sanity._other_clip(np.array([3, 3]))) == [0, 1]  # pylint: disable=protected-access


def test_randomising_to_the_same_weights_changes_nothing(tmp_path):
  params = common.random_params(TOY, 0)
  run = controls.RunParams(params, params, TOY)
  result = sanity.run_sanity(run, _tones([220, 330, 440]), str(tmp_path),
                             rules=("deconvnet", "gradient"), max_clips=3,
                             clip_samples=2000)
  for entry in result["layers"].values():
    for data in entry["rules"].values():
      for point in data["cascade"] + data["independent"]:
        for metric in sanity.METRICS:
          assert point[metric]["mean"] == pytest.approx(1.0, abs=1e-6)
      assert "little from the learned weights" in data["verdict"]
  assert _strict(tmp_path / "sanity.json")["layers"].keys() == {"1", "2"}
  assert os.path.getsize(tmp_path / result["figure"]) > 0


def test_other_weights_change_the_gradient_sonification(tmp_path):
  run = controls.RunParams(common.random_params(TOY, 0),
                           common.random_params(TOY, 5), TOY)
  result = sanity.run_sanity(run, _tones([220, 330, 440]), str(tmp_path),
                             layers=[2], rules=("gradient",), max_clips=3,
                             clip_samples=2000)
  data = result["layers"]["2"]["rules"]["gradient"]
  assert data["references"]["identical"]["waveform_abs_pearson"][
      "mean"] == pytest.approx(1.0)
  assert data["cascade"][-1]["waveform_abs_pearson"]["mean"] < 0.9
  assert [p["blocks_randomised"] for p in data["cascade"]] == [[2], [1, 2]]


def test_pitch_share_counts_frames_within_50_cents():
  ref = np.array([220.0, 220.0, 220.0, np.nan])
  ref_voiced = np.array([True, True, True, False])
  hz = np.array([226.0, 240.0, np.nan, 220.0])     # 47 c, 151 c, unvoiced
  voiced = np.array([True, True, False, True])
  assert pitch.share_within(ref, ref_voiced, hz, voiced) == pytest.approx(
      1 / 3)


def test_rectifying_network_keeps_a_planted_pitch(tmp_path):
  """One 1-tap conv of weight 1 and a ReLU: the deconvnet sonification of
  its map is relu(x), whose f0 is x's."""
  net = Network("rectifier", ((Conv("c", 1, 1), ReLU()),), RATE)
  params = {"c": {"kernel": np.ones((1, 1, 1), np.float32),
                  "bias": np.zeros((1,), np.float32)}}
  untrained = {"c": {"kernel": -np.ones((1, 1, 1), np.float32),
                     "bias": np.zeros((1,), np.float32)}}
  run = controls.RunParams(params, untrained, net)
  result = pitch.run_pitch(run, _tones([196.0, 261.6]), str(tmp_path),
                           clip_samples=4000)
  trained = result["layers"]["1"]["trained"]["pyin_share"]
  assert trained["mean"] > 0.9 and trained["n"] == 2
  assert "network_share" not in result["layers"]["1"]["trained"]
  # The chain's input pass-through is known in closed form: the trained
  # sonification is relu(x), the untrained one (weight -1) is -relu(-x).
  tones = [_tones([f])[0]["audio"] for f in (196.0, 261.6)]
  through = {
      "trained": [abs(np.corrcoef(np.maximum(x, 0), x)[0, 1]) for x in tones],
      "untrained": [abs(np.corrcoef(np.minimum(x, 0), x)[0, 1])
                    for x in tones]}
  for condition, values in through.items():
    kept = result["layers"]["1"][condition]["input_waveform_r"]["mean"]
    expected = np.mean(values)
    assert kept == pytest.approx(expected, abs=1e-3)
  assert _strict(tmp_path / "pitch.json")["headline"].startswith("model")


def test_gallery_section_states_each_verdict(tmp_path):
  from sonify_jax.analysis.pages import gallery  # pylint: disable=g-import-not-at-top
  run = controls.RunParams(common.random_params(TOY, 0),
                           common.random_params(TOY, 1), TOY)
  result = sanity.run_sanity(run, _tones([220, 330]), str(tmp_path / "s"),
                             rules=("deconvnet",), max_clips=2,
                             clip_samples=2000)
  page = "\n".join(gallery._sanity_html({"toy": str(tmp_path / "s")},  # pylint: disable=protected-access
                                        str(tmp_path / "site")))
  assert "Does it depend on the weights?" in page
  for line in sanity.verdicts(result):
    assert html.escape(line) in page
  assert (tmp_path / "site" / "assets" / "sanity_toy" / "sanity.png").exists()
