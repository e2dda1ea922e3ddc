"""What a visualization maximises: one number per map for one waveform.

* a block's map: its activation averaged over time (``'mean'``), or the
  unit at the middle of the block's output (``'centre'``); a frame network
  (CREPE) reads the waveform as it runs, frames each prepared on its own
  (:func:`sonify_jax.models.framing.clip_block_outputs`), so the mean is over
  every frame's positions;
* the head (``layer='head'``): one output class's logit averaged over the
  frames (a frame head's frames, a conv head's score vectors). The logit,
  not the sigmoid's score: the score saturates at 1, where its gradient
  vanishes, while the logit orders the same frames the same way.
"""
from typing import Any, Callable, Union

import jax

from sonify_jax.errors import UserError
from sonify_jax.models import forward, framing
from sonify_jax.models import network as network_lib

Params = Any
Layer = Union[int, str]
HEAD = "head"
WHERE = ("mean", "centre")


def width(net: network_lib.Network, layer: Layer) -> int:
  """Maps of ``layer``: a block's channels, or the head's classes."""
  if layer == HEAD:
    return net.head.classes
  return net.channels[layer - 1]


def min_length(net: network_lib.Network, layer: Layer) -> int:
  """The shortest waveform the objective reads."""
  if layer == HEAD:
    return net.head_input_length()
  if framing.is_framed(net):
    return 1
  return net.min_input_length(layer)


def check(net: network_lib.Network, layer: Layer, where: str) -> None:
  if where not in WHERE:
    raise UserError(f"where must be one of {WHERE}, got {where!r}")
  if layer == HEAD:
    if net.head is None:
      raise UserError(f"{net.name} has no head to visualize: give a block "
                      f"number 1..{net.num_blocks}")
    return
  if not isinstance(layer, int):
    raise UserError(f"layer must be a block number or 'head', got {layer!r}")
  net.check_block(layer)


def of(net: network_lib.Network, layer: Layer, where: str = "mean"
       ) -> Callable[[Params, jax.Array], jax.Array]:
  """``f(params, x [T]) -> [maps]``, the quantity each map's visualization
  maximises."""
  if layer == HEAD:
    return _head(net)

  def block(params: Params, x: jax.Array) -> jax.Array:
    h = framing.clip_block_outputs(params, x[None], net, layer)[-1][0]
    if where == "mean":
      return h.mean(axis=0)
    return h[h.shape[0] // 2]
  return block


def _head(net: network_lib.Network):
  if isinstance(net.head, network_lib.FrameHead):
    def frame_head(params: Params, x: jax.Array) -> jax.Array:
      frames = framing.frames_of(net, x[None])[0]
      return forward.frame_head_logits(params, net, frames).mean(axis=0)
    return frame_head

  def conv_head(params: Params, x: jax.Array) -> jax.Array:
    return forward.conv_head_logits(params, net, x[None])[0].mean(axis=0)
  return conv_head
