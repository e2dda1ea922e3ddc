"""Losses: NT-Xent against a numpy loop reference, and its global (8-device
shard_map) form against the single-device loss and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from sonify_jax.train import losses
from sonify_jax.train.steps import make_mesh


# One compile per shape instead of one per primitive.
_nt_xent = jax.jit(losses.nt_xent, static_argnums=2)


def _nt_xent_reference(z1, z2, tau):
  """The SimCLR formula, one anchor at a time, in float64."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  n2 = len(z)
  n = n2 // 2
  total = 0.0
  for i in range(n2):
    j = (i + n) % n2
    def sim(a, b):
      return z[a] @ z[b] / (np.linalg.norm(z[a]) * np.linalg.norm(z[b]))
    denom = sum(np.exp(sim(i, k) / tau) for k in range(n2) if k != i)
    total += -np.log(np.exp(sim(i, j) / tau) / denom)
  return total / n2


@pytest.mark.parametrize("n,d,tau", [(1, 3, 0.5), (5, 7, 0.1), (8, 4, 0.3)])
def test_nt_xent_matches_reference(n, d, tau):
  rng = np.random.RandomState(n)
  z1 = rng.randn(n, d).astype(np.float32)
  z2 = rng.randn(n, d).astype(np.float32)
  got = _nt_xent(jnp.asarray(z1), jnp.asarray(z2), tau)
  np.testing.assert_allclose(got, _nt_xent_reference(z1, z2, tau), rtol=1e-5)


def test_nt_xent_is_cosine_and_symmetric():
  rng = np.random.RandomState(1)
  z1, z2 = rng.randn(2, 6, 5).astype(np.float32)
  base = _nt_xent(z1, z2, 0.2)
  scale = rng.uniform(0.1, 10, (6, 1)).astype(np.float32)
  np.testing.assert_allclose(_nt_xent(z1 * scale, z2, 0.2), base,
                             rtol=1e-5)
  np.testing.assert_allclose(_nt_xent(z2, z1, 0.2), base, rtol=1e-5)
  # Identical views far apart from every other sample: loss near 0.
  eye = np.eye(4, dtype=np.float32)
  assert float(_nt_xent(eye, eye, 0.01)) < 1e-6


def test_nt_xent_rejects_mismatched_views():
  with pytest.raises(ValueError, match="equal shapes"):
    losses.nt_xent(jnp.zeros((4, 3)), jnp.zeros((5, 3)), 0.1)


def test_nt_xent_global_loss_and_grads_match_single_device():
  mesh = make_mesh()
  assert mesh.size == 8, "conftest gives 8 CPU devices"
  tau = 0.2
  rng = np.random.RandomState(0)
  n, d_in, d = 16, 6, 5  # 2 samples per device
  x1 = rng.randn(n, d_in).astype(np.float32)
  x2 = rng.randn(n, d_in).astype(np.float32)
  w = rng.randn(d_in, d).astype(np.float32)

  # Gradient w.r.t. the sharded embeddings, taken outside the shard_map.
  def global_loss(z1, z2):
    return jax.shard_map(
        lambda a, b: losses.nt_xent_global(a, b, tau, "data"), mesh=mesh,
        in_specs=(P("data"), P("data")), out_specs=P())(z1, z2)

  z1, z2 = x1 @ w, x2 @ w
  loss8, (g1, g2) = jax.jit(jax.value_and_grad(global_loss, (0, 1)))(z1, z2)
  loss1, (r1, r2) = jax.value_and_grad(
      lambda a, b: losses.nt_xent(a, b, tau), (0, 1))(z1, z2)
  np.testing.assert_allclose(loss8, _nt_xent_reference(z1, z2, tau),
                             rtol=1e-5)
  np.testing.assert_allclose(loss8, loss1, rtol=1e-6)
  np.testing.assert_allclose(g1, r1, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(g2, r2, rtol=1e-5, atol=1e-7)

  # Gradient w.r.t. replicated params, taken inside the shard_map as the
  # train steps do: already the global gradient, no extra reduction.
  def per_device(w, a, b):
    return jax.value_and_grad(
        lambda w: losses.nt_xent_global(a @ w, b @ w, tau, "data"))(w)

  loss8w, gw = jax.jit(jax.shard_map(
      per_device, mesh=mesh, in_specs=(P(), P("data"), P("data")),
      out_specs=(P(), P())))(w, x1, x2)
  loss1w, rw = jax.value_and_grad(
      lambda w: losses.nt_xent(x1 @ w, x2 @ w, tau))(w)
  np.testing.assert_allclose(loss8w, loss1w, rtol=1e-6)
  np.testing.assert_allclose(gw, rw, rtol=1e-5, atol=1e-7)


def test_sigmoid_bce_matches_formula_with_soft_labels():
  rng = np.random.RandomState(2)
  logits = rng.randn(4, 3).astype(np.float32) * 5
  labels = rng.uniform(size=(4, 3)).astype(np.float32)
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  ref = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
  np.testing.assert_allclose(losses.sigmoid_bce(logits, labels), ref,
                             rtol=1e-5)
  # Stable for large logits (naive log(sigmoid) would give inf).
  big = losses.sigmoid_bce(jnp.array([[200.0, -200.0]]),
                           jnp.array([[0.0, 1.0]]))
  np.testing.assert_allclose(big, 200.0, rtol=1e-6)


def test_softmax_ce_int_and_soft_labels():
  rng = np.random.RandomState(3)
  logits = rng.randn(5, 4).astype(np.float32)
  labels = np.array([0, 3, 1, 1, 2])
  x = logits.astype(np.float64)
  logp = x - np.log(np.exp(x).sum(1, keepdims=True))
  ref = -np.mean(logp[np.arange(5), labels])
  np.testing.assert_allclose(losses.softmax_ce(logits, labels), ref,
                             rtol=1e-5)
  np.testing.assert_allclose(
      losses.softmax_ce(logits, np.eye(4, dtype=np.float32)[labels]), ref,
      rtol=1e-5)
  soft = rng.dirichlet(np.ones(4), 5).astype(np.float32)
  np.testing.assert_allclose(losses.softmax_ce(logits, soft),
                             -np.mean((soft * logp).sum(1)), rtol=1e-5)
  with pytest.raises(TypeError):
    losses.softmax_ce(logits, labels.astype(np.float32))
