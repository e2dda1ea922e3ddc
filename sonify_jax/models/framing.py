"""How a frame network reads a clip: as the network itself runs.

A network with a :class:`~sonify_jax.models.network.FrameHead` (CREPE) is
trained on, and run by its own tools on, fixed-length frames: torchcrepe's
``predict`` (``pad=True``) zero-pads the clip by half a frame on each side,
cuts it into ``frame_length``-sample frames every hop (10 ms by default,
the hop of CREPE's paper and tools) and prepares each frame on its own (the
description's input convention: CREPE standardises each frame). Its convs
never see a whole clip, so what they compute on one (their 'same' padding
at the clip's ends instead of each frame's, one mean and deviation for the
whole clip) is another network: on 70 real notes, the clip-wide reading
shares only 10-65 % of each clip's three strongest maps with the framed one
(BUILD.md, "Frame networks").

Here: :func:`frames_of` (clip -> frames), :func:`overlap_add` (its exact
transpose, derived with ``jax.linear_transpose``, which is how a frame-level
sonification goes back to the clip), :func:`frame_count` (the rule for a
clip's own frames when it is zero-padded to a common length) and
:func:`clip_block_outputs` (every block's output on a clip as the network
runs, frames laid one after another in time, so that a map's strength, the
maximum or mean over time, is over every frame).
"""
from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax.models import forward
from sonify_jax.models import network as network_lib

Params = Any
FRAMES_PER_SECOND = 100   # CREPE's 10 ms step


def is_framed(net: network_lib.Network) -> bool:
  """Whether ``net`` reads clips as frames (it has a frame head)."""
  return isinstance(net.head, network_lib.FrameHead)


def frame_length(net: network_lib.Network) -> int:
  return net.head.frame_length


def hop(net: network_lib.Network) -> int:
  """Samples between frame starts: 10 ms at the network's rate."""
  return max(1, net.sample_rate // FRAMES_PER_SECOND)


def frame_count(net: network_lib.Network, length):
  """Frames of a clip of ``length`` samples (int or int array): one per
  hop, centred, the first on sample 0."""
  return 1 + length // hop(net)


def centred_frames(waveforms: jax.Array, length: int, step: int
                   ) -> jax.Array:
  """``[B, T]`` -> ``[B, 1 + T // step, length]``: the clip zero-padded by
  half a frame on each side, a frame every ``step`` samples (torchcrepe's
  ``preprocess``; numpy in, numpy out)."""
  xp = np if isinstance(waveforms, np.ndarray) else jnp
  padded = xp.pad(waveforms, ((0, 0), (length // 2, length // 2)))
  count = 1 + waveforms.shape[1] // step
  index = np.arange(count)[:, None] * step + np.arange(length)[None, :]
  return padded[:, index]


def frames_of(net: network_lib.Network, waveforms: jax.Array) -> jax.Array:
  """``[B, T]`` -> ``[B, F, frame_length]``: the frames ``net`` reads."""
  return centred_frames(waveforms, frame_length(net), hop(net))


def overlap_add(net: network_lib.Network, frames: jax.Array, length: int
                ) -> jax.Array:
  """``[B, F, frame_length]`` -> ``[B, length]``: the transpose of
  :func:`frames_of` (each frame added back where it was cut, the half
  frames of padding dropped)."""
  spec = jax.ShapeDtypeStruct((frames.shape[0], length), frames.dtype)
  return jax.linear_transpose(lambda x: frames_of(net, x), spec)(frames)[0]


def clip_block_outputs(params: Params, waveforms: jax.Array,
                       net: network_lib.Network,
                       upto_block: Optional[int] = None
                       ) -> Tuple[jax.Array, ...]:
  """Every block's output on ``[B, T]`` clips as the network runs: a frame
  network's ``[B, F * T_b, C]`` (its frames' outputs one after another),
  any other's ``forward.block_outputs``."""
  if not is_framed(net):
    return forward.block_outputs(params, waveforms, net, upto_block)
  frames = frames_of(net, waveforms)
  b, f, n = frames.shape
  outputs = forward.block_outputs(params, frames.reshape(b * f, n), net,
                                  upto_block)
  return tuple(o.reshape(b, f * o.shape[1], o.shape[2]) for o in outputs)
