"""Mixed precision: compute_dtype='bfloat16' runs the convolutions and matmuls
in bfloat16 while params, optimiser state and the loss stay float32, and its
loss agrees with float32's; sonify() computes in float32 whatever it gets."""
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from sonify_jax import deconvnet
from sonify_jax.errors import UserError
from sonify_jax.models.registry import get_network
from sonify_jax.models.composite import SimCLRModel, init_params
from sonify_jax.train import optim, steps
from sonify_jax.train.state import TrainState

ARCH = "cnn12_tiny"
T = 2400
# bfloat16 keeps 8 mantissa bits (relative rounding 2**-9 ~ 0.2 %) per op;
# over eleven conv blocks and the projection the NT-Xent loss moves by well
# under 1 %: measured 0.03 % on this batch. 2 % leaves room and still
# catches a loss computed in the wrong place (a bf16 softmax/log is off by
# several %).
LOSS_RTOL = 0.02


def _batch(n=8, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(T) / 8000.0
  freqs = rng.uniform(200, 2000, (n, 2, 1))
  audio = 0.3 * np.sin(2 * np.pi * freqs * t) + 0.05 * rng.standard_normal(
      (n, 2, T))
  return {"audio": audio.astype(np.float32)}


def _model(dtype):
  return SimCLRModel(ARCH, dropout_rate=0.0, proj_hidden=64, proj_out=32,
                     compute_dtype=dtype)


@pytest.fixture(scope="module")
def params():
  return init_params(_model("float32"), jax.random.key(0, impl="rbg"))


def test_bf16_step_loss_matches_float32_and_state_stays_float32(params):
  optimizer = optim.make_optimizer(1e-3, 1e-3, 0, 10)
  mesh = steps.make_mesh(jax.devices()[:1])
  batch = _batch()
  losses, states = {}, {}
  for dtype in ("float32", "bfloat16"):
    step = steps.make_simclr_train_step(_model(dtype), optimizer, mesh,
                                        temperature=0.2)
    state = TrainState.create(params, optimizer)
    states[dtype], metrics = step(state, batch, jax.random.key(1))
    losses[dtype] = float(metrics["loss"])
  assert np.isfinite(losses["bfloat16"])
  np.testing.assert_allclose(losses["bfloat16"], losses["float32"],
                             rtol=LOSS_RTOL)
  # ...but it is a different computation, not float32 under another name.
  assert losses["bfloat16"] != losses["float32"]
  new = states["bfloat16"]
  for leaf in jax.tree.leaves(new.params):
    assert leaf.dtype == jnp.float32
  for leaf in jax.tree.leaves(new.opt_state):
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      assert leaf.dtype == jnp.float32
  # The step changed the params in float32 resolution.
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                       new.params, params)
  assert max(jax.tree.leaves(moved)) > 0


def _primitive_dtypes(jaxpr, name):
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == name:
      found.append({str(v.aval.dtype) for v in eqn.invars})
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      found.extend(_primitive_dtypes(sub, name))
  return found


def test_convolutions_and_matmuls_run_in_the_compute_dtype(params):
  x = jnp.asarray(_batch()["audio"][:, 0])
  for dtype, want in (("bfloat16", {"bfloat16"}), ("float32", {"float32"})):
    jaxpr = jax.make_jaxpr(
        lambda p, x: _model(dtype).apply({"params": p}, x))(params, x).jaxpr
    convs = _primitive_dtypes(jaxpr, "conv_general_dilated")
    dots = _primitive_dtypes(jaxpr, "dot_general")
    # Every block's conv (the deepest, on a signal no longer than its
    # kernel, as one matmul: models/short_conv) and the embedding,
    # projection hidden and out matmuls.
    assert len(convs) + len(dots) == get_network(ARCH).num_blocks + 3
    assert len(dots) >= 3
    assert all(d == want for d in convs + dots), (dtype, convs, dots)
    outputs = _model(dtype).apply({"params": params}, x)
    assert all(o.dtype == jnp.float32 for o in outputs)


def test_sonify_computes_in_float32_from_bfloat16_params(params):
  arch = get_network(ARCH)
  encoder = params["encoder"]
  as_bf16 = jax.tree.map(lambda p: p.astype(jnp.bfloat16), encoder)
  upcast = jax.tree.map(lambda p: p.astype(jnp.float32), as_bf16)
  x = _batch()["audio"][:2, 0]
  out = deconvnet.sonify(as_bf16, x, 3, [0, 1], arch)
  assert out.dtype == jnp.float32
  # The same as the float32 computation on the (rounded) weights.
  np.testing.assert_array_equal(
      np.asarray(out), np.asarray(deconvnet.sonify(upcast, x, 3, [0, 1],
                                                   arch)))


def test_unknown_compute_dtype_is_a_user_error():
  with pytest.raises(UserError, match="float16"):
    init_params(_model("float16"), jax.random.key(0, impl="rbg"))
