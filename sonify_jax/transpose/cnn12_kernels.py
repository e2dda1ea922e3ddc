"""The array kernels of the CNN12 fast path (``transpose/cnn12_fast.py``).

Each is one transposed step of a block of CNN12's pattern on arrays, with
no knowledge of the plan or of batching: a dense transposed conv (XLA or
Winograd), the top block's single-channel transposed conv, the fused
ReLU + unpool through the forward switches, block 1's polyphase transpose
to the waveform, and the pooled 7-tap block in polyphase form by Winograd
F(5, 4). ``cnn12_fast`` chooses and chains them.
"""
from typing import Optional

import jax
import jax.numpy as jnp

from sonify_jax.transpose import winograd
from sonify_jax.models import ops


def dense_transpose(h: jax.Array, kernel: jax.Array, k: int,
                     tile: Optional[int], input_length: int) -> jax.Array:
  """Dense transposed conv ``[M, T, C] -> [M, input_length, Cin]``.

  A full correlation with the flipped taps (``kernel``, see
  :func:`transpose_kernels`): by Winograd F(tile, k) given a ``tile``
  (1.3-1.8x faster than XLA's conv for 128-1024 channels), else as an XLA
  conv, the form XLA's CPU convolution runs fastest (measured against
  ``jax.linear_transpose``).
  """
  pad_right = input_length - h.shape[1]
  if tile:
    padded = jnp.pad(h, ((0, 0), (k - 1, pad_right), (0, 0)))
    return winograd.correlate_transformed(padded, kernel, tile, k)
  return jax.lax.conv_general_dilated(
      h, kernel, window_strides=(1,), padding=[(k - 1, pad_right)],
      dimension_numbers=ops._DIMENSION_NUMBERS)  # pylint: disable=protected-access


def single_channel_transpose(u: jax.Array, kernel_column: jax.Array,
                              input_length: int) -> jax.Array:
  """Transposed conv of a signal that lives in a single channel.

  Where the chain starts only the kept map is non-zero, so the top block's
  transposed conv is a sum of ``k`` shifted outer products (rank 1 per tap):
  ``k * Cin`` multiply-adds per sample instead of ``k * C * Cin``. XLA fuses
  the shifted products into one pass over the output.

  Args:
    u: ``[T_conv]`` the kept map after unpooling and ReLU.
    kernel_column: ``[k, Cin]`` the map's own column ``kernel[:, :, m]``.
    input_length: ``T_conv + k - 1``.
  Returns:
    ``[input_length, Cin]``.
  """
  k = kernel_column.shape[0]
  out = 0.0
  for j in range(k):
    # x[t + j] += y[t] * K[j]: the adjoint of the VALID cross-correlation.
    shifted = jnp.pad(u, (j, input_length - u.shape[0] - j))
    out = out + shifted[:, None] * kernel_column[j][None, :]
  return out


def relu_unpool(h: jax.Array, switches: jax.Array, length: int) -> jax.Array:
  """``max_unpool(relu(h))`` as one fused elementwise pass.

  Sample ``t`` of the output takes pooled value ``t // 2`` where that value's
  switch equals ``t % 2`` (ReLU first: unpooling only adds zeros).

  Args:
    h: ``[M, N, C]``.
    switches: ``[1, N, C]`` or ``[M, N, C]`` int8 in {0, 1}.
    length: the pre-pool length, ``2N`` or ``2N + 1``.
  Returns:
    ``[M, length, C]``.
  """
  m, n, c = h.shape
  doubled = jnp.broadcast_to(jax.nn.relu(h)[:, :, None, :], (m, n, 2, c))
  parity = jnp.arange(2, dtype=switches.dtype)[None, None, :, None]
  routed = jnp.where(switches[:, :, None, :] == parity, doubled, 0.0)
  return jnp.pad(routed.reshape(m, 2 * n, c),
                 ((0, 0), (0, length - 2 * n), (0, 0)))


