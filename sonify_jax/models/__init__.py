"""CNN12 models and the primitives the deconvnet shares with them."""
from sonify_jax.models.architecture import (ARCHITECTURES, Architecture, CNN12
                                            as CNN12_ARCH, CNN12_X2 as
                                            CNN12_X2_ARCH, SAMPLE_RATE,
                                            get_architecture)
from sonify_jax.models.cnn12 import CNN12, BlockTrace
from sonify_jax.models.heads import LinearClassifier, ProjectionMLP


def build_encoder(name: str = "cnn12", dropout_rate: float = 0.4) -> CNN12:
  return CNN12(arch=get_architecture(name), dropout_rate=dropout_rate)

__all__ = ["ARCHITECTURES", "Architecture", "BlockTrace", "CNN12", "CNN12_ARCH",
           "CNN12_X2_ARCH", "LinearClassifier", "ProjectionMLP", "SAMPLE_RATE",
           "build_encoder", "get_architecture"]
