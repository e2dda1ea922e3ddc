"""A probe set with exact labels, generated: what dissection measures maps
against (Bau et al. 2017's concepts, for sound).

Each probe clip holds one concept over a known stretch of time, silence
elsewhere:

* ``tone``: a sinusoid at a known f0 (a log grid over 30-2000 Hz, below
  0.45 of the rate);
* ``complex``: a harmonic complex at the same f0s (harmonics to 0.45 of the
  rate, amplitude 1/k, random phases);
* ``noise``: third-octave band noise at known centre frequencies;
* ``click``: a train of clicks at known times (the concept's time is
  2 ms around each click).

Every concept sounds in ``REPEATS`` probes (phases, onsets and the noise
drawn from ``draw``, a seed: several draws give the 95 % intervals of what
is measured on them), each at the same RMS where it sounds, so that no map
is labelled by loudness or by one lucky clip. Pure numpy (and scipy.signal
for the band filters).

:func:`from_folder` adds recorded probes (``--probe=DIR``), laid out as
``scripts/make_pitched_audio.py`` writes them: a file that ``DIR/notes.tsv``
gives an ``f0_hz`` is a ``note`` at that f0 (snapped to its equal-tempered
note, so that one note played by several instruments is one concept); any
other file is a concept named after its top sub-folder (``speech``: the
vowels). Each clip is the ``seconds`` from just before its onset, at the
same RMS where it sounds (its 20 ms envelope within 20 dB of its peak).
"""
import csv
import dataclasses
import os
from typing import List, Tuple

import numpy as np
import scipy.signal

from sonify_jax import audio_io
from sonify_jax.errors import UserError

KINDS = ("tone", "complex", "noise", "click")
F0_COUNT = 24
F0_RANGE = (30.0, 2000.0)
BAND_COUNT = 12
CLICKS = 6
CLICK_HALF_WIDTH_S = 0.002
RAMP_S = 0.01
REPEATS = 2
RMS = 0.1


@dataclasses.dataclass(frozen=True)
class Probes:
  """``audio [N, T]``; ``concept [N]`` (index into ``concepts``);
  ``present [N, T]`` where the clip's concept sounds; ``concepts``:
  ``(kind, value Hz or nan)`` per concept."""
  audio: np.ndarray
  concept: np.ndarray
  present: np.ndarray
  concepts: Tuple[Tuple[str, float], ...]
  sample_rate: int

  def of_kind(self, kind: str) -> List[int]:
    return [i for i, (k, _) in enumerate(self.concepts) if k == kind]

  def kinds(self) -> Tuple[str, ...]:
    """The generated :data:`KINDS`, then any a probe folder added."""
    extra = sorted({k for k, _ in self.concepts} - set(KINDS))
    return KINDS + tuple(extra)


def f0_grid(sample_rate: int) -> np.ndarray:
  top = min(F0_RANGE[1], 0.45 * sample_rate)
  return np.geomspace(F0_RANGE[0], top, F0_COUNT)


def band_grid(sample_rate: int) -> np.ndarray:
  return np.geomspace(100.0, 0.35 * sample_rate, BAND_COUNT)


