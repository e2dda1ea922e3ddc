r"""Builds a folder of real pitched recordings at known notes (not shipped).

Sampled instruments of Debian's FluidR3 General MIDI sound font, rendered
through FluidSynth from a one-note MIDI file per (instrument, note), plus a
few sustained vowels from espeak-ng. The layout is the one ``--audio_dir``
and ``configs/folder.py`` read (one sub-folder per instrument)::

  OUT/<instrument>/<instrument>_<midi note>_<Hz>.wav   16 kHz mono
  OUT/speech/<voice>_<word>.wav                        (pitch unknown)
  OUT/notes.tsv                                        file, instrument,
                                                       midi note, f0 Hz

Needs Debian's packages (as root): ``apt-get install fluidsynth
fluid-soundfont-gm espeak-ng``.

  python scripts/make_pitched_audio.py --out=/tmp/pitched
  python -m sonify_jax.analysis.run --study=pitch --checkpoint=/tmp/crepe \
      --audio_dir=/tmp/pitched --workdir=/tmp/pitch_study
"""
import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import soundfile

SOUND_FONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
# General MIDI programs (0-based) of clearly pitched instruments.
INSTRUMENTS = {"piano": 0, "organ": 19, "guitar": 24, "violin": 40,
               "cello": 42, "trumpet": 56, "clarinet": 71, "flute": 73}
NOTES = (45, 50, 55, 60, 64, 67, 72, 76)   # A2 (110 Hz) .. E5 (659 Hz)
WORDS = ("ah", "oh", "ee")
RATE = 16000


def midi_hz(note: int) -> float:
  return 440.0 * 2.0 ** ((note - 69) / 12.0)


def _var_len(value: int) -> bytes:
  out = [value & 0x7F]
  value >>= 7
  while value:
    out.insert(0, (value & 0x7F) | 0x80)
    value >>= 7
  return bytes(out)


def one_note_midi(program: int, note: int, seconds: float) -> bytes:
  """A format-0 MIDI file: program change, one note held ``seconds``
  (120 bpm, 480 ticks a beat: 960 ticks a second)."""
  ticks = int(seconds * 960)
  track = (b"\x00" + bytes([0xC0, program]) +
           b"\x00" + bytes([0x90, note, 100]) +
           _var_len(ticks) + bytes([0x80, note, 0]) +
           b"\x00\xff\x2f\x00")
  return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) +
          b"MTrk" + struct.pack(">I", len(track)) + track)


def render(midi: bytes, out_wav: str) -> None:
  with tempfile.TemporaryDirectory() as tmp:
    mid = os.path.join(tmp, "note.mid")
    raw = os.path.join(tmp, "note.wav")
    with open(mid, "wb") as f:
      f.write(midi)
    subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.7", "-r", str(RATE),
                    "-F", raw, SOUND_FONT, mid], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    audio, rate = soundfile.read(raw, dtype="float32", always_2d=True)
  audio = audio.mean(axis=1)
  # FluidSynth renders the release tail and silence: keep 1.5 s from onset.
  onset = int(np.argmax(np.abs(audio) > 1e-3 * np.abs(audio).max()))
  audio = audio[onset:onset + int(1.5 * rate)]
  soundfile.write(out_wav, audio / max(np.abs(audio).max(), 1e-9) * 0.5,
                  rate, subtype="PCM_16")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)
  missing = [t for t in ("fluidsynth", "espeak-ng") if not shutil.which(t)]
  if missing or not os.path.isfile(SOUND_FONT):
    print(f"error: needs {', '.join(missing) or SOUND_FONT}: apt-get install "
          "fluidsynth fluid-soundfont-gm espeak-ng", file=sys.stderr)
    return 2
  rows = ["file\tinstrument\tmidi_note\tf0_hz"]
  for name, program in INSTRUMENTS.items():
    os.makedirs(os.path.join(args.out, name), exist_ok=True)
    for note in NOTES:
      rel = os.path.join(name, f"{name}_{note}_{midi_hz(note):.1f}.wav")
      render(one_note_midi(program, note, 2.0), os.path.join(args.out, rel))
      rows.append(f"{rel}\t{name}\t{note}\t{midi_hz(note):.3f}")
  os.makedirs(os.path.join(args.out, "speech"), exist_ok=True)
  for voice in ("en", "en+f3"):
    for word in WORDS:
      rel = os.path.join("speech", f"{voice.replace('+', '_')}_{word}.wav")
      subprocess.run(["espeak-ng", "-v", voice, "-s", "80", "-w",
                      os.path.join(args.out, rel), word * 3], check=True)
  with open(os.path.join(args.out, "notes.tsv"), "w") as f:
    f.write("\n".join(rows) + "\n")
  print(f"wrote {len(rows) - 1} notes and {2 * len(WORDS)} speech clips "
        f"under {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
