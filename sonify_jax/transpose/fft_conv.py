"""Fast transposes for the generic chain: FFT transposed convs, dense unpool.

The deconvnet's cost is its transposed convs. Taken directly (what
``jax.linear_transpose`` of a conv gives, and what Captum's backward does),
CREPE full's conv2 costs ``64 * 128 * 1024`` multiply-adds per sample per
map and conv1 ``512 * 1024 / 4``. A long kernel is cheaper through the FFT:
overlap-save blocks of ``N`` samples, each channel transformed once, and the
channels mixed per frequency bin by one matmul (``Cout * Cin`` complex
multiply-adds per bin, ``~(N/2 + 1) / (N - K + 1)`` bins per sample instead of
``K`` taps), so CREPE's convs take 20-50x fewer operations.

A strided, dilated conv transposes as ``s`` polyphase components of one
stride-1 convolution: output sample ``n = q s + p`` gathers tap ``j`` from
input frame ``q - u`` where ``j d = u s + p``, so all phases share the input
spectrum and differ only in their kernel; they come out as ``s * Cin``
channels and interleave back. Taps that never meet (samples the strided conv
never read) stay zero, as in the exact transpose.

Written here because neither ``jax.scipy.signal.fftconvolve`` nor any kept
library mixes channels per bin or splits strides into phases; the tests
check it against ``jax.linear_transpose`` of ``lax.conv_general_dilated``.

:func:`unpool` routes a max-pool's signal back through its switches with one
strided pad per window offset (dense, no scatter: XLA:CPU runs a scatter one
element at a time).
"""
import functools
import math
from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax.models import network as network_lib
from sonify_jax.transpose import direct_conv

# A conv transposes through the FFT from this many taps per phase on.
MIN_TAPS = 16
# A stride-1 conv's forward (the deconvnet's trace) goes through the FFT from
# this many input channels on: with fewer, the per-bin matmuls are too thin
# (CREPE's conv1, one channel: XLA's conv 0.33 s, the FFT 0.76 s; its conv2,
# 1024 channels: 2.63 s and 0.66 s, quiet, 2 s of audio).
MIN_FORWARD_CHANNELS = 16


class Spectrum(NamedTuple):
  """A conv's transpose in the frequency domain.

  freq: ``[N/2 + 1, s, C_in, C_out]`` spectra of the phase kernels.
  taps: ``K``, taps per phase (the overlap of the blocks).
  block: ``N``, the FFT size.
  """
  freq: jax.Array
  taps: int
  block: int


def taps_per_phase(layer: network_lib.Conv) -> int:
  return (layer.kernel_size - 1) * layer.dilation // layer.stride + 1


def uses_fft(layer) -> bool:
  """Whether ``layer``'s transpose goes through :func:`transposed_conv`."""
  return (isinstance(layer, network_lib.Conv)
          and taps_per_phase(layer) >= MIN_TAPS
          and min(layer.padding) >= 0)


def block_size(taps: int) -> int:
  """The FFT size for ``taps``-long phase kernels: the power of two at least
  four overlaps long (about as many bins as valid samples per block)."""
  return max(32, 1 << math.ceil(math.log2(4 * (taps - 1))))


