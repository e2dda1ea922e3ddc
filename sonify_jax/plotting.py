"""Log-spectrogram figures (matplotlib, Agg backend: no display needed)."""
from typing import Optional, Sequence, Tuple

import numpy as np
import scipy.signal

from sonify_jax import atomic_io

_FLOOR_DB = -100.0


def power_spectrogram(audio: np.ndarray, sample_rate: int,
                      n_fft: int = 256, hop: int = 64
                      ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Power spectrogram (Hann window): freqs [F] Hz, times [N] s, power [F, N].
  """
  audio = np.asarray(audio, np.float64)
  if audio.ndim != 1:
    raise ValueError(f"audio must be [time], got shape {audio.shape}")
  nperseg = min(n_fft, len(audio))
  return scipy.signal.spectrogram(
      audio, fs=sample_rate, window="hann", nperseg=nperseg,
      noverlap=nperseg - min(hop, nperseg), scaling="spectrum", mode="psd")


def to_db(power: np.ndarray) -> np.ndarray:
  """Power -> dB, floored at -100 dB."""
  return 10.0 * np.log10(np.maximum(power, 10 ** (_FLOOR_DB / 10)))


def log_spectrogram(audio: np.ndarray, sample_rate: int,
                    n_fft: int = 256, hop: int = 64
                    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Power spectrogram in dB (Hann window).

  Args:
    audio: [time] float waveform.
  Returns:
    freqs [F] in Hz, times [N] in s, db [F, N] (floored at -100 dB).
  """
  freqs, times, power = power_spectrogram(audio, sample_rate, n_fft, hop)
  return freqs, times, to_db(power)


def save_spectrogram_png(path: str, db: np.ndarray,
                         dynamic_range_db: float = 80.0) -> str:
  """A dB spectrogram ``[F, N]`` as a bare PNG image (one pixel per bin and
  frame, low frequencies at the bottom, magma colours), written atomically.

  No axes or figure: thousands of these (the atlas) cost about a millisecond
  each with Pillow, where a matplotlib figure costs a tenth of a second.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from sonify_jax import atomic_io  # pylint: disable=g-import-not-at-top
  db = np.asarray(db, np.float64)
  top = db.max() if db.size else 0.0
  level = np.clip((db[::-1] - (top - dynamic_range_db)) / dynamic_range_db,
                  0.0, 1.0)
  rgb = matplotlib.colormaps["magma"](level, bytes=True)[..., :3]
  with atomic_io.atomic_path(path) as tmp:
    Image.fromarray(np.ascontiguousarray(rgb)).save(tmp, format="png",
                                                   compress_level=1)
  return path


DEAD_LABEL = "dead map (all zero)"
SILENT_LABEL = "silent (all zero)"


def draw_spectrogram(ax, audio: np.ndarray, sample_rate: int,
                     title: str = "", dynamic_range_db: float = 80.0,
                     zero_label: str = DEAD_LABEL):
  """Draw a log-spectrogram on a matplotlib axis; returns the image.

  An all-zero signal (a dead map's sonification) has no spectrum: its panel
  is drawn black at the floor and labelled ``zero_label``, never as a flat
  bright panel that reads as loud broadband sound.
  """
  freqs, times, db = log_spectrogram(audio, sample_rate)
  silent = not np.any(np.asarray(audio))
  top = db.max() if db.size and not silent else _FLOOR_DB + dynamic_range_db
  image = ax.pcolormesh(times, freqs, db, shading="auto", cmap="magma",
                        vmin=top - dynamic_range_db, vmax=top)
  if silent:
    ax.text(0.5, 0.5, zero_label, transform=ax.transAxes, ha="center",
            va="center", fontsize=9, color="white",
            bbox=dict(facecolor="black", edgecolor="white", alpha=0.8))
    title = f"{title} [{zero_label}]" if title else zero_label
  ax.set_title(title, fontsize=8)
  ax.set_xlabel("time (s)", fontsize=7)
  ax.set_ylabel("Hz", fontsize=7)
  ax.tick_params(labelsize=6)
  return image


def save_figure(fig, path: str) -> str:
  """Save atomically (write a temp file, then rename) and close the figure."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  try:
    with atomic_io.atomic_path(path) as tmp:
      fig.savefig(tmp, dpi=100, bbox_inches="tight")
  finally:
    plt.close(fig)
  return path


def new_figure(rows: int, cols: int, size: Tuple[float, float]):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt.subplots(rows, cols, figsize=size, squeeze=False)


def save_pair_figure(path: str, audio: np.ndarray, sonification: np.ndarray,
                     sample_rate: int, title: str = "",
                     labels: Optional[Sequence[str]] = None) -> str:
  """Input and sonification log-spectrograms side by side, as a PNG."""
  labels = labels or ("input", "sonification")
  return save_panels_figure(path, [(labels[0], audio),
                                   (labels[1], sonification)], sample_rate,
                            title)


def save_panels_figure(path: str, panels: Sequence[Tuple[str, np.ndarray]],
                       sample_rate: int, title: str = "") -> str:
  """Log-spectrograms side by side (the first is the input, the others
  sonifications: an all-zero one is labelled a dead map), as a PNG."""
  fig, axes = new_figure(1, len(panels), (4.5 * len(panels), 3))
  for i, (label, audio) in enumerate(panels):
    draw_spectrogram(axes[0, i], audio, sample_rate, label,
                     zero_label=SILENT_LABEL if i == 0 else DEAD_LABEL)
  if title:
    fig.suptitle(title, fontsize=9)
  return save_figure(fig, path)
