"""Memory bounds of the transposed chain, and the output scaling.

The structured paths run maps in chunks whose intermediate memory stays
under :data:`CHUNK_BYTES` (one map of CREPE full's layer-1 signal for a
10 s clip is ~160 MB), and the atlas bounds the clips it traces at once by
:func:`trace_bytes`. Estimates come from the network's layer shapes
(``chain.layer_shapes``), with a safety factor of 2 for XLA's temporaries.
"""
from typing import Optional

import jax
import jax.numpy as jnp

# Upper bound on the intermediate memory of one chunk of maps.
CHUNK_BYTES = 1 << 30


def scale_to_peak(sonification: jax.Array, target_peak: jax.Array
                  ) -> jax.Array:
  """Unit peak, times ``target_peak``; an all-zero signal stays zero."""
  peak = jnp.max(jnp.abs(sonification))
  safe = jnp.where(peak > 0, peak, 1.0)
  return sonification / safe * target_peak


def _sizes(net, layer: int, length: int):
  from sonify_jax.deconv import chain  # pylint: disable=g-import-not-at-top
  return [t * c for t, c in chain.layer_shapes(net, layer, length)]


def per_map_bytes(net, layer: int, length: int) -> int:
  """Peak memory of one map going down: the largest layer's float32 input
  and output signals (and a long conv's spectra, ``fft_conv``), twice."""
  from sonify_jax.deconv import chain, fft_conv  # pylint: disable=g-import-not-at-top
  shapes = chain.layer_shapes(net, layer, length)
  peak = 1
  for layer_, (t_in, c_in), (t_out, c_out) in zip(
      net.layers_upto(layer), shapes[:-1], shapes[1:]):
    signals = 4 * (t_in * c_in + t_out * c_out)
    if fft_conv.uses_fft(layer_):
      signals += sum(fft_conv.mixed_bytes(layer_, c_in, c_out, t_in))
    peak = max(peak, signals)
  return 2 * peak


def trace_bytes(net, layer: int, length: int) -> int:
  """Peak memory of one clip's forward with its residuals: every layer's
  float32 output and an int8/bool residual, twice."""
  return 2 * 5 * max(sum(_sizes(net, layer, length)[1:]), 1)


def maps_per_chunk(net, layer: int, length: int, num_maps: int,
                   budget_bytes: Optional[int] = None) -> int:
  """How many maps of one clip go down the chain at once, within
  ``budget_bytes`` (default :data:`CHUNK_BYTES`)."""
  from sonify_jax.deconv import cnn12_fast  # pylint: disable=g-import-not-at-top
  budget = CHUNK_BYTES if budget_bytes is None else budget_bytes
  plan = cnn12_fast.plan_of(net)
  per_map = (cnn12_fast.per_map_bytes(plan, layer, length) if plan
             else per_map_bytes(net, layer, length))
  return int(max(1, min(num_maps, budget // per_map)))
