"""The transposed chain of a frame network (CREPE), as the network runs.

A frame network reads a clip as centred frames, each prepared on its own
(:mod:`sonify_jax.models.framing`). Block ``L``'s output on a clip is then
every frame's output, and keeping map ``m`` keeps it in every frame: each
frame goes down the generic chain (:mod:`sonify_jax.transpose.chain`; its
switches, rule and fast forms), and the frames' signals go back to the clip
by the exact transpose of the framing, overlap-add. The clip's result is
scaled to unit peak times the clip's ``max|x|`` as for any network.

Padding to a common length (the one rule of :mod:`sonify_jax.models.
shapes`): a padded clip's first ``framing.frame_count(valid)`` frames are
the unpadded clip's own (the framing pads both with zeros); the later ones
are dropped, and the result is cropped to the clip's samples.
"""
import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp

from sonify_jax.transpose import budget, chain, rules
from sonify_jax.models import framing
from sonify_jax.models import network as network_lib

Params = Any


@functools.partial(jax.jit, static_argnames=("layer", "net", "scale", "rule"))
def sonify_clip_pairs(params: Params, waveforms: jax.Array,
                      valid_lengths: Optional[jax.Array], slots: jax.Array,
                      maps: jax.Array, layer: int, net: network_lib.Network,
                      scale: bool = True, rule: str = rules.DEFAULT_RULE
                      ) -> jax.Array:
  """``[S, T]`` clips, ``[P]`` (slot, map) pairs -> ``[P, T]``."""
  count, length = waveforms.shape
  frames = framing.frames_of(net, waveforms)
  per_clip, frame_len = frames.shape[1], frames.shape[2]
  traces_ = chain.traces(params, frames.reshape(count * per_clip, frame_len),
                         net, layer, rule)
  if valid_lengths is not None:
    valid_lengths = jnp.asarray(valid_lengths, jnp.int32)
    own = (jnp.arange(per_clip)[None, :]
           < framing.frame_count(net, valid_lengths)[:, None])
    traces_ = traces_._replace(top=jnp.where(
        own.reshape(-1)[:, None, None], traces_.top, 0.0))
  # Pair p becomes its clip's frames, each with map maps[p].
  frame_slots = (slots[:, None] * per_clip
                 + jnp.arange(per_clip)[None, :]).reshape(-1)
  frame_maps = jnp.repeat(maps, per_clip)
  chunk = budget.maps_per_chunk(
      chain.per_map_bytes(net, layer, frame_len), frame_maps.shape[0])
  down = chain.sonify_pairs(params, traces_, frame_slots, frame_maps, net,
                            layer, frame_len, rule, chunk, scale=False)
  out = framing.overlap_add(
      net, down.reshape(maps.shape[0], per_clip, frame_len), length)
  if valid_lengths is not None:
    inside = jnp.arange(length)[None, :] < valid_lengths[slots][:, None]
    out = jnp.where(inside, out, 0.0)
  if not scale:
    return out
  peaks = jnp.max(jnp.abs(waveforms), axis=1)[slots]
  return jax.vmap(budget.scale_to_peak)(out, peaks)


def sonify(params: Params, waveforms: jax.Array, layer: int,
           maps: jax.Array, net: network_lib.Network, scale: bool = True,
           rule: str = rules.DEFAULT_RULE, reference: bool = False
           ) -> jax.Array:
  """Every map of ``maps`` on every clip: ``[clips, maps, time]``;
  ``reference``: each frame by the plain dense chain
  (``chain.reference``)."""
  count, length = waveforms.shape
  if not reference:
    slots = jnp.repeat(jnp.arange(count), maps.shape[0])
    out = sonify_clip_pairs(params, waveforms, None, slots,
                            jnp.tile(maps, count), layer, net, scale, rule)
    return out.reshape(count, maps.shape[0], length)
  frames = framing.frames_of(net, waveforms)
  per_clip, frame_len = frames.shape[1], frames.shape[2]
  down = chain.reference(params, frames.reshape(-1, frame_len), layer, maps,
                         net, scale=False, rule=rule)   # [S F, maps, N]
  down = down.reshape(count, per_clip, maps.shape[0], frame_len)
  out = framing.overlap_add(
      net, down.transpose(0, 2, 1, 3).reshape(-1, per_clip, frame_len),
      length).reshape(count, maps.shape[0], length)
  if not scale:
    return out
  peaks = jnp.max(jnp.abs(waveforms), axis=1)
  return jax.vmap(jax.vmap(budget.scale_to_peak, (0, None)))(out, peaks)


def trace_bytes(net: network_lib.Network, layer: int, length: int) -> int:
  """One clip's forward with its residuals: its frames'."""
  return (int(framing.frame_count(net, length))
          * chain.trace_bytes(net, layer, framing.frame_length(net)))
