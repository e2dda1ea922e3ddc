"""Train state and the composite models it holds.

The step functions close over the model and the optimiser, so the state is
just arrays: it checkpoints with orbax as a plain pytree.
"""
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from sonify_jax.models.composite import (ClassifierModel, SimCLRModel,
                                         compute_dtype, init_params,
                                         replace_encoder)

__all__ = ["TrainState", "SimCLRModel", "ClassifierModel", "compute_dtype",
           "init_params", "replace_encoder", "create_train_state"]


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training.

  Attributes:
    step: int32 scalar, number of optimiser updates applied.
    params: ``{'encoder': encoder params, 'projection' | 'head': ...}``.
    opt_state: the optimiser's state for ``params``.
  """
  step: jax.Array
  params: Any
  opt_state: Any

  @classmethod
  def create(cls, params: Any, optimizer: optax.GradientTransformation
             ) -> "TrainState":
    return cls(step=jnp.zeros((), jnp.int32), params=params,
               opt_state=optimizer.init(params))


def create_train_state(model, optimizer: optax.GradientTransformation,
                       rng: jax.Array, encoder_params: Any = None
                       ) -> TrainState:
  """Fresh params for ``model`` (optionally with another run's encoder).

  Args:
    model: SimCLRModel or ClassifierModel.
    optimizer: e.g. ``optim.make_optimizer(...)``.
    rng: PRNG key for the initialisation.
    encoder_params: if given, replaces the freshly initialised encoder
      (linear evaluation / fine-tuning from a contrastive checkpoint).
  """
  params = init_params(model, rng)
  if encoder_params is not None:
    params = replace_encoder(params, encoder_params)
  return TrainState.create(params, optimizer)
