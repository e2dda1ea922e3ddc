"""How alike two visualizations sound, wherever in time their sound sits.

A visualization's waveform has no fixed time origin (the random shifts it
was optimised under make any shift as good), so the sample-wise correlation
the sanity study uses for sonifications would call two identical sounds a
few samples apart unrelated. These measures ignore time:

* ``max_abs_xcorr``: the largest absolute normalised cross-correlation over
  every lag (1 for the same sound shifted or negated);
* ``spectrum_spearman``: the rank correlation of their mean power spectra
  (Welch: Hann segments, half overlapping).

And what pitch a visualization has, read by an estimator independent of
the network (pyin, librosa): ``frame_f0s`` per 10 ms frame (NaN where
unvoiced), ``median_f0`` over the voiced ones, ``cents_apart``.
"""
from typing import Dict, List

import numpy as np
import scipy.signal
import scipy.stats

METRICS = ("spectrum_spearman", "max_abs_xcorr")
SEGMENT = 512
PYIN_RANGE = (30.0, 2100.0)


def max_abs_xcorr(a: np.ndarray, b: np.ndarray) -> float:
  a = np.asarray(a, np.float64) - np.mean(a)
  b = np.asarray(b, np.float64) - np.mean(b)
  norm = np.linalg.norm(a) * np.linalg.norm(b)
  if norm == 0:
    return float("nan")
  return float(np.abs(scipy.signal.correlate(a, b, method="fft")).max()
               / norm)


def spectrum_spearman(a: np.ndarray, b: np.ndarray, sample_rate: int
                      ) -> float:
  segment = min(SEGMENT, len(a), len(b))
  _, pa = scipy.signal.welch(a, sample_rate, nperseg=segment)
  _, pb = scipy.signal.welch(b, sample_rate, nperseg=segment)
  if np.ptp(pa) == 0 or np.ptp(pb) == 0:
    return float("nan")
  return float(scipy.stats.spearmanr(pa, pb)[0])


def similarities(a: np.ndarray, b: np.ndarray, sample_rate: int
                 ) -> Dict[str, List[float]]:
  """Both measures of each row pair of ``a``, ``b`` ``[P, T]``."""
  return {"spectrum_spearman": [spectrum_spearman(x, y, sample_rate)
                                for x, y in zip(a, b)],
          "max_abs_xcorr": [max_abs_xcorr(x, y) for x, y in zip(a, b)]}


def frame_f0s(wave: np.ndarray, sample_rate: int) -> np.ndarray:
  """pyin's f0 of every 10 ms frame (64 ms windows), NaN where unvoiced."""
  import librosa  # pylint: disable=g-import-not-at-top
  frame = 1 << int(np.round(np.log2(0.064 * sample_rate)))
  top = min(PYIN_RANGE[1], 0.45 * sample_rate)
  # more than 2 periods of the lowest f0 in a frame (librosa warns otherwise)
  lowest = max(PYIN_RANGE[0], 2 * sample_rate / (frame - 1))
  f0, _, _ = librosa.pyin(np.asarray(wave, np.float64), fmin=lowest,
                          fmax=top, sr=sample_rate, frame_length=frame,
                          hop_length=sample_rate // 100)
  return f0


def median_f0(wave: np.ndarray, sample_rate: int) -> float:
  """The median pyin f0 over voiced frames (NaN: none voiced)."""
  f0 = frame_f0s(wave, sample_rate)
  return float(np.nanmedian(f0)) if np.any(np.isfinite(f0)) else float("nan")


def cents_apart(a, b) -> np.ndarray:
  """|a - b| in cents (inf where either is NaN)."""
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.nan_to_num(1200 * np.abs(np.log2(np.asarray(a, np.float64)
                                                / np.asarray(b))), nan=np.inf)
