"""models/short_conv: a conv over a signal no longer than its kernel, as one
matmul, equals XLA's conv; its transpose (what the deconvnet's chain runs)
equals ``jax.linear_transpose`` of XLA's conv; and the forward picks it
exactly where the signal is no longer than the kernel's span."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sonify_jax.models import forward, short_conv
from sonify_jax.models import network as network_lib


def _xla(layer, x, kernel):
  return jax.lax.conv_general_dilated(
      x, kernel, (layer.stride,), [layer.padding],
      rhs_dilation=(layer.dilation,), dimension_numbers=("NWC", "WIO", "NWC"))


@pytest.mark.parametrize("kernel,stride,dilation,padding,length,c_in,c_out", [
    (64, 1, 1, (31, 32), 8, 3, 5),     # CREPE's conv6 shape, scaled down
    (64, 1, 1, (31, 32), 64, 2, 2),    # as long as the kernel
    (9, 2, 3, (5, 7), 20, 2, 3),       # strided, dilated, uneven padding
    (16, 4, 1, (6, 6), 16, 1, 4),      # stride 4 from one channel
    (5, 1, 1, (0, 0), 5, 2, 2),        # VALID: one output sample
])
def test_matmul_equals_xla_conv_and_its_transpose(kernel, stride, dilation,
                                                  padding, length, c_in,
                                                  c_out):
  layer = network_lib.Conv("c", c_out, kernel, stride, dilation, padding)
  assert short_conv.fits(layer, length, c_in)
  rng = np.random.default_rng(kernel + length)
  x = jnp.asarray(rng.standard_normal((3, length, c_in)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((kernel, c_in, c_out)), jnp.float32)
  ref = _xla(layer, x, w)
  m = short_conv.matrix(layer, w, length)
  np.testing.assert_allclose(short_conv.apply(m, x), ref, rtol=1e-5,
                             atol=1e-5 * float(jnp.abs(ref).max()))
  g = jnp.asarray(rng.standard_normal(ref.shape), jnp.float32)
  (want,) = jax.linear_transpose(lambda h: _xla(layer, h, w), x)(g)
  got = short_conv.transposed(m, g)
  np.testing.assert_allclose(got, want, rtol=1e-5,
                             atol=1e-5 * float(jnp.abs(want).max()))


def test_forward_uses_the_matmul_exactly_where_the_signal_is_short():
  layer = network_lib.Conv("c", 4, 64, padding=(31, 32))
  assert short_conv.fits(layer, 64, 8)           # span 64: as long
  assert not short_conv.fits(layer, 65, 8)       # longer: XLA's conv
  # CREPE full's conv4 (128 -> 128 channels on 32 samples): 64 MiB, fits;
  # its conv3 on 64 samples would be 256 MiB: XLA's conv.
  crepe4 = network_lib.Conv("c", 128, 64, padding=(31, 32))
  assert short_conv.fits(crepe4, 32, 128)
  assert not short_conv.fits(crepe4, 64, 128)
  params = {"c": {"kernel": jnp.ones((64, 8, 4)), "bias": jnp.zeros(4)}}
  for length, matmuls in ((64, 1), (65, 0)):
    text = jax.jit(lambda h: forward.conv(layer, params, h)).lower(
        jnp.ones((2, length, 8))).as_text()
    assert text.count("stablehlo.convolution") == 1 - matmuls
    assert text.count("stablehlo.dot_general") == matmuls
