"""The deconvnet's tuned kernels for networks of CNN12's pattern.

Where every block is a VALID stride-1 conv, a ReLU and optionally a
MaxPool(2, 2) (:func:`plan_of`; CNN12, CNN12_x2 and the narrow variants),
the deconvnet rule runs here instead of the generic chain
(:mod:`sonify_jax.transpose.chain`), to float32 rounding of the same result:
the forward trace is computed once per clip and shared by every map; the
top block's unpool + transposed conv runs on the single non-zero channel
(``k * Cin`` instead of ``k * C * Cin`` multiply-adds per sample, which
removes most of the work of shallow layers); unpool and ReLU are one fused
pass; block 1 (``C -> 1``) runs in polyphase form at the pooled length as
one matmul; the dense blocks in between run batched over maps, the 3- and
5-tap ones by Winograd's minimal filtering F(4, 3) and F(4, 5)
(:mod:`sonify_jax.transpose.winograd`: 2x and 2.5x fewer multiply-adds,
transformed kernels computed once per call) and the pooled 7-tap block 2
at the pooled rate, as a 4-tap conv from both switch parities to both
output parities, by F(5, 4)
(:func:`cnn12_kernels.unpool_transpose_polyphase`: 2.2x fewer
multiply-adds); maps go in chunks bounded by
``budget.CHUNK_BYTES`` and clips one after another, so memory stays
bounded for long clips and many maps. Within a chunk the short, wide deep
blocks run on all its maps at once (a wide conv needs many rows) and the
long, narrow shallow blocks on a few maps at a time (:func:`cache_split`),
so that each block's unpooled input is still in cache when its conv reads
it.

``sonify_clip_pairs`` runs the fast path on (clip, map) pairs that may mix
clips of one padded length (the atlas: every map on its own top clips).

What was tried and measured for these kernels (kept and not kept) is in
docs/sonify_speed.md, "The CNN12 fast path: what was tried".
"""
import dataclasses
import functools
from typing import Any, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp

from sonify_jax.transpose import budget, cnn12_kernels, winograd
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
  pattern (then the generic chain, ``transpose.chain``, runs it)."""
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
  # The kernels fuse block 1's unpool into its transpose and run the pooled
  # blocks at the pooled rate: pooled blocks first, block 1 among them.
  if not pooled or not pooled[0] or pooled != sorted(pooled, reverse=True):
    return None
  return Plan(net.name, tuple(kernels), net.channels, tuple(pooled),
              tuple(names), net)

# Outputs per Winograd tile, by kernel size, of the dense transposed convs
# on their unpooled input: F(4, 3) and F(4, 5) (6 and 8 points).
WINOGRAD_TILES = {3: 4, 5: 4}

# Outputs per Winograd tile, by kernel size, of the pooled dense blocks run
# at the pooled rate (``cnn12_kernels.unpool_transpose_polyphase``): a
# ``k``-tap block is a ``k // 2 + 1``-tap conv there, so CNN12's 7-tap
# block 2 runs as F(5, 4) (8 points, 2.2x fewer multiply-adds than the
# dense conv). Taken before :data:`WINOGRAD_TILES`; other kernel sizes run as XLA convs.
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
    :func:`cnn12_kernels.polyphase_taps`, for the ``'polyphase'`` form
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
      kernels.append(winograd.transform_kernel(
          cnn12_kernels.polyphase_taps(kernel), tile))
    elif form == "winograd":
      kernels.append(winograd.transform_kernel(kernel[::-1], tile))
    else:
      kernels.append(_kernel_taps_first(kernel)[::-1])
  return tuple(kernels)


def chain_lengths(arch: Plan, layer: int, length: int
                  ) -> Tuple[Tuple[int, int], ...]:
  """``(input length, conv length)`` of blocks ``1..layer`` for a clip of
  ``length`` samples (static shapes of the deconv chain)."""
  return tuple((t_in, t_conv)
               for t_in, t_conv, _ in block_lengths(arch, layer, length))


def _dense_block(kernels, switches, h: jax.Array, block: int,
                 lengths: Sequence[Tuple[int, int]]) -> jax.Array:
  """Block ``block``'s unpool (if pooled), ReLU and dense transposed conv."""
  t_in, t_conv = lengths[block - 1]
  k = t_in - t_conv + 1
  pooled = switches[block - 1] is not None
  form, tile = dense_form(k, pooled)
  if form == "polyphase":
    return cnn12_kernels.unpool_transpose_polyphase(h, switches[block - 1],
                                       kernels[block - 1], k, tile, t_in)
  if pooled:
    h = cnn12_kernels.relu_unpool(h, switches[block - 1], t_conv)
  else:
    h = jax.nn.relu(h)
  return cnn12_kernels.dense_transpose(h, kernels[block - 1], k, tile, t_in)


def _top_stage(params: Params, kernels, switches: Sequence[Optional[jax.Array]],
               top: jax.Array, feature_map: jax.Array, layer: int,
               lengths: Sequence[Tuple[int, int]], stop: int) -> jax.Array:
  """Blocks ``layer`` down to ``stop + 1`` of one map: ``[T, C(stop)]``.

  Block ``layer``'s unpool, ReLU and transposed conv run on the single
  non-zero channel with the map's own kernel column
  (:func:`cnn12_kernels.single_channel_transpose`); the blocks below it
  are dense.
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
  h = cnn12_kernels.single_channel_transpose(jax.nn.relu(top), column,
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
  h = cnn12_kernels.unpool_transpose_to_waveform(
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
    # CNN12 pads nothing itself (VALID convs, unpadded pools): blanking the
    # top frames the unpadded clip lacks is the whole of the padding rule.
    top = shapes.valid_lengths(
        arch.net, jnp.asarray(valid_lengths, jnp.int32), layer)[-1]
    h = forward.keep_valid(h, top)
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
  chunk = budget.maps_per_chunk(per_map_bytes(arch, layer, length),
                               maps.shape[0])
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
  chunk = budget.maps_per_chunk(per_map_bytes(arch, layer, length),
                               feature_maps.shape[0])
  kernels = transpose_kernels(params, layer, arch)

  def one_clip(x):  # [time] -> [maps, time]
    traces = _clip_traces(params, x[None], layer, arch)
    return _deconv_pairs(params, kernels, traces, None, feature_maps, layer,
                         arch, lengths, chunk, scale)

  # Clips run one after another so only one clip's chunk is live at a time.
  return jax.lax.map(one_clip, waveforms)


