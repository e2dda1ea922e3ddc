"""The residual study of a network with a pitch head (CREPE, FCN-F0).

Facts that do not come from the code under test:

* ``pitch_kept`` counts a voiced frame kept when its residual f0 is within
  50 cents: 40 cents off is kept, 60 is not, an unvoiced frame is not
  counted, and a clip with no voiced frame has no value;
* on harmonic tones at known notes, through each network kind (CREPE's
  frames, FCN-F0's fully convolutional head), subtracting nothing keeps
  every voiced frame (1.0), subtracting a quiet copy of the clip keeps
  every one too (both networks standardise their input), and subtracting
  the clip less the same tone an octave up (the residual *is* that tone)
  keeps none (0.0);
* the command (``--study=residual --audio_dir``) writes what
  ``run_pitch_residual`` computes on the same clips.
"""
import json
import os

import numpy as np
import pytest

import cli_harness
from sonify_jax import audio_io, run_loading
from sonify_jax.analysis.core import controls
from sonify_jax.analysis.studies import residual
from sonify_jax.data import sources


def _tone(f0, rate, seconds=0.5):
  t = np.arange(int(seconds * rate)) / rate
  return sum((0.5 / k) * np.sin(2 * np.pi * k * f0 * t + k)
             for k in range(1, 5) if k * f0 < rate / 2).astype(np.float32)


def test_pitch_kept_counts_voiced_frames_within_50_cents():
  f0 = np.array([200.0, 200.0, 200.0, 200.0])
  confidence = np.array([0.9, 0.9, 0.9, 0.1])
  residual_f0 = f0 * 2 ** (np.array([0.0, 40.0, 60.0, 900.0]) / 1200)
  assert residual.pitch_kept(f0, confidence, residual_f0) == pytest.approx(
      2 / 3)
  assert residual.pitch_kept(f0, np.zeros(4), residual_f0) is None


@pytest.mark.parametrize("name", ["crepe-tiny", "fcn-993"])
def test_planted_residuals(zoo, monkeypatch, tmp_path, name):
  imported = zoo.imported(name)
  net = imported.net
  rate = net.sample_rate
  f0s = (196.0, 262.0)
  clips = [_tone(f, rate) for f in f0s]
  octave_up = {i: _tone(2 * f, rate) for i, f in enumerate(f0s)}
  source = sources.ArraySource(clips, [0, 0], 1)

  def planted(condition, run, batch_size, seed):
    del run, batch_size, seed

    def fn(audio, layers, indices):
      if condition == controls.TRAINED:     # residual = the octave
        out = np.stack([audio[r] - octave_up[int(i)][:audio.shape[1]]
                        if i >= 0 else audio[r]      # padding rows
                        for r, i in enumerate(indices)])
      elif condition == controls.UNTRAINED:  # residual = 0.9 x
        out = 0.1 * audio
      else:                                  # residual = x
        out = np.zeros_like(audio)
      return {layer: out for layer in layers}
    return fn

  monkeypatch.setattr(residual, "condition_sonify_fn", planted)
  params = {**imported.params, **imported.head_params}
  result = residual.run_pitch_residual(
      params, net, source, str(tmp_path), layers=(2,),
      untrained=imported.params, progress=False)
  kept = {c: v[residual.PITCH_METRIC]
          for c, v in result["per_layer"]["2"].items()}
  assert kept == {controls.TRAINED: 0.0, controls.UNTRAINED: 1.0,
                  controls.RANDOM_MAP: 1.0}
  assert result["clips"] == 2 and result["baseline"]["voiced_share"] > 0.8


def test_command_writes_what_the_api_computes(zoo, tmp_path):
  run = zoo.run_dir("crepe-tiny")
  folder = tmp_path / "clips"
  folder.mkdir()
  for f0 in (220.0, 330.0):
    audio_io.write_wav(str(folder / f"tone{int(f0)}.wav"), _tone(f0, 16000),
                       16000)
  out = str(tmp_path / "study")
  with cli_harness.worker_pool() as get:
    result = get("sonify_jax.analysis.run").run("--study=residual", f"--checkpoint={run}",
                        f"--audio_dir={folder}", "--layers=3",
                        "--clip_seconds=0.25", f"--workdir={out}")
  assert result.code == 0, result.stderr
  with open(os.path.join(out, "residual.json")) as f:
    written = json.load(f)
  loaded = controls.load_run(run)
  params, net, _ = run_loading.load(run, loaded.step, with_head=True)
  from sonify_jax.data import audio_folder  # pylint: disable=g-import-not-at-top
  source = audio_folder.AudioFolderSource(str(folder), net.sample_rate,
                                          net.min_input_length(1))
  api = residual.run_pitch_residual(
      params, net, source, str(tmp_path / "api"), layers=(3,),
      clip_samples=4000, untrained=loaded.untrained, progress=False)
  assert written["per_layer"] == json.loads(json.dumps(api["per_layer"]))
  assert set(written["per_layer"]["3"]) == set(controls.CONDITIONS)