def spectrum(layer: network_lib.Conv, kernel: jax.Array) -> Spectrum:
  """The phase kernels of ``kernel`` ``[k, C_in, C_out]`` and their
  spectra."""
  k, c_in, c_out = kernel.shape
  s, d = layer.stride, layer.dilation
  taps = taps_per_phase(layer)
  positions = np.arange(k) * d
  phased = jnp.zeros((taps, s, c_in, c_out), kernel.dtype)
  phased = phased.at[positions // s, positions % s].set(kernel)
  n = block_size(taps)
  return Spectrum(jnp.fft.rfft(phased, n=n, axis=0), taps, n)


def transposed_conv(layer: network_lib.Conv, spec: Spectrum, g: jax.Array,
                    input_length: int) -> jax.Array:
  """The transpose of ``layer`` (no bias) applied to ``g`` ``[B, T', C_out]``:
  ``[B, input_length, C_in]``."""
  batch, frames, _ = g.shape
  _, s, c_in, _ = spec.freq.shape
  left, right = layer.padding
  padded_length = input_length + left + right
  valid = spec.block - spec.taps + 1          # outputs per block
  outputs = -(-padded_length // s)            # per phase
  blocks = -(-outputs // valid)
  # Overlap-save: block b reads frames [b L - (K - 1), b L + L).
  g = jnp.pad(g, ((0, 0), (spec.taps - 1,
                           (blocks + 1) * valid - (spec.taps - 1) - frames),
                  (0, 0)))
  g = g.reshape(batch, blocks + 1, valid, g.shape[-1])
  segments = jnp.concatenate(
      [g[:, :blocks], g[:, 1:, :spec.taps - 1]], axis=2)
  freq = jnp.fft.rfft(segments, axis=2)       # [B, blocks, F, C_out]
  if spec.block <= DFT_MAX_BLOCK:
    # Mixed in real arithmetic (XLA's complex matmul runs slower than four
    # real ones: CREPE full's conv2 transpose 559 -> 424 ms).
    def mix(x, k):
      return jnp.einsum("bnfo,fpio->bnfpi", x, k)
    k_real, k_imag = spec.freq.real, spec.freq.imag
    real = mix(freq.real, k_real) - mix(freq.imag, k_imag)
    imag = mix(freq.real, k_imag) + mix(freq.imag, k_real)
    cos, sin = _inverse_dft(spec.block, spec.taps - 1)
    y = (jnp.einsum("bnfpi,ft->bntpi", real, cos) +
         jnp.einsum("bnfpi,ft->bntpi", imag, sin))
  else:
    mixed = jnp.einsum("bnfo,fpio->bnfpi", freq, spec.freq)
    y = jnp.fft.irfft(mixed, n=spec.block, axis=2)[:, :, spec.taps - 1:]
  y = y.reshape(batch, blocks * valid * s, c_in)  # q s + p interleaved
  return y[:, left:left + input_length]


# Up to this block size the inverse transform is a matmul with the inverse
# DFT's matrix (only the block's valid outputs): ~20x the FFT's operations,
# but at the matmul's rate and in the layout the next layer reads. CREPE
# full's conv2 transpose (1024 <- 128 channels, 189 frames of 128 samples,
# block 256): 711 -> 542 ms.
DFT_MAX_BLOCK = 256


@functools.lru_cache(maxsize=None)
def _inverse_dft(n: int, first: int) -> Tuple[np.ndarray, np.ndarray]:
  """``(cos, sin)`` ``[n // 2 + 1, n - first]``: outputs ``first..n-1`` of
  ``irfft(X, n)`` are ``Re X @ cos + Im X @ sin`` (float32)."""
  f = np.arange(n // 2 + 1)
  weight = np.where((f == 0) | (f == n // 2), 1.0, 2.0) / n
  angle = 2 * np.pi * np.outer(f, np.arange(first, n)) / n
  return ((weight[:, None] * np.cos(angle)).astype(np.float32),
          (-weight[:, None] * np.sin(angle)).astype(np.float32))


def forward_fits(layer, c_in: int, t_in: int) -> bool:
  """Whether :func:`conv` runs ``layer``'s forward on ``[t_in, c_in]``."""
  return (uses_fft(layer) and layer.stride == 1
          and c_in >= MIN_FORWARD_CHANNELS
          and not direct_conv.fits(layer, t_in, c_in))


def conv(layer: network_lib.Conv, spec: Spectrum, h: jax.Array,
         output_length: int) -> jax.Array:
  """``layer``'s conv (no bias) of ``h`` ``[B, T, C_in]`` through the FFT:
  the exact transpose of :func:`transposed_conv`, so the same overlap-save
  blocks, once per channel. ``[B, output_length, C_out]``."""
  g = jax.ShapeDtypeStruct((h.shape[0], output_length,
                            spec.freq.shape[3]), h.dtype)
  (y,) = jax.linear_transpose(
      lambda g_: transposed_conv(layer, spec, g_, h.shape[1]), g)(h)
  return y


def unpool(layer: network_lib.MaxPool, g: jax.Array, switches: jax.Array,
           input_length: int) -> jax.Array:
  """``g`` ``[B, T', C]`` at a max-pool's output, each value put back on the
  sample its window's switch picked: ``[B, input_length, C]`` (overlapping
  windows add up; samples no window read are zero)."""
  left, _ = layer.padding
  frames = g.shape[1]
  span = (frames - 1) * layer.stride + 1
  out = None
  for offset in range(layer.size):
    low = offset - left
    placed = jax.lax.pad(
        jnp.where(switches == offset, g, 0.0), jnp.zeros((), g.dtype),
        ((0, 0, 0), (low, input_length - low - span, layer.stride - 1),
         (0, 0, 0)))
    out = placed if out is None else out + placed
  return out


def mixed_bytes(layer: network_lib.Conv, c_in: int, c_out: int,
                input_length: int) -> Tuple[int, int]:
  """Float32 bytes of one map's spectra ``(input, output)`` inside
  :func:`transposed_conv`."""
  taps = taps_per_phase(layer)
  n = block_size(taps)
  bins = n // 2 + 1
  valid = n - taps + 1
  blocks = -(-(input_length + sum(layer.padding)) // layer.stride) // valid + 1
  return (8 * blocks * bins * c_out,
          8 * blocks * bins * layer.stride * c_in + 4 * blocks * n * c_in
          * layer.stride)
