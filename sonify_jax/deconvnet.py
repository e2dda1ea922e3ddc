"""Sonification by deconvnet (Zeiler & Fergus 2014; the thesis' Algorithm 1),
for any network of :mod:`sonify_jax.models.network`.

For a clip ``x`` and a feature map ``m`` of block ``L``:

1. forward through blocks 1..L recording what the transposed chain needs
   (each max-pool's switches);
2. keep map ``m`` of block L's output, zero the others;
3. take it down to the input through the transposed chain derived from the
   forward (:mod:`sonify_jax.transpose.chain`): every linear layer by its exact
   transpose, every ReLU by the explanation rule (``rule``: the deconvnet's
   by default; :mod:`sonify_jax.transpose.rules`);
4. scale the result to unit peak and multiply by ``max|x|``.

``sonify`` is pure and jit-compiled, batched over maps and clips. Three
implementations give the same result to float32 rounding:

* ``'fast'`` (default): the CNN12 kernels (:mod:`sonify_jax.transpose.
  cnn12_fast`: polyphase, Winograd) where the network has CNN12's pattern
  and the rule is the deconvnet's, else ``'structured'``;
* ``'structured'``: the generic chain, one forward per clip shared by every
  map, the top block on the map's own channel, maps in memory-bounded
  chunks;
* ``'reference'``: the plain dense chain per map (the tested reference).

``sonify_clip_pairs`` runs (clip, map) pairs that may mix clips of one
padded length (the atlas: every map on its own top clips).

A frame network (CREPE: a frame head) reads a clip as the network runs, as
frames each prepared on its own (:mod:`sonify_jax.models.framing`); its
maps are ranked and sonified on those frames, which go back to the clip by
overlap-add (:mod:`sonify_jax.transpose.framed`).
"""
import functools
from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax import over_devices
from sonify_jax.transpose import budget, chain, cnn12_fast, framed, rules
from sonify_jax.errors import UserError
from sonify_jax.models import framing
from sonify_jax.models import network as network_lib
from sonify_jax.models.registry import CNN12

Params = Any
Network = network_lib.Network

IMPLEMENTATIONS = ("fast", "structured", "reference")
RULES = rules.RULES
DEFAULT_RULE = rules.DEFAULT_RULE
CHUNK_BYTES = budget.CHUNK_BYTES
scale_to_peak = budget.scale_to_peak


def scale_to_input_peak(sonification: jax.Array, waveform: jax.Array
                        ) -> jax.Array:
  """Unit peak, times ``max|waveform|``; an all-zero signal stays zero."""
  return scale_to_peak(sonification, jnp.max(jnp.abs(waveform)))


def _fast_plan(net: Network, impl: str, rule: str):
  """The CNN12 plan when the fast kernels serve this request, else None."""
  if impl != "fast" or rule != "deconvnet":
    return None
  return cnn12_fast.plan_of(net)


def uses_cnn12_kernels(net: Network, rule: str = rules.DEFAULT_RULE,
                       impl: str = "fast") -> bool:
  """Whether a request runs on the tuned CNN12 kernels (else the generic
  chain)."""
  return _fast_plan(net, impl, rule) is not None


def trace_bytes(net: Network, layer: int, length: int) -> int:
  """Estimated peak memory of one clip's forward with what the chain keeps."""
  if framing.is_framed(net):
    return framed.trace_bytes(net, layer, length)
  plan = cnn12_fast.plan_of(net)
  if plan is not None:
    return cnn12_fast.trace_bytes(plan, layer, length)
  return chain.trace_bytes(net, layer, length)


def maps_per_chunk(net: Network, layer: int, length: int, num_maps: int,
                   budget_bytes: Optional[int] = None) -> int:
  """How many maps of one clip go down at once within ``budget_bytes``
  (default :data:`CHUNK_BYTES`), by the tuned CNN12 path's estimate where
  its plan fits ``net``, else the generic chain's."""
  plan = cnn12_fast.plan_of(net)
  per_map = (cnn12_fast.per_map_bytes(plan, layer, length) if plan
             else chain.per_map_bytes(net, layer, length))
  return budget.maps_per_chunk(per_map, num_maps, budget_bytes)


@functools.partial(jax.jit,
                   static_argnames=("layer", "arch", "scale", "impl", "rule"))
