"""The sanity (cascading randomisation) and pitch studies.

Properties and planted answers: randomising blocks to their own kernels
times 3 changes nothing (positive homogeneity: every similarity is 1, drawn
at 1 in the figure); randomising to other weights changes the plain-gradient
sonification; planted wavelet kernels against a random init reach "they
depend on the learned weights" for the gradient, and the identity
randomisation does not; the "unrelated audio"
reference never pairs a clip with itself; the pitch score counts exactly the
frames within 50 cents; a network whose sonification is the half-wave
rectified input keeps a planted tone's f0 on (nearly) every voiced frame,
and the JSON of both studies is strict.
"""
import html
import json
import os

import helpers
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


def _rescaled(params, factor):
  """Every kernel times ``factor`` (biases stay: zero in random_params)."""
  return {name: {k: (v * factor if k == "kernel" else v)
                 for k, v in layer.items()} for name, layer in params.items()}


def test_randomising_to_rescaled_weights_changes_nothing(tmp_path,
                                                         monkeypatch):
  """A bias-free ReLU/max-pool network is positively homogeneous: kernels
  times 3 scale every activation by a power of 3 and keep every switch and
  mask, so the sonifications (scaled to the input's peak) are the trained
  ones, block by block, for every rule; what the study compares differs
  (unrelated audio is far from 1), so a similarity of 1 is the property."""
  drawn = helpers.record_figures(monkeypatch)
  params = common.random_params(TOY, 0)
  assert all(not np.any(layer["bias"]) for layer in params.values())
  run = controls.RunParams(params, _rescaled(params, 3.0), TOY)
  result = sanity.run_sanity(run, _tones([220, 330, 440]), str(tmp_path),
                             rules=("deconvnet", "gradient"), max_clips=3,
                             clip_samples=2000)
  for entry in result["layers"].values():
    for data in entry["rules"].values():
      for point in data["cascade"] + data["independent"]:
        for metric in sanity.METRICS:
          assert point[metric]["mean"] == pytest.approx(1.0, abs=1e-6)
      unrelated = data["references"]["unrelated_audio"]
      assert max(unrelated[m]["mean"] for m in sanity.METRICS) < 0.5
      assert "little from the learned weights" in data["verdict"]
  assert _strict(tmp_path / "sanity.json")["layers"].keys() == {"1", "2"}
  # The figure: one panel per layer and metric, each rule's cascade drawn
  # at 1 (identical, then every depth) and its unrelated level below.
  helpers.read_png(tmp_path / result["figure"])
  axes = drawn["sanity.png"]
  assert len(axes) == 2 * len(sanity.METRICS)
  for ax in axes:
    cascades = [y for _, y in ax["lines"]]
    assert len(cascades) == 2   # deconvnet and gradient
    for y in cascades:
      np.testing.assert_allclose(y, 1.0, atol=1e-6)
    assert min(ax["levels"]) < 0.5


def _planted_wavelets():
  """A one-conv network whose kernels are 1 and 2 kHz wavelets, and four
  white-noise clips."""
  net = Network("planted", ((Conv("c1", 2, 33), ReLU()),), RATE)
  taps = np.arange(33)
  kernel = np.stack([np.sin(2 * np.pi * f * taps / RATE) * np.hanning(33)
                     for f in (1000.0, 2000.0)], -1)[:, None, :]
  trained = {"c1": {"kernel": kernel.astype(np.float32),
                    "bias": np.zeros((2,), np.float32)}}
  noise = np.random.default_rng(0).standard_normal((4, 4000)) * 0.3
  clips = sources.ArraySource(list(noise.astype(np.float32)), [0] * 4, 1,
                              name="noise")
  return net, trained, clips


def test_planted_weights_reach_the_depends_verdict(tmp_path):
  """Trained kernels planted as 1 and 2 kHz wavelets, the random init
  LeCun noise: on white-noise clips the trained gradient sonifications are
  narrow-band (alike across clips), the random network's broadband, so the
  gradient depends on the weights; the same network "randomised" to its own
  weights does not (deconvnet)."""
  net, trained, clips = _planted_wavelets()
  run = controls.RunParams(trained, common.random_params(net, 3), net)
  result = sanity.run_sanity(run, clips, str(tmp_path / "g"),
                             rules=("gradient",), max_clips=4,
                             clip_samples=4000)
  data = result["layers"]["1"]["rules"]["gradient"]
  assert "they depend on the learned weights" in data["verdict"]
  unrelated = data["references"]["unrelated_audio"]["spectrogram_spearman"]
  kept = data["cascade"][-1]["spectrogram_spearman"]
  assert kept["mean"] < unrelated["mean"] - 0.2
  same = controls.RunParams(trained, trained, net)
  result = sanity.run_sanity(same, clips, str(tmp_path / "d"),
                             rules=("deconvnet",), max_clips=4,
                             clip_samples=4000)
  verdict = result["layers"]["1"]["rules"]["deconvnet"]["verdict"]
  assert "little from the learned weights" in verdict
  assert "depend on the learned weights" not in verdict


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


