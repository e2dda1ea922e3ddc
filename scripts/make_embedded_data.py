r"""Regenerates the embedded default dataset (sonify_jax/data/embedded/).

Two small, real, labelled sets at 8 kHz mono, 16-bit PCM WAV:

* keywords: ten spoken words synthesised with espeak-ng under many voices
  (English accents x voice variants), speeds and pitches; 1 s clips.
* events: six classes of sound events made from the free sound files that
  Debian ships (sound-theme-freedesktop, oxygen-sounds, sound-icons), each
  varied by speed, pitch, gain and placement; 1-4 s clips.

Every random choice is drawn from one numpy Generator seeded by --seed, and
sources/voices are visited in a fixed order, so a rerun with the same seed
and the same package versions reproduces the files (espeak-ng's output, and
so the exact bytes, can differ between espeak-ng versions).

Needs: apt-get install -y espeak-ng sound-theme-freedesktop oxygen-sounds \
  sound-icons

Usage:
  python scripts/make_embedded_data.py [--out_dir=sonify_jax/data/embedded]
      [--seed=0]
"""
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl import flags
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sonify_jax import audio_io  # pylint: disable=g-import-not-at-top

SAMPLE_RATE = audio_io.SAMPLE_RATE  # 8 kHz, the models' rate

_OUT_DIR = flags.DEFINE_string(
    "out_dir", os.path.join(os.path.dirname(__file__), "..", "sonify_jax",
                            "data", "embedded"),
    "Where the WAVs and manifest.csv go (replaced atomically).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of every random choice.")

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop",
            "go")
# espeak-ng English voices (accents) and voice variants (+name).
ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
           "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3",
            "f4", "f5", "adam", "john", "paul", "max", "grandpa", "linda",
            "steph", "annie", "belinda", "grandma", "whisperf", "croak")
KEYWORD_CLIPS = 24  # per word
KEYWORD_TEST = 5  # of which held out (by voice: test voices never train)
KEYWORD_SECONDS = 1.0

_FD = "/usr/share/sounds/freedesktop/stereo/"
_OX = "/usr/share/sounds/"
_SI = "/usr/share/sounds/sound-icons/"
# Event class -> source files (package in brackets in README.md).
EVENT_SOURCES = {
    "telephone": [_FD + "phone-incoming-call.oga",
                  _FD + "phone-outgoing-busy.oga",
                  _FD + "phone-outgoing-calling.oga",
                  _OX + "Oxygen-Im-Phone-Ring.ogg"],
    "chime": [_FD + "bell.oga", _FD + "complete.oga",
              _FD + "message-new-instant.oga", _FD + "message.oga",
              _FD + "service-login.oga", _FD + "service-logout.oga",
              _OX + "Oxygen-Im-Message-In.ogg", _OX + "Oxygen-Im-New-Mail.ogg",
              _OX + "Oxygen-Sys-Log-In.ogg", _OX + "Oxygen-Sys-Log-Out.ogg",
              _OX + "Oxygen-K3B-Finish-Success.ogg"],
    # freedesktop's dialog-*/window-* sounds are left out: Debian's
    # copyright file gives them no licence.
    "alert": [_FD + "suspend-error.oga", _OX + "Oxygen-Sys-App-Error.ogg",
              _OX + "Oxygen-Sys-App-Error-Critical.ogg",
              _OX + "Oxygen-Sys-Warning.ogg",
              _OX + "Oxygen-Im-Internal-Error.ogg",
              _OX + "Oxygen-K3B-Finish-Error.ogg"],
    "mechanical": [_FD + "camera-shutter.oga", _FD + "trash-empty.oga",
                   _OX + "Oxygen-Sys-Trash-Emptied.ogg",
                   _FD + "device-added.oga", _FD + "device-removed.oga",
                   _FD + "power-plug.oga", _FD + "power-unplug.oga"],
    "instrument": [_SI + "cembalo-1.wav", _SI + "cembalo-2.wav",
                   _SI + "cembalo-6.wav", _SI + "electric-piano-3.wav",
                   _SI + "guitar-12.wav", _SI + "guitar-13.wav",
                   _SI + "klavichord-4.wav", _SI + "piano-3.wav",
                   _SI + "trumpet-1.wav", _SI + "trumpet-12.wav",
                   _SI + "violoncello-7.wav", _SI + "xylofon.wav"],
    "percussion": [_SI + "percussion-10.wav", _SI + "percussion-12.wav",
                   _SI + "percussion-28.wav", _SI + "percussion-50.wav",
                   _SI + "cymbaly-1.wav", _SI + "glass-water-1.wav"],
}
EVENT_CLIPS = 24  # per class
EVENT_TEST = 5  # of which held out (by variant)
EVENT_MIN_SECONDS, EVENT_MAX_SECONDS = 1.0, 4.0

