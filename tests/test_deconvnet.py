"""deconvnet.sonify against independent facts.

* a second formulation: the VJP of an independently written forward pass
  (lax conv + flax max_pool) whose ReLU backward is "ReLU of the incoming
  signal", seeded with the kept feature map;
* shift-equivariance by multiples of the total stride;
* a planted band-pass filter in block 1 and a two-tone input;
* request validation (clear errors, nothing computed);
* scaling, dead maps, batching, and fast == reference chains.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sonify_jax import deconvnet
from sonify_jax.transpose import budget, cnn12_fast, cnn12_kernels
from sonify_jax.errors import UserError
from sonify_jax.analysis.core import common
from sonify_jax.models import build_encoder, network
from sonify_jax.models.registry import CNN12 as CNN12_ARCH
from sonify_jax.models.registry import CNN12_TINY

TINY = CNN12_TINY
TINY_PLAN = cnn12_fast.plan_of(TINY)
SR = 8000


def _init(arch, seed=0, bias_scale=0.05):
  """Seeded CNN12 params built in numpy (LeCun-normal kernels).

  Small random biases keep the deep maps of the narrow model alive.
  """
  rng = np.random.default_rng(seed)
  params = {}
  cin = 1
  for block, (k, c) in enumerate(zip(cnn12_fast.plan_of(arch).kernels,
                                     arch.channels), start=1):
    kernel = rng.standard_normal((k, cin, c)) / np.sqrt(k * cin)
    params[f"block{block}"] = {
        "kernel": kernel.astype(np.float32),
        "bias": (bias_scale * rng.standard_normal(c)).astype(np.float32)}
    cin = c
  params["embedding"] = {
      "kernel": np.zeros((cin, arch.embed_dim), np.float32),
      "bias": np.zeros((arch.embed_dim,), np.float32)}
  return params


@pytest.fixture(scope="module")
def tiny_params():
  return _init(TINY)


def _clips(n, length, seed=0):
  return np.random.default_rng(seed).standard_normal(
      (n, length)).astype(np.float32)


# --- (a) the independent formulation -------------------------------------


@jax.custom_vjp
def _deconv_relu(x):
  return jax.nn.relu(x)


def _deconv_relu_fwd(x):
  return jax.nn.relu(x), None


def _deconv_relu_bwd(_, g):
  # The deconvnet rectifies the signal coming down, not the forward mask.
  return (jax.nn.relu(g),)


_deconv_relu.defvjp(_deconv_relu_fwd, _deconv_relu_bwd)


def _forward_independent(params, x, layer, num_pooled=8):
  """Blocks 1..layer with lax conv and flax's max_pool; x: [T] -> [T_L, C]."""
  h = x[None, :, None]
  for block in range(1, layer + 1):
    p = params[f"block{block}"]
    h = jax.lax.conv_general_dilated(
        h, jnp.asarray(p["kernel"]), (1,), "VALID",
        dimension_numbers=("NWC", "WIO", "NWC")) + p["bias"]
    h = _deconv_relu(h)
    if block <= num_pooled:
      h = nn.max_pool(h, window_shape=(2,), strides=(2,), padding="VALID")
  return h[0]


@jax.jit
def _vjp_sonify(params, x, maps):
  """Unscaled sonifications of maps [M] as VJPs: [M, T] (layer from params)."""
  layer = len(params)

  def one_map(m):
    out, pullback = jax.vjp(
        lambda v: _forward_independent(params, v, layer), x)
    seed = jnp.zeros_like(out).at[:, m].set(out[:, m])
    return pullback(seed)[0]

  return jax.vmap(one_map)(maps)


def _vjp_reference(params, x, layer, maps):
  """Blocks 1..layer only, so the jit'd reference sees the layer statically."""
  sub = {f"block{b}": params[f"block{b}"] for b in range(1, layer + 1)}
  return np.asarray(_vjp_sonify(sub, jnp.asarray(x), jnp.asarray(maps)))


