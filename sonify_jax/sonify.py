r"""Sonify feature maps of a CNN12 for an audio file.

  python -m sonify_jax.sonify --audio clip.wav --layer 6 --maps 0,5 --out DIR \
      [--checkpoint WORKDIR_OR_CKPT | --seed 0 --model cnn12]

``--maps top:N`` picks the clip's N most active maps of the layer. Any input
format soundfile/librosa decodes is accepted and resampled to 8 kHz mono.
Writes DIR/input.wav, DIR/layer{L}_map{M}.wav/.png and DIR/index.json.
"""
import os
import sys
from typing import List, Tuple

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax import audio_io, deconvnet, outputs
from sonify_jax.models import build_encoder, get_architecture

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


def random_encoder(model: str = "cnn12", seed: int = 0):
  """Seeded random-init encoder params and architecture."""
  arch = get_architecture(model)
  params = build_encoder(model).init(
      jax.random.key(seed), jnp.zeros((1, arch.min_input_length(11))))
  return params["params"], arch


def load_model(checkpoint, step, model, seed):
  if checkpoint is None:
    return random_encoder(model, seed)
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  params, arch_name = checkpoints.load_encoder(checkpoint, step)
  return params, get_architecture(arch_name)


def parse_maps(spec: str, params, waveform: np.ndarray, layer: int,
               arch) -> List[int]:
  """'0,5,7' -> [0, 5, 7]; 'top:N' -> the N most active maps of the clip."""
  spec = spec.strip()
  if spec.startswith("top:"):
    count = int(spec[4:])
    width = arch.channels[layer - 1]
    if not 1 <= count <= width:
      raise ValueError(f"top:{count} outside 1..{width} for layer {layer}")
    strength = deconvnet.feature_map_activations(
        params, jnp.asarray(waveform[None]), layer, arch)[0]
    return [int(i) for i in np.argsort(-np.asarray(strength))[:count]]
  try:
    return [int(m) for m in spec.split(",") if m.strip()]
  except ValueError:
    raise ValueError(f"--maps must be ints like 0,5 or top:N, got {spec!r}"
                     ) from None


def sonify_file(audio_path: str, layer: int, maps_spec: str, out_dir: str,
                params, arch) -> Tuple[List[int], str]:
  """Sonify one file; returns (maps, index path)."""
  waveform = audio_io.load_audio(audio_path)
  deconvnet.validate_request(waveform[None], layer, [0], arch)
  maps = parse_maps(maps_spec, params, waveform, layer, arch)
  sonifications = np.asarray(
      deconvnet.sonify(params, waveform[None], layer, maps, arch))[0]
  audio_io.write_wav(os.path.join(out_dir, "input.wav"), waveform)
  entries = []
  for m, s in zip(maps, sonifications):
    paths = outputs.write_pair(out_dir, f"layer{layer}_map{m}", waveform, s,
                               title=f"layer {layer}, map {m}")
    entries.append({"layer": layer, "map": m, **paths})
    logging.info("wrote %s", os.path.join(out_dir, paths["wav"]))
  index = outputs.write_json(
      os.path.join(out_dir, "index.json"),
      {"audio": os.path.abspath(audio_path), "input": "input.wav",
       "model": arch.name, "sonifications": entries})
  return maps, index


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