MANIFEST_FIELDS = ("id", "file", "group", "label", "split", "num_samples",
                   "source", "variant")


def _espeak(word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
  """Synthesises ``word``; returns float32 mono at SAMPLE_RATE."""
  wav = subprocess.run(
      ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch),
       "--stdout", word], check=True, capture_output=True).stdout
  import soundfile  # pylint: disable=g-import-not-at-top
  audio, sr = soundfile.read(io.BytesIO(wav), dtype="float32")
  return audio_io.resample(audio_io.to_mono_float(audio), sr, SAMPLE_RATE)


def _trim(audio: np.ndarray, top_db: float = 40.0) -> np.ndarray:
  import librosa  # pylint: disable=g-import-not-at-top
  trimmed, _ = librosa.effects.trim(audio, top_db=top_db, frame_length=256,
                                    hop_length=64)
  return trimmed if trimmed.size else audio


def _place(event: np.ndarray, length: int, peak: float, noise_std: float,
           rng: np.random.Generator) -> np.ndarray:
  """Puts ``event`` (peak-normalised) at a random offset in a noise floor.

  The faint Gaussian floor stands in for a real recording's noise; without
  it the padding would be exact digital silence, unlike any dataset we
  transfer to.
  """
  event = event[:length]
  event = event * (peak / max(float(np.max(np.abs(event))), 1e-6))
  out = rng.normal(0.0, noise_std, size=length).astype(np.float32)
  start = int(rng.integers(0, length - event.size + 1))
  out[start:start + event.size] += event
  return np.clip(out, -1.0, 1.0)


def make_keywords(rng: np.random.Generator):
  """Yields (id, relative file, label, split, audio, source, variant)."""
  voices = [f"{a}+{v}" for a in ACCENTS for v in VARIANTS]
  order = rng.permutation(len(voices))
  num_test_voices = len(voices) // 5
  test_voices = [voices[i] for i in order[:num_test_voices]]
  train_voices = [voices[i] for i in order[num_test_voices:]]
  length = int(KEYWORD_SECONDS * SAMPLE_RATE)
  for word in KEYWORDS:
    for j in range(KEYWORD_CLIPS):
      split = "test" if j < KEYWORD_TEST else "train"
      pool = test_voices if split == "test" else train_voices
      voice = pool[int(rng.integers(len(pool)))]
      speed = int(rng.integers(120, 221))
      pitch = int(rng.integers(15, 86))
      speech = _trim(_espeak(word, voice, speed, pitch))
      if speech.size > length:  # slow voices: keep the word's centre
        cut = (speech.size - length) // 2
        speech = speech[cut:cut + length]
      audio = _place(speech, length, peak=float(rng.uniform(0.25, 0.9)),
                     noise_std=float(rng.uniform(2e-4, 2e-3)), rng=rng)
      clip_id = f"kw_{word}_{j:03d}"
      yield (clip_id, f"keywords/{word}/{clip_id}.wav", word, split, audio,
             "espeak-ng", f"{voice} -s {speed} -p {pitch}")


def _vary(source: np.ndarray, rng: np.random.Generator):
  """Speed (tempo and pitch), then pitch-only shift; returns audio, desc."""
  import librosa  # pylint: disable=g-import-not-at-top
  speed = float(rng.uniform(0.8, 1.25))
  semitones = float(rng.uniform(-2.0, 2.0))
  # Playing at ``speed`` = reading the samples as if taken at speed * rate.
  audio = audio_io.resample(source, int(round(SAMPLE_RATE * speed)),
                            SAMPLE_RATE)
  if audio.size >= 512:
    audio = librosa.effects.pitch_shift(audio, sr=SAMPLE_RATE,
                                        n_steps=semitones, n_fft=512)
  return audio.astype(np.float32), f"speed {speed:.3f} pitch {semitones:+.2f}"


