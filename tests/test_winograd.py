"""Winograd F(m, r) correlation vs direct correlation, and its properties."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sonify_jax.transpose import cnn12_fast
from sonify_jax.transpose import winograd
from sonify_jax.models import ops
from sonify_jax.models.registry import get_network

# (m, r): the deconvnet's F(4, 3) and F(4, 5), and other tile shapes.
SHAPES = [(4, 3), (4, 5), (2, 3), (6, 3), (2, 7), (2, 5)]


def _correlate64(x, taps):
  """Direct valid correlation in float64: y[t] = sum_j x[t + j] @ taps[j]."""
  x, taps = np.asarray(x, np.float64), np.asarray(taps, np.float64)
  n_out = x.shape[1] - taps.shape[0] + 1
  return sum(np.einsum("btc,cd->btd", x[:, j:j + n_out], taps[j])
             for j in range(taps.shape[0]))


@pytest.mark.parametrize("m,r", SHAPES)
def test_transforms_are_exact_on_integers(m, r):
  # One tile, small integers: A^T [(G g) (.) (B^T d)] must equal the direct
  # correlation up to float64 rounding (the algorithm is exact in rationals).
  a_t, g, b_t = winograd.transform_matrices(m, r)
  rng = np.random.default_rng(m * 10 + r)
  d = rng.integers(-5, 6, m + r - 1).astype(np.float64)
  w = rng.integers(-5, 6, r).astype(np.float64)
  want = np.array([sum(d[i + j] * w[j] for j in range(r)) for i in range(m)])
  np.testing.assert_allclose(a_t @ ((g @ w) * (b_t @ d)), want, atol=1e-9)


@pytest.mark.parametrize("m,r", SHAPES)
@pytest.mark.parametrize("length", [23, 64, 101])
def test_correlate_matches_float64_reference(m, r, length):
  rng = np.random.default_rng(length + 7 * m + r)
  x = rng.standard_normal((2, length, 24)).astype(np.float32)
  taps = rng.standard_normal((r, 24, 40)).astype(np.float32)
  got = np.asarray(winograd.correlate(jnp.asarray(x), jnp.asarray(taps), m))
  want = _correlate64(x, taps)
  assert got.shape == want.shape == (2, length - r + 1, 40)
  # float32 rounding of a 24-channel sum: a few 1e-7 of the output's scale
  # for direct conv; the transforms may add a few times that.
  scale = np.abs(want).max()
  np.testing.assert_allclose(got / scale, want / scale, rtol=0, atol=1e-5)


def test_correlate_is_linear_and_shift_equivariant():
  rng = np.random.default_rng(0)
  x1, x2 = (jnp.asarray(rng.standard_normal((1, 80, 16)), jnp.float32)
            for _ in range(2))
  taps = jnp.asarray(rng.standard_normal((5, 16, 8)), jnp.float32)
  f = lambda x: winograd.correlate(x, taps, 4)
  np.testing.assert_allclose(f(2.0 * x1 - 3.0 * x2), 2.0 * f(x1) - 3.0 * f(x2),
                             rtol=0, atol=1e-4)
  # A shift by 3 samples (not a multiple of the tile) moves every tile
  # boundary, yet the output only shifts.
  np.testing.assert_allclose(f(x1[:, 3:]), f(x1)[:, 3:], rtol=0, atol=1e-4)


def test_too_many_points_is_refused():
  with pytest.raises(ValueError, match="points"):
    winograd.transform_matrices(8, 5)


def _tiny_params(arch, rng):
  return {f"block{b}": {"kernel": jnp.asarray(rng.standard_normal(
      (k, 1 if b == 1 else arch.channels[b - 2], c)), jnp.float32)}
          for b, (k, c) in enumerate(zip(arch.kernels, arch.channels), 1)}


def test_deconvnet_block_forms():
  # Blocks 2..layer-1 of the fast path: the pooled 7-tap block 2 in
  # polyphase form (F(5, 4) on 2C -> 2Cin), the 3- and 5-tap blocks by
  # Winograd on their unpooled input.
  arch = cnn12_fast.plan_of(get_network("cnn12_tiny"))
  kernels = cnn12_fast.transpose_kernels(
      _tiny_params(arch, np.random.default_rng(1)), 11, arch)
  assert kernels[0] is None and kernels[10] is None
  for block in range(2, 11):
    k, c = arch.kernels[block - 1], arch.channels[block - 1]
    cin = arch.channels[block - 2]
    if arch.is_pooled(block) and k in cnn12_fast.POLYPHASE_TILES:
      q = k // 2 + 1
      want = (cnn12_fast.POLYPHASE_TILES[k] + q - 1, 2 * cin, 2 * c)
    elif k in cnn12_fast.WINOGRAD_TILES:
      want = (cnn12_fast.WINOGRAD_TILES[k] + k - 1, cin, c)
    else:
      want = (k, c, cin)
    assert kernels[block - 1].shape == want, block
  assert kernels[1].shape[1:] == (2 * arch.channels[0], 2 * arch.channels[1])


@pytest.mark.parametrize("odd_length", [False, True])
@pytest.mark.parametrize("per_map_switches", [False, True])
def test_deconvnet_blocks_equal_unpool_then_adjoint(odd_length,
                                                    per_map_switches):
  # Whatever its form, each block of the fast path (given the prepared
  # kernel) equals max-unpool, ReLU, then the adjoint of the forward conv
  # (ops.conv1d_transpose), at pre-pool lengths 2N and 2N + 1.
  arch = cnn12_fast.plan_of(get_network("cnn12_tiny"))
  rng = np.random.default_rng(2)
  params = _tiny_params(arch, rng)
  kernels = cnn12_fast.transpose_kernels(params, 11, arch)
  n, maps = 37, 2
  for block in range(2, 11):
    kernel = params[f"block{block}"]["kernel"]
    k, c = kernel.shape[0], kernel.shape[2]
    pooled = arch.is_pooled(block)
    t_conv = 2 * n + int(odd_length) if pooled else n
    t_in = t_conv + k - 1
    h = jnp.asarray(rng.standard_normal((maps, n, c)), jnp.float32)
    switches = [None] * 11
    u = jax.nn.relu(h)
    if pooled:
      s = jnp.asarray(rng.integers(0, 2, (maps if per_map_switches else 1,
                                          n, c)), jnp.int8)
      switches[block - 1] = s
      u = ops.max_unpool(u, jnp.broadcast_to(s, h.shape), t_conv)
    lengths = [(0, 0)] * 11
    lengths[block - 1] = (t_in, t_conv)
    got = cnn12_fast._dense_block(  # pylint: disable=protected-access
        kernels, switches, h, block, lengths)
    want = ops.conv1d_transpose(u, kernel, t_in)
    assert got.shape == want.shape == (maps, t_in, kernel.shape[1])
    scale = float(jnp.abs(want).max())
    np.testing.assert_allclose(got / scale, want / scale, rtol=0, atol=1e-5,
                               err_msg=f"block {block}")
