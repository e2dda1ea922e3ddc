"""The transposed chain of any network: forward with capture, then down.

Algorithm 1 of the thesis for any :class:`~sonify_jax.models.network.
Network`: the forward pass records, per layer, what its transpose needs (a
max-pool's switches; a ReLU's forward mask where the rule reads it), block
L's output keeps map ``m``, and the signal goes down layer by layer:

* each linear layer by its exact transpose, derived from the forward itself
  with ``jax.linear_transpose`` (a conv of any stride, dilation and padding
  becomes its transposed conv, so input samples the strided conv never read
  get zeros; a pad becomes a crop; an affine layer its scale; a max-pool,
  with its switches fixed, a scatter of each value back to the sample it
  came from, overlapping windows adding up);
* each ReLU by the explanation rule (:mod:`sonify_jax.transpose.rules`).

Two ways through the same chain: :func:`reference` is the plain dense chain
per map (kept as the tested reference; ``jax.vjp`` of the forward with the
rule's ReLU is the same function, see the tests); :func:`sonify_pairs` is
the structured path, with the fast forms (a conv over a signal no longer
than its kernel as one matmul, :mod:`sonify_jax.models.short_conv`; a long
conv onto few outputs as a matmul and an overlap-add,
:mod:`sonify_jax.transpose.overlap_add`; a long conv with few channel pairs
by XLA's conv, :mod:`sonify_jax.transpose.direct_conv`; other long convs
through the FFT
and max-pools unpooled without a scatter, :mod:`sonify_jax.transpose.
fft_conv`): one forward per clip shared by every map, block L's
last conv and everything after it run on the map's own channel alone (the
others are zero there; ``k * C_in`` instead of ``k * C * C_in``
multiply-adds per sample), the layers below batched over maps in
memory-bounded chunks, and (clip, map) pairs that may mix clips.
"""
import functools
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from sonify_jax.transpose import budget, direct_conv, fft_conv, overlap_add
from sonify_jax.transpose import rules
from sonify_jax.models import forward, shapes, short_conv
from sonify_jax.models import network as network_lib

Params = Any


def split_top(net: network_lib.Network, layer: int) -> Tuple[int, int, bool]:
  """``(start, stop, has_conv)`` of the top segment in
  ``net.layers_upto(layer)``: block ``layer``'s last conv and every layer
  after it (channel-wise layers, so map ``m`` depends on channel ``m`` of
  the conv alone); the whole block when it has no conv."""
  layers = net.layers_upto(layer)
  start = len(layers) - len(net.blocks[layer - 1])
  for i in range(len(layers) - 1, start - 1, -1):
    if isinstance(layers[i], network_lib.Conv):
      return i, len(layers), True
  return start, len(layers), False


def layer_shapes(net: network_lib.Network, layer: int, length: int
                 ) -> Tuple[Tuple[int, int], ...]:
  """``(length, channels)`` of the input of every layer of blocks
  ``1..layer``, and last the output of block ``layer``."""
  out, t, c = [], length, 1
  for layer_ in net.layers_upto(layer):
    out.append((t, c))
    t = shapes.layer_output_length(layer_, t)
    if isinstance(layer_, network_lib.Conv):
      c = layer_.features
  out.append((t, c))
  return tuple(out)


def per_map_bytes(net: network_lib.Network, layer: int, length: int) -> int:
  """Peak memory of one map going down: the largest layer's float32 input
  and output signals (and a long conv's spectra, ``fft_conv``), twice."""
  sizes = layer_shapes(net, layer, length)
  top_start = split_top(net, layer)[0]
  peak = 1
  for i, (layer_, (t_in, c_in), (t_out, c_out)) in enumerate(zip(
      net.layers_upto(layer), sizes[:-1], sizes[1:])):
    signals = 4 * (t_in * c_in + t_out * c_out)
    form = _form_of(layer_, t_in, c_in, matmul=i < top_start)
    if form is OverlapAdd:
      # each group's row of contributions, and their sum
      signals += 2 * 4 * overlap_add.row_values(layer_, t_out, c_in)
    elif form is fft_conv.Spectrum:
      signals += sum(fft_conv.mixed_bytes(layer_, c_in, c_out, t_in))
    peak = max(peak, signals)
  return 2 * peak


