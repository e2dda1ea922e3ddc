"""Robustness transforms of a visualization: what may change without changing
what the map hears. A random time shift (a crop of a longer waveform), a
random gain and a little white noise. Never a resampling: for a pitch
network +-10 % is +-165 cents, about 8 CREPE bins (interpretability notes).
"""
import jax
import jax.numpy as jnp


def jitter_gain_noise(x: jax.Array, key: jax.Array, length: int,
                      gain_db: float, noise: float, rms: float) -> jax.Array:
  """A random ``length``-sample crop of ``[length + 2 * jitter]`` ``x``,
  times a gain uniform in +-``gain_db`` dB, plus white noise of standard
  deviation ``noise * rms``."""
  shift_key, gain_key, noise_key = jax.random.split(key, 3)
  jitter2 = x.shape[0] - length
  start = jax.random.randint(shift_key, (), 0, jitter2 + 1)
  crop = jax.lax.dynamic_slice(x, (start,), (length,))
  db = jax.random.uniform(gain_key, (), minval=-gain_db, maxval=gain_db)
  crop = crop * 10.0 ** (db / 20.0)
  return crop + noise * rms * jax.random.normal(noise_key, (length,))


def centre(x: jax.Array, length: int) -> jax.Array:
  """The middle ``length`` samples (the crop with no shift)."""
  jitter = (x.shape[0] - length) // 2
  return x[jitter:jitter + length]
