"""CREPE's own pitch reading of a clip (what the network hears), in JAX.

As torchcrepe's ``predict`` (``pad=True``): the clip is zero-padded by half
a frame on each side, cut into 1024-sample frames every ``hop`` samples,
each frame standardised on its own (the description's input convention),
and the frame head gives 360 sigmoid scores, bin ``b`` at
``20 b + 1997.38`` cents above 10 Hz. The pitch of a frame is the
score-weighted mean of the cents of the 9 bins around its strongest (CREPE's
``to_local_average_cents``, without torchcrepe's random dither); its
periodicity is the strongest score.
"""
import functools
from typing import Any, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax.models import forward, framing
from sonify_jax.models.network import FrameHead, Network

CENTS_PER_BIN = 20.0
CENTS_OFFSET = 1997.3794084376191   # cents of bin 0 above 10 Hz
HALF_WINDOW = 4                     # bins each side of the strongest
# A frame is voiced where its strongest score reaches this (CREPE reports
# confidence; 0.5 is the middle of its sigmoid).
VOICED_THRESHOLD = 0.5


def bin_cents(classes: int) -> np.ndarray:
  return CENTS_PER_BIN * np.arange(classes) + CENTS_OFFSET


def head_cents(net: Network) -> np.ndarray:
  """Cents above 10 Hz of each class of the network's frame head: its own
  ``pitch_bins`` where the description gives them, else CREPE's (runs
  converted before descriptions carried them)."""
  bins = getattr(net.head, "pitch_bins", None)
  if bins is None:
    return bin_cents(net.head.classes)
  return hz_to_cents(bins.hz(net.head.classes))


def cents_to_hz(cents):
  return 10.0 * 2.0 ** (np.asarray(cents) / 1200.0)


def hz_to_cents(hz):
  return 1200.0 * np.log2(np.asarray(hz) / 10.0)


def frames(audio: np.ndarray, frame_length: int, hop: int) -> np.ndarray:
  """``[T]`` -> ``[1 + T // hop, frame_length]`` centred frames."""
  return framing.centred_frames(np.asarray(audio, np.float32)[None],
                                frame_length, hop)[0]


@functools.partial(jax.jit, static_argnames=("net",))
def _decode(params: Any, net: Network, batch: jax.Array
            ) -> Tuple[jax.Array, jax.Array]:
  scores = forward.frame_head_scores(params, net, batch)
  strongest = jnp.argmax(scores, axis=1)
  bins = jnp.arange(scores.shape[1])
  near = jnp.abs(bins[None, :] - strongest[:, None]) <= HALF_WINDOW
  weights = jnp.where(near, scores, 0.0)
  cents = (weights @ jnp.asarray(head_cents(net), jnp.float32)
           / jnp.maximum(weights.sum(1), 1e-12))
  return cents, scores.max(axis=1)


def pitch(params: Any, net: Network, audio: np.ndarray, hop: int,
          batch_frames: int = 128) -> Tuple[np.ndarray, np.ndarray]:
  """``(f0 Hz [F], periodicity [F])`` of a clip at ``net.sample_rate``;
  ``params`` holds the encoder's and the frame head's params."""
  if not isinstance(net.head, FrameHead):
    raise ValueError(f"{net.name} has no frame head to read a pitch from")
  cut = frames(audio, net.head.frame_length, hop)
  cents, periodicity = [], []
  for start in range(0, len(cut), batch_frames):
    chunk = cut[start:start + batch_frames]
    n = len(chunk)
    if n < batch_frames:  # one compiled shape
      chunk = np.concatenate([chunk, np.zeros((batch_frames - n,
                                               chunk.shape[1]), np.float32)])
    c, p = _decode(params, net, jnp.asarray(chunk))
    cents.append(np.asarray(c)[:n])
    periodicity.append(np.asarray(p)[:n])
  return cents_to_hz(np.concatenate(cents)), np.concatenate(periodicity)
