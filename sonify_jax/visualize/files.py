"""Library of the ``visualize`` command: which maps, and the files written.

``DIR/<layer>_<map>.wav`` (the visualization at the network's rate), its
spectrogram ``.png``, and ``DIR/visualize.json`` (per map its final
activation, the random start's, the objective through the transforms at
each step; the seed and the settings). The folder is built under a
temporary name and renamed in (``atomic_io.atomic_dir``). Kept apart from
the command so that importing it defines no flags.
"""
import os
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax import atomic_io, audio_io, plotting, sonify_files
from sonify_jax.errors import UserError
from sonify_jax.models import network as network_lib
from sonify_jax.visualize import objective, optimize, parametrize

INDEX_FILE = "visualize.json"


def parse_layer(text: str):
  """``'3'`` -> 3, ``'head'`` -> ``'head'``."""
  text = text.strip().lower()
  return objective.HEAD if text == objective.HEAD else int(text)


def parse_maps(spec: str, params, net: network_lib.Network, layer,
               audio: Optional[np.ndarray], settings: optimize.Settings
               ) -> List[int]:
  """``'0,5,9'``; ``'all'``; ``'top:N'``: the N maps the clip ``audio``
  drives the most by the objective (needs ``audio``)."""
  spec = spec.strip().lower()
  count = objective.width(net, layer)
  if spec == "all":
    return list(range(count))
  if spec.startswith("top:"):
    n = int(spec[4:])
    if not 1 <= n <= count:
      raise UserError(f"--maps top:{n} is outside top:1..top:{count} for "
                      f"layer {layer} of {net.name}")
    if audio is None:
      raise UserError("--maps top:N ranks the maps on a clip: give --audio")
    needed = objective.min_length(net, layer)
    if audio.size < needed:
      raise UserError(f"--audio is {audio.size} samples, shorter than what "
                      f"layer {layer} reads ({needed})")
    strength = jax.jit(objective.of(net, layer, settings.where))(
        params, jnp.asarray(audio, jnp.float32))
    return [int(i) for i in np.argsort(-np.asarray(strength))[:n]]
  maps = [int(m) for m in spec.split(",") if m.strip()]
  bad = [m for m in maps if not 0 <= m < count]
  if bad:
    raise UserError(f"--maps {bad} out of range: layer {layer} of {net.name} "
                    f"has maps 0..{count - 1}")
  return maps


def reference_scale(folder: str, net: network_lib.Network, seconds: float,
                    settings: optimize.Settings) -> np.ndarray:
  """The decorrelating scale from the mean spectrum of the audio files
  under ``folder`` (:func:`parametrize.reference_scale`)."""
  from sonify_jax.data import audio_folder  # pylint: disable=g-import-not-at-top
  files = audio_folder.audio_files(folder)
  if not files:
    raise UserError(f"--scale_from {folder} holds no audio files")
  length = optimize.padded_length(
      net, int(round(seconds * net.sample_rate)), settings)
  clips = [audio_io.load_audio(f, net.sample_rate) for f in files]
  try:
    return parametrize.reference_scale(clips, length)
  except ValueError as error:
    raise UserError(f"--scale_from {folder}: {error}") from None


def check_output_dir(out_dir: str) -> None:
  sonify_files.check_output_dir(out_dir, INDEX_FILE, "visualize")


def write(out_dir: str, result: optimize.Visualization,
          net: network_lib.Network, layer, *, seed: int, seconds: float,
          settings: optimize.Settings, record: Dict[str, Any]) -> str:
  """Writes the folder; returns the index path."""
  rate = net.sample_rate
  with atomic_io.atomic_dir(out_dir) as tmp:
    entries = []
    for m, wave, achieved, start, history in zip(
        result.maps, result.waveforms, result.activation, result.start,
        result.history):
      stem = f"{layer}_{int(m)}"
      audio_io.write_wav(os.path.join(tmp, stem + ".wav"), wave, rate)
      plotting.save_panels_figure(
          os.path.join(tmp, stem + ".png"),
          [(f"visualization of layer {layer} map {int(m)}", wave)], rate)
      entries.append({"layer": layer, "map": int(m), "wav": stem + ".wav",
                      "png": stem + ".png", "activation": float(achieved),
                      "start_activation": float(start),
                      "history": np.asarray(history).tolist()})
    atomic_io.write_json(os.path.join(tmp, INDEX_FILE), {
        "model": net.name, "sample_rate": rate, "layer": layer,
        "seed": seed, "seconds": seconds, "settings": settings.to_dict(),
        **record, "visualizations": entries})
  return os.path.join(out_dir, INDEX_FILE)
