"""Optimiser and learning-rate schedule.

Adam with *coupled* L2 weight decay, as ``torch.optim.Adam(weight_decay=wd)``
that the thesis used: ``wd * param`` is added to the gradient before Adam's
moment estimates (so the decay is rescaled by Adam, unlike AdamW). The
decoupled AdamW form is available with ``decoupled_weight_decay=True``. Decay
applies to every parameter (biases included), as in PyTorch.

The learning rate warms up linearly from 0 to ``learning_rate`` over
``warmup_steps`` and then follows a half cosine to ``end_learning_rate`` at
``total_steps`` (held there afterwards).
"""
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax


def make_schedule(learning_rate: float, warmup_steps: int, total_steps: int,
                  end_learning_rate: float = 0.0) -> optax.Schedule:
  """Linear warmup then cosine decay.

  ``lr(s) = learning_rate * s / warmup_steps`` for ``s <= warmup_steps``, then
  ``end + (learning_rate - end) * (1 + cos(pi * (s - w) / (total - w))) / 2``
  until ``total_steps``. With ``warmup_steps=0`` it is a plain cosine decay.
  """
  if learning_rate <= 0:
    raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
  if warmup_steps < 0:
    raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
  if total_steps <= warmup_steps:
    raise ValueError(f"total_steps ({total_steps}) must exceed warmup_steps "
                     f"({warmup_steps})")
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=learning_rate, warmup_steps=warmup_steps,
      decay_steps=total_steps, end_value=end_learning_rate)


def _adam_l2(learning_rate, weight_decay, b1, b2, eps, clip_norm, decoupled):
  parts = []
  if clip_norm is not None:
    parts.append(optax.clip_by_global_norm(clip_norm))
  if decoupled:
    parts += [optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
              optax.add_decayed_weights(weight_decay)]
  else:
    parts += [optax.add_decayed_weights(weight_decay),
              optax.scale_by_adam(b1=b1, b2=b2, eps=eps)]
  parts.append(optax.scale_by_learning_rate(learning_rate))
  return optax.chain(*parts)


def make_optimizer(learning_rate: float, weight_decay: float = 1e-3,
                   warmup_steps: int = 0, total_steps: int = 1,
                   *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   clip_norm: Optional[float] = None,
                   decoupled_weight_decay: bool = False,
                   end_learning_rate: float = 0.0
                   ) -> optax.GradientTransformation:
  """Adam + L2 weight decay with warmup-cosine schedule.

  Args:
    learning_rate: peak learning rate.
    weight_decay: L2 coefficient (thesis: 1e-3). Coupled (added to the
      gradient, PyTorch ``Adam(weight_decay=)``) unless
      ``decoupled_weight_decay`` (AdamW: ``lr * wd * param`` after Adam).
    warmup_steps: linear warmup length in steps (thesis: 10 epochs).
    total_steps: schedule length in steps.
    b1, b2, eps: Adam constants (PyTorch defaults).
    clip_norm: clip gradients to this global norm first; None (default): off.
    decoupled_weight_decay: AdamW instead of Adam + L2.
    end_learning_rate: final learning rate of the cosine.
  Returns:
    An optax transformation whose state records the current hyperparameters
    (see :func:`learning_rate_from_state`).
  """
  if weight_decay < 0:
    raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
  if clip_norm is not None and clip_norm <= 0:
    raise ValueError(f"clip_norm must be > 0 or None, got {clip_norm}")
  schedule = make_schedule(learning_rate, warmup_steps, total_steps,
                           end_learning_rate)
  return optax.inject_hyperparams(
      _adam_l2, static_args=("b1", "b2", "eps", "clip_norm", "decoupled"))(
          learning_rate=schedule, weight_decay=weight_decay, b1=b1, b2=b2,
          eps=eps, clip_norm=clip_norm, decoupled=decoupled_weight_decay)


def learning_rate_from_state(opt_state: Any) -> Optional[jax.Array]:
  """The learning rate the last update used, if ``opt_state`` records one.

  Finds the first ``optax.inject_hyperparams`` state with a
  ``learning_rate`` entry (as :func:`make_optimizer` builds); None otherwise.
  """
  def has_hyperparams(x):
    return isinstance(getattr(x, "hyperparams", None), dict)

  leaves = jax.tree_util.tree_leaves(opt_state, is_leaf=has_hyperparams)
  for leaf in leaves:
    if has_hyperparams(leaf) and "learning_rate" in leaf.hyperparams:
      return jnp.asarray(leaf.hyperparams["learning_rate"], jnp.float32)
  return None