def trace_bytes(net: network_lib.Network, layer: int, length: int) -> int:
  """Peak memory of one clip's forward with its residuals: every layer's
  float32 output and an int8/bool residual, twice."""
  sizes = [t * c for t, c in layer_shapes(net, layer, length)]
  return 2 * 5 * max(sum(sizes[1:]), 1)


class Traces(NamedTuple):
  """What the transposed chain needs of ``S`` clips' forward passes.

  residuals: per layer of blocks ``1..layer``: a max-pool's switches
    ``[S, T', C]``, a ReLU's forward mask ``[S, T, C]`` (rules that read
    it), else None.
  top: ``[S, T_L, C_L]`` block ``layer``'s output; frames the unpadded
    clip does not have are zero (see :func:`traces`).
  peak: ``[S]`` ``max|x|`` of each clip.
  prepared: ``[S, T]`` the input as the network sees it (its input
    convention applied), for ``input_x_gradient``.
  lengths: per layer, ``[S]`` its input's length on each unpadded clip
    (``shapes.valid_lengths``); None for clips that are not padded.
  """
  residuals: Tuple[Optional[jax.Array], ...]
  top: jax.Array
  peak: jax.Array
  prepared: jax.Array
  lengths: Optional[Tuple[jax.Array, ...]] = None


def _fill(layer) -> float:
  """What a padded clip holds past its valid positions at a layer's input:
  the value the layer's own padding reads (``-inf`` for a max-pool)."""
  return -jnp.inf if isinstance(layer, network_lib.MaxPool) else 0.0


def traces(params: Params, waveforms: jax.Array, net: network_lib.Network,
           layer: int, rule: str = rules.DEFAULT_RULE,
           valid_lengths: Optional[jax.Array] = None) -> Traces:
  """The forward pass of ``[S, T]`` clips through blocks ``1..layer``,
  recording each layer's residual.

  ``valid_lengths`` (``[S]`` samples before each clip's zero padding):
  before every layer, the positions the unpadded clip does not have there
  are blanked (``forward.keep_valid``), so each layer's own padding reads
  what it reads on the unpadded clip and block ``layer``'s output equals
  the unpadded clip's, zero after it (:mod:`sonify_jax.models.shapes`);
  :func:`_down` blanks the same positions on the way down.
  """
  needs_mask = rule != "deconvnet"
  layers = net.layers_upto(layer)
  lengths = None
  if valid_lengths is not None:
    lengths = shapes.valid_lengths(
        net, jnp.asarray(valid_lengths, jnp.int32), layer)
  prepared = forward.prepare_input(
      net, waveforms, None if lengths is None else lengths[0])
  h = prepared[..., None]
  residuals = []
  for i, layer_ in enumerate(layers):
    if lengths is not None:
      h = forward.keep_valid(h, lengths[i], _fill(layer_))
    if isinstance(layer_, network_lib.MaxPool):
      h, switches = forward.max_pool(layer_, h)
      residuals.append(switches)
      continue
    if isinstance(layer_, network_lib.ReLU):
      residuals.append(h > 0 if needs_mask else None)
    else:
      residuals.append(None)
    h = forward.apply_layer(layer_, params, h)
  if lengths is not None:
    h = forward.keep_valid(h, lengths[-1])
  return Traces(tuple(residuals), h, jnp.max(jnp.abs(waveforms), axis=1),
                prepared, None if lengths is None else lengths[:-1])