def sonify_unchecked(params: Params, waveforms: jax.Array, layer: int,
                     feature_maps: jax.Array, arch: Network = CNN12,
                     scale: bool = True, impl: str = "fast",
                     rule: str = rules.DEFAULT_RULE) -> jax.Array:
  """Jit-compiled core of :func:`sonify` with no input validation.

  Args:
    params: encoder params (``{layer name: {...}}``).
    waveforms: ``[clips, time]`` float32.
    layer: static 1-based block number.
    feature_maps: ``[maps]`` int indices into block ``layer``'s channels.
    arch: static network description.
    scale: apply the unit-peak x ``max|x|`` scaling.
    impl: ``'fast'``, ``'structured'`` or ``'reference'``.
    rule: how ReLUs transpose (:data:`RULES`).
  Returns:
    ``[clips, maps, time]``.
  """
  if framing.is_framed(arch):
    if impl not in IMPLEMENTATIONS:
      raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, got {impl!r}")
    return framed.sonify(params, waveforms, layer, feature_maps, arch, scale,
                         rule, reference=impl == "reference")
  plan = _fast_plan(arch, impl, rule)
  if plan is not None:
    return cnn12_fast.sonify(params, waveforms, layer, feature_maps, plan,
                             scale)
  if impl in ("fast", "structured"):
    return chain.sonify_structured(params, waveforms, layer, feature_maps,
                                   arch, scale, rule)
  if impl == "reference":
    return chain.reference(params, waveforms, layer, feature_maps, arch,
                           scale, rule)
  raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, got {impl!r}")


def sonify_clip_pairs(params: Params, waveforms: jax.Array,
                      valid_lengths: jax.Array, slots: jax.Array,
                      maps: jax.Array, layer: int, arch: Network,
                      scale: bool = True, rule: str = rules.DEFAULT_RULE,
                      devices: Optional[Sequence[Any]] = None) -> jax.Array:
  """Sonify ``(clip, map)`` pairs; each clip is traced once for its pairs.

  Pair ``p`` is map ``maps[p]`` of clip ``slots[p]``, so a batch of pairs
  may mix clips and a clip chosen by many maps is traced once per batch:
  fixed-size batches keep one compiled shape whatever the pairs.

  Clips may be zero-padded at the end to a common length: on its first
  ``valid_lengths[s]`` samples the sonification of a padded clip equals
  :func:`sonify` of the unpadded clip, and it is zero after them (the one
  padding rule: :mod:`sonify_jax.models.shapes`, ``chain.traces``).

  Args:
    params: encoder params.
    waveforms: ``[S, T]`` clips, zero-padded to ``T``.
    valid_lengths: ``[S]`` int samples of each clip before its padding;
      None: the clips are whole.
    slots: ``[P]`` int clip positions in ``waveforms``.
    maps: ``[P]`` int map indices of block ``layer``.
    layer, arch: static block number and network.
    scale: unit peak times the clip's ``max|x|``.
    rule: how ReLUs transpose.
    devices: the pairs are split over these (default: every local device;
      :mod:`sonify_jax.over_devices`), ordered by clip, each device given
      only the clips its pairs read; the params replicated.
  Returns:
    ``[P, T]``.
  """
  return over_devices.grouped_rows(
      pairs_on_one_device, (params,), (waveforms, valid_lengths),
      np.asarray(slots), (maps,), devices, layer=layer, arch=arch,
      scale=scale, rule=rule)


def pairs_on_one_device(params, waveforms, valid_lengths, slots, maps, *,
                        layer, arch, scale, rule):
  """:func:`sonify_clip_pairs` on the default device (row-wise in the
  pairs; the clips they read whole)."""
  if framing.is_framed(arch):
    return framed.sonify_clip_pairs(params, waveforms, valid_lengths, slots,
                                    maps, layer, arch, scale, rule)
  plan = _fast_plan(arch, "fast", rule)
  if plan is not None and valid_lengths is None:
    valid_lengths = jnp.full((waveforms.shape[0],), waveforms.shape[1],
                             jnp.int32)
  if plan is not None:
    return cnn12_fast.sonify_clip_pairs(params, waveforms, valid_lengths,
                                        slots, maps, layer, plan, scale)
  return chain.sonify_clip_pairs(params, waveforms, valid_lengths, slots,
                                 maps, layer, arch, scale, rule)


