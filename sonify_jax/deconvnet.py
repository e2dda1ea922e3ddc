"""Sonification by deconvnet (Zeiler & Fergus 2014; the thesis' Algorithm 1).

For a clip ``x`` and a feature map ``m`` of block ``L``:

1. forward through blocks 1..L recording each pool's argmax switches;
2. keep map ``m`` of block L's output (after its pool), zero the others;
3. for block L down to 1: max-unpool with the block's switches to the exact
   pre-pool length, ReLU, transposed conv with the block's own kernel (the
   adjoint of the conv; no bias);
4. scale the result to unit peak and multiply by ``max|x|``.

``sonify`` is pure and jit-compiled; the forward trace is computed once per
clip and shared by every requested map (vmap over maps, batched over clips).
"""
import functools
from typing import Any, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax.models import ops
from sonify_jax.models.architecture import Architecture, CNN12 as CNN12_ARCH
from sonify_jax.models.cnn12 import BlockTrace, CNN12

Params = Any


def _encoder(arch: Architecture) -> CNN12:
  return CNN12(arch=arch)


def forward_trace(params: Params, waveforms: jax.Array, layer: int,
                  arch: Architecture = CNN12_ARCH) -> BlockTrace:
  """Forward with switch capture through blocks 1..``layer``."""
  return _encoder(arch).apply({"params": params}, waveforms, layer,
                              method=CNN12.trace)


def deconv_chain(params: Params, trace: BlockTrace, top: jax.Array,
                 layer: int) -> jax.Array:
  """Project a block-``layer`` signal down to the input (steps 3 of Algorithm 1).

  Args:
    params: encoder params (``block{i}/kernel``).
    trace: forward trace of the same clips (only switches/lengths are used).
    top: ``[B, T_out(layer), C(layer)]`` signal in block ``layer``'s output.
    layer: 1-based block number.
  Returns:
    ``[B, T_in, 1]`` unscaled sonification.
  """
  h = top
  for block in range(layer, 0, -1):
    switches = trace.switches[block - 1]
    if switches is not None:
      h = ops.max_unpool(h, switches, trace.conv_lengths[block - 1])
    h = jax.nn.relu(h)
    kernel = params[f"block{block}"]["kernel"]
    h = ops.conv1d_transpose(h, kernel, trace.inputs[block - 1].shape[1])
  return h


def scale_to_input_peak(sonification: jax.Array, waveform: jax.Array
                        ) -> jax.Array:
  """Unit peak, times ``max|waveform|``; an all-zero signal stays zero."""
  peak = jnp.max(jnp.abs(sonification))
  safe = jnp.where(peak > 0, peak, 1.0)
  return sonification / safe * jnp.max(jnp.abs(waveform))


def _kernel_taps_first(kernel: jax.Array) -> jax.Array:
  """``[k, Cin, C]`` conv kernel -> ``[k, C, Cin]``: tap ``j`` maps C -> Cin."""
  return jnp.transpose(kernel, (0, 2, 1))


def _single_channel_transpose(u: jax.Array, kernel_m: jax.Array,
                              input_length: int) -> jax.Array:
  """Transposed conv of a signal that lives in one channel per map.

  Where the chain starts only the kept map is non-zero, so the block's
  transposed conv is a sum of ``k`` shifted outer products (a rank-1 product
  per tap) instead of a dense ``C -> Cin`` contraction.

  Args:
    u: ``[M, T_conv]`` the kept map, unpooled, one row per map.
    kernel_m: ``[M, k, Cin]`` each map's own kernel column ``kernel[:, :, m]``.
    input_length: ``T_conv + k - 1``.
  Returns:
    ``[M, input_length, Cin]``.
  """
  k = kernel_m.shape[1]
  t_conv = u.shape[1]
  out = jnp.zeros((u.shape[0], input_length, kernel_m.shape[2]), u.dtype)
  for j in range(k):
    # x[t + j] += y[t] * K[j]  (adjoint of the VALID cross-correlation).
    out = out.at[:, j:j + t_conv].add(u[:, :, None] * kernel_m[:, j][:, None])
  return out