def _linear(layer, params, h: jax.Array, residual) -> jax.Array:
  """The layer's forward with everything but its input fixed (no bias; a
  max-pool with its switches): a linear map of ``h``."""
  if isinstance(layer, network_lib.Conv):
    return forward.xla_conv(layer, params[layer.name]["kernel"], h)
  if isinstance(layer, network_lib.MaxPool):
    # Zero padding: a window's maximum is never its -inf padding.
    windows = forward.pool_windows(
        network_lib.MaxPool(layer.size, layer.stride, (0, 0)),
        jnp.pad(h, ((0, 0), layer.padding, (0, 0))))
    return jnp.take_along_axis(windows, residual[:, :, None].astype(jnp.int32),
                               axis=2)[:, :, 0]
  if isinstance(layer, network_lib.Affine):
    return h * params[layer.name]["scale"]
  if isinstance(layer, network_lib.Pad):
    return jnp.pad(h, ((0, 0), layer.padding, (0, 0)))
  return h


def transpose_layer(layer, params: Params, g: jax.Array, residual,
                    input_shape: Tuple[int, int], rule: str) -> jax.Array:
  """The signal ``g`` at a layer's output, taken to its input ``[B,
  *input_shape]``."""
  if isinstance(layer, network_lib.ReLU):
    if rule == "deconvnet":
      return jax.nn.relu(g)
    if rule == "guided":
      return jax.nn.relu(g) * residual
    return g * residual
  if isinstance(layer, network_lib.Identity):
    return g
  if isinstance(layer, network_lib.Affine):
    return g * params[layer.name]["scale"]
  spec = jax.ShapeDtypeStruct((g.shape[0],) + tuple(input_shape), g.dtype)
  transpose = jax.linear_transpose(
      lambda h: _linear(layer, params, h, residual), spec)
  return transpose(g)[0]


class OverlapAdd(NamedTuple):
  """A long conv onto few channels: its group matrix
  (:mod:`sonify_jax.transpose.overlap_add`)."""
  matrix: jax.Array


class DirectConv(NamedTuple):
  """A long narrow conv by XLA's conv: its kernel ``[k, C_in, C_out]``
  (:mod:`sonify_jax.transpose.direct_conv`)."""
  kernel: jax.Array


class ShortConv(NamedTuple):
  """A conv over a signal no longer than its kernel, as its matrix
  ``[T_in, C_in, T_out, C_out]`` (:mod:`sonify_jax.models.short_conv`)."""
  matrix: jax.Array


def _form_of(layer_, t_in: int, c_in: int, matmul: bool):
  """Which fast transpose a layer on ``[t_in, c_in]`` takes (the class of
  what :func:`spectra` holds for it), or None; ``matmul``: below the top
  segment, where the matmul forms pay."""
  if not isinstance(layer_, network_lib.Conv):
    return None
  if matmul and short_conv.fits(layer_, t_in, c_in):
    return ShortConv
  if matmul and overlap_add.fits(layer_, c_in):
    return OverlapAdd
  if not fft_conv.uses_fft(layer_):
    return None
  if matmul and direct_conv.fits(layer_, t_in, c_in):
    return DirectConv
  return fft_conv.Spectrum


def _fast_form(layer_, params: Params, t_in: int, c_in: int, matmul: bool):
  form = _form_of(layer_, t_in, c_in, matmul)
  if form is None:
    return None
  kernel = params[layer_.name]["kernel"]
  if form is ShortConv:
    return ShortConv(short_conv.matrix(layer_, kernel, t_in))
  if form is OverlapAdd:
    return OverlapAdd(overlap_add.matrix(layer_, kernel))
  if form is DirectConv:
    return DirectConv(kernel)
  return fft_conv.spectrum(layer_, kernel)


def spectra(net: network_lib.Network, params: Params, layer: int,
            length: int, top_start: Optional[int] = None) -> Tuple[Any, ...]:
  """Per layer of blocks ``1..layer`` on ``length`` samples: a conv's fast
  transpose, its matrix where the signal is no longer than its kernel
  (:class:`ShortConv`), a matmul and overlap-add where a long conv goes
  onto few channels (:class:`OverlapAdd`), or else the FFT form of a long
  conv (:mod:`sonify_jax.transpose.fft_conv`), else None. Computed once per
  request, outside the loop over maps. From layer ``top_start`` on (the
  segment that runs on each map's own channel) neither matmul form: their
  products, taken per map on one channel, are outer products (and one
  channel's slice of a conv's matrix is its kernel repeated at every output
  sample), while a one-channel spectrum is cheap."""
  sizes = layer_shapes(net, layer, length)
  top_start = len(sizes) if top_start is None else top_start
  return tuple(_fast_form(l, params, *size, matmul=i < top_start)
               for i, (l, size) in enumerate(zip(net.layers_upto(layer),
                                                 sizes)))


