"""CNN12 and CNN12_x2: raw-waveform 1-D CNN encoders (Flax linen)."""
from typing import Any, NamedTuple, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from sonify_jax.models import ops
from sonify_jax.models.architecture import Architecture, CNN12 as CNN12_ARCH


class BlockTrace(NamedTuple):
  """What the forward pass records for the deconvnet.

  Entry ``i`` belongs to block ``i + 1``.
  inputs: the block's input ``[B, T_in, C_in]`` (the waveform as ``[B, T, 1]``
    for block 1).
  conv_lengths: length of the block's conv/ReLU output (the pre-pool length).
  switches: ``[B, T_conv // 2, C]`` int8 argmax offsets, or None (no pool).
  outputs: the block's output ``[B, T_out, C]`` (after its pool if any).
  """
  inputs: Tuple[jax.Array, ...]
  conv_lengths: Tuple[int, ...]
  switches: Tuple[Optional[jax.Array], ...]
  outputs: Tuple[jax.Array, ...]


class Conv1DValid(nn.Module):
  """VALID stride-1 conv with bias; kernel ``[k, C_in, C_out]``.

  He (fan-in, ReLU gain) init: with no normalisation layers, LeCun init
  shrinks the signal ~sqrt(2) per block, and after eleven blocks the pooled
  features barely differ between clips, so SimCLR collapses (measured on the
  embedded data: a fixed batch stays at the chance loss under LeCun init and
  is fitted under He init).
  """
  features: int
  kernel_size: int
  dtype: Any = jnp.float32         # compute dtype; params stay float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.he_normal(),
                        (self.kernel_size, x.shape[-1], self.features),
                        jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,),
                      jnp.float32)
    return (ops.conv1d_valid(x.astype(self.dtype), kernel.astype(self.dtype))
            + bias.astype(self.dtype))


class CNN12(nn.Module):
  """Eleven conv -> ReLU (-> MaxPool(2,2) for blocks 1..8) blocks, mean pool,
  dropout, Dense to ``arch.embed_dim``.

  Params are named ``block1`` .. ``block11`` and ``embedding``.
  Input: waveforms ``[batch, time]`` at 8 kHz.

  ``dtype`` is the compute dtype of the convolutions and the Dense (e.g.
  ``jnp.bfloat16`` on TPU); params are float32 whatever it is, the temporal
  mean is taken in float32 and the embedding is returned as float32, so
  losses and optimiser state stay float32 (mixed precision).
  """
  arch: Architecture = CNN12_ARCH
  dropout_rate: float = 0.4
  dtype: Any = jnp.float32

  def setup(self):
    for i, (k, c) in enumerate(zip(self.arch.kernels, self.arch.channels)):
      setattr(self, f"block{i + 1}",
              Conv1DValid(features=c, kernel_size=k, dtype=self.dtype))
    self.embedding = nn.Dense(self.arch.embed_dim, dtype=self.dtype,
                              param_dtype=jnp.float32)
    self.dropout = nn.Dropout(self.dropout_rate)

  def trace(self, waveforms: jax.Array, upto_block: Optional[int] = None
            ) -> BlockTrace:
    """Forward through blocks ``1..upto_block`` recording inputs & switches."""
    upto_block = self.arch.num_blocks if upto_block is None else upto_block
    self.arch.check_block(upto_block)
    if waveforms.ndim != 2:
      raise ValueError(
          f"waveforms must be [batch, time], got shape {waveforms.shape}")
    h = waveforms[..., None]
    inputs, conv_lengths, switches, outputs = [], [], [], []
    for block in range(1, upto_block + 1):
      inputs.append(h)
      h = nn.relu(getattr(self, f"block{block}")(h))
      conv_lengths.append(h.shape[1])
      if self.arch.is_pooled(block):
        h, s = ops.max_pool_with_switches(h)
      else:
        s = None
      switches.append(s)
      outputs.append(h)
    return BlockTrace(tuple(inputs), tuple(conv_lengths), tuple(switches),
                      tuple(outputs))

  def block_features(self, waveforms: jax.Array, upto_block: int) -> jax.Array:
    """Output of block ``upto_block`` ``[B, T_out, C]``."""
    return self.trace(waveforms, upto_block).outputs[-1]

  def pooled_features(self, waveforms: jax.Array,
                      upto_block: Optional[int] = None,
                      mask: Optional[jax.Array] = None) -> jax.Array:
    """Temporal mean of a block's output ``[B, C]``.

    ``mask`` (``[B, T]`` of 0/1 over input samples) restricts the mean to
    frames whose receptive field starts inside the valid samples, so padded
    clips of different lengths give their own whole-clip mean.
    """
    upto_block = self.arch.num_blocks if upto_block is None else upto_block
    h = self.block_features(waveforms, upto_block).astype(jnp.float32)
    if mask is None:
      return h.mean(axis=1)
    stride = self.arch.total_stride(upto_block)
    valid = jnp.asarray(mask).sum(axis=1)
    frames = jnp.arange(h.shape[1])
    # frame t's receptive field starts at input sample t * stride.
    rf = self.arch.min_input_length(upto_block)
    frame_mask = (frames[None, :] * stride + rf) <= valid[:, None]
    frame_mask = frame_mask | (frames[None, :] == 0)
    weights = frame_mask.astype(h.dtype)
    return (h * weights[..., None]).sum(1) / weights.sum(1, keepdims=True)

  def embed(self, pooled: jax.Array, train: bool = False) -> jax.Array:
    """Dropout -> Dense on pooled block-11 features.

    No ReLU after the Dense: with dropout 0.4 in front of it, a ReLU there
    died within a few dozen Adam steps on the demo data (every embedding
    exactly zero, SimCLR stuck at the chance loss).
    """
    h = self.dropout(pooled, deterministic=not train)
    return self.embedding(h).astype(jnp.float32)

  def __call__(self, waveforms: jax.Array, train: bool = False,
               mask: Optional[jax.Array] = None) -> jax.Array:
    """Clip embedding ``[batch, embed_dim]``."""
    return self.embed(self.pooled_features(waveforms, mask=mask), train=train)
