"""Heads on top of an encoder's embedding, and the composite models trainers
use."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class ProjectionMLP(nn.Module):
  """SimCLR projection: Dense(hidden) -> ReLU -> Dense(out)."""
  hidden_dim: int = 512
  out_dim: int = 512
  dtype: Any = jnp.float32   # compute dtype; params and output float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dense = lambda n, name: nn.Dense(n, name=name, dtype=self.dtype,  # pylint: disable=unnecessary-lambda-assignment
                                     param_dtype=jnp.float32)
    x = nn.relu(dense(self.hidden_dim, "hidden")(x))
    return dense(self.out_dim, "out")(x).astype(jnp.float32)


class LinearClassifier(nn.Module):
  """Linear layer to class logits."""
  num_classes: int
  dtype: Any = jnp.float32   # compute dtype; params and logits float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return nn.Dense(self.num_classes, name="logits", dtype=self.dtype,
                    param_dtype=jnp.float32)(x).astype(jnp.float32)
