"""A long conv's transpose onto few channels: one matmul, then overlap-add.

CREPE's conv1 (512 taps, stride 4, one input channel) transposes from its
128-1024 channels onto the waveform. Through the FFT (:mod:`sonify_jax.
transpose.fft_conv`) every channel is transformed and every bin moved into
a matmul's layout and back, to mix them down to 4 outputs per bin (4 phases
of 1 channel): most of the time is spent moving spectra.

Here ``G`` consecutive frames go together: their contribution to the
``G + U - 1`` output steps they touch (``U = ceil(k / s)`` steps per frame,
``s C_in`` samples per step) is one row of a matmul, ``[T' / G, G C_out] @
[G C_out, n G s C_in]`` with ``n = ceil((G + U - 1) / G)``, whose matrix (the
kernel placed at each of the ``G`` offsets, zeros elsewhere; built once per
call by :func:`matrix`) holds ``n G / U`` times the kernel's multiply-adds;
the groups' rows are then added ``n`` deep at hop ``G``. With one frame per
row (``G = 1``) the rows would have to be added ``U`` deep, a sheared sum
that moved ~200 MB per call for CREPE tiny (a quarter of its sonify time).
CREPE tiny's conv1 (128 channels), 450 frames: 305 ms one frame per row,
62 ms with ``G = 16`` or 32; CREPE full's (1024 channels), 150 frames:
210 -> 158 ms with ``G = 8`` (larger groups' extra multiply-adds cost more
than they save there). To float32 rounding of the exact transpose.

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
# From this many channels on (CREPE tiny's conv1, 128 channels, 8 maps of 2 s:
# 0.166 -> 0.118 s/map at layer 3 against the FFT; with fewer channels the
# FFT has few to move, not measured).
MIN_CHANNELS = 128
# The group matrix's bound; groups of up to a quarter of a frame's steps.
MATRIX_BYTES = 32 << 20
MAX_GROUP = 32


def fits(layer, c_in: int) -> bool:
  """Whether ``layer``'s transpose onto ``c_in`` channels runs here: in
  place of the FFT form (:func:`fft_conv.uses_fft`), undilated."""
  return (fft_conv.uses_fft(layer) and layer.dilation == 1
          and layer.features >= MIN_CHANNELS
          and layer.stride * c_in <= MAX_OUTPUTS)


def _steps(layer: network_lib.Conv) -> int:
  """``U``: output steps (of ``stride`` samples) one frame touches."""
  return -(-layer.kernel_size // layer.stride)


def group_size(layer: network_lib.Conv, c_in: int) -> int:
  """``G``: frames per matmul row, the largest power of two up to
  ``min(MAX_GROUP, U / 4)`` whose matrix fits :data:`MATRIX_BYTES`."""
  steps, outputs = _steps(layer), layer.stride * c_in
  group = 1
  while (2 * group <= min(MAX_GROUP, steps // 4) and
         4 * _width(2 * group, steps) * outputs * 2 * group * layer.features
         <= MATRIX_BYTES):
    group *= 2
  return group


def _width(group: int, steps: int) -> int:
  """``n G``: output steps a group's row covers, whole groups."""
  return -(-(group + steps - 1) // group) * group


def row_values(layer: network_lib.Conv, frames: int, c_in: int) -> int:
  """Values the matmul writes for ``frames`` frames (per signal)."""
  group = group_size(layer, c_in)
  return (-(-frames // group) * _width(group, _steps(layer))
          * layer.stride * c_in)


def matrix(layer: network_lib.Conv, kernel: jax.Array) -> jax.Array:
  """``[G C_out, n G s C_in]``: row ``(g, o)`` holds the kernel's taps of
  channel ``o`` at the steps frame ``g`` of a group reaches (zeros
  elsewhere); ``kernel`` is ``[k, C_in, C_out]``."""
  k, c_in, c_out = kernel.shape
  s, steps = layer.stride, _steps(layer)
  group = group_size(layer, c_in)
  width = _width(group, steps)
  kernel = jnp.pad(kernel, ((0, steps * s - k), (0, 0), (0, 0)))
  # [C_out, U, s C_in]: output step u, phase p, input channel
  taps = kernel.reshape(steps, s * c_in, c_out).transpose(2, 0, 1)
  rows = [jnp.pad(taps, ((0, 0), (g, width - steps - g), (0, 0)))
          for g in range(group)]
  return jnp.stack(rows).reshape(group * c_out, width * s * c_in)


def transposed_conv(layer: network_lib.Conv, group_matrix: jax.Array,
                    g: jax.Array, input_length: int) -> jax.Array:
  """The transpose of ``layer`` (no bias; :func:`matrix` of its kernel)
  applied to ``g [B, T', C_out]``: ``[B, input_length, C_in]``."""
  batch, frames, c_out = g.shape
  s, steps = layer.stride, _steps(layer)
  group = group_matrix.shape[0] // c_out    # G, as matrix chose it
  width = _width(group, steps)
  deep = width // group                     # n: rows added at each step
  c_in = group_matrix.shape[1] // (width * s)
  rows = -(-frames // group)
  g = jnp.pad(g, ((0, 0), (0, rows * group - frames), (0, 0)))
  z = (g.reshape(batch, rows, group * c_out) @ group_matrix).reshape(
      batch, rows, deep, group, s * c_in)
  # Row r's block j lands on steps (r + j) G ..: n shifted adds.
  y = sum(jnp.pad(z[:, :, j], ((0, 0), (j, deep - 1 - j), (0, 0), (0, 0)))
          for j in range(deep))
  y = y.reshape(batch, -1, s * c_in)[:, :frames + steps - 1]
  y = y.reshape(batch, (frames + steps - 1) * s, c_in)
  left = layer.padding[0]
  short = left + input_length - y.shape[1]
  if short > 0:
    y = jnp.pad(y, ((0, 0), (0, short), (0, 0)))
  return y[:, left:left + input_length]
