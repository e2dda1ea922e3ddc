"""The waveform a visualization optimises, as Fourier coefficients.

Olah, Mordvintsev & Schubert (2017) and Trenaman (2021, audio): optimising
samples directly gives high-frequency noise; optimising the spectrum's
coefficients, each multiplied by a decorrelating scale (about ``1/f``, or
the mean magnitude spectrum of real recordings), lets every frequency move
at the pace natural sounds have. The waveform is then set to a fixed RMS
(so it is bounded and audible, whatever the network's sensitivity to gain).

Pure functions of arrays; :func:`reference_scale` reads nothing (the
command reads the folder and passes its clips).
"""
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Below this a 1/f scale stops growing: the low limit of hearing.
FLOOR_HZ = 20.0
_EPS = 1e-12


def frequencies(length: int, sample_rate: int) -> np.ndarray:
  return np.fft.rfftfreq(length, 1.0 / sample_rate)


def one_over_f_scale(length: int, sample_rate: int,
                     floor_hz: float = FLOOR_HZ, exponent: float = 1.0
                     ) -> np.ndarray:
  """``[length // 2 + 1]``: ``1 / max(f, floor_hz)``, peak 1, DC 0 (DC is
  inaudible, and standardising networks remove it)."""
  f = frequencies(length, sample_rate)
  scale = np.maximum(f, floor_hz) ** -exponent
  scale[0] = 0.0
  return (scale / scale.max()).astype(np.float32)


def reference_scale(clips: Sequence[np.ndarray], length: int) -> np.ndarray:
  """``[length // 2 + 1]``: the mean magnitude spectrum of ``length``-sample
  Hann-windowed segments of ``clips`` (each cut into segments half
  overlapping, a clip shorter than ``length`` zero-padded), peak 1, DC 0."""
  window = np.hanning(length).astype(np.float64)
  total = np.zeros(length // 2 + 1)
  count = 0
  for clip in clips:
    clip = np.asarray(clip, np.float64)
    if clip.size < length:
      clip = np.pad(clip, (0, length - clip.size))
    for start in range(0, clip.size - length + 1, max(1, length // 2)):
      segment = clip[start:start + length]
      total += np.abs(np.fft.rfft((segment - segment.mean()) * window))
      count += 1
  if count == 0 or not np.any(total[1:] > 0):
    raise ValueError("the reference clips hold no sound to take a spectrum of")
  scale = total / count
  scale[0] = 0.0
  return (scale / scale.max()).astype(np.float32)


def init_coefficients(key: jax.Array, length: int, std: float) -> jax.Array:
  """``[2, length // 2 + 1]`` real and imaginary parts, normal with
  deviation ``std``. Small (Lucid's 0.01 with Adam at 0.05): the first
  steps outweigh the random start, which would otherwise stay in the
  sound wherever the network is deaf to it (a loud low rumble under a
  CREPE bin's tone after 64 steps from a unit start)."""
  return std * jax.random.normal(key, (2, length // 2 + 1), jnp.float32)


def waveform(coefficients: jax.Array, scale: jax.Array, length: int,
             rms: float) -> jax.Array:
  """``[length]``: the scaled coefficients' inverse real FFT, at RMS ``rms``."""
  spectrum = (coefficients[0] + 1j * coefficients[1]) * scale
  x = jnp.fft.irfft(spectrum, n=length)
  return x * (rms / jnp.sqrt(jnp.mean(x ** 2) + _EPS))
