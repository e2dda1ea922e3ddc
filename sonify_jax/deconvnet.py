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


@functools.partial(jax.jit, static_argnames=("layer", "arch", "scale"))
def sonify_unchecked(params: Params, waveforms: jax.Array, layer: int,
                     feature_maps: jax.Array, arch: Architecture = CNN12_ARCH,
                     scale: bool = True) -> jax.Array:
  """Jit-compiled core of :func:`sonify` with no input validation.

  Args:
    params: encoder params.
    waveforms: ``[clips, time]`` float32.
    layer: static 1-based block number.
    feature_maps: ``[maps]`` int indices into block ``layer``'s channels.
    arch: static architecture.
    scale: apply the unit-peak x ``max|x|`` scaling.
  Returns:
    ``[clips, maps, time]``.
  """
  def one_clip(x):  # [time] -> [maps, time]
    trace = forward_trace(params, x[None], layer, arch)
    top = trace.outputs[-1]  # [1, T_out, C]

    def one_map(m):
      kept = jnp.zeros_like(top).at[..., m].set(top[..., m])
      s = deconv_chain(params, trace, kept, layer)[0, :, 0]
      return scale_to_input_peak(s, x) if scale else s

    return jax.vmap(one_map)(feature_maps)

  return jax.vmap(one_clip)(waveforms)


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
           arch: Architecture = CNN12_ARCH, scale: bool = True) -> jax.Array:
  """Sonify feature maps of one layer for a batch of clips.

  Args:
    params: CNN12 encoder params (the ``params`` collection).
    waveforms: ``[clips, time]`` float waveforms at 8 kHz.
    layer: 1-based block number in ``1..11``.
    feature_maps: ``[maps]`` channel indices of block ``layer``.
    arch: the architecture the params belong to (CNN12 or CNN12_x2).
    scale: scale each output to unit peak times ``max|x|`` of its clip.
  Returns:
    ``[clips, maps, time]`` float32 sonifications, same length as the input.
  Raises:
    ValueError/TypeError before any computation for an invalid request.
  """
  validate_request(waveforms, layer, feature_maps, arch)
  return sonify_unchecked(params, jnp.asarray(waveforms, jnp.float32), layer,
                          jnp.asarray(feature_maps, jnp.int32), arch=arch,
                          scale=scale)
