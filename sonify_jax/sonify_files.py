"""Library: sonify an audio file and write the results (WAV + spectrogram PNG
per map, ``index.json``); the command ``python -m sonify_jax.sonify`` calls it.

Kept apart from the CLI module so that importing it defines no absl flags.
The output folder is built under a temporary name and renamed into place
(``atomic_io.atomic_dir``): a failed or interrupted run leaves the previous
folder or none, never a mix. ``--out`` may be a ``gs://`` URL (built locally,
then uploaded; see ``atomic_io``).
"""
import os
from typing import Dict, List, Optional, Tuple

from absl import logging
import jax.numpy as jnp
import numpy as np

from sonify_jax import atomic_io, audio_io, deconvnet, paths, plotting
from sonify_jax.errors import UserError
from sonify_jax.transpose import rules
from sonify_jax.models import encoder, get_network

INDEX_FILE = "index.json"


def write_pair(out_dir: str, stem: str, audio: np.ndarray,
               sonification: np.ndarray, *, title: str = "",
               sample_rate: int) -> Dict[str, str]:
  """Write ``{stem}.wav`` (sonification) and ``{stem}.png`` (input vs
  sonification log-spectrograms). Returns the paths, relative to out_dir."""
  wav = f"{stem}.wav"
  png = f"{stem}.png"
  audio_io.write_wav(os.path.join(out_dir, wav), sonification, sample_rate)
  plotting.save_pair_figure(os.path.join(out_dir, png), audio, sonification,
                            sample_rate, title=title)
  return {"wav": wav, "png": png}


def random_encoder(model: str = "cnn12", seed: int = 0):
  """Seeded random-init encoder params and network."""
  net = get_network(model)
  return encoder.init_params(net, seed), net


def load_model(checkpoint, step, model, seed):
  """Params and network of a run (workdir, checkpoints dir or step
  folder; trained or converted) or, without ``checkpoint``, of a seeded
  random init of the registered network ``model``."""
  if checkpoint is None:
    return random_encoder(model, seed)
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  params, arch_name = checkpoints.load_encoder(checkpoint, step)
  return params, get_network(arch_name)


def parse_maps(spec: str, params, waveform: np.ndarray, layer: int,
               arch) -> List[int]:
  """'0,5,7' -> [0, 5, 7]; 'top:N' -> the N most active maps of the clip."""
  spec = spec.strip()
  width = arch.channels[layer - 1]
  if spec.startswith("top:"):
    try:
      count = int(spec[4:])
    except ValueError:
      raise UserError(f"--maps top:N needs an integer N, got {spec!r}"
                      ) from None
    if not 1 <= count <= width:
      raise UserError(f"--maps top:{count} is outside top:1..top:{width} for "
                      f"layer {layer} of {arch.name}")
    strength = deconvnet.feature_map_activations(
        params, jnp.asarray(waveform[None]), layer, arch)[0]
    return [int(i) for i in np.argsort(-np.asarray(strength))[:count]]
  try:
    maps = [int(m) for m in spec.split(",") if m.strip()]
  except ValueError:
    raise UserError(f"--maps must be ints like 0,5 or top:N, got {spec!r}"
                    ) from None
  if not maps:
    raise UserError(f"--maps names no map: {spec!r}")
  return maps


def check_output_dir(out_dir: str, index_file: str = INDEX_FILE,
                     command: str = "sonify") -> None:
  """Refuses an ``out_dir`` that is a file, or a folder holding something
  other than an earlier output of ``command`` (its ``index_file``; a new
  run replaces it whole)."""
  out = paths.as_path(out_dir)
  if out.exists() and not out.is_dir():
    raise UserError(f"--out {out_dir} exists and is not a folder")
  if (out.is_dir() and any(out.iterdir()) and
      not (out / index_file).is_file()):
    raise UserError(f"--out {out_dir} is a folder that holds other files "
                    f"(no {index_file} of an earlier {command} run); pick a "
                    "new or empty folder")


def check_length(waveform: np.ndarray, path: str,
                 max_seconds: Optional[float], sample_rate: int) -> None:
  seconds = waveform.shape[-1] / sample_rate
  if max_seconds is not None and seconds > max_seconds:
    raise UserError(
        f"{path} is {seconds:.1f} s long; sonify holds every layer's "
        f"activations for the whole clip, so clips over {max_seconds:g} s "
        "are refused: cut it, or raise --max_seconds")


def sonify_file(audio_path: str, layer: int, maps_spec: str, out_dir: str,
                params, arch, max_seconds: Optional[float] = None,
                model_record: Optional[dict] = None,
                rule: str = rules.DEFAULT_RULE) -> Tuple[List[int], str]:
  """Sonify one file; returns (maps, index path).

  The audio is decoded and resampled to the network's rate
  (``arch.sample_rate``); the WAVs are written at that rate.
  ``model_record``: what index.json says of the params' origin (the
  checkpoint and its chosen step, or the random init's seed).

  Clips shorter than the layer's receptive field are refused with the same
  message as ``deconvnet.sonify`` (``deconvnet.validate_request``).
  """
  check_output_dir(out_dir)
  rules.check(rule)
  rate = arch.sample_rate
  waveform = audio_io.load_audio(audio_path, rate)
  check_length(waveform, audio_path, max_seconds, rate)
  deconvnet.validate_request(waveform[None], layer, [0], arch)
  maps = parse_maps(maps_spec, params, waveform, layer, arch)
  deconvnet.validate_request(waveform[None], layer, maps, arch)
  sonifications = np.asarray(
      deconvnet.sonify(params, waveform[None], layer, maps, arch,
                       rule=rule))[0]
  with atomic_io.atomic_dir(out_dir) as tmp_dir:
    audio_io.write_wav(os.path.join(tmp_dir, "input.wav"), waveform, rate)
    entries = []
    for m, s in zip(maps, sonifications):
      written = write_pair(tmp_dir, f"layer{layer}_map{m}", waveform, s,
                           title=f"layer {layer}, map {m}", sample_rate=rate)
      entries.append({"layer": layer, "map": m, **written})
      logging.info("wrote %s", os.path.join(out_dir, written["wav"]))
    atomic_io.write_json(
        os.path.join(tmp_dir, INDEX_FILE),
        {"audio": paths.resolve(audio_path), "input": "input.wav",
         "model": arch.name, "sample_rate": rate, "rule": rule,
         **(model_record or {}),
         "sonifications": entries})
  return maps, os.path.join(out_dir, INDEX_FILE)
