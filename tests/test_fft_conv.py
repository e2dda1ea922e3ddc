"""The fast transposes of the generic chain against the exact ones.

``fft_conv.transposed_conv`` (overlap-save FFT, strides as polyphase
components; small blocks inverted by the DFT's matrix),
``overlap_add.transposed_conv`` (groups of frames per matmul row, then a
few shifted adds), ``direct_conv.transposed_conv`` (XLA's conv) and
``fft_conv.unpool`` (strided pads) against
``jax.linear_transpose`` of the forward conv and max-pool, on strided,
dilated, padded and overlapping layers and odd lengths.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sonify_jax.transpose import chain, direct_conv, fft_conv, overlap_add
from sonify_jax.models import forward, shapes
from sonify_jax.models import network as network_lib


def _assert_equals_exact_transpose(layer, c_in, length, seed, transpose,
                                   atol=2e-6):
  """``transpose(weights, g)`` equals ``jax.linear_transpose`` of XLA's conv
  (``chain.transpose_layer``) on random weights and signal."""
  rng = np.random.default_rng(seed)
  weights = jnp.asarray(rng.standard_normal(
      (layer.kernel_size, c_in, layer.features)), jnp.float32)
  frames = shapes.layer_output_length(layer, length)
  g = jnp.asarray(rng.standard_normal((2, frames, layer.features)),
                  jnp.float32)
  want = chain.transpose_layer(layer, {"c": {"kernel": weights}}, g, None,
                               (length, c_in), "deconvnet")
  got = transpose(weights, g)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=atol * float(
      jnp.abs(want).max()))


@pytest.mark.parametrize("kernel,stride,dilation,padding,c_in,c_out,length", [
    (512, 4, 1, (254, 254), 1, 8, 4001),   # CREPE's conv1
    (64, 1, 1, (31, 32), 8, 6, 777),       # CREPE's conv2-6
    (33, 3, 2, (5, 0), 3, 4, 1000),        # dilation not coprime to stride
    (36, 2, 1, (0, 0), 2, 3, 257),         # sample 256 never read
    (40, 5, 3, (7, 9), 2, 2, 901),
])
def test_transposed_conv_equals_the_exact_transpose(
    kernel, stride, dilation, padding, c_in, c_out, length):
  layer = network_lib.Conv("c", c_out, kernel, stride=stride,
                           dilation=dilation, padding=padding)
  assert fft_conv.uses_fft(layer)
  _assert_equals_exact_transpose(
      layer, c_in, length, kernel, lambda w, g: fft_conv.transposed_conv(
          layer, fft_conv.spectrum(layer, w), g, length))


@pytest.mark.parametrize("kernel,stride,padding,c_in,length", [
    (512, 4, (254, 254), 1, 1024),   # CREPE's conv1 on a frame
    (36, 2, (0, 0), 2, 257),         # sample 256 never read
    (49, 3, (5, 0), 1, 100),         # taps not a multiple of the stride
    (16, 1, (7, 8), 3, 50),
    (64, 4, (0, 3), 2, 99),
])
def test_overlap_add_transpose_equals_the_exact_transpose(
    kernel, stride, padding, c_in, length):
  layer = network_lib.Conv("c", 512, kernel, stride=stride, padding=padding)
  assert overlap_add.fits(layer, c_in)
  assert not overlap_add.fits(layer, c_in=9)        # too many outputs
  # sums of up to 512 x 128 products: float32 rounding reaches ~3e-6
  _assert_equals_exact_transpose(
      layer, c_in, length, kernel + c_in,
      lambda w, g: overlap_add.transposed_conv(
          layer, overlap_add.matrix(layer, w), g, length), atol=1e-5)


@pytest.mark.parametrize("kernel,dilation,padding,c_in,length", [
    (64, 1, (31, 32), 24, 300),    # CREPE's conv2-6, on a long frame
    (33, 2, (5, 0), 16, 1000),     # dilated, one-sided padding
])
def test_fft_forward_conv_equals_xla_conv(kernel, dilation, padding, c_in,
                                          length, monkeypatch):
  layer = network_lib.Conv("c", 5, kernel, dilation=dilation,
                           padding=padding)
  # Few channel pairs run by XLA's conv (direct_conv); not here.
  monkeypatch.setattr(direct_conv, "MAX_CHANNEL_PAIRS", 0)
  assert fft_conv.forward_fits(layer, c_in, length)
  assert not fft_conv.forward_fits(layer, 1, length)   # thin: XLA's conv
  rng = np.random.default_rng(kernel + c_in)
  params = {"c": {"kernel": jnp.asarray(
      rng.standard_normal((kernel, c_in, 5)), jnp.float32),
                  "bias": jnp.zeros(5)}}
  h = jnp.asarray(rng.standard_normal((2, length, c_in)), jnp.float32)
  want = jax.lax.conv_general_dilated(
      h, params["c"]["kernel"], (1,), [padding], rhs_dilation=(dilation,),
      dimension_numbers=("NWC", "WIO", "NWC"))
  got = fft_conv.conv(layer, fft_conv.spectrum(layer, params["c"]["kernel"]),
                      h, want.shape[1])
  np.testing.assert_allclose(got, want, atol=2e-6 * float(
      jnp.abs(want).max()))
  # The network's forward takes it, and its gradient is the conv's.
  np.testing.assert_allclose(forward.conv(layer, params, h), got)
  loss = lambda conv, k: jnp.sum(jnp.tanh(conv(k)) ** 2)  # pylint: disable=unnecessary-lambda-assignment
  ours = jax.grad(loss, 1)(lambda k: forward.conv(
      layer, {"c": {"kernel": k, "bias": jnp.zeros(5)}}, h),
                           params["c"]["kernel"])
  xla = jax.grad(loss, 1)(lambda k: jax.lax.conv_general_dilated(
      h, k, (1,), [padding], rhs_dilation=(dilation,),
      dimension_numbers=("NWC", "WIO", "NWC")), params["c"]["kernel"])
  np.testing.assert_allclose(ours, xla, atol=1e-4 * float(
      jnp.abs(xla).max()))


@pytest.mark.parametrize("size,stride,padding,length", [
    (2, 2, (0, 0), 101), (2, 2, (0, 0), 100), (3, 2, (1, 1), 50),
    (4, 1, (0, 0), 33), (5, 3, (2, 1), 40)])
def test_unpool_equals_the_exact_transpose(size, stride, padding, length):
  layer = network_lib.MaxPool(size, stride, padding)
  rng = np.random.default_rng(length)
  h = jnp.asarray(rng.standard_normal((2, length, 3)), jnp.float32)
  pooled, switches = forward.max_pool(layer, h)
  g = jnp.asarray(rng.standard_normal(pooled.shape), jnp.float32)
  want = chain.transpose_layer(layer, {}, g, switches, (length, 3),
                               "deconvnet")
  got = fft_conv.unpool(layer, g, switches, length)
  np.testing.assert_allclose(got, want, atol=1e-6)


def test_transposed_conv_is_the_vjp_of_the_forward():
  """Independent of linear_transpose: <conv(x), g> == <x, conv^T(g)>."""
  layer = network_lib.Conv("c", 3, 48, stride=4, padding=(20, 27),
                           use_bias=False)
  rng = np.random.default_rng(7)
  weights = jnp.asarray(rng.standard_normal((48, 2, 3)), jnp.float32)
  x = jnp.asarray(rng.standard_normal((1, 555, 2)), jnp.float32)
  y = forward.conv(layer, {"c": {"kernel": weights}}, x)
  g = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
  back = fft_conv.transposed_conv(layer, fft_conv.spectrum(layer, weights),
                                  g, 555)
  forward_dot = float(jnp.vdot(y, g))
  np.testing.assert_allclose(float(jnp.vdot(x, back)), forward_dot,
                             rtol=1e-4)


@pytest.mark.parametrize("kernel,padding,c_in,c_out,length", [
    (64, (31, 32), 16, 128, 128),    # CREPE tiny's conv2
    (64, (0, 0), 5, 3, 70),          # no padding
    (33, (32, 0), 4, 6, 40),         # one-sided, as long as the kernel
])
def test_direct_transpose_equals_the_exact_transpose(kernel, padding, c_in,
                                                     c_out, length):
  layer = network_lib.Conv("c", c_out, kernel, padding=padding)
  assert direct_conv.fits(layer, length, c_in)
  assert not direct_conv.fits(layer, kernel - 1, c_in)   # shorter signal
  assert not direct_conv.fits(network_lib.Conv(
      "c", c_out, kernel, stride=2, padding=padding), length, c_in)
  _assert_equals_exact_transpose(
      layer, c_in, length, kernel + c_in,
      lambda w, g: direct_conv.transposed_conv(layer, w, g))