def _dense_transpose(h: jax.Array, kernel: jax.Array,
                     input_length: int) -> jax.Array:
  """Dense transposed conv ``[M, T, C] -> [M, input_length, Cin]``.

  Written as a full correlation with the flipped kernel, the form XLA's CPU
  convolution runs fastest (measured against ``jax.linear_transpose``).
  """
  k = kernel.shape[0]
  flipped = _kernel_taps_first(kernel)[::-1]  # [k, C, Cin]
  pad_right = input_length - h.shape[1]
  return jax.lax.conv_general_dilated(
      h, flipped, window_strides=(1,), padding=[(k - 1, pad_right)],
      dimension_numbers=ops._DIMENSION_NUMBERS)  # pylint: disable=protected-access


def _polyphase_kernel(kernel: jax.Array) -> jax.Array:
  """Kernel of the polyphase transposed conv (see :func:`_unpool_transpose`).

  Args:
    kernel: ``[k, Cin, C]``.
  Returns:
    ``[Q, 2C, 2Cin]`` with ``Q = k // 2 + 1``, flipped for a correlation. Rows
    are (switch-0 channels, switch-1 channels), columns (even outputs, odd
    outputs).
  """
  k = kernel.shape[0]
  q = k // 2 + 1
  taps = _kernel_taps_first(kernel)  # [k, C, Cin]
  # Index j + 1 of ``padded`` is tap j; taps -1 and >= k are zero.
  padded = jnp.pad(taps, ((1, 2 * q + 1 - k), (0, 0), (0, 0)))
  tap = lambda j: padded[j + 1]
  blocks = []
  for o in range(q):
    # Pooled value n with switch s sits at 2n + s; output 2r + e receives it
    # through tap (2r + e) - (2n + s) = 2o + e - s with o = r - n.
    even = jnp.concatenate([tap(2 * o), tap(2 * o - 1)], axis=0)  # [2C, Cin]
    odd = jnp.concatenate([tap(2 * o + 1), tap(2 * o)], axis=0)
    blocks.append(jnp.concatenate([even, odd], axis=1))  # [2C, 2Cin]
  return jnp.stack(blocks[::-1])


