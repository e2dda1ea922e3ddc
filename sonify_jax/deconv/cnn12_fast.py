"""The deconvnet's tuned kernels for networks of CNN12's pattern.

Where every block is a VALID stride-1 conv, a ReLU and optionally a
MaxPool(2, 2) (:func:`plan_of`; CNN12, CNN12_x2 and the narrow variants),
the deconvnet rule runs here instead of the generic chain
(:mod:`sonify_jax.deconv.chain`), to float32 rounding of the same result:
the forward trace is computed once per clip and shared by every map; the
top block's unpool + transposed conv runs on the single non-zero channel
(``k * Cin`` instead of ``k * C * Cin`` multiply-adds per sample, which
removes most of the work of shallow layers); unpool and ReLU are one fused
pass; block 1 (``C -> 1``) runs in polyphase form at the pooled length as
one matmul; the dense blocks in between run batched over maps, the 3- and
5-tap ones by Winograd's minimal filtering F(4, 3) and F(4, 5)
(:mod:`sonify_jax.deconv.winograd`: 2x and 2.5x fewer multiply-adds,
transformed kernels computed once per call) and the pooled 7-tap block 2
at the pooled rate, as a 4-tap conv from both switch parities to both
output parities, by F(5, 4) (:func:`_unpool_transpose_polyphase`: 2.2x
fewer multiply-adds); maps go in chunks bounded by
``budget.CHUNK_BYTES`` and clips one after another, so memory stays
bounded for long clips and many maps. Within a chunk the short, wide deep
blocks run on all its maps at once (a wide conv needs many rows) and the
long, narrow shallow blocks on a few maps at a time (:func:`cache_split`),
so that each block's unpooled input is still in cache when its conv reads
it.

``sonify_clip_pairs`` runs the fast path on (clip, map) pairs that may mix
clips of one padded length (the atlas: every map on its own top clips).

Below the top block every transposed conv is dense, so without Winograd
the fast path executes the dense chain's FLOPs less the top block's, at
best at the machine's matmul rate. Tried (10 s clip, CNN12, 2 shared cores;
CPU time, interleaved, as the machine was loaded):

* Winograd (kept) for the 3- and 5-tap blocks, interleaved A/B of the
  whole chain, 20 maps, median maps/s, dense -> Winograd: layer 4 62.9 ->
  71.7, 6 44.2 -> 51.9, 9 33.7 -> 42.6, 11 26.5 -> 35.2. F(6, 3) was no
  faster than F(4, 3) and has larger transformed kernels and error.
* block 2 in polyphase form by F(5, 4) (kept), interleaved A/B, 16 maps,
  median maps/s, XLA conv -> polyphase: layer 4 65.7 -> 77.5, 6 50.5 ->
  55.3, 9 40.9 -> 46.3 (F(4, 4) and F(6, 4) 1-5 % slower than F(5, 4)).
  The same form for the pooled 5-tap blocks (F(4, 3) or F(6, 3) on the
  parities) was 5-12 % slower than F(4, 5) on the unpooled signal, and
  for the 3-tap ones (F(6, 2)) 12 % slower at layer 9. Not kept: F(2, 7)
  for block 2 on its unpooled signal (64 channels: its matmuls are too
  narrow for the transforms' memory traffic; 0.3-1.2x per block, layer 4
  -7 %);
  running the tiles in cache-sized time segments; reading the tile inputs
  straight from the pooled signal and switches instead of the unpooled
  signal (both within noise); block 2 as an FFT overlap-save conv (2x
  slower) or as im2col matmuls over time segments (1.2-1.8x slower).

* the cache split (kept): blocks 2-5 ran at 170-290 GFLOP/s with 10 maps
  per batch and their unpool pass took 3-7 ms a map (memory-bound); one map
  at a time they run at 350-430 GFLOP/s and the unpool is ~0.2 ms. The
  deep blocks need the batch (block 8: 170 GFLOP/s for one map, 410 for
  10). Whole chain (``benchmarks/sonify_bench.py``, quiet machine):
  layer 3 78.6 -> 98.5 maps/s, 5 35.4 -> 42.9, 7 28.8 -> 33.2, 11 21.2 ->
  23.5. A single chunk size for every block (1 to 20 maps) gained at most
  10 %; the single-channel top block in the bottom stage, or block 1 alone
  there one map at a time, was slower (layer 2: 1.2-4x).
* XLA CPU flags: ``xla_cpu_use_onednn``,
  ``xla_cpu_experimental_onednn_custom_call``, ``xla_cpu_use_xnnpack`` and
  ``xla_cpu_experimental_{xnn,ynn,onednn}_fusion_type=
  LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION`` left the convs' time
  unchanged; ``xla_cpu_use_thunk_runtime=false`` was 30 % slower.
* a polyphase split of a pooled block's input by switch parity does not
  lower its dense FLOPs (switches are per contracted channel, so the parity
  groups double the contracted channels). As an XLA conv over sample pairs
  (``2C -> 2Cin``, 8/7 of the FLOPs at k = 7) it was 5-30 % slower than
  XLA's conv on the unpooled signal, and as a conv with ``lhs_dilation=2``
  on ``[h (1 - s), h s]`` 1.4-1.8x slower; by Winograd F(5, 4) it is
  faster (above): its matmuls are twice as wide as F(2, 7)'s on the
  unpooled signal, and no unpooled signal is built.
* NCW instead of NWC layout, or padding the unpooled input inside the
  unpool fusion instead of in the conv: no change. The unpool as two
  ``where`` stacked: no change; as a scatter: 3x slower.
* the transposed conv as matmul first then overlap-add (``[T, C] @ [C, k
  Cin]``): the matmul alone ran at 67 GFLOP/s for C = 64, not pursued.
"""
import dataclasses
import functools
from typing import Any, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp

from sonify_jax.deconv import budget, winograd
from sonify_jax.models import forward, ops, shapes
from sonify_jax.models import network as network_lib

Params = Any


@dataclasses.dataclass(frozen=True)
class Plan:
  """A network of CNN12's pattern, as this path reads it: every block a
  VALID stride-1 conv with bias, a ReLU and optionally a MaxPool(2, 2)
  (identity layers ignored), the waveform fed as it is."""
  name: str
  kernels: Tuple[int, ...]
  channels: Tuple[int, ...]
  pooled: Tuple[bool, ...]
  conv_names: Tuple[str, ...]
  net: network_lib.Network

  def is_pooled(self, block: int) -> bool:
    return self.pooled[block - 1]


def block_lengths(arch: Plan, layer: int, length: int
                  ) -> Tuple[Tuple[int, int, int], ...]:
  """``(input, conv, output)`` lengths of blocks ``1..layer`` for a clip of
  ``length`` samples (``shapes.layer_lengths``, the one rule)."""
  out, t = [], length
  for row in shapes.layer_lengths(arch.net, length, layer):
    out.append((t, row[0], row[-1]))
    t = row[-1]
  return tuple(out)


_POOL = network_lib.MaxPool(2, 2)


def plan_of(net: network_lib.Network) -> Optional[Plan]:
  """The :class:`Plan` of ``net``, or None where it departs from the
  pattern (then the generic chain, ``deconv.chain``, runs it)."""
  if net.input_convention != "none":
    return None
  kernels, pooled, names = [], [], []
  for block in net.blocks:
    layers = [l for l in block if not isinstance(l, network_lib.Identity)]
    if len(layers) not in (2, 3):
      return None
    conv, relu = layers[:2]
    if not (isinstance(conv, network_lib.Conv) and conv.stride == 1 and
            conv.dilation == 1 and conv.padding == (0, 0) and conv.use_bias
            and isinstance(relu, network_lib.ReLU)):
      return None
    if len(layers) == 3 and layers[2] != _POOL:
      return None
    kernels.append(conv.kernel_size)
    pooled.append(len(layers) == 3)
    names.append(conv.name)
  return Plan(net.name, tuple(kernels), net.channels, tuple(pooled),
              tuple(names), net)

# Outputs per Winograd tile, by kernel size, of the dense transposed convs
# on their unpooled input: F(4, 3) and F(4, 5) (6 and 8 points).
WINOGRAD_TILES = {3: 4, 5: 4}

# Outputs per Winograd tile, by kernel size, of the pooled dense blocks run
# at the pooled rate (:func:`_unpool_transpose_polyphase`): a ``k``-tap
# block is a ``k // 2 + 1``-tap conv there, so CNN12's 7-tap block 2 runs as
# F(5, 4) (8 points, 2.2x fewer multiply-adds than the dense conv). Taken
# before :data:`WINOGRAD_TILES`; other kernel sizes run as XLA convs.
POLYPHASE_TILES = {7: 5}