def _one_channel(layer, params: Params, residual, spectrum, m):
  """A layer of the top segment restricted to channel ``m``: its params,
  residual and spectrum sliced to that channel."""
  take = lambda a, axis: jax.lax.dynamic_slice_in_dim(a, m, 1, axis)  # pylint: disable=unnecessary-lambda-assignment
  if isinstance(layer, network_lib.Conv):
    params = {layer.name: {"kernel": take(params[layer.name]["kernel"], 2)}}
  elif isinstance(layer, network_lib.Affine):
    params = {layer.name: {"scale": take(params[layer.name]["scale"], 0)}}
  if residual is not None:
    residual = take(residual, 2)
  if spectrum is not None:
    spectrum = spectrum._replace(freq=take(spectrum.freq, 3))
  return params, residual, spectrum


def _down(net, params, residuals, g, start, stop, sizes, rule, top_map=None,
          spectra_=None, lengths=None):
  """Layers ``stop - 1`` down to ``start`` of ``net.layers_upto(...)``;
  ``top_map``: those layers run on that one channel. ``spectra_`` (from
  :func:`spectra`): the fast forms, long convs through the FFT and max-pools
  by :func:`fft_conv.unpool`; None: every layer by ``jax.linear_transpose``
  (the reference). ``lengths`` (``Traces.lengths`` of this clip): each
  layer's input past the unpadded clip's length is blanked, the transpose
  of the forward's blanking."""
  layers = net.layers_upto(len(net.blocks))
  for i in range(stop - 1, start - 1, -1):
    layer, residual, p = layers[i], residuals[i], params
    spectrum = None if spectra_ is None else spectra_[i]
    shape = sizes[i]
    if top_map is not None:
      p, residual, spectrum = _one_channel(layer, params, residual, spectrum,
                                           top_map)
      # Only the top conv's input has every channel; above it, one.
      if not isinstance(layer, network_lib.Conv):
        shape = (shape[0], 1)
    if isinstance(spectrum, ShortConv):
      g = short_conv.transposed(spectrum.matrix, g)
    elif isinstance(spectrum, DirectConv):
      g = direct_conv.transposed_conv(layer, spectrum.kernel, g)
    elif isinstance(spectrum, OverlapAdd):
      g = overlap_add.transposed_conv(layer, spectrum.matrix, g, shape[0])
    elif spectrum is not None:
      g = fft_conv.transposed_conv(layer, spectrum, g, shape[0])
    elif spectra_ is not None and isinstance(layer, network_lib.MaxPool):
      g = fft_conv.unpool(layer, g, residual, shape[0])
    else:
      g = transpose_layer(layer, p, g, residual, shape, rule)
    if lengths is not None:
      g = forward.keep_valid(g, lengths[i])
  return g


def _finish(s, traces_, slot, rule, scale):
  if rules.multiplies_input(rule):
    s = s * traces_.prepared[slot]
  return budget.scale_to_peak(s, traces_.peak[slot]) if scale else s


def reference(params: Params, waveforms: jax.Array, layer: int,
              maps: jax.Array, net: network_lib.Network, scale: bool = True,
              rule: str = rules.DEFAULT_RULE) -> jax.Array:
  """Plain Algorithm 1: for every clip and map, block ``layer``'s output
  with every map but ``m`` zeroed, taken down the dense chain.
  ``[clips, maps, time]``."""
  sizes = layer_shapes(net, layer, waveforms.shape[1])
  num_layers = len(net.layers_upto(layer))

  def one_clip(x):
    t = traces(params, x[None], net, layer, rule)
    channel = jnp.arange(t.top.shape[-1])

    def one_map(m):
      kept = jnp.where(channel == m, t.top, 0.0)
      s = _down(net, params, t.residuals, kept, 0, num_layers, sizes, rule)
      return _finish(s[0, :, 0], t, 0, rule, scale)

    return jax.vmap(one_map)(maps)

  return jax.vmap(one_clip)(waveforms)


