"""Array primitives of the deconvnet's CNN12 fast path (``deconv.cnn12_fast``
and ``transpose.cnn12_kernels``; the forward pass of any network is
``models.forward``).

Layout is NWC throughout: activations are ``[batch, time, channels]`` and conv
kernels are ``[kernel_size, in_channels, out_channels]`` (Flax's ``nn.Conv``
layout), so a kernel read from the params tree can be used by both directions.
"""
from typing import Tuple

import jax
import jax.numpy as jnp

_DIMENSION_NUMBERS = ("NWC", "WIO", "NWC")


def conv1d_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """VALID, stride-1 1-D cross-correlation without bias.

  Args:
    x: ``[batch, time, in_channels]``.
    kernel: ``[k, in_channels, out_channels]``.
  Returns:
    ``[batch, time - k + 1, out_channels]``.
  """
  return jax.lax.conv_general_dilated(
      x, kernel, window_strides=(1,), padding="VALID",
      dimension_numbers=_DIMENSION_NUMBERS)


def conv1d_transpose(y: jax.Array, kernel: jax.Array,
                     input_length: int) -> jax.Array:
  """Adjoint of :func:`conv1d_valid` with respect to its input.

  This is the deconvnet's "transposed convolution sharing the conv weights":
  JAX derives it by transposing the linear map ``x -> conv1d_valid(x, kernel)``
  (the same operator ``jax.vjp`` of the conv applies to a cotangent).

  Args:
    y: ``[batch, input_length - k + 1, out_channels]``.
    kernel: ``[k, in_channels, out_channels]``.
    input_length: length of the signal the forward conv consumed.
  Returns:
    ``[batch, input_length, in_channels]``.
  """
  batch = y.shape[0]
  x_spec = jax.ShapeDtypeStruct((batch, input_length, kernel.shape[1]), y.dtype)
  transpose = jax.linear_transpose(lambda x: conv1d_valid(x, kernel), x_spec)
  (x,) = transpose(y)
  return x


def max_pool_with_switches(x: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """MaxPool(2, 2) over time that also returns the argmax "switches".

  An odd trailing sample is dropped, as in PyTorch's ``MaxPool1d(2)``.

  Args:
    x: ``[batch, time, channels]``.
  Returns:
    pooled ``[batch, time // 2, channels]`` and switches of the same shape:
    int8 0 or 1, the offset inside each window of its (first) maximum.
  """
  b, t, c = x.shape
  windows = x[:, : 2 * (t // 2)].reshape(b, t // 2, 2, c)
  pooled = windows.max(axis=2)
  switches = jnp.argmax(windows, axis=2).astype(jnp.int8)
  return pooled, switches


def max_unpool(pooled: jax.Array, switches: jax.Array,
               length: int) -> jax.Array:
  """Inverse routing of :func:`max_pool_with_switches`.

  Each pooled value goes back to the position its switch records; every other
  position, and a dropped odd trailing sample, is zero.

  Args:
    pooled: ``[batch, time // 2, channels]``.
    switches: same shape, values in {0, 1}.
    length: the pre-pool length ``time`` (odd lengths allowed).
  Returns:
    ``[batch, length, channels]``.
  """
  b, n, c = pooled.shape
  if length not in (2 * n, 2 * n + 1):
    raise ValueError(f"pre-pool length {length} does not pool to {n}")
  zero = jnp.zeros_like(pooled)
  first = jnp.where(switches == 0, pooled, zero)
  second = jnp.where(switches == 1, pooled, zero)
  interleaved = jnp.stack([first, second], axis=2).reshape(b, 2 * n, c)
  return jnp.pad(interleaved, ((0, 0), (0, length - 2 * n), (0, 0)))