def dense_form(k: int, pooled: bool) -> Tuple[str, Optional[int]]:
  """How the fast path runs a dense block's transposed conv, the one place
  that decides it: ``('polyphase', m)`` (:data:`POLYPHASE_TILES`, pooled
  blocks only), ``('winograd', m)`` (:data:`WINOGRAD_TILES`) or
  ``('conv', None)`` (an XLA conv)."""
  if pooled and k in POLYPHASE_TILES:
    return "polyphase", POLYPHASE_TILES[k]
  if k in WINOGRAD_TILES:
    return "winograd", WINOGRAD_TILES[k]
  return "conv", None


def _kernel_taps_first(kernel: jax.Array) -> jax.Array:
  """``[k, Cin, C]`` conv kernel -> ``[k, C, Cin]``: tap ``j`` maps C -> Cin."""
  return jnp.transpose(kernel, (0, 2, 1))


def transpose_kernels(params: Params, layer: int, arch: Plan
                      ) -> Tuple[Optional[jax.Array], ...]:
  """Per block ``1..layer``, its dense transposed conv's kernel in the form
  the fast path runs it (computed once per call, outside the loops over
  clips and maps):

  * ``[alpha, 2 Cin, 2 C]``, the Winograd transform of
    :func:`_polyphase_taps`, for the ``'polyphase'`` form
    (:func:`dense_form`);
  * ``[alpha, Cin, C]``, the Winograd transform of the flipped taps in
    their own ``[Cin, C]`` layout (output-major for the transposed conv, so
    no transpose), for the ``'winograd'`` form;
  * ``[k, C, Cin]``, the flipped taps, for an XLA conv;
  * None for block 1 and block ``layer``, which have their own paths.
  """
  kernels = []
  for block in range(1, layer + 1):
    if block in (1, layer):
      kernels.append(None)
      continue
    kernel = params[f"block{block}"]["kernel"]  # [k, Cin, C]
    form, tile = dense_form(arch.kernels[block - 1], arch.is_pooled(block))
    if form == "polyphase":
      kernels.append(winograd.transform_kernel(_polyphase_taps(kernel), tile))
    elif form == "winograd":
      kernels.append(winograd.transform_kernel(kernel[::-1], tile))
    else:
      kernels.append(_kernel_taps_first(kernel)[::-1])
  return tuple(kernels)


