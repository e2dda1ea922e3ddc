"""The one shape rule: lengths, receptive fields and frame positions.

Every length a module needs (a block's output length, the shortest clip a
layer accepts, the input samples a frame reads, the static shapes of a
deconv chain) is computed here from a :class:`~sonify_jax.models.network.
Network`'s layers, by the rules of the layers themselves:

* a conv of span ``e = dilation (k - 1) + 1``, stride ``s`` and padding
  ``(l, r)`` turns ``T`` samples into ``floor((T + l + r - e) / s) + 1``;
* a max-pool of size ``e``, stride ``s`` and padding ``(l, r)`` the same
  (floor mode, PyTorch's ``ceil_mode=False``);
* a pad ``(l, r)`` into ``T + l + r``; the others keep ``T``.

Output position ``p`` of such a layer reads input positions
``p s - l .. p s - l + e - 1``, so frame ``t`` of a block reads an affine
range of input samples (:func:`frame_span`).

Padding a clip to a common length (to batch clips of different lengths)
means, everywhere in this project: *the unpadded clip's result on its own
samples, zero after them; the network's own padding is the network's and
stays*. :func:`valid_lengths` gives, per layer, how many of a padded clip's
positions the unpadded clip has there; :func:`sonify_jax.models.forward.
keep_valid` blanks the rest before each layer, so each layer's own padding
reads exactly what it reads on the unpadded clip.
"""
from typing import Any, List, Tuple

import jax.numpy as jnp

def _geometry(layer) -> Tuple[int, int, int, int]:
  """``(stride, left pad, right pad, extent)`` of a layer (its own
  ``geometry``: ``models/network.py`` owns the layer types, this module reads
  only what they say)."""
  return layer.geometry


def layer_output_length(layer, length: int) -> int:
  """Output length of one layer for an input of ``length`` (may be <= 0)."""
  stride, left, right, extent = _geometry(layer)
  padded = length + left + right
  if padded < extent:
    return min(0, padded - extent + 1)
  return (padded - extent) // stride + 1


def valid_lengths(net, lengths, upto_block: int) -> Tuple[Any, ...]:
  """Per layer of blocks ``1..upto_block``, the length of its *input* on
  each unpadded clip, and last the length of block ``upto_block``'s output:
  :func:`layer_output_length` on ``[S]`` int arrays (traceable; a clip too
  short for a layer has 0 positions there)."""
  out = [lengths]
  for layer in net.layers_upto(upto_block):
    stride, left, right, extent = _geometry(layer)
    padded = out[-1] + left + right
    out.append(jnp.maximum((padded - extent) // stride + 1, 0))
  return tuple(out)


def layer_lengths(net, length: int, upto_block: int) -> List[List[int]]:
  """Per block ``1..upto_block``, the output length after each of its
  layers (entries <= 0 once the clip is too short)."""
  out, t = [], length
  for block in net.blocks[:upto_block]:
    row = []
    for layer in block:
      t = layer_output_length(layer, t) if t > 0 else t
      row.append(t)
    out.append(row)
  return out


def output_length(net, length: int, block: int) -> int:
  """Frames of block ``block``'s output (<= 0: too short)."""
  return layer_lengths(net, length, block)[-1][-1]


def block_input_lengths(net, length: int, upto_block: int) -> List[int]:
  """The input length of each block ``1..upto_block``."""
  rows = layer_lengths(net, length, upto_block)
  return [length] + [row[-1] for row in rows[:-1]]


def min_input_length(net, block: int) -> int:
  """Shortest input whose block-``block`` output has at least one frame:
  the receptive field of one frame, less the network's own padding."""
  needed = 1
  for layer in reversed(net.layers_upto(block)):
    stride, left, right, extent = _geometry(layer)
    needed = max(1, (needed - 1) * stride + extent - left - right)
  return needed


def frame_span(net, block: int) -> Tuple[int, int, int]:
  """``(stride, first, last)``: frame ``t`` of block ``block`` reads input
  samples ``t * stride + first .. t * stride + last`` inclusive."""
  stride, first, last = 1, 0, 0
  for layer in reversed(net.layers_upto(block)):
    s, left, _, extent = _geometry(layer)
    stride, first, last = (stride * s, first * s - left,
                           last * s - left + extent - 1)
  return stride, first, last