def _ramped(length: int, onset: int, offset: int, rate: int) -> np.ndarray:
  env = np.zeros(length)
  env[onset:offset] = 1.0
  ramp = min(int(RAMP_S * rate), (offset - onset) // 2)
  if ramp > 0:
    up = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    env[onset:onset + ramp] = up
    env[offset - ramp:offset] = up[::-1]
  return env


def harmonic_complex(f0: float, t: np.ndarray, sample_rate: int, harmonics,
                     rng) -> np.ndarray:
  """Harmonics ``1..harmonics`` (None: every one below 0.45 of
  ``sample_rate``, at least the fundamental) of ``f0`` at times ``t``,
  amplitude ``1/k``, phases drawn from ``rng``."""
  if harmonics is None:
    harmonics = max(1, int(0.45 * sample_rate // f0))
  return sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k
             for k in range(1, harmonics + 1))


def _at_rms(wave: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """``wave`` at :data:`RMS` over the samples where it sounds."""
  return wave * RMS / np.sqrt(np.mean(wave[mask] ** 2))


def generate(sample_rate: int, seconds: float = 0.5, draw: int = 0
             ) -> Probes:
  """The probe set of one draw."""
  rng = np.random.default_rng(draw)
  length = int(round(seconds * sample_rate))
  t = np.arange(length) / sample_rate
  f0s, bands = f0_grid(sample_rate), band_grid(sample_rate)
  concepts = ([("tone", float(f)) for f in f0s]
              + [("complex", float(f)) for f in f0s]
              + [("noise", float(b)) for b in bands] + [("click", np.nan)])
  audio, concept, present = [], [], []

  def add(signal, index, mask):
    audio.append(signal.astype(np.float32))
    concept.append(index)
    present.append(mask)

  def stretch():
    onset = int(rng.uniform(0.1, 0.3) * length)
    return onset, onset + length // 2

  for i, (kind, value) in [(i, c) for i, c in enumerate(concepts)
                           for _ in range(REPEATS)]:
    if kind in ("tone", "complex"):
      onset, offset = stretch()
      wave = harmonic_complex(value, t, sample_rate,
                              1 if kind == "tone" else None, rng)
      mask = np.zeros(length, bool)
      mask[onset:offset] = True
      add(_at_rms(wave * _ramped(length, onset, offset, sample_rate), mask),
          i, mask)
    elif kind == "noise":
      onset, offset = stretch()
      low, high = value * 2 ** (-1 / 6), min(value * 2 ** (1 / 6),
                                             0.49 * sample_rate)
      sos = scipy.signal.butter(4, [low, high], "bandpass", fs=sample_rate,
                                output="sos")
      wave = scipy.signal.sosfilt(sos, rng.standard_normal(length))
      mask = np.zeros(length, bool)
      mask[onset:offset] = True
      add(_at_rms(wave * _ramped(length, onset, offset, sample_rate), mask),
          i, mask)
    else:
      times = np.sort(rng.choice(np.arange(int(0.05 * length),
                                           int(0.95 * length)), CLICKS,
                                 replace=False))
      wave = np.zeros(length)
      wave[times] = 1.0
      mask = np.zeros(length, bool)
      half = int(CLICK_HALF_WIDTH_S * sample_rate)
      for c in times:
        mask[max(0, c - half):c + half + 1] = True
      add(_at_rms(wave, mask), i, mask)
  return Probes(np.stack(audio), np.array(concept), np.stack(present),
                tuple(concepts), sample_rate)


NOTES_FILE = "notes.tsv"
ENVELOPE_S = 0.02
SOUNDING_DB = 20.0
ONSET_LEAD_S = 0.02


def _snapped_to_note(hz: float) -> float:
  import librosa  # pylint: disable=g-import-not-at-top
  return float(librosa.midi_to_hz(np.round(librosa.hz_to_midi(hz))))


def _notes(folder: str) -> dict:
  path = os.path.join(folder, NOTES_FILE)
  if not os.path.isfile(path):
    return {}
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f, delimiter="\t"))
  if rows and not {"file", "f0_hz"} <= set(rows[0]):
    raise UserError(f"--probe {path} needs the columns file and f0_hz "
                    f"(has {', '.join(rows[0])})")
  try:
    return {os.path.normpath(r["file"]): float(r["f0_hz"]) for r in rows}
  except ValueError as error:
    raise UserError(f"--probe {path}: {error}") from error


def _sounding(wave: np.ndarray, sample_rate: int) -> np.ndarray:
  width = max(1, int(ENVELOPE_S * sample_rate))
  power = np.convolve(wave.astype(np.float64) ** 2, np.ones(width) / width,
                      "same")
  return power >= power.max() * 10 ** (-SOUNDING_DB / 10)


def from_folder(folder: str, sample_rate: int, seconds: float = 0.5
                ) -> Probes:
  """The recorded probes of ``folder`` (see the module docstring).

  Raises:
    UserError: not a folder, no usable audio, a bad notes.tsv, or a
      sub-folder named like a generated kind.
  """
  from sonify_jax.data import audio_folder  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(folder):
    raise UserError(f"--probe {folder} is not a folder")
  notes = _notes(folder)
  length = int(round(seconds * sample_rate))
  concepts, audio, concept, present = [], [], [], []
  for rel in audio_folder.audio_files(folder):
    try:
      wave = audio_io.load_audio(os.path.join(folder, rel), sample_rate)
    except audio_io.AudioReadError:
      continue
    if not np.any(wave):
      continue
    if os.path.normpath(rel) in notes:
      name = ("note", _snapped_to_note(notes[os.path.normpath(rel)]))
    else:
      kind = rel.split(os.sep)[0] if os.sep in rel else "other"
      if kind in KINDS or kind == "note":
        raise UserError(f"--probe {folder}: the sub-folder {kind}/ is named "
                        "like a generated concept; rename it")
      name = (kind, np.nan)
    start = max(0, int(np.argmax(_sounding(wave, sample_rate)))
                - int(ONSET_LEAD_S * sample_rate))
    clip = np.zeros(length)
    part = wave[start:start + length]
    clip[:len(part)] = part
    mask = _sounding(clip, sample_rate) & (np.arange(length) < len(part))
    if name not in concepts:
      concepts.append(name)
    audio.append(_at_rms(clip, mask).astype(np.float32))
    concept.append(concepts.index(name))
    present.append(mask)
  if not audio:
    raise UserError(f"--probe {folder} holds no usable audio files")
  order = sorted(range(len(concepts)), key=lambda i: (
      concepts[i][0], np.nan_to_num(concepts[i][1])))
  rank = np.argsort(order)
  return Probes(np.stack(audio), rank[np.array(concept)], np.stack(present),
                tuple(concepts[i] for i in order), sample_rate)


def combined(first: Probes, second: Probes) -> Probes:
  """One probe set holding both (concepts of ``second`` after
  ``first``'s)."""
  if first.audio.shape[1] != second.audio.shape[1] or (
      first.sample_rate != second.sample_rate):
    raise ValueError("probe sets of different lengths or rates")
  return Probes(np.concatenate([first.audio, second.audio]),
                np.concatenate([first.concept,
                                second.concept + len(first.concepts)]),
                np.concatenate([first.present, second.present]),
                first.concepts + second.concepts, first.sample_rate)
