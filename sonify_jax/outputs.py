"""Writing sonification results: WAV + spectrogram PNG per (clip, map)."""
import json
import os
from typing import Dict

import numpy as np

from sonify_jax import audio_io, plotting
from sonify_jax.models.architecture import SAMPLE_RATE


def write_pair(out_dir: str, stem: str, audio: np.ndarray,
               sonification: np.ndarray, title: str = "",
               sample_rate: int = SAMPLE_RATE) -> Dict[str, str]:
  """Write ``{stem}.wav`` (sonification) and ``{stem}.png`` (input vs
  sonification log-spectrograms). Returns the paths, relative to out_dir."""
  wav = f"{stem}.wav"
  png = f"{stem}.png"
  audio_io.write_wav(os.path.join(out_dir, wav), sonification, sample_rate)
  plotting.save_pair_figure(os.path.join(out_dir, png), audio, sonification,
                            sample_rate, title=title)
  return {"wav": wav, "png": png}


def write_json(path: str, payload) -> str:
  """Atomic JSON write (a crash never leaves a truncated index); numpy and
  jax scalars/arrays are converted."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(payload, f, indent=1, sort_keys=True, default=_to_json)
  os.replace(tmp, path)
  return path


def _to_json(value):
  if isinstance(value, np.integer):
    return int(value)
  if isinstance(value, np.floating):
    return float(value)
  if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
    return np.asarray(value).tolist()
  raise TypeError(f"not JSON serialisable: {type(value)}")