def _assert_close(got, want, rtol=2e-5):
  scale = max(np.max(np.abs(want)), 1e-30)
  np.testing.assert_allclose(got / scale, want / scale, atol=rtol, rtol=0)


def _assert_fast_equals_reference(params, x, layer, maps):
  """The fast path's unscaled sonifications equal the plain chain's (which
  are non-zero); returns the reference."""
  fast = np.asarray(deconvnet.sonify(params, x, layer, maps, TINY,
                                     scale=False))
  ref = np.asarray(deconvnet.sonify(params, x, layer, maps, TINY,
                                    scale=False, impl="reference"))
  assert np.max(np.abs(ref)) > 0
  _assert_close(fast, ref)
  return ref


# Layers 8 and 9 (the last pool, the first block after it) ~20 s each on 2
# cores: slow; 5 (pooled) and 11 (the last) cover both kinds of block.
@pytest.mark.parametrize("layer,length", [
    (1, 257), (2, 301), (5, 611),
    pytest.param(8, 1203, marks=pytest.mark.slow),
    pytest.param(9, 1501, marks=pytest.mark.slow), (11, 2499)])
def test_matches_vjp_formulation_tiny(tiny_params, layer, length):
  """Both the fast path and the plain chain equal the VJP formulation."""
  x = _clips(2, length, seed=layer)
  width = TINY.channels[layer - 1]
  maps = np.array([0, width // 2, width - 1])
  want = np.stack([_vjp_reference(tiny_params, clip, layer, maps)
                   for clip in x])
  assert np.max(np.abs(want)) > 0
  for impl in deconvnet.IMPLEMENTATIONS:
    got = np.asarray(deconvnet.sonify(tiny_params, x, layer, maps, TINY,
                                      scale=False, impl=impl))
    assert got.shape == (2, len(maps), length)
    _assert_close(got, want)


def test_matches_vjp_formulation_full_cnn12():
  params = _init(CNN12_ARCH, seed=3, bias_scale=0.0)
  # The numpy-built tree has exactly the shapes of the Flax module's params.
  shapes = jax.eval_shape(build_encoder("cnn12").init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 2400)))["params"]
  assert jax.tree_util.tree_map(lambda a: a.shape, shapes) == \
      jax.tree_util.tree_map(np.shape, params)
  length = 1001  # odd; layer 6's receptive field is 258 samples.
  x = _clips(1, length, seed=7)
  maps = np.array([5, 200])
  want = _vjp_reference(params, x[0], 6, maps)
  got = np.asarray(deconvnet.sonify(params, x, 6, maps, scale=False))
  _assert_close(got[0], want)


# --- fast path == plain chain ---------------------------------------------


def test_fast_path_chunks_with_remainder(tiny_params, monkeypatch):
  layer, length = 4, 733  # a length no other test compiles
  maps = np.arange(TINY.channels[layer - 1])  # 8 maps
  assert deconvnet.maps_per_chunk(TINY, layer, length, 8, budget_bytes=1) == 1
  # A budget that fits 3 maps of this request: chunks of 3, 3 and 2.
  monkeypatch.setattr(budget, "CHUNK_BYTES",
                      3 * cnn12_fast.per_map_bytes(TINY_PLAN, layer, length))
  assert deconvnet.maps_per_chunk(TINY, layer, length, len(maps)) == 3
  x = _clips(1, length, seed=5)
  _assert_fast_equals_reference(tiny_params, x, layer, maps)


