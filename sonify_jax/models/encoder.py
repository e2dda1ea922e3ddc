"""The Flax encoder of any :class:`~sonify_jax.models.network.Network`.

It declares the parameters (one submodule per parametrised layer, named as
the layer, so ``params[name]`` is ``{'kernel', 'bias'}`` or ``{'scale',
'bias'}``) and runs the pure forward of :mod:`sonify_jax.models.forward`;
with ``net.embed_dim > 0`` it ends in the thesis' training head: temporal
mean over the last block, dropout, Dense to ``embed_dim`` (``embedding``).

``dtype`` is the compute dtype of the convolutions and the Dense (e.g.
``jnp.bfloat16`` on TPU); params are float32 whatever it is, the temporal
mean is taken in float32 and the embedding is returned as float32, so losses
and optimiser state stay float32 (mixed precision).
"""
from typing import Any, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from sonify_jax.models import forward, shapes
from sonify_jax.models import network as network_lib


class _ConvParams(nn.Module):
  """A conv layer's ``kernel [k, C_in, C_out]`` and ``bias``.

  He (fan-in, ReLU gain) init: with no normalisation layers, LeCun init
  shrinks the signal ~sqrt(2) per block, and after CNN12's eleven blocks
  the pooled features barely differ between clips, so SimCLR collapses
  (measured on the embedded data: a fixed batch stays at the chance loss
  under LeCun init and is fitted under He init).
  """
  layer: network_lib.Conv
  in_features: int

  @nn.compact
  def __call__(self) -> Dict[str, jax.Array]:
    out = {"kernel": self.param(
        "kernel", nn.initializers.he_normal(),
        (self.layer.kernel_size, self.in_features, self.layer.features),
        jnp.float32)}
    if self.layer.use_bias:
      out["bias"] = self.param("bias", nn.initializers.zeros,
                               (self.layer.features,), jnp.float32)
    return out


class _AffineParams(nn.Module):
  """An affine layer's ``scale`` (init 1) and ``bias`` (init 0)."""
  features: int

  @nn.compact
  def __call__(self) -> Dict[str, jax.Array]:
    return {"scale": self.param("scale", nn.initializers.ones,
                                (self.features,), jnp.float32),
            "bias": self.param("bias", nn.initializers.zeros,
                               (self.features,), jnp.float32)}


def param_layers(net: network_lib.Network) -> Tuple[Tuple[Any, int], ...]:
  """``(layer, input channels)`` of every parametrised layer, in order."""
  out, channels = [], 1
  for layer in net.layers:
    if isinstance(layer, (network_lib.Conv, network_lib.Affine)):
      out.append((layer, channels))
    if isinstance(layer, network_lib.Conv):
      channels = layer.features
  return tuple(out)


class Encoder(nn.Module):
  """A network's blocks, and its training head when ``net.embed_dim > 0``.

  Input: waveforms ``[batch, time]`` at ``net.sample_rate``.
  """
  net: network_lib.Network
  dropout_rate: float = 0.4
  dtype: Any = jnp.float32

  def setup(self):
    modules = {}
    for layer, channels in param_layers(self.net):
      modules[layer.name] = (_ConvParams(layer, channels, name=layer.name)
                             if isinstance(layer, network_lib.Conv) else
                             _AffineParams(channels, name=layer.name))
    self._layer_params = modules
    if self.net.embed_dim:
      self.embedding = nn.Dense(self.net.embed_dim, dtype=self.dtype,
                                param_dtype=jnp.float32)
      self.dropout = nn.Dropout(self.dropout_rate)

  @property
  def arch(self) -> network_lib.Network:
    return self.net

  def _params(self, upto_block: int) -> Dict[str, Any]:
    """The params of blocks ``1..upto_block`` only (a truncated params tree
    serves a shallower block)."""
    names = [l.name for l in self.net.layers_upto(upto_block)
             if hasattr(l, "name")]
    return {name: self._layer_params[name]() for name in names}

  def block_outputs(self, waveforms: jax.Array,
                    upto_block: Optional[int] = None) -> Tuple[jax.Array, ...]:
    """Output of every block ``1..upto_block`` (float32 compute unless the
    module's ``dtype`` says otherwise)."""
    upto_block = self.net.num_blocks if upto_block is None else upto_block
    dtype = None if self.dtype == jnp.float32 else self.dtype
    return forward.block_outputs(self._params(upto_block), waveforms,
                                 self.net, upto_block, dtype=dtype)

  def block_features(self, waveforms: jax.Array, upto_block: int
                     ) -> jax.Array:
    """Output of block ``upto_block`` ``[B, T_out, C]``."""
    return self.block_outputs(waveforms, upto_block)[-1]

  def pooled_features(self, waveforms: jax.Array,
                      upto_block: Optional[int] = None,
                      mask: Optional[jax.Array] = None) -> jax.Array:
    """Temporal mean of a block's output ``[B, C]`` (float32).

    ``mask`` (``[B, T]`` of 0/1 over input samples) restricts the mean to
    the frames the unpadded clip has (``shapes.valid_lengths``;
    frame 0 always), so zero-padded clips of different lengths each give
    their own whole-clip mean (exactly so for networks that pad nothing
    themselves, as the trainable CNN12 family; ``transpose.chain.traces``
    is the rule for any network).
    """
    upto_block = self.net.num_blocks if upto_block is None else upto_block
    h = self.block_features(waveforms, upto_block).astype(jnp.float32)
    if mask is None:
      return h.mean(axis=1)
    valid = jnp.asarray(mask).sum(axis=1).astype(jnp.int32)
    frames = jnp.arange(h.shape[1])
    kept = shapes.valid_lengths(self.net, valid, upto_block)[-1]
    frame_mask = (frames[None, :] < kept[:, None]) | (frames[None, :] == 0)
    weights = frame_mask.astype(h.dtype)
    return (h * weights[..., None]).sum(1) / weights.sum(1, keepdims=True)

  def embed(self, pooled: jax.Array, train: bool = False) -> jax.Array:
    """Dropout -> Dense on pooled last-block features.

    No ReLU after the Dense: with dropout 0.4 in front of it, a ReLU there
    died within a few dozen Adam steps on the demo data (every embedding
    exactly zero, SimCLR stuck at the chance loss).
    """
    if not self.net.embed_dim:
      raise ValueError(f"{self.net.name} has no embedding head "
                       "(embed_dim 0)")
    h = self.dropout(pooled, deterministic=not train)
    return self.embedding(h).astype(jnp.float32)

  def __call__(self, waveforms: jax.Array, train: bool = False,
               mask: Optional[jax.Array] = None) -> jax.Array:
    """Clip embedding ``[batch, embed_dim]`` (the pooled last block when the
    network has no embedding head)."""
    pooled = self.pooled_features(waveforms, mask=mask)
    if not self.net.embed_dim:
      return pooled
    return self.embed(pooled, train=train)


def init_params(net: network_lib.Network, seed: int = 0) -> Dict[str, Any]:
  """Seeded random encoder params of ``net`` (the Flax init above)."""
  length = net.min_input_length(net.num_blocks)
  model = Encoder(net)
  return jax.jit(lambda key: model.init(key, jnp.zeros((1, length)))[
      "params"])(jax.random.key(seed))
