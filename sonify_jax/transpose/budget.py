"""Memory bounds of the transposed chain, and the output scaling.

The structured paths run maps in chunks whose intermediate memory stays
under :data:`CHUNK_BYTES` (one map of CREPE full's layer-1 signal for a
10 s clip is ~160 MB), and the atlas bounds the clips it traces at once by
``deconvnet.trace_bytes``. The estimates are each path's own
(``chain.per_map_bytes`` / ``chain.trace_bytes`` from the network's layer
shapes, ``cnn12_fast.per_map_bytes`` / ``cnn12_fast.trace_bytes`` from its
plan), with a safety factor of 2 for XLA's temporaries; this module only
turns one into a chunk size, so it imports neither path.
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


def maps_per_chunk(per_map: int, num_maps: int,
                   budget_bytes: Optional[int] = None) -> int:
  """How many maps of one clip go down a chain at once when one map needs
  ``per_map`` bytes (the path's own estimate: ``chain.per_map_bytes`` or
  ``cnn12_fast.per_map_bytes``), within ``budget_bytes`` (default
  :data:`CHUNK_BYTES`)."""
  budget = CHUNK_BYTES if budget_bytes is None else budget_bytes
  return int(max(1, min(num_maps, budget // max(int(per_map), 1))))