def test_fast_path_two_stages_equal_reference(tiny_params, monkeypatch):
  """Budgets that put blocks 1..stop in a bottom stage run on `sub` of a
  chunk's maps at a time (chunks 5 + 3 of 8 maps) give the plain chain's
  result, for one clip and for pairs mixing clips."""
  layer, length = 6, 907  # a length no other test compiles
  maps = np.arange(8)
  monkeypatch.setattr(budget, "CHUNK_BYTES",
                      5 * cnn12_fast.per_map_bytes(TINY_PLAN, layer, length))
  chunk = deconvnet.maps_per_chunk(TINY, layer, length, len(maps))
  assert chunk == 5
  block2 = cnn12_fast._block_bytes(  # pylint: disable=protected-access
      TINY_PLAN, 2, (length - 6) // 2, (length - 6) // 2 - 6)
  monkeypatch.setattr(cnn12_fast, "CACHE_BYTES", 2 * block2)
  stop, sub = cnn12_fast.cache_split(TINY_PLAN, layer, length, chunk)
  assert 1 < stop < layer and 1 < sub < chunk
  x = _clips(2, length, seed=9)
  ref = _assert_fast_equals_reference(tiny_params, x, layer, maps)
  slots = np.array([1, 0, 0, 1, 1, 0, 1, 0], np.int32)
  pairs = np.asarray(deconvnet.sonify_clip_pairs(
      tiny_params, jnp.asarray(x), jnp.full((2,), length, jnp.int32),
      jnp.asarray(slots), jnp.asarray(maps, jnp.int32), layer, TINY,
      scale=False))
  _assert_close(pairs, ref[slots, maps])


def test_chunking_bounds_memory_for_layer2_ten_seconds():
  chunk = deconvnet.maps_per_chunk(CNN12_ARCH, 2, 80000, 64)
  assert 1 <= chunk < 64
  # One 10 s layer-2 map holds at least its [79994, 64] block-1 signal.
  assert chunk * 79994 * 64 * 4 <= deconvnet.CHUNK_BYTES


# --- (b) shift equivariance ------------------------------------------------


@pytest.mark.parametrize("layer", [3, 6, 8])
def test_shift_by_256_shifts_sonification(tiny_params, layer):
  shift, length = 256, 2600
  z = _clips(1, length + shift, seed=20 + layer)[0]
  a, b = z[:length], z[shift:]  # b[t] == a[t + shift]
  maps = [0, TINY.channels[layer - 1] - 1]
  out = np.asarray(deconvnet.sonify(tiny_params, np.stack([a, b]), layer,
                                    maps, TINY, scale=False))
  margin = TINY.min_input_length(layer)
  sl_b = slice(margin, length - shift - margin)
  sl_a = slice(margin + shift, length - margin)
  assert np.max(np.abs(out[0][:, sl_a])) > 0
  _assert_close(out[1][:, sl_b], out[0][:, sl_a])


# --- (c) planted band-pass ---------------------------------------------------


def _band_power_db(signal, freq, half_width_hz=60.0):
  spec = np.abs(np.fft.rfft(signal * np.hanning(len(signal)))) ** 2
  freqs = np.fft.rfftfreq(len(signal), 1 / SR)
  band = np.abs(freqs - freq) <= half_width_hz
  return 10 * np.log10(spec[band].sum() + 1e-30)


def test_planted_band_pass_keeps_in_band_tone(tiny_params):
  low_hz, high_hz = 440.0, 3100.0
  n = np.arange(7) - 3
  window = np.hanning(9)[1:-1]  # 7 non-zero taps
  low_pass = window
  band_pass = window * np.cos(2 * np.pi * high_hz / SR * n)

  def response_db(taps, f):
    return 20 * np.log10(abs(np.sum(taps * np.exp(-2j * np.pi * f / SR * n))))

  # The independent fact: each planted filter separates the tones by > 20 dB.
  assert response_db(low_pass, low_hz) - response_db(low_pass, high_hz) > 20
  assert response_db(band_pass, high_hz) - response_db(band_pass, low_hz) > 20

  params = jax.tree_util.tree_map(np.array, tiny_params)
  kernel = params["block1"]["kernel"]  # [7, 1, C]
  kernel[:, 0, 0] = low_pass
  kernel[:, 0, 1] = band_pass
  params["block1"]["bias"][:2] = 0.0
  t = np.arange(SR) / SR
  x = (np.sin(2 * np.pi * low_hz * t) + np.sin(2 * np.pi * high_hz * t))
  x = x.astype(np.float32)[None]
  assert abs(_band_power_db(x[0], low_hz) - _band_power_db(x[0], high_hz)) < 1
  out = np.asarray(deconvnet.sonify(params, x, 1, [0, 1], TINY))[0]
  kept_low = _band_power_db(out[0], low_hz) - _band_power_db(out[0], high_hz)
  kept_high = _band_power_db(out[1], high_hz) - _band_power_db(out[1], low_hz)
  assert kept_low > 10, kept_low
  assert kept_high > 10, kept_high


# --- (d) clear errors, nothing computed --------------------------------------


@pytest.fixture
def no_compute(monkeypatch):
  calls = []
  monkeypatch.setattr(deconvnet, "sonify_unchecked",
                      lambda *a, **k: calls.append(1))
  yield calls
  assert not calls, "computation started for an invalid request"


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(layer=0), ValueError, "outside 1..11"),
    (dict(layer=12), ValueError, "outside 1..11"),
    (dict(layer=2.0), UserError, "must be an int"),
    (dict(maps=[0, 4]), ValueError, r"out of range.*0\.\.3"),
    (dict(maps=[-1]), ValueError, "out of range"),
    (dict(maps=[0.0, 1.0]), UserError, "integers"),
    (dict(maps=[]), ValueError, "non-empty"),
    (dict(maps=[[0]]), ValueError, "1-D"),
    (dict(audio="nan"), ValueError, "NaN or Inf"),
    (dict(audio="inf"), ValueError, "NaN or Inf"),
    (dict(audio="short"), ValueError, "receptive field"),
    (dict(audio="rank1"), ValueError, "rank 1"),
    (dict(audio="rank3"), ValueError, "rank 3"),
    (dict(impl="gpu"), ValueError, "impl"),
])
def test_invalid_requests_raise_before_computing(tiny_params, no_compute,
                                                 kwargs, error, match):
  layer = kwargs.get("layer", 2)
  x = _clips(2, 400)
  audio = kwargs.get("audio")
  if audio == "nan":
    x[1, 17] = np.nan
  elif audio == "inf":
    x[0, 3] = -np.inf
  elif audio == "short":
    x = x[:, :TINY.min_input_length(2) - 1]
  elif audio == "rank1":
    x = x[0]
  elif audio == "rank3":
    x = x[None]
  with pytest.raises(error, match=match):
    deconvnet.sonify(tiny_params, x, layer, kwargs.get("maps", [0, 1]), TINY,
                     impl=kwargs.get("impl", "fast"))


