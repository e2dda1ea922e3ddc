"""Composite models the trainers use: an encoder (any network of the
registry, ``models.get_network``) + projection or classifier.

Params are ``{'encoder': <encoder params>, 'projection' | 'head': ...}`` so that
``params['encoder']`` can be handed straight to :func:`deconvnet.sonify` with
the same architecture, or moved into another model with
:func:`replace_encoder`.
"""
from typing import Any, Mapping, Optional, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from sonify_jax.errors import UserError
from sonify_jax.models.encoder import Encoder
from sonify_jax.models.registry import get_network
from sonify_jax.models.heads import LinearClassifier, ProjectionMLP


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str):
  """The jnp dtype of ``config.compute_dtype``."""
  if name not in COMPUTE_DTYPES:
    raise UserError(f"compute_dtype={name!r}; choose from "
                     f"{sorted(COMPUTE_DTYPES)}")
  return COMPUTE_DTYPES[name]


class SimCLRModel(nn.Module):
  """Encoder + SimCLR projection MLP.

  Attributes:
    arch_name: a name known to ``get_network`` (e.g. 'cnn12').
    dropout_rate: dropout on the pooled features inside the encoder.
    proj_hidden: hidden width of the projection MLP.
    proj_out: output width of the projection (the NT-Xent space).
    compute_dtype: 'float32' or 'bfloat16' for the convolutions and matmuls
      (params and outputs stay float32; see ``Encoder``).
  """
  arch_name: str = "cnn12"
  dropout_rate: float = 0.4
  proj_hidden: int = 512
  proj_out: int = 512
  compute_dtype: str = "float32"

  def setup(self):
    dtype = compute_dtype(self.compute_dtype)
    self.encoder = Encoder(net=get_network(self.arch_name),
                         dropout_rate=self.dropout_rate, dtype=dtype)
    self.projection = ProjectionMLP(hidden_dim=self.proj_hidden,
                                    out_dim=self.proj_out, dtype=dtype)

  def __call__(self, waveforms: jax.Array, train: bool = False,
               mask: Optional[jax.Array] = None
               ) -> Tuple[jax.Array, jax.Array]:
    """``[B, T]`` -> (embedding ``[B, embed_dim]``, projection ``[B, proj_out]``)."""
    h = self.encoder(waveforms, train=train, mask=mask)
    return h, self.projection(h)


class ClassifierModel(nn.Module):
  """Encoder + linear classifier on the embedding.

  Attributes:
    arch_name: a name known to ``get_network``.
    num_classes: number of output logits.
    dropout_rate: dropout on the pooled features inside the encoder.
    multilabel: whether the classes are independent (sigmoid scores) or
      exclusive (softmax); :func:`scores` and the eval step use it.
    compute_dtype: as for ``SimCLRModel``.
  """
  arch_name: str = "cnn12"
  num_classes: int = 527
  dropout_rate: float = 0.4
  multilabel: bool = False
  compute_dtype: str = "float32"

  def setup(self):
    dtype = compute_dtype(self.compute_dtype)
    self.encoder = Encoder(net=get_network(self.arch_name),
                         dropout_rate=self.dropout_rate, dtype=dtype)
    self.head = LinearClassifier(self.num_classes, dtype=dtype)

  def encode(self, waveforms: jax.Array, train: bool = False,
             mask: Optional[jax.Array] = None) -> jax.Array:
    """``[B, T]`` (optional 0/1 ``mask [B, T]``) -> embedding ``[B, E]``."""
    return self.encoder(waveforms, train=train, mask=mask)

  def classify(self, embedding: jax.Array) -> jax.Array:
    """Embedding ``[B, E]`` -> logits ``[B, num_classes]``."""
    return self.head(embedding)

  def __call__(self, waveforms: jax.Array, train: bool = False,
               mask: Optional[jax.Array] = None) -> jax.Array:
    """Logits ``[B, num_classes]``; ``mask`` selects each clip's valid
    samples so zero-padded clips of different lengths are scored whole."""
    return self.classify(self.encode(waveforms, train=train, mask=mask))

  def scores(self, logits: jax.Array) -> jax.Array:
    """Sigmoid (multilabel) or softmax probabilities of ``logits``."""
    return (jax.nn.sigmoid(logits) if self.multilabel
            else jax.nn.softmax(logits, axis=-1))


def init_params(model: nn.Module, rng: jax.Array,
                input_length: Optional[int] = None) -> Any:
  """Initial params of a composite model (or a bare encoder).

  Args:
    model: SimCLRModel, ClassifierModel or an Encoder.
    rng: PRNG key.
    input_length: dummy clip length; defaults to the encoder's receptive
      field (the shortest valid input), shapes do not depend on it.
  Returns:
    the ``params`` collection (a dict).
  """
  arch = (model.net if isinstance(model, Encoder)
          else get_network(model.arch_name))
  length = input_length or arch.min_input_length(arch.num_blocks)
  dummy = jnp.zeros((1, length), jnp.float32)
  return jax.jit(lambda r: model.init(r, dummy)["params"])(rng)


def replace_encoder(params: Mapping[str, Any],
                    encoder_params: Mapping[str, Any]) -> dict:
  """A copy of ``params`` with ``params['encoder']`` set to ``encoder_params``.

  Used to start linear evaluation or fine-tuning from another run's encoder
  (e.g. a SimCLR checkpoint). Pure: neither input is modified.

  Raises:
    ValueError: when the encoder trees differ in structure or leaf shapes
      (e.g. a cnn12_x2 encoder into a cnn12 model).
  """
  if "encoder" not in params:
    raise ValueError(f"params have no 'encoder' entry: {sorted(params)}")
  old = flax.core.unfreeze(params["encoder"])
  new = flax.core.unfreeze(encoder_params)
  old_struct = jax.tree_util.tree_structure(old)
  new_struct = jax.tree_util.tree_structure(new)
  if old_struct != new_struct:
    raise ValueError("encoder params tree does not match the model's: "
                     f"{new_struct} vs {old_struct}")
  for path, (a, b) in zip(
      [jax.tree_util.keystr(p) for p, _ in
       jax.tree_util.tree_flatten_with_path(old)[0]],
      zip(jax.tree_util.tree_leaves(old), jax.tree_util.tree_leaves(new))):
    if jnp.shape(a) != jnp.shape(b):
      raise ValueError(f"encoder param {path} has shape {jnp.shape(b)}, the "
                       f"model expects {jnp.shape(a)}")
  out = dict(params)
  out["encoder"] = jax.tree_util.tree_map(
      lambda a, b: jnp.asarray(b, jnp.asarray(a).dtype), old, new)
  return out
