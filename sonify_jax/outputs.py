"""Writing sonification results: WAV + spectrogram PNG per (clip, map)."""
import os
from typing import Dict

import numpy as np

from sonify_jax import audio_io, plotting


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
