r"""Sonify feature maps of a CNN12 for an audio file.

  python -m sonify_jax.sonify --audio clip.wav --layer 6 --maps 0,5 --out DIR \
      [--checkpoint WORKDIR_OR_CKPT | --seed 0 --model cnn12]

``--maps top:N`` picks the clip's N most active maps of the layer. Any input
format soundfile/librosa decodes is accepted and resampled to 8 kHz mono.
Writes DIR/input.wav, DIR/layer{L}_map{M}.wav/.png and DIR/index.json.
"""
import sys

from absl import app
from absl import flags

from sonify_jax import audio_io
from sonify_jax.sonify_file import load_model, sonify_file

_AUDIO = flags.DEFINE_string("audio", None, "Input audio file.")
_LAYER = flags.DEFINE_integer("layer", None, "Block number, 1..11.")
_MAPS = flags.DEFINE_string(
    "maps", "top:3", "Comma-separated feature-map indices, or top:N.")
_OUT = flags.DEFINE_string("out", None, "Output directory.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Training workdir or checkpoint dir; default: a "
    "seeded random init.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default last).")
_MODEL = flags.DEFINE_string("model", "cnn12", "Architecture of a random init.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random init.")


def main(argv):
  del argv
  for flag in (_AUDIO, _LAYER, _OUT):
    if flag.value is None:
      raise app.UsageError(f"--{flag.name} is required")
  try:
    params, arch = load_model(_CHECKPOINT.value, _STEP.value, _MODEL.value,
                              _SEED.value)
    maps, index = sonify_file(_AUDIO.value, _LAYER.value, _MAPS.value,
                              _OUT.value, params, arch)
  except (ValueError, TypeError, audio_io.AudioReadError) as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  print(f"sonified layer {_LAYER.value} maps {maps}: {index}")


if __name__ == "__main__":
  app.run(main)