def _dense_transpose(h: jax.Array, kernel: jax.Array, k: int,
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


def _single_channel_transpose(u: jax.Array, kernel_column: jax.Array,
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


def _relu_unpool(h: jax.Array, switches: jax.Array, length: int) -> jax.Array:
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


def _unpool_transpose_to_waveform(h: jax.Array, switches: jax.Array,
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


def chain_lengths(arch: Plan, layer: int, length: int
                  ) -> Tuple[Tuple[int, int], ...]:
  """``(input length, conv length)`` of blocks ``1..layer`` for a clip of
  ``length`` samples (static shapes of the deconv chain)."""
  return tuple((t_in, t_conv)
               for t_in, t_conv, _ in block_lengths(arch, layer, length))


def _polyphase_taps(kernel: jax.Array) -> jax.Array:
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


def _unpool_transpose_polyphase(h: jax.Array, switches: jax.Array,
                                kernel_hat: jax.Array, k: int, tile: int,
                                input_length: int) -> jax.Array:
  """A pooled block's ReLU, max-unpool and transposed conv at the pooled rate.

  The unpooled signal is never built: the pooled signal, split by switch
  into ``2C`` channels, is correlated by Winograd F(tile, q) with
  :func:`_polyphase_taps`, and the
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


def _dense_block(kernels, switches, h: jax.Array, block: int,
                 lengths: Sequence[Tuple[int, int]]) -> jax.Array:
  """Block ``block``'s unpool (if pooled), ReLU and dense transposed conv."""
  t_in, t_conv = lengths[block - 1]
  k = t_in - t_conv + 1
  pooled = switches[block - 1] is not None
  form, tile = dense_form(k, pooled)
  if form == "polyphase":
    return _unpool_transpose_polyphase(h, switches[block - 1],
                                       kernels[block - 1], k, tile, t_in)
  if pooled:
    h = _relu_unpool(h, switches[block - 1], t_conv)
  else:
    h = jax.nn.relu(h)
  return _dense_transpose(h, kernels[block - 1], k, tile, t_in)


def _top_stage(params: Params, kernels, switches: Sequence[Optional[jax.Array]],
               top: jax.Array, feature_map: jax.Array, layer: int,
               lengths: Sequence[Tuple[int, int]], stop: int) -> jax.Array:
  """Blocks ``layer`` down to ``stop + 1`` of one map: ``[T, C(stop)]``.

  Block ``layer``'s unpool, ReLU and transposed conv run on the single
  non-zero channel with the map's own kernel column
  (:func:`_single_channel_transpose`); the blocks below it are dense.
  """
  top = jax.lax.dynamic_index_in_dim(top, feature_map, axis=1,
                                     keepdims=False)  # [T_out]
  column = jax.lax.dynamic_index_in_dim(params[f"block{layer}"]["kernel"],
                                        feature_map, axis=2,
                                        keepdims=False)  # [k, Cin]
  if switches[layer - 1] is not None:
    s = jax.lax.dynamic_index_in_dim(switches[layer - 1][0], feature_map,
                                     axis=1, keepdims=False)
    top = ops.max_unpool(top[None, :, None], s[None, :, None],
                         lengths[layer - 1][1])[0, :, 0]
  h = _single_channel_transpose(jax.nn.relu(top), column,
                                lengths[layer - 1][0])[None]
  for block in range(layer - 1, stop, -1):
    h = _dense_block(kernels, switches, h, block, lengths)
  return h[0]


def _bottom_stage(params: Params, kernels,
                  switches: Sequence[Optional[jax.Array]],
                  h: jax.Array, stop: int,
                  lengths: Sequence[Tuple[int, int]]) -> jax.Array:
  """Blocks ``stop`` down to 1 of one map: ``[T, C(stop)] -> [T_in]``."""
  h = h[None]
  for block in range(stop, 1, -1):
    h = _dense_block(kernels, switches, h, block, lengths)
  h = _unpool_transpose_to_waveform(
      jax.nn.relu(h), switches[0], params["block1"]["kernel"], lengths[0][0])
  return h[0, :, 0]


class ClipTraces(NamedTuple):
  """What the fast path needs of a batch of ``S`` clips' forward passes.

  switches: per block ``1..layer``, ``[S, N, C]`` int8 switches or None.
  top: ``[S, T_out, C]`` block ``layer``'s output; frames past a clip's
    valid length are zero (see :func:`sonify_clip_pairs`).
  peak: ``[S]`` ``max|x|`` of each clip.
  """
  switches: Tuple[Optional[jax.Array], ...]
  top: jax.Array
  peak: jax.Array


def _clip_traces(params, waveforms, layer, arch, valid_lengths=None):
  """The forward of ``[S, T]`` clips through blocks ``1..layer`` with its
  switches; frames of block ``layer`` that read past ``valid_lengths`` are
  zeroed (see :func:`sonify_clip_pairs`)."""
  h, switches = waveforms[..., None], []
  for block in range(1, layer + 1):
    p = params[f"block{block}"]
    h = jax.nn.relu(ops.conv1d_valid(h, p["kernel"]) + p["bias"])
    s = None
    if arch.is_pooled(block):
      h, s = forward.max_pool(_POOL, h)
    switches.append(s)
  if valid_lengths is not None:
    stride, _, last = shapes.frame_span(arch.net, layer)
    keep = (jnp.arange(h.shape[1])[None, :] * stride + last
            < jnp.asarray(valid_lengths, jnp.int32)[:, None])
    h = jnp.where(keep[:, :, None], h, 0.0)
  return ClipTraces(tuple(switches), h, jnp.max(jnp.abs(waveforms), axis=1))


def by_block_names(params: Params, arch: Plan) -> Params:
  """The conv params keyed ``block1..blockN``, as this module reads them."""
  return {f"block{i}": params[name]
          for i, name in enumerate(arch.conv_names, start=1)}


def _in_chunks(fn, xs, chunk: int):
  """``fn`` on leading-axis chunks of ``xs`` of ``chunk`` rows, one after
  another (a scan); a last, shorter chunk runs on its own."""
  n = jax.tree.leaves(xs)[0].shape[0]
  full = n // chunk
  outs = []
  if full:
    head = jax.tree.map(
        lambda x: x[:full * chunk].reshape((full, chunk) + x.shape[1:]), xs)
    ys = jax.lax.map(fn, head)
    outs.append(ys.reshape((full * chunk,) + ys.shape[2:]))
  if n % chunk:
    outs.append(fn(jax.tree.map(lambda x: x[full * chunk:], xs)))
  return outs[0] if len(outs) == 1 else jnp.concatenate(outs)


def _deconv_pairs(params, kernels, traces: ClipTraces, slots, maps, layer,
                  arch, lengths, chunk, scale):
  """``[P]`` (slot, map) pairs -> ``[P, T]``, in chunks of ``chunk`` pairs.

  Within a chunk, the top stage (blocks ``layer .. stop + 1``, short and
  wide) runs on all its pairs at once and the bottom stage (blocks
  ``stop .. 1``, long and narrow) on ``sub`` pairs at a time, see
  :func:`cache_split`. ``slots`` None: every map reads clip 0, whose trace
  then stays unbatched (broadcast over the chunk rather than gathered per
  pair).
  """
  stop, sub = cache_split(arch, layer, lengths[0][0], chunk)

  def clip_of(slot):
    switches = tuple(None if s is None else
                     jax.lax.dynamic_index_in_dim(s, slot, keepdims=True)
                     for s in traces.switches)
    return switches, jax.lax.dynamic_index_in_dim(traces.top, slot,
                                                  keepdims=False)

  def top_one(m, slot):
    switches, top = clip_of(slot)
    return _top_stage(params, kernels, switches, top, m, layer, lengths, stop)

  def finish(s, slot):
    return budget.scale_to_peak(s, traces.peak[slot]) if scale else s

  def bottom_one(h, slot):
    return finish(_bottom_stage(params, kernels, clip_of(slot)[0], h, stop,
                                lengths), slot)

  def one_chunk(maps_c, slots_c):
    # slots_c None: the constant slot 0 keeps the trace unbatched under vmap.
    at = ((lambda f: lambda x: f(x, 0)) if slots_c is None else
          (lambda f: f))
    args = () if slots_c is None else (slots_c,)
    if layer == 1:
      return jax.vmap(at(lambda m, slot: finish(top_one(m, slot)[:, 0],
                                                slot)))(maps_c, *args)
    h = jax.vmap(at(top_one))(maps_c, *args)
    return jax.lax.map(lambda xs: at(bottom_one)(*xs), (h,) + args,
                       batch_size=sub)

  if slots is None:
    return _in_chunks(lambda m: one_chunk(m, None), maps, chunk)
  return _in_chunks(lambda pairs: one_chunk(*pairs), (maps, slots), chunk)


@functools.partial(jax.jit, static_argnames=("layer", "arch", "scale"))
def sonify_clip_pairs(params: Params, waveforms: jax.Array,
                      valid_lengths: jax.Array, slots: jax.Array,
                      maps: jax.Array, layer: int, arch: Plan,
                      scale: bool = True) -> jax.Array:
  """Sonify ``(clip, map)`` pairs; each clip is traced once for its pairs.

  Pair ``p`` is map ``maps[p]`` of clip ``slots[p]``, so a batch of pairs
  may mix clips and a clip chosen by many maps is traced once per batch:
  fixed-size batches keep one compiled shape whatever the pairs.

  Clips may be zero-padded at the end to a common length: block ``layer``'s
  output frames that see any padding are zeroed, so on its first
  ``valid_lengths[s]`` samples the sonification of a padded clip equals that
  of the unpadded clip (every frame kept lies, with its whole receptive
  field and every switch it is routed through, inside the clip), and it is
  zero after them. Padding clips to a few lengths bounds how often XLA
  compiles.

  Args:
    params: encoder params.
    waveforms: ``[S, T]`` clips, zero-padded to ``T``.
    valid_lengths: ``[S]`` int samples of each clip before its padding.
    slots: ``[P]`` int clip positions in ``waveforms``.
    maps: ``[P]`` int map indices of block ``layer``.
    layer, arch: static block number and architecture.
    scale: unit peak times the clip's ``max|x|``.
  Returns:
    ``[P, T]``.
  """
  params = by_block_names(params, arch)
  length = waveforms.shape[1]
  traces = _clip_traces(params, waveforms, layer, arch, valid_lengths)
  lengths = chain_lengths(arch, layer, length)
  chunk = budget.maps_per_chunk(arch.net, layer, length, maps.shape[0])
  return _deconv_pairs(params, transpose_kernels(params, layer, arch), traces,
                       slots, maps, layer, arch, lengths, chunk, scale)


def trace_bytes(arch: Plan, layer: int, length: int) -> int:
  """Estimated peak memory of one clip's forward trace (float32 block
  outputs and their int8 switches), with a safety factor of 2."""
  total = sum(t_conv * arch.channels[block - 1] * (4 + 1)
              for block, (_, t_conv, _) in enumerate(
                  block_lengths(arch, layer, length), start=1))
  return 2 * max(total, 1)


def per_map_bytes(arch: Plan, layer: int, length: int) -> int:
  """Estimated peak intermediate memory of one map in the fast path.

  The largest block's unpooled input and transposed-conv output plus a
  pooled-length temporary (float32), with a safety factor of 2 for XLA's
  temporaries.
  """
  peak = 0
  for block, (t, t_conv, _) in enumerate(block_lengths(arch, layer, length),
                                         start=1):
    c = arch.channels[block - 1]
    cin = 1 if block == 1 else arch.channels[block - 2]
    peak = max(peak, 4 * (2 * t_conv * c + 3 * t * cin))
  return 2 * max(peak, 1)


# Working set per batch of the long, narrow bottom blocks; about what the
# CPU's caches hold, so that a block's unpooled input is still cached when
# its transposed conv reads it (memory-bound passes dominate those blocks).
CACHE_BYTES = 32 << 20


def _block_bytes(arch: Plan, block: int, t: int, t_conv: int) -> int:
  """float32 bytes of one map's unpooled input and transposed-conv output
  of ``block`` for a block input of ``t`` samples."""
  c = arch.channels[block - 1]
  cin = 1 if block == 1 else arch.channels[block - 2]
  return 4 * (t_conv * c + t * cin)


def cache_split(arch: Plan, layer: int, length: int, chunk: int,
                cache_bytes: Optional[int] = None) -> Tuple[int, int]:
  """``(stop, sub)``: blocks ``stop .. 1`` run ``sub`` maps at a time.

  The chain's blocks get longer and narrower towards the input. The dense
  blocks whose working set for a whole chunk exceeds ``cache_bytes``
  (default :data:`CACHE_BYTES`), and every block below them, form the
  bottom stage, which runs on ``sub`` maps at a time so that a dense
  block's working set stays cache-sized; the blocks above run on the whole
  chunk at once (a wide conv needs many rows). Block 1 is always in the
  bottom stage; alone there (``stop == 1``) it streams well and keeps
  ``sub == chunk``, as does a chain whose blocks all fit the budget. (The
  single-channel top block in the bottom stage ran 1.5-4x slower.)
  """
  budget = CACHE_BYTES if cache_bytes is None else cache_bytes
  sizes = [_block_bytes(arch, block, t, t_conv)
           for block, (t, t_conv, _) in enumerate(
               block_lengths(arch, layer, length), start=1)]
  over = [b for b in range(2, layer) if sizes[b - 1] * chunk > budget]
  if not over:
    return 1, chunk
  stop = max(over)
  return stop, int(max(1, min(chunk, budget // max(sizes[1:stop]))))


def sonify(params, waveforms, layer, feature_maps, arch, scale):
  """Every map of ``feature_maps`` on every clip ``[clips, maps, time]``:
  each clip traced once, maps in memory-bounded chunks, clips one after
  another."""
  params = by_block_names(params, arch)
  length = waveforms.shape[1]
  lengths = chain_lengths(arch, layer, length)
  chunk = budget.maps_per_chunk(arch.net, layer, length,
                                feature_maps.shape[0])
  kernels = transpose_kernels(params, layer, arch)

  def one_clip(x):  # [time] -> [maps, time]
    traces = _clip_traces(params, x[None], layer, arch)
    return _deconv_pairs(params, kernels, traces, None, feature_maps, layer,
                         arch, lengths, chunk, scale)

  # Clips run one after another so only one clip's chunk is live at a time.
  return jax.lax.map(one_clip, waveforms)


