"""A long conv's transpose onto few channels: one matmul, then overlap-add.

CREPE's conv1 (512 taps, stride 4, one input channel) transposes from its
1024 channels onto the waveform. Through the FFT (:mod:`sonify_jax.
transpose.fft_conv`) every one of the 1024 channels is transformed and
every bin moved into a matmul's layout and back, to mix them down to 4
outputs per bin (4 phases of 1 channel): most of the time is spent moving
spectra. Here each output frame's contribution is one matmul, ``[T', C_out]
@ [C_out, k C_in]`` (a wide, well-shaped product), and the contributions
are added where they land, frame ``t``'s tap ``j`` on sample ``t s + j -
left`` (a sheared sum: reshapes and one reduction, no scatter). For CREPE
full's conv1 on 179 frames: 0.71 s against the FFT's 1.54 s, loaded
2-core machine, to float32 rounding.

Hand-written: XLA's own transposed conv onto one channel (a conv with one
output feature) runs at a few GFLOP/s here, and no kept library has this
form.
"""
import jax
import jax.numpy as jnp

from sonify_jax.models import network as network_lib
from sonify_jax.transpose import fft_conv

# Up to this many outputs per frame (stride x input channels).
MAX_OUTPUTS = 8
# From this many channels on: with fewer, the FFT has few channels to move
# and the sheared sum (k C_in values per frame) costs more. CREPE tiny's
# conv1 (128 channels), 8 maps of 2 s, quiet: 0.137-0.143 s/map by the FFT,
# 0.153-0.166 here; CREPE full's (1024): 1.10 -> 0.85 s/map at layer 2,
# 1.42 -> 1.17 at layer 6.
MIN_CHANNELS = 512


def fits(layer, c_in: int) -> bool:
  """Whether ``layer``'s transpose onto ``c_in`` channels runs here: in
  place of the FFT form (:func:`fft_conv.uses_fft`), undilated."""
  return (fft_conv.uses_fft(layer) and layer.dilation == 1
          and layer.features >= MIN_CHANNELS
          and layer.stride * c_in <= MAX_OUTPUTS)


def transposed_conv(layer: network_lib.Conv, kernel: jax.Array,
                    g: jax.Array, input_length: int) -> jax.Array:
  """The transpose of ``layer`` (no bias, ``kernel [k, C_in, C_out]``)
  applied to ``g [B, T', C_out]``: ``[B, input_length, C_in]``."""
  batch, frames, _ = g.shape
  k, c_in, _ = kernel.shape
  s = layer.stride
  per_frame = -(-k // s)                    # taps in steps of s: u
  kernel = jnp.pad(kernel, ((0, per_frame * s - k), (0, 0), (0, 0)))
  # z[b, t, u, p, c]: frame t's contribution to sample (t + u) s + p - left.
  z = jnp.einsum("bto,kco->btkc", g, kernel).reshape(
      batch, frames, per_frame, s * c_in)
  # Shear: row t moves right by t, so that column q sums t + u = q.
  z = jnp.pad(z, ((0, 0), (0, 0), (0, frames), (0, 0)))
  width = per_frame + frames
  z = z.reshape(batch, frames * width, s * c_in)[:, :frames * (width - 1)]
  y = z.reshape(batch, frames, width - 1, s * c_in).sum(axis=1)
  y = y.reshape(batch, (width - 1) * s, c_in)
  left = layer.padding[0]
  short = left + input_length - y.shape[1]
  if short > 0:
    y = jnp.pad(y, ((0, 0), (0, short), (0, 0)))
  return y[:, left:left + input_length]