def make_events(rng: np.random.Generator):
  """Yields (id, relative file, label, split, audio, source, variant)."""
  for label in sorted(EVENT_SOURCES):
    paths = EVENT_SOURCES[label]
    sources = [_trim(audio_io.load_audio(p), top_db=50) for p in paths]
    for j in range(EVENT_CLIPS):
      split = "test" if j >= EVENT_CLIPS - EVENT_TEST else "train"
      k = j % len(paths)  # every source file appears, in turn
      audio, variant = _vary(sources[k], rng)
      max_len = int(EVENT_MAX_SECONDS * SAMPLE_RATE)
      if audio.size > max_len:  # long alarms: a random 1-4 s excerpt
        take = int(rng.integers(int(EVENT_MIN_SECONDS * SAMPLE_RATE),
                                max_len + 1))
        start = int(rng.integers(0, audio.size - take + 1))
        audio = audio[start:start + take]
      length = int(np.clip(audio.size + rng.integers(0, SAMPLE_RATE // 2),
                           EVENT_MIN_SECONDS * SAMPLE_RATE, max_len))
      audio = _place(audio, length, peak=float(rng.uniform(0.2, 0.9)),
                     noise_std=float(rng.uniform(2e-4, 2e-3)), rng=rng)
      clip_id = f"ev_{label}_{j:03d}"
      yield (clip_id, f"events/{label}/{clip_id}.wav", label, split, audio,
             os.path.basename(paths[k]), variant)


def tool_versions() -> dict:
  """Versions that determine the exact bytes (recorded in generator.json)."""
  import librosa  # pylint: disable=g-import-not-at-top
  import soxr  # pylint: disable=g-import-not-at-top
  versions = {"numpy": np.__version__, "librosa": librosa.__version__,
              "soxr": soxr.__version__}
  for package in ("espeak-ng", "espeak-ng-data", "sound-theme-freedesktop",
                  "oxygen-sounds", "sound-icons"):
    try:
      versions[package] = subprocess.run(
          ["dpkg-query", "-W", "-f=${Version}", package], check=True,
          capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
      versions[package] = "unknown"
  return versions


def main(argv):
  del argv
  out_dir = os.path.abspath(_OUT_DIR.value)
  rng = np.random.default_rng(_SEED.value)
  # Build next to the target, then swap: an interrupted run leaves the old
  # data intact.
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".embedded_tmp_", dir=parent)
  rows = []
  try:
    for group, maker in (("keywords", make_keywords), ("events", make_events)):
      for n, (clip_id, rel, label, split, audio, source, variant) in enumerate(
          maker(rng)):
        audio_io.write_wav(os.path.join(tmp, rel), audio, SAMPLE_RATE)
        rows.append(dict(id=clip_id, file=rel, group=group, label=label,
                         split=split, num_samples=audio.size, source=source,
                         variant=variant))
        if n % 20 == 0:
          print(f"{group}: {n} clips", flush=True)
    with open(os.path.join(tmp, "manifest.csv"), "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
      writer.writeheader()
      writer.writerows(rows)
    with open(os.path.join(tmp, "generator.json"), "w") as f:
      json.dump({"seed": _SEED.value, "versions": tool_versions()}, f,
                indent=1, sort_keys=True)
    readme = os.path.join(out_dir, "README.md")
    if os.path.exists(readme):  # hand-written; keep it
      shutil.copy(readme, os.path.join(tmp, "README.md"))
    old = out_dir + ".old"
    if os.path.exists(out_dir):
      os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  total = sum(os.path.getsize(os.path.join(d, f))
              for d, _, fs in os.walk(out_dir) for f in fs)
  print(f"wrote {len(rows)} clips, {total / 2**20:.2f} MiB to {out_dir}")


if __name__ == "__main__":
  from sonify_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)  # --help exits 0, quiet library logs, 'error:' lines
