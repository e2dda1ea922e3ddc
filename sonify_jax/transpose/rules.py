"""How a ReLU transposes: the explanation rules of the transposed chain.

The deconvnet and its relatives differ only in what a ReLU does to the
signal coming down (Springenberg et al. 2015, Fig. 1); every other layer
transposes exactly (``jax.vjp``: a conv as its transposed conv, an affine
layer as its scale, a max-pool through its switches). A rule is a ReLU whose
forward is ``max(x, 0)`` and whose ``jax.vjp`` is the rule's:

* ``deconvnet`` (Zeiler & Fergus 2014, the thesis; Captum's
  ``Deconvolution``): ``relu(g)``, whatever the forward did;
* ``guided`` (guided backprop; Captum's ``GuidedBackprop``):
  ``relu(g) * (x > 0)``;
* ``gradient`` (plain vjp; Captum's ``Saliency`` with ``abs=False``):
  ``g * (x > 0)``;
* ``input_x_gradient`` (Captum's ``InputXGradient``): the gradient rule,
  and the result multiplied by the (prepared) input.
"""
from typing import Callable

import jax

RULES = ("deconvnet", "guided", "gradient", "input_x_gradient")
DEFAULT_RULE = "deconvnet"


@jax.custom_vjp
def deconvnet_relu(x: jax.Array) -> jax.Array:
  return jax.nn.relu(x)


def _deconvnet_fwd(x):
  return jax.nn.relu(x), None


def _deconvnet_bwd(_, g):
  return (jax.nn.relu(g),)


deconvnet_relu.defvjp(_deconvnet_fwd, _deconvnet_bwd)


@jax.custom_vjp
def guided_relu(x: jax.Array) -> jax.Array:
  return jax.nn.relu(x)


def _guided_fwd(x):
  return jax.nn.relu(x), x > 0


def _guided_bwd(positive, g):
  return (jax.nn.relu(g) * positive,)


guided_relu.defvjp(_guided_fwd, _guided_bwd)


def relu_for(rule: str) -> Callable[[jax.Array], jax.Array]:
  """The ReLU whose transpose is ``rule``'s."""
  check(rule)
  if rule == "deconvnet":
    return deconvnet_relu
  if rule == "guided":
    return guided_relu
  return jax.nn.relu


def multiplies_input(rule: str) -> bool:
  """Whether the rule's result is multiplied by the input."""
  return rule == "input_x_gradient"


def check(rule: str) -> None:
  from sonify_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  if rule not in RULES:
    raise UserError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