@functools.partial(jax.jit, static_argnames=("layer", "arch", "reduce"))
def feature_map_activations(params: Params, waveforms: jax.Array, layer: int,
                            arch: Network = CNN12,
                            reduce: str = "max") -> jax.Array:
  """Activation strength of every map of block ``layer`` per clip.

  Returns ``[clips, channels]``: the max (or mean) over time of the block's
  output (over every frame of a frame network). The "most active map" of a
  clip is the argmax over channels.
  """
  h = framing.clip_block_outputs(params, waveforms, arch, layer)[-1]
  if reduce == "max":
    return h.max(axis=1)
  if reduce == "mean":
    return h.mean(axis=1)
  raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")


def validate_request(waveforms, layer: int, feature_maps,
                     arch: Network = CNN12) -> None:
  """Raise a clear ``UserError`` for a request :func:`sonify` cannot serve.

  The one short-clip rule of the API and the CLI: a clip shorter than the
  layer's receptive field is refused (never padded) with this message.
  """
  arch.check_block(layer)
  shape = np.shape(waveforms)
  if len(shape) != 2:
    raise UserError(
        f"waveforms must be [clips, time], got rank {len(shape)} shape {shape}")
  if shape[0] == 0:
    raise UserError("waveforms holds no clips")
  needed = arch.min_input_length(layer)
  if shape[1] < needed:
    raise UserError(
        f"clips of {shape[1]} samples are shorter than the receptive field of "
        f"layer {layer} ({needed} samples, {needed / arch.sample_rate:.3f} s "
        f"at {arch.sample_rate / 1000:g} kHz)")
  maps_shape = np.shape(feature_maps)
  if len(maps_shape) != 1 or maps_shape[0] == 0:
    raise UserError(
        f"feature_maps must be a non-empty 1-D list of ints, got {maps_shape}")
  if not isinstance(feature_maps, jax.core.Tracer):
    maps = np.asarray(feature_maps)
    if not np.issubdtype(maps.dtype, np.integer):
      raise UserError(f"feature_maps must be integers, got {maps.dtype}")
    width = arch.channels[layer - 1]
    bad = maps[(maps < 0) | (maps >= width)]
    if bad.size:
      raise UserError(f"feature map(s) {bad.tolist()} out of range: layer "
                       f"{layer} has maps 0..{width - 1}")
  if not isinstance(waveforms, jax.core.Tracer):
    if not bool(np.all(np.isfinite(np.asarray(waveforms)))):
      raise UserError("waveforms contain NaN or Inf samples")


def sonify(params: Params, waveforms, layer: int,
           feature_maps: Union[Sequence[int], jax.Array],
           arch: Network = CNN12, scale: bool = True,
           impl: str = "fast", rule: str = rules.DEFAULT_RULE) -> jax.Array:
  """Sonify feature maps of one layer for a batch of clips.

  Args:
    params: encoder params (the ``params`` collection: ``{layer name:
      {...}}``, e.g. ``checkpoints.load_encoder``'s).
    waveforms: ``[clips, time]`` float waveforms at ``arch.sample_rate``.
    layer: 1-based block number in ``1..arch.num_blocks``.
    feature_maps: ``[maps]`` channel indices of block ``layer``.
    arch: the network the params belong to (a ``Network``; default CNN12).
    scale: scale each output to unit peak times ``max|x|`` of its clip.
    impl: ``'fast'`` (default), ``'structured'`` or ``'reference'`` (the
      plain dense chain, kept as the tested reference).
    rule: how ReLUs transpose: ``'deconvnet'`` (default, the thesis),
      ``'guided'``, ``'gradient'`` or ``'input_x_gradient'``.
  Returns:
    ``[clips, maps, time]`` float32 sonifications, same length as the input.
  Raises:
    UserError before any computation for an invalid request.
  """
  if impl not in IMPLEMENTATIONS:
    raise UserError(f"impl must be one of {IMPLEMENTATIONS}, got {impl!r}")
  rules.check(rule)
  validate_request(waveforms, layer, feature_maps, arch)
  # Always float32, whatever precision the params were trained or stored in.
  params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
  return sonify_unchecked(params, jnp.asarray(waveforms, jnp.float32), layer,
                          jnp.asarray(feature_maps, jnp.int32), arch=arch,
                          scale=scale, impl=impl, rule=rule)
