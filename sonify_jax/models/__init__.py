"""Networks described as data, their Flax encoder, heads and registry."""
from sonify_jax.models.encoder import Encoder, init_params
from sonify_jax.models.heads import LinearClassifier, ProjectionMLP
from sonify_jax.models.network import Network
from sonify_jax.models.registry import (CNN12, CNN12_TINY, CNN12_X2, NETWORKS,
                                        get_network)


def build_encoder(name="cnn12", dropout_rate: float = 0.4) -> Encoder:
  """The Flax encoder of a registered network (or a description)."""
  return Encoder(net=get_network(name), dropout_rate=dropout_rate)


__all__ = ["CNN12", "CNN12_TINY", "CNN12_X2", "Encoder", "LinearClassifier",
           "NETWORKS", "Network", "ProjectionMLP", "build_encoder",
           "get_network", "init_params"]