def test_pitch_controls_on_a_network_where_one_map_hears_the_note(
    tmp_path):
  """Layer 2 of a planted network: map 0 passes relu(x) (the note), maps
  1..7 read nothing (zero kernels, a small bias: live everywhere, silent
  sonifications). The trained top map keeps the note on every voiced frame;
  the random live map is map 0 for at most a few clips of 8 maps, and the
  top block re-initialised to the planted init (map 0's kernel zero too)
  and the untrained network keep nothing: a control that sonified the
  trained top map again would score 1 and fail."""
  maps = 8
  net = Network("one_map_hears", (
      (Conv("c1", 1, 1, use_bias=False), ReLU()),
      (Conv("c2", maps, 1), ReLU())), RATE)

  def top_block(weight):
    kernel = np.zeros((1, 1, maps), np.float32)
    kernel[0, 0, 0] = weight
    bias = np.full((maps,), 0.01, np.float32)
    bias[0] = 0.0
    return {"kernel": kernel, "bias": bias}
  through = {"kernel": np.ones((1, 1, 1), np.float32)}
  run = controls.RunParams({"c1": through, "c2": top_block(1.0)},
                           {"c1": through, "c2": top_block(0.0)}, net)
  result = pitch.run_pitch(run, _tones([196.0, 261.6, 329.6, 392.0]),
                           str(tmp_path), layers=[2], maps_per_clip=1,
                           clip_samples=4000)
  entry = result["layers"]["2"]
  share = {c: entry[c]["pyin_share"]["mean"] for c in pitch.CONDITIONS}
  assert entry["trained"]["pyin_share"]["n"] == 4
  assert share["trained"] > 0.95
  assert share["random_map"] < share["trained"] - 0.5
  assert share["top_block_random"] < 0.05
  assert share["untrained"] < 0.05
  # The trained sonification is relu(x): its |r| with x is known.
  tones = [_tones([f])[0]["audio"][:4000]
           for f in (196.0, 261.6, 329.6, 392.0)]
  expected = np.mean([abs(np.corrcoef(np.maximum(x, 0), x)[0, 1])
                      for x in tones])
  assert entry["trained"]["input_waveform_r"]["mean"] == pytest.approx(
      expected, abs=1e-3)


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


def test_visualize_rule_tells_planted_weights_from_random(tmp_path,
                                                         monkeypatch):
  """Feature visualization as a sanity rule: kernels planted as 1 and 2 kHz
  wavelets are visualised as those tones, a random init's as other sounds,
  so the visualizations depend on the weights; a network "randomised" to
  its own weights gives the same sounds (same key): similarity 1, and the
  verdict says so."""
  # planted tones are found in far fewer steps than a trained net's maps
  monkeypatch.setattr(sanity, "VISUALIZE_STEPS", 48)
  net, trained, clips = _planted_wavelets()
  run = controls.RunParams(trained, common.random_params(net, 3), net)
  result = sanity.run_sanity(run, clips, str(tmp_path / "v"),
                             rules=("visualize",), max_clips=4,
                             clip_samples=4000)
  data = result["layers"]["1"]["rules"]["visualize"]
  assert data["metrics"] == ["spectrum_spearman", "max_abs_xcorr"]
  assert "they depend on the learned weights" in data["verdict"], (
      data["verdict"])
  assert "input" not in data["references"]
  same = controls.RunParams(trained, trained, net)
  result = sanity.run_sanity(same, clips, str(tmp_path / "s"),
                             rules=("visualize",), max_clips=4,
                             clip_samples=4000)
  data = result["layers"]["1"]["rules"]["visualize"]
  for metric in data["metrics"]:
    assert data["cascade"][-1][metric]["mean"] == pytest.approx(1.0,
                                                                abs=1e-6)
  assert "little from the learned weights" in data["verdict"]
  assert _strict(tmp_path / "s" / "sanity.json")["rules"] == ["visualize"]