def test_receptive_field_is_the_exact_minimum(tiny_params):
  layer = 5
  need = TINY.min_input_length(layer)
  out = deconvnet.sonify(tiny_params, _clips(1, need), layer, [0], TINY)
  assert out.shape == (1, 1, need)
  assert np.all(np.isfinite(np.asarray(out)))


# --- (e) op properties -------------------------------------------------------


@pytest.mark.parametrize("length", [9, 10, 31])
def test_max_unpool_routes_exactly(length):
  from sonify_jax.models import ops
  x = np.abs(_clips(3 * 5, length, seed=length)).reshape(3, 5, length)
  x = np.transpose(x, (0, 2, 1)) + 0.1  # [B, T, C], positive
  pooled, switches = ops.max_pool_with_switches(jnp.asarray(x))
  up = np.asarray(ops.max_unpool(pooled, switches, length))
  windows = x[:, : 2 * (length // 2)].reshape(3, length // 2, 2, 5)
  np.testing.assert_array_equal(np.asarray(pooled), windows.max(axis=2))
  # Exactly one non-zero per window, at the numpy argmax, holding the max.
  arg = windows.argmax(axis=2)
  want = np.zeros_like(x)
  b, n, c = np.meshgrid(np.arange(3), np.arange(length // 2), np.arange(5),
                        indexing="ij")
  want[b, 2 * n + arg, c] = windows.max(axis=2)
  np.testing.assert_array_equal(up, want)
  if length % 2:
    assert np.all(up[:, -1] == 0)
  repooled, _ = ops.max_pool_with_switches(jnp.asarray(up))
  np.testing.assert_array_equal(np.asarray(repooled), np.asarray(pooled))
  # The fast path's fused ReLU + unpool routes signed values the same way.
  signed = np.asarray(pooled) - 0.8
  fused = cnn12_kernels.relu_unpool(  # pylint: disable=protected-access
      jnp.asarray(signed), switches, length)
  np.testing.assert_array_equal(
      np.asarray(fused),
      np.asarray(ops.max_unpool(jnp.maximum(signed, 0), switches, length)))


@pytest.mark.parametrize("k,length", [(3, 40), (5, 33), (7, 50)])
def test_conv1d_transpose_is_the_adjoint(k, length):
  from sonify_jax.models import ops
  rng = np.random.default_rng(k)
  kernel = rng.standard_normal((k, 3, 4)).astype(np.float32)
  x = rng.standard_normal((2, length, 3)).astype(np.float32)
  y = rng.standard_normal((2, length - k + 1, 4)).astype(np.float32)
  ax = np.asarray(ops.conv1d_valid(x, kernel), np.float64)
  # conv1d_valid itself against a plain numpy cross-correlation.
  want = np.zeros_like(ax)
  for j in range(k):
    want += np.einsum("btc,cd->btd", x[:, j:j + length - k + 1], kernel[j])
  np.testing.assert_allclose(ax, want, rtol=1e-4, atol=1e-4)
  aty = np.asarray(ops.conv1d_transpose(jnp.asarray(y), kernel, length),
                   np.float64)
  lhs, rhs = np.sum(ax * y), np.sum(x * aty)
  assert abs(lhs - rhs) <= 1e-4 * (np.abs(ax * y).sum())


@pytest.mark.parametrize("pooled_len,odd", [(12, 0), (11, 1)])
def test_block1_polyphase_equals_unpool_then_transpose(pooled_len, odd):
  from sonify_jax.models import ops
  rng = np.random.default_rng(pooled_len)
  h = np.abs(rng.standard_normal((2, pooled_len, 4))).astype(np.float32)
  switches = rng.integers(0, 2, (1, pooled_len, 4)).astype(np.int8)
  kernel = rng.standard_normal((7, 1, 4)).astype(np.float32)
  t_conv = 2 * pooled_len + odd
  dense = ops.conv1d_transpose(
      ops.max_unpool(jnp.asarray(h), jnp.broadcast_to(switches, h.shape),
                     t_conv), kernel, t_conv + 6)
  poly = cnn12_kernels.unpool_transpose_to_waveform(  # pylint: disable=protected-access
      jnp.asarray(h), jnp.asarray(switches), jnp.asarray(kernel), t_conv + 6)
  _assert_close(np.asarray(poly), np.asarray(dense))


@pytest.mark.parametrize("k,length", [(3, 12), (7, 25)])
def test_single_channel_transpose_equals_dense(k, length):
  from sonify_jax.models import ops
  rng = np.random.default_rng(k + length)
  u = rng.standard_normal(length).astype(np.float32)
  kernel = rng.standard_normal((k, 5, 4)).astype(np.float32)
  dense = ops.conv1d_transpose(
      jnp.zeros((1, length, 4)).at[0, :, 2].set(u), kernel, length + k - 1)
  single = cnn12_kernels.single_channel_transpose(  # pylint: disable=protected-access
      jnp.asarray(u), jnp.asarray(kernel[:, :, 2]), length + k - 1)
  _assert_close(np.asarray(single), np.asarray(dense)[0])


# --- (f) scaling and dead maps -----------------------------------------------


def test_each_output_peak_equals_its_clip_peak(tiny_params):
  x = _clips(2, 900, seed=4)
  x[0] *= 0.1
  x[1] *= 3.0
  layer = 4
  maps = [0, 3, 7]
  out = np.asarray(deconvnet.sonify(tiny_params, x, layer, maps, TINY))
  peaks = np.abs(out).max(axis=2)  # [clips, maps]
  alive = peaks > 0
  assert alive.sum() >= 4
  want = np.broadcast_to(np.abs(x).max(axis=1)[:, None], peaks.shape)
  np.testing.assert_allclose(peaks[alive], want[alive], rtol=1e-5)


def test_dead_map_gives_zeros_not_nan(tiny_params):
  params = jax.tree_util.tree_map(np.array, tiny_params)
  layer = 3
  params[f"block{layer}"]["bias"][2] = -1e4  # map 2 never fires
  x = _clips(1, 700, seed=9)
  for impl in deconvnet.IMPLEMENTATIONS:
    out = np.asarray(deconvnet.sonify(params, x, layer, [2, 0], TINY,
                                      impl=impl))
    assert np.all(out[0, 0] == 0)
    assert np.all(np.isfinite(out))
    assert np.max(np.abs(out[0, 1])) > 0


# --- (g) batching ------------------------------------------------------------


def test_batch_equals_per_clip_per_map_calls(tiny_params):
  layer, length = 5, 1200
  x = _clips(3, length, seed=30)
  maps = [0, 3, 5, 7]
  batched = np.asarray(deconvnet.sonify(tiny_params, x, layer, maps, TINY))
  for c in range(3):
    for i, m in enumerate(maps):
      single = np.asarray(deconvnet.sonify(tiny_params, x[c:c + 1], layer,
                                           [m], TINY))
      np.testing.assert_allclose(batched[c, i], single[0, 0], rtol=0,
                                 atol=1e-5 * np.abs(x[c]).max())


def test_sonify_is_jittable_and_vmappable(tiny_params):
  """Callable from user code under jit/vmap (no host-side checks on tracers)."""
  layer, length = 3, 500
  x = _clips(2, length, seed=31)
  maps = jnp.array([1, 4])
  want = np.asarray(deconvnet.sonify(tiny_params, x, layer, maps, TINY))
  f = jax.jit(lambda p, w, m: deconvnet.sonify(p, w, layer, m, TINY))
  np.testing.assert_allclose(np.asarray(f(tiny_params, x, maps)), want,
                             atol=1e-6)
  per_clip = jax.vmap(lambda w: deconvnet.sonify(tiny_params, w[None], layer,
                                                 maps, TINY)[0])(x)
  np.testing.assert_allclose(np.asarray(per_clip), want, atol=1e-6)


# (h) pairs of padded clips: tests/test_padding_rule.py, on every network
# kind and rule.


@pytest.mark.parametrize("pools", [(False, False), (True, False, True)])
def test_cnn12_like_nets_the_fast_kernels_do_not_fit_take_the_chain(pools):
  """VALID convs and ReLUs as CNN12's, but no pool after block 1 (or a pool
  after an unpooled block): the generic chain runs them, equal to the
  plain dense chain (the fast kernels assume CNN12's pooled prefix)."""
  blocks = tuple(
      (network.Conv(f"c{i}", 3, 5), network.ReLU())
      + ((network.MaxPool(2, 2),) if pooled else ())
      for i, pooled in enumerate(pools, start=1))
  net = network.Network("unpooled_first", blocks, sample_rate=8000)
  params = common.random_params(net, 1)
  x = _clips(2, 300, seed=5)
  got = deconvnet.sonify(params, x, len(pools), [0, 2], net)
  want = deconvnet.sonify(params, x, len(pools), [0, 2], net,
                          impl="reference")
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)