def unpool_transpose_to_waveform(h: jax.Array, switches: jax.Array,
                                  kernel: jax.Array,
                                  input_length: int) -> jax.Array:
  """Block 1's max-unpool + transposed conv (``C -> 1`` channel), polyphase.

  The unpooled signal is zero at half its positions, and a conv with one
  output channel is a poor fit for XLA's conv. So every pooled value is
  contracted at the pooled length with the taps it reaches, which depend on
  its switch: ``h @ W0 + (h * s) @ (W1 - W0)`` (``[N, C] @ [C, 2q]``, s the
  0/1 switch), and the few resulting columns are overlap-added at the pooled
  rate and interleaved into even and odd output samples. Neither the
  half-zero unpooled signal nor a ``2C``-channel parity split is built (the
  split, ``[N, 2C] @ [2C, 2q]``, ran at half this speed on CPU).

  Args:
    h: ``[M, N, C]`` pooled-domain signal, already ReLU'd.
    switches: ``[1, N, C]`` or ``[M, N, C]`` int8 in {0, 1}.
    kernel: ``[k, 1, C]``.
    input_length: ``T_conv + k - 1`` with ``T_conv`` in {2N, 2N + 1}.
  Returns:
    ``[M, input_length, 1]``.
  """
  m, n, _ = h.shape
  k = kernel.shape[0]
  q = k // 2 + 1
  # taps[j + 1] is tap j; taps -1 and >= k are zero.
  taps = jnp.pad(kernel[:, 0, :], ((1, 2 * q + 1 - k), (0, 0)))  # [2q+2, C]
  tap = lambda j: taps[j + 1]
  # A value at pooled n with switch s sits at 2n + s and reaches output
  # 2(n + o) + e through tap 2o + e - s. Columns (o, e):
  first = jnp.stack([tap(2 * o + e) for o in range(q) for e in (0, 1)],
                    axis=1)  # [C, 2q], switch 0
  second = jnp.stack([tap(2 * o + e - 1) for o in range(q) for e in (0, 1)],
                     axis=1)  # [C, 2q], switch 1
  odd = switches.astype(h.dtype)
  y = (h @ first + (h * odd) @ (second - first)).reshape(m, n, q, 2)
  rows = -(-input_length // 2)
  phases = sum(jnp.pad(y[:, :, o], ((0, 0), (o, rows - n - o), (0, 0)))
               for o in range(q))  # [M, rows, 2]
  return phases.reshape(m, 2 * rows)[:, :input_length, None]


def polyphase_taps(kernel: jax.Array) -> jax.Array:
  """A pooled block's transposed conv at the pooled rate: its taps.

  A value at pooled ``n`` with switch ``s`` sits at ``2n + s`` and reaches
  output ``2(n + o) + e`` through tap ``2o + e - s``. So the even and odd
  outputs (``2 Cin`` channels) are a ``q = k // 2 + 1``-tap conv of the
  pooled signal split by switch, ``[h (1 - s), h s]`` (``2C`` channels).

  Args:
    kernel: ``[k, Cin, C]`` the block's conv kernel.
  Returns:
    ``[q, 2 Cin, 2 C]`` output-major correlation taps, offset ``q - 1``
    first (a correlation reads the oldest pooled value first): block
    ``(e, s)`` of offset ``o`` is tap ``2o + e - s``, zero outside
    ``0..k-1``.
  """
  k, cin, c = kernel.shape
  zero = jnp.zeros((cin, c), kernel.dtype)
  tap = lambda j: kernel[j] if 0 <= j < k else zero
  offsets = [jnp.block([[tap(2 * o + e - s) for s in (0, 1)] for e in (0, 1)])
             for o in range(k // 2 + 1)]
  return jnp.stack(offsets[::-1])


def unpool_transpose_polyphase(h: jax.Array, switches: jax.Array,
                                kernel_hat: jax.Array, k: int, tile: int,
                                input_length: int) -> jax.Array:
  """A pooled block's ReLU, max-unpool and transposed conv at the pooled rate.

  The unpooled signal is never built: the pooled signal, split by switch
  into ``2C`` channels, is correlated by Winograd F(tile, q) with
  :func:`polyphase_taps`, and the
  ``2 Cin`` output channels are interleaved into even and odd samples.

  Args:
    h: ``[M, N, C]`` pooled-domain signal, before ReLU.
    switches: ``[1, N, C]`` or ``[M, N, C]`` int8 in {0, 1}.
    kernel_hat: ``[alpha, 2 Cin, 2 C]`` transformed polyphase taps
      (:func:`transpose_kernels`).
    k: the block's kernel size.
    tile: outputs per Winograd tile.
    input_length: ``T_conv + k - 1`` with ``T_conv`` in {2N, 2N + 1}.
  Returns:
    ``[M, input_length, Cin]``.
  """
  maps, n, _ = h.shape
  q = k // 2 + 1
  h = jax.nn.relu(h)
  split = jnp.concatenate([jnp.where(switches == 0, h, 0.0),
                           jnp.where(switches == 1, h, 0.0)], axis=-1)
  rows = -(-input_length // 2)
  # Output row r gets pooled values r - q + 1 .. r: q - 1 zeros in front.
  split = jnp.pad(split, ((0, 0), (q - 1, rows - n), (0, 0)))
  y = winograd.correlate_transformed(split, kernel_hat, tile, q)
  return y.reshape(maps, 2 * rows, -1)[:, :input_length]
