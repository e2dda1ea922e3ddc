"""Narrow long convs by XLA's own conv, in both directions.

For a long (FFT-form, :mod:`sonify_jax.transpose.fft_conv`) stride-1 conv
with few channel pairs, XLA's conv is faster than the FFT, which transforms
every channel and moves every bin into a matmul's layout and back. A 64-tap
conv's transpose, ``[B, T, C_out] -> [B, T, C_in]``, 2-core CPU, ms (FFT /
XLA): T 128, 16 -> 128 channels, B 1519 (CREPE tiny's conv2): 603 / 210;
T 64, 16 -> 16, B 1519: 81 / 24; T 64, 128 -> 128, B 200: 110 / 89; but
T 128, 128 -> 1024, B 200 (CREPE full's conv2): 730 / 1366, and on signals
shorter than the kernel XLA's conv runs at a few GFLOP/s (T 32: 109 / 3332).

The transpose is written as the conv it is (the kernel flipped and its
channel axes swapped, on the signal padded by ``k - 1`` less the forward's
padding): the same conv through ``jax.linear_transpose`` of the forward ran
12x slower here.

Hand-written: no kept library chooses between these forms.
"""
import jax
import jax.numpy as jnp

from sonify_jax.models import network as network_lib

# At most this many (input, output) channel pairs.
MAX_CHANNEL_PAIRS = 128 * 128


def fits(layer, t_in: int, c_in: int) -> bool:
  """Whether XLA's conv runs ``layer`` on ``[t_in, c_in]`` (and its
  transpose) instead of the FFT: stride 1, undilated, a signal at least as
  long as the kernel, at most :data:`MAX_CHANNEL_PAIRS` channel pairs."""
  return (isinstance(layer, network_lib.Conv) and layer.stride == 1
          and layer.dilation == 1 and t_in >= layer.kernel_size
          and c_in * layer.features <= MAX_CHANNEL_PAIRS
          and max(layer.padding) < layer.kernel_size)


def transposed_conv(layer: network_lib.Conv, kernel: jax.Array,
                    g: jax.Array) -> jax.Array:
  """The transpose of ``layer`` (no bias, ``kernel [k, C_in, C_out]``) on
  ``g [B, T', C_out]``: ``[B, T, C_in]``, ``T`` the forward's input
  length."""
  k = layer.kernel_size
  left, right = layer.padding
  return jax.lax.conv_general_dilated(
      g, jnp.swapaxes(kernel[::-1], 1, 2), window_strides=(1,),
      padding=[(k - 1 - left, k - 1 - right)],
      dimension_numbers=("NWC", "WIO", "NWC"))
