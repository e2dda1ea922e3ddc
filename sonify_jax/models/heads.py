"""Heads on top of a CNN12 embedding, and the composite models trainers use."""
import flax.linen as nn
import jax


class ProjectionMLP(nn.Module):
  """SimCLR projection: Dense(hidden) -> ReLU -> Dense(out)."""
  hidden_dim: int = 512
  out_dim: int = 512

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.relu(nn.Dense(self.hidden_dim, name="hidden")(x))
    return nn.Dense(self.out_dim, name="out")(x)


class LinearClassifier(nn.Module):
  """Linear layer to class logits."""
  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return nn.Dense(self.num_classes, name="logits")(x)
