"""How alike two visualizations sound, wherever in time their sound sits.

A visualization's waveform has no fixed time origin (the random shifts it
was optimised under make any shift as good), so the sample-wise correlation
the sanity study uses for sonifications would call two identical sounds a
few samples apart unrelated. These measures ignore time:

* ``max_abs_xcorr``: the largest absolute normalised cross-correlation over
  every lag (1 for the same sound shifted or negated);
* ``spectrum_spearman``: the rank correlation of their mean power spectra
  (Welch: Hann segments, half overlapping).
"""
from typing import Dict, List

import numpy as np
import scipy.signal
import scipy.stats

METRICS = ("spectrum_spearman", "max_abs_xcorr")
SEGMENT = 512


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
