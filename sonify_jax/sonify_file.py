"""Sonify an audio file: the library behind ``python -m sonify_jax.sonify``.

Kept apart from the CLI module so that importing it defines no absl flags.
"""
import os
from typing import List, Tuple

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax import audio_io, deconvnet, outputs
from sonify_jax.models import build_encoder, get_architecture


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