def _unpool_transpose(pooled: jax.Array, switches: jax.Array,
                      poly_kernel: jax.Array, input_length: int) -> jax.Array:
  """Max-unpool, then transposed conv, without building the unpooled signal.

  The unpooled signal is zero at half its positions. Splitting the pooled
  values by switch parity (polyphase) runs the transposed conv at the pooled
  length on ``2C`` channels and yields the even and odd output samples as two
  channel groups, which are then interleaved.

  Args:
    pooled: ``[M, N, C]`` (already ReLU'd; ReLU commutes with unpooling).
    switches: ``[N, C]`` or ``[M, N, C]`` int8 in {0, 1}.
    poly_kernel: ``[Q, 2C, 2Cin]`` from :func:`_polyphase_kernel`.
    input_length: the block's input length (pre-pool length + k - 1).
  Returns:
    ``[M, input_length, Cin]``.
  """
  m, n, _ = pooled.shape
  q = poly_kernel.shape[0]
  cin = poly_kernel.shape[2] // 2
  first = switches == 0
  split = jnp.concatenate(
      [jnp.where(first, pooled, 0.0), jnp.where(first, 0.0, pooled)], axis=-1)
  rows = -(-input_length // 2)
  phases = jax.lax.conv_general_dilated(
      split, poly_kernel, window_strides=(1,), padding=[(q - 1, rows - n)],
      dimension_numbers=ops._DIMENSION_NUMBERS)  # [M, rows, 2Cin]  pylint: disable=protected-access
  out = phases.reshape(m, rows, 2, cin).reshape(m, 2 * rows, cin)
  return out[:, :input_length]


def deconv_maps(params: Params, trace: BlockTrace, feature_maps: jax.Array,
                layer: int) -> jax.Array:
  """Fast deconvnet projection of single maps of one clip (Algorithm 1, 2-3).

  Same result as :func:`deconv_chain` seeded with one kept map, computed with
  the problem's structure: the top block's transposed conv is a single-channel
  product, pooled blocks use the polyphase unpool+transpose, and all ``M``
  maps share the trace and run as one batch.

  Args:
    params: encoder params.
    trace: forward trace of ONE clip (batch 1).
    feature_maps: ``[M]`` int map indices of block ``layer``.
    layer: 1-based block number.
  Returns:
    ``[M, T]`` unscaled sonifications.
  """
  top = trace.outputs[layer - 1][0]  # [T_out, C]
  kernel = params[f"block{layer}"]["kernel"]  # [k, Cin, C]
  u = jnp.take(top, feature_maps, axis=1).T  # [M, T_out]
  switches = trace.switches[layer - 1]
  t_conv = trace.conv_lengths[layer - 1]
  if switches is not None:
    s = jnp.take(switches[0], feature_maps, axis=1).T  # [M, T_out]
    n = u.shape[1]
    interleaved = jnp.stack([jnp.where(s == 0, u, 0.0),
                             jnp.where(s == 1, u, 0.0)], axis=2)
    u = jnp.pad(interleaved.reshape(-1, 2 * n), ((0, 0), (0, t_conv - 2 * n)))
  u = jax.nn.relu(u)
  kernel_m = jnp.transpose(jnp.take(kernel, feature_maps, axis=2), (2, 0, 1))
  h = _single_channel_transpose(u, kernel_m,
                                trace.inputs[layer - 1].shape[1])
  for block in range(layer - 1, 0, -1):
    kernel = params[f"block{block}"]["kernel"]
    length = trace.inputs[block - 1].shape[1]
    h = jax.nn.relu(h)
    switches = trace.switches[block - 1]
    if switches is None:
      h = _dense_transpose(h, kernel, length)
    elif kernel.shape[1] == 1:
      # Block 1 (one input channel): the polyphase conv would be tiny and
      # badly shaped; unpool and contract directly.
      h = ops.max_unpool(h, jnp.broadcast_to(switches, h.shape),
                         trace.conv_lengths[block - 1])
      h = _dense_transpose(h, kernel, length)
    else:
      h = _unpool_transpose(h, switches[0], _polyphase_kernel(kernel), length)
  return h[..., 0]


# Upper bound on the intermediate memory of one chunk of maps in the fast path.
CHUNK_BYTES = 1 << 30


def maps_per_chunk(arch: Architecture, layer: int, length: int,
                   num_maps: int, budget_bytes: int = CHUNK_BYTES) -> int:
  """How many maps of one clip the fast path processes at once.

  Estimates the largest per-map intermediate of the chain (split input,
  phase output and interleaved output of a block, float32) with a safety
  factor, so that e.g. all 64 maps of layer 2 on a 10 s clip run in chunks.
  """
  per_map = 0
  t = length
  for block in range(1, layer + 1):
    k, c = arch.kernels[block - 1], arch.channels[block - 1]
    cin = 1 if block == 1 else arch.channels[block - 2]
    t_conv = t - k + 1
    per_map = max(per_map, 4 * (2 * t_conv * c + 3 * t * cin))
    t = t_conv // 2 if arch.is_pooled(block) else t_conv
  return int(max(1, min(num_maps, budget_bytes // (2 * max(per_map, 1)))))


def _sonify_reference(params, waveforms, layer, feature_maps, arch, scale):
  """Plain Algorithm 1: dense chain per map (vmap over maps and clips)."""
  def one_clip(x):  # [time] -> [maps, time]
    trace = forward_trace(params, x[None], layer, arch)
    top = trace.outputs[-1]  # [1, T_out, C]

    def one_map(m):
      kept = jnp.zeros_like(top).at[..., m].set(top[..., m])
      s = deconv_chain(params, trace, kept, layer)[0, :, 0]
      return scale_to_input_peak(s, x) if scale else s

    return jax.vmap(one_map)(feature_maps)

  return jax.vmap(one_clip)(waveforms)


def _sonify_fast(params, waveforms, layer, feature_maps, arch, scale):
  """Structured path: trace once per clip, maps in memory-bounded chunks."""
  chunk = maps_per_chunk(arch, layer, waveforms.shape[1],
                         feature_maps.shape[0])

  def one_clip(x):  # [time] -> [maps, time]
    trace = forward_trace(params, x[None], layer, arch)

    def map_chunk(maps):  # lax.map hands single maps; vmap batches them.
      return deconv_maps(params, trace, maps[None], layer)[0]

    s = jax.lax.map(map_chunk, feature_maps, batch_size=chunk)
    if scale:
      s = jax.vmap(scale_to_input_peak, in_axes=(0, None))(s, x)
    return s

  # Clips run one after another so only one clip's chunk is live at a time.
  return jax.lax.map(one_clip, waveforms)


IMPLEMENTATIONS = ("fast", "reference")


@functools.partial(jax.jit,
                   static_argnames=("layer", "arch", "scale", "impl"))
def sonify_unchecked(params: Params, waveforms: jax.Array, layer: int,
                     feature_maps: jax.Array, arch: Architecture = CNN12_ARCH,
                     scale: bool = True, impl: str = "fast") -> jax.Array:
  """Jit-compiled core of :func:`sonify` with no input validation.

  Args:
    params: encoder params.
    waveforms: ``[clips, time]`` float32.
    layer: static 1-based block number.
    feature_maps: ``[maps]`` int indices into block ``layer``'s channels.
    arch: static architecture.
    scale: apply the unit-peak x ``max|x|`` scaling.
    impl: ``'fast'`` (structured chain) or ``'reference'`` (plain chain).
  Returns:
    ``[clips, maps, time]``.
  """
  if impl == "fast":
    return _sonify_fast(params, waveforms, layer, feature_maps, arch, scale)
  if impl == "reference":
    return _sonify_reference(params, waveforms, layer, feature_maps, arch,
                             scale)
  raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, got {impl!r}")


@functools.partial(jax.jit, static_argnames=("layer", "arch", "reduce"))
def feature_map_activations(params: Params, waveforms: jax.Array, layer: int,
                            arch: Architecture = CNN12_ARCH,
                            reduce: str = "max") -> jax.Array:
  """Activation strength of every map of block ``layer`` per clip.

  Returns ``[clips, channels]``: the max (or mean) over time of the block's
  output. The "most active map" of a clip is the argmax over channels.
  """
  h = forward_trace(params, waveforms, layer, arch).outputs[-1]
  if reduce == "max":
    return h.max(axis=1)
  if reduce == "mean":
    return h.mean(axis=1)
  raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")


def validate_request(waveforms, layer: int, feature_maps,
                     arch: Architecture = CNN12_ARCH) -> None:
  """Raise a clear error for a request :func:`sonify` cannot serve."""
  arch.check_block(layer)
  shape = np.shape(waveforms)
  if len(shape) != 2:
    raise ValueError(
        f"waveforms must be [clips, time], got rank {len(shape)} shape {shape}")
  if shape[0] == 0:
    raise ValueError("waveforms holds no clips")
  needed = arch.min_input_length(layer)
  if shape[1] < needed:
    raise ValueError(
        f"clips of {shape[1]} samples are shorter than the receptive field of "
        f"layer {layer} ({needed} samples, {needed / 8000:.3f} s at 8 kHz)")
  maps_shape = np.shape(feature_maps)
  if len(maps_shape) != 1 or maps_shape[0] == 0:
    raise ValueError(
        f"feature_maps must be a non-empty 1-D list of ints, got {maps_shape}")
  if not isinstance(feature_maps, jax.core.Tracer):
    maps = np.asarray(feature_maps)
    if not np.issubdtype(maps.dtype, np.integer):
      raise TypeError(f"feature_maps must be integers, got {maps.dtype}")
    width = arch.channels[layer - 1]
    bad = maps[(maps < 0) | (maps >= width)]
    if bad.size:
      raise ValueError(f"feature map(s) {bad.tolist()} out of range: layer "
                       f"{layer} has maps 0..{width - 1}")
  if not isinstance(waveforms, jax.core.Tracer):
    if not bool(np.all(np.isfinite(np.asarray(waveforms)))):
      raise ValueError("waveforms contain NaN or Inf samples")


def sonify(params: Params, waveforms, layer: int,
           feature_maps: Union[Sequence[int], jax.Array],
           arch: Architecture = CNN12_ARCH, scale: bool = True,
           impl: str = "fast") -> jax.Array:
  """Sonify feature maps of one layer for a batch of clips.

  Args:
    params: CNN12 encoder params (the ``params`` collection).
    waveforms: ``[clips, time]`` float waveforms at 8 kHz.
    layer: 1-based block number in ``1..11``.
    feature_maps: ``[maps]`` channel indices of block ``layer``.
    arch: the architecture the params belong to (CNN12 or CNN12_x2).
    scale: scale each output to unit peak times ``max|x|`` of its clip.
    impl: ``'fast'`` (default; structured, memory-bounded chunks of maps) or
      ``'reference'`` (the plain dense chain, kept as the tested reference).
  Returns:
    ``[clips, maps, time]`` float32 sonifications, same length as the input.
  Raises:
    ValueError/TypeError before any computation for an invalid request.
  """
  if impl not in IMPLEMENTATIONS:
    raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, got {impl!r}")
  validate_request(waveforms, layer, feature_maps, arch)
  return sonify_unchecked(params, jnp.asarray(waveforms, jnp.float32), layer,
                          jnp.asarray(feature_maps, jnp.int32), arch=arch,
                          scale=scale, impl=impl)
