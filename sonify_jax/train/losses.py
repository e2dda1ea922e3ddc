"""Training losses: NT-Xent (SimCLR), sigmoid BCE and softmax cross-entropy.

All functions are pure and jit-able and return float32 scalars.
"""
import jax
import jax.numpy as jnp

# Added to self-similarities so they drop out of the softmax; finite (unlike
# -inf) so that 0 * mask stays 0 in the backward pass.
_SELF_MASK = -1e9
_NORM_EPS = 1e-12


def _l2_normalize(z: jax.Array) -> jax.Array:
  z = z.astype(jnp.float32)
  return z * jax.lax.rsqrt(
      jnp.maximum(jnp.sum(z * z, axis=-1, keepdims=True), _NORM_EPS))


def _check_pair(z1, z2):
  if z1.ndim != 2 or z1.shape != z2.shape:
    raise ValueError("z1 and z2 must both be [N, D] with equal shapes, got "
                     f"{z1.shape} and {z2.shape}")


def _anchor_losses(anchors: jax.Array, candidates: jax.Array,
                   self_index: jax.Array, positive_index: jax.Array,
                   temperature: float) -> jax.Array:
  """Per-anchor NT-Xent terms.

  Args:
    anchors: ``[M, D]`` L2-normalised anchors.
    candidates: ``[2N, D]`` L2-normalised views of the whole (global) batch.
    self_index: ``[M]`` row of each anchor in ``candidates`` (excluded).
    positive_index: ``[M]`` row of each anchor's positive in ``candidates``.
    temperature: softmax temperature tau.
  Returns:
    ``[M]``: ``-log softmax(sim / tau)[positive]`` with self excluded.
  """
  logits = anchors @ candidates.T / temperature  # [M, 2N]
  cols = jnp.arange(candidates.shape[0])
  logits = jnp.where(cols[None, :] == self_index[:, None],
                     logits + _SELF_MASK, logits)
  positive = jnp.take_along_axis(logits, positive_index[:, None], axis=1)[:, 0]
  return jax.nn.logsumexp(logits, axis=1) - positive


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float) -> jax.Array:
  """NT-Xent loss of SimCLR (Chen et al. 2020) over ``2N`` samples.

  Both views are L2-normalised (cosine similarity). For each of the ``2N``
  anchors the positive is the other view of the same clip and the other
  ``2(N - 1)`` samples are negatives; the anchor itself is excluded from the
  softmax. The result is the mean over all ``2N`` anchors:

    l(i, j) = -log exp(s_ij / tau) / sum_{k != i} exp(s_ik / tau)

  Args:
    z1: ``[N, D]`` projections of the first views.
    z2: ``[N, D]`` projections of the second views; ``(z1[i], z2[i])`` are
      positives.
    temperature: tau > 0.
  Returns:
    float32 scalar.
  """
  _check_pair(z1, z2)
  n = z1.shape[0]
  z = _l2_normalize(jnp.concatenate([z1, z2], axis=0))  # [2N, D]
  rows = jnp.arange(2 * n)
  return jnp.mean(_anchor_losses(z, z, rows, (rows + n) % (2 * n),
                                 temperature))


def nt_xent_global(z1_local: jax.Array, z2_local: jax.Array,
                   temperature: float, axis_name: str) -> jax.Array:
  """:func:`nt_xent` over the global batch, for use inside ``jax.shard_map``.

  Each device all-gathers both views from every device along ``axis_name``,
  scores its own ``2 n`` anchors against all ``2N`` global samples (so each
  anchor sees ``2(N - 1)`` negatives of the global batch) and the per-device
  sums are ``psum``-ed, giving the same value on every device: exactly
  ``nt_xent(z1_global, z2_global)``. Differentiating it inside the shard_map
  w.r.t. replicated (axis-invariant) params gives the single-device gradient
  of the global batch: the all_gather transposes to a reduce-scatter, so each
  device's embeddings collect the loss terms of every device, and the implicit
  broadcast of the params transposes to a psum. Do not ``pmean`` those
  gradients again; they are already global.

  Args:
    z1_local: ``[n, D]`` this device's first-view projections.
    z2_local: ``[n, D]`` second views; the global batch is the concatenation
      of every device's ``n`` rows in axis-index order.
    temperature: tau > 0.
    axis_name: the mesh axis the batch is sharded over.
  Returns:
    float32 scalar, the global mean loss (axis-invariant).
  """
  _check_pair(z1_local, z2_local)
  n = z1_local.shape[0]
  z1 = _l2_normalize(z1_local)
  z2 = _l2_normalize(z2_local)
  z1_all = jax.lax.all_gather(z1, axis_name, tiled=True)  # [N, D]
  z2_all = jax.lax.all_gather(z2, axis_name, tiled=True)
  n_global = z1_all.shape[0]
  candidates = jnp.concatenate([z1_all, z2_all], axis=0)  # [2N, D]
  offset = jax.lax.axis_index(axis_name) * n
  rows = offset + jnp.arange(n)
  anchors = jnp.concatenate([z1, z2], axis=0)  # [2n, D]
  self_index = jnp.concatenate([rows, rows + n_global])
  positive_index = jnp.concatenate([rows + n_global, rows])
  local_sum = jnp.sum(_anchor_losses(anchors, candidates, self_index,
                                     positive_index, temperature))
  return jax.lax.psum(local_sum, axis_name) / (2 * n_global)


def sigmoid_bce(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Multilabel binary cross-entropy, mean over batch and classes.

  Args:
    logits: ``[B, C]``.
    labels: ``[B, C]`` targets in [0, 1] (multi-hot, or soft after mixup).
  Returns:
    float32 scalar.
  """
  if logits.shape != labels.shape:
    raise ValueError(f"logits {logits.shape} and labels {labels.shape} differ")
  logits = logits.astype(jnp.float32)
  labels = labels.astype(jnp.float32)
  # Stable form of -[y log s(x) + (1 - y) log(1 - s(x))].
  return jnp.mean(jax.nn.softplus(logits) - labels * logits)


def softmax_ce(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Softmax cross-entropy, mean over the batch.

  Args:
    logits: ``[B, C]``.
    labels: int class indices ``[B]`` or soft/one-hot targets ``[B, C]``
      (rows summing to 1, e.g. after mixup).
  Returns:
    float32 scalar.
  """
  logits = logits.astype(jnp.float32)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  if labels.ndim == logits.ndim - 1:
    if not jnp.issubdtype(labels.dtype, jnp.integer):
      raise TypeError(f"[B] labels must be integer, got {labels.dtype}")
    if labels.shape != logits.shape[:-1]:
      raise ValueError(f"labels {labels.shape} vs logits {logits.shape}")
    picked = jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32),
                                 axis=-1)[:, 0]
    return -jnp.mean(picked)
  if labels.shape != logits.shape:
    raise ValueError(f"labels {labels.shape} vs logits {logits.shape}")
  return -jnp.mean(jnp.sum(labels.astype(jnp.float32) * log_probs, axis=-1))
