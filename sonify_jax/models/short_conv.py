"""A conv over a signal no longer than its kernel, as one matmul.

CREPE reads 1024-sample frames and halves them at every block: its last
convs (64 taps, 'same' padding) see 32, 16 and 8 samples, so most of their
taps read padding. XLA:CPU runs such a conv at about 4 GFLOP/s here (CREPE
full's conv6 on a 2 s clip's 201 frames: 6.4 s), while the same linear map
written as one matmul with the kernel's banded matrix ``[T_in C_in, T_out
C_out]`` (each output sample's taps placed at the input samples they read;
the padding's products are never formed) runs at matmul speed (0.6 s with
every tap, less without the padding's). Its transpose is the transposed
matmul (:func:`transposed`).

Used by :func:`sonify_jax.models.forward.conv_linear` wherever :func:`fits`
holds, so training, tracking and every study run the same form, and by the
transposed chain (:mod:`sonify_jax.transpose.chain`) with the matrix built
once per request. Hand-written: XLA picks a conv's algorithm without
looking at how short the signal is, and no kept library does it for us.
"""
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax.models import network as network_lib
from sonify_jax.models import shapes

# The matrix is built on every call: keep it small next to the activations.
MAX_BYTES = 64 << 20


def fits(layer: network_lib.Conv, input_length: int, c_in: int) -> bool:
  """Whether ``layer`` on ``input_length`` samples of ``c_in`` channels
  runs as one matmul: the signal is no longer than the span its kernel
  reads (so the matrix has no more entries than the conv has products) and
  the matrix is at most :data:`MAX_BYTES`."""
  out_length = shapes.layer_output_length(layer, input_length)
  return (0 < input_length <= layer.span and out_length > 0
          and 4 * input_length * c_in * out_length * layer.features
          <= MAX_BYTES)


def _taps(layer: network_lib.Conv, input_length: int
          ) -> Tuple[np.ndarray, np.ndarray]:
  """``[T_in, T_out]`` tap index of input ``t`` in output ``u`` (clipped),
  and whether it is a tap at all."""
  out_length = shapes.layer_output_length(layer, input_length)
  offset = (np.arange(input_length)[:, None] + layer.padding[0]
            - layer.stride * np.arange(out_length)[None, :])
  tap, remainder = np.divmod(offset, layer.dilation)
  real = (remainder == 0) & (tap >= 0) & (tap < layer.kernel_size)
  return np.where(real, tap, 0), real


def matrix(layer: network_lib.Conv, kernel: jax.Array, input_length: int
           ) -> jax.Array:
  """``[T_in, C_in, T_out, C_out]``: the conv (no bias) as a linear map of
  its ``[T_in, C_in]`` input, for ``kernel [k, C_in, C_out]``."""
  tap, real = _taps(layer, input_length)
  m = jnp.where(real[:, :, None, None], kernel[tap], 0.0)  # [T_in, T_out, ...]
  return m.transpose(0, 2, 1, 3)


def apply(m: jax.Array, h: jax.Array) -> jax.Array:
  """``h [B, T_in, C_in]`` through ``m`` (:func:`matrix`): ``[B, T_out,
  C_out]``."""
  t_in, c_in, t_out, c_out = m.shape
  y = h.reshape(h.shape[0], t_in * c_in) @ m.reshape(t_in * c_in,
                                                     t_out * c_out)
  return y.reshape(h.shape[0], t_out, c_out)


def transposed(m: jax.Array, g: jax.Array) -> jax.Array:
  """The transpose of :func:`apply`: ``g [B, T_out, C_out]`` back through
  ``m`` to ``[B, T_in, C_in]``."""
  t_in, c_in, t_out, c_out = m.shape
  x = g.reshape(g.shape[0], t_out * c_out) @ m.reshape(
      t_in * c_in, t_out * c_out).T
  return x.reshape(g.shape[0], t_in, c_in)