def _slot_traces(traces_: Traces, slot):
  """One clip's residuals (``[1, ...]``), top output ``[T_L, C_L]`` and
  per-layer lengths (``[1]`` each, or None)."""
  take = lambda a: jax.lax.dynamic_index_in_dim(a, slot, keepdims=True)  # pylint: disable=unnecessary-lambda-assignment
  residuals = tuple(None if r is None else take(r)
                    for r in traces_.residuals)
  lengths = (None if traces_.lengths is None
             else tuple(take(l) for l in traces_.lengths))
  return residuals, take(traces_.top)[0], lengths


def sonify_pairs(params: Params, traces_: Traces, slots: Optional[jax.Array],
                 maps: jax.Array, net: network_lib.Network, layer: int,
                 length: int, rule: str, chunk: int, scale: bool
                 ) -> jax.Array:
  """``[P]`` (slot, map) pairs -> ``[P, length]`` sonifications, ``chunk``
  pairs at a time; ``slots`` None: every map reads clip 0."""
  sizes = layer_shapes(net, layer, length)
  start, stop, has_conv = split_top(net, layer)
  spectra_ = spectra(net, params, layer, length, top_start=start)

  def one(m, slot):
    residuals, top, lengths = _slot_traces(traces_, slot)
    column = jax.lax.dynamic_slice_in_dim(top, m, 1, axis=1)[None]
    g = _down(net, params, residuals, column, start, stop, sizes, rule,
              top_map=m, spectra_=spectra_, lengths=lengths)
    if not has_conv:  # the segment ran on channel m of the block's input
      g = jax.lax.dynamic_update_slice_in_dim(
          jnp.zeros((1,) + sizes[start], g.dtype), g, m, axis=2)
    s = _down(net, params, residuals, g, 0, start, sizes, rule,
              spectra_=spectra_, lengths=lengths)
    return _finish(s[0, :, 0], traces_, slot, rule, scale)

  if slots is None:
    return jax.lax.map(lambda m: one(m, 0), maps, batch_size=chunk)
  return jax.lax.map(lambda pair: one(*pair), (maps, slots),
                     batch_size=chunk)


@functools.partial(jax.jit, static_argnames=("layer", "net", "scale", "rule"))
def sonify_clip_pairs(params: Params, waveforms: jax.Array,
                      valid_lengths: jax.Array, slots: jax.Array,
                      maps: jax.Array, layer: int, net: network_lib.Network,
                      scale: bool = True, rule: str = rules.DEFAULT_RULE
                      ) -> jax.Array:
  """:func:`sonify_pairs` on zero-padded clips (see :func:`traces`);
  ``valid_lengths`` None: clips that are not padded."""
  length = waveforms.shape[1]
  traces_ = traces(params, waveforms, net, layer, rule, valid_lengths)
  chunk = budget.maps_per_chunk(per_map_bytes(net, layer, length),
                               maps.shape[0])
  return sonify_pairs(params, traces_, slots, maps, net, layer, length, rule,
                      chunk, scale)


def sonify_structured(params: Params, waveforms: jax.Array, layer: int,
                      maps: jax.Array, net: network_lib.Network,
                      scale: bool = True, rule: str = rules.DEFAULT_RULE
                      ) -> jax.Array:
  """Every map of ``maps`` on every clip: ``[clips, maps, time]``; clips
  one after another, so one clip's chunk of maps is live at a time."""
  length = waveforms.shape[1]
  chunk = budget.maps_per_chunk(per_map_bytes(net, layer, length),
                               maps.shape[0])

  def one_clip(x):
    traces_ = traces(params, x[None], net, layer, rule)
    return sonify_pairs(params, traces_, None, maps, net, layer, length,
                        rule, chunk, scale)

  return jax.lax.map(one_clip, waveforms)
