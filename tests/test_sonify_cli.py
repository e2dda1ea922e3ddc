"""The sonify CLI, audio I/O and spectrogram helpers."""
import json
import os
import subprocess
import sys

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile

from sonify_jax import audio_io, deconvnet, plotting
from sonify_jax import sonify_files
from sonify_jax.models import build_encoder

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tone(freq, seconds, rate):
  t = np.arange(int(seconds * rate)) / rate
  return np.sin(2 * np.pi * freq * t).astype(np.float32)


def test_load_audio_converts_stereo_and_rate(tmp_path):
  left, right = _tone(440, 0.5, 16000), _tone(880, 0.5, 16000)
  path = str(tmp_path / "stereo16k.wav")
  soundfile.write(path, np.stack([left, right], axis=1) * 0.5, 16000)
  audio = audio_io.load_audio(path)
  assert audio.dtype == np.float32 and audio.shape == (4000,)
  # The mono mix of two tones keeps both, at half amplitude each.
  spectrum = np.abs(np.fft.rfft(audio))
  freqs = np.fft.rfftfreq(audio.size, 1 / 8000)
  peaks = sorted(freqs[np.argsort(spectrum)[-2:]])
  assert peaks == pytest.approx([440, 880], abs=2)


def test_unreadable_and_missing_files(tmp_path):
  bad = tmp_path / "bad.wav"
  bad.write_bytes(b"RIFF not really a wave file")
  with pytest.raises(audio_io.AudioReadError):
    audio_io.load_audio(str(bad))
  with pytest.raises(audio_io.AudioReadError, match="no such"):
    audio_io.load_audio(str(tmp_path / "missing.wav"))


def test_write_wav_round_trip_and_refuses_nan(tmp_path):
  audio = 0.5 * _tone(1000, 0.25, 8000)
  path = audio_io.write_wav(str(tmp_path / "a.wav"), audio)
  back, rate = soundfile.read(path, dtype="float32")
  assert rate == 8000
  np.testing.assert_allclose(back, audio, atol=1 / 32767)
  with pytest.raises(ValueError, match="non-finite"):
    audio_io.write_wav(str(tmp_path / "b.wav"), np.array([0.0, np.nan]))
  assert not os.path.exists(tmp_path / "b.wav")


def test_log_spectrogram_peak_is_the_tone():
  freqs, times, db = plotting.log_spectrogram(_tone(1250, 1.0, 8000), 8000)
  assert freqs[np.argmax(db.mean(axis=1))] == pytest.approx(1250, abs=8000 / 256)
  assert times[-1] <= 1.0 and db.max() > -100


def test_sonify_file_writes_what_sonify_computes(tmp_path, monkeypatch):
  drawn = helpers.record_figures(monkeypatch)
  model = build_encoder("cnn12_tiny")
  arch = model.arch
  params = model.init(jax.random.key(0), jnp.zeros((1, 4000)))["params"]
  rng = np.random.default_rng(0)
  path = str(tmp_path / "clip.wav")
  soundfile.write(path, (0.3 * rng.normal(size=24000)).astype(np.float32),
                  24000)
  layer = 3
  maps, index_path = sonify_files.sonify_file(path, layer, "top:2",
                                            str(tmp_path / "out"), params, arch)
  waveform = audio_io.load_audio(path)
  # top:2 = the two largest per-map maxima of block 3, from the model itself.
  features = model.apply({"params": params}, jnp.asarray(waveform[None]),
                         layer, method=model.block_features)[0]
  expected = np.argsort(-np.asarray(features.max(axis=0)))[:2]
  assert maps == [int(m) for m in expected]
  index = json.load(open(index_path))
  assert [e["map"] for e in index["sonifications"]] == maps
  direct = np.asarray(deconvnet.sonify(params, waveform[None], layer, maps,
                                       arch))[0]
  for entry, want in zip(index["sonifications"], direct):
    got, rate = soundfile.read(tmp_path / "out" / entry["wav"],
                               dtype="float32")
    assert rate == 8000 and got.shape == waveform.shape
    np.testing.assert_allclose(got, np.clip(want, -1, 1), atol=1.5 / 32767)
    # Its PNG: the input's and this sonification's log-spectrograms (bins
    # within 60 dB of the peak: float rounding moves the floor).
    helpers.read_png(tmp_path / "out" / entry["png"])
    panels = drawn[os.path.basename(entry["png"])]
    assert len(panels) == 2
    for panel, wave in zip(panels, (waveform, want)):
      _, _, db = plotting.log_spectrogram(wave, 8000)
      loud = db > db.max() - 60
      np.testing.assert_allclose(np.reshape(panel["arrays"][0], db.shape)[
          loud], db[loud], atol=0.05)


# A python process (~25 s on 2 cores); test_bad_input.py's sonify row
# layer_out_of_range runs the same command in-process.
@pytest.mark.slow
def test_cli_reports_bad_layer_without_output(tmp_path):
  path = str(tmp_path / "clip.wav")
  soundfile.write(path, 0.1 * _tone(300, 0.5, 8000), 8000)
  out = tmp_path / "out"
  result = subprocess.run(
      [sys.executable, "-m", "sonify_jax.sonify", "--audio", path,
       "--layer", "12", "--out", str(out), "--model", "cnn12_tiny"],
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, PYTHONPATH=_REPO, JAX_PLATFORMS="cpu"))
  assert result.returncode == 2
  assert "layer 12 is outside 1..11" in result.stderr
  assert not out.exists()
