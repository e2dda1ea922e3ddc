"""CNN12 family: sizes, lengths, receptive fields, masked pooling."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sonify_jax.models import build_encoder, get_architecture


def _param_count(name):
  model = build_encoder(name)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 4000)))
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes))


def _hand_count(kernels, channels, embed):
  count, c_in = 0, 1
  for k, c in zip(kernels, channels):
    count += k * c_in * c + c
    c_in = c
  return count + c_in * embed + embed


@pytest.mark.parametrize("name,approx", [("cnn12", 13.8e6), ("cnn12_x2", 53e6)])
def test_parameter_counts(name, approx):
  count = _param_count(name)
  arch = get_architecture(name)
  assert count == _hand_count(arch.kernels, arch.channels, arch.embed_dim)
  assert abs(count - approx) / approx < 0.01


def test_architecture_matches_the_thesis():
  arch = get_architecture("cnn12")
  assert arch.kernels == (7, 7, 5, 5, 5, 3, 3, 3, 3, 3, 3)
  assert arch.channels == (64, 64, 128, 128, 256, 256, 512, 512, 1024, 1024,
                           2048)
  assert [arch.is_pooled(b) for b in range(1, 12)] == [True] * 8 + [False] * 3
  x2 = get_architecture("cnn12_x2")
  assert x2.channels == tuple(2 * c for c in arch.channels)


@pytest.mark.parametrize("length", [4001, 3334])
def test_block_lengths_match_forward(length):
  model = build_encoder("cnn12_tiny")
  x = jax.ShapeDtypeStruct((2, length), jnp.float32)
  params = jax.eval_shape(model.init, jax.random.key(0), x)
  trace = jax.eval_shape(lambda p, x: model.apply(p, x, method=model.trace),
                         params, x)
  arch = model.arch
  for block in range(1, 12):
    conv_len, out_len = arch.block_lengths(length, block)
    if arch.is_pooled(block):
      assert trace.switches[block - 1].shape[1] == conv_len // 2
    else:
      assert out_len == conv_len
    assert trace.outputs[block - 1].shape == (2, out_len,
                                              arch.channels[block - 1])


@pytest.mark.parametrize("block", [1, 8, 11])
def test_receptive_field_is_the_support_of_the_first_frame(block):
  model = build_encoder("cnn12_tiny")
  arch = model.arch
  rf = arch.min_input_length(block)
  assert arch.output_length(rf, block) == 1
  assert arch.output_length(rf - 1, block) <= 0
  length = rf + 300
  x = jax.random.normal(jax.random.key(1), (1, length))
  params = model.init(jax.random.key(2), x)

  @jax.jit
  def first_frame_grad(x):
    return jax.grad(lambda x: model.apply(
        params, x, block, method=model.block_features)[0, 0].sum())(x)

  # Gradients through ReLU/max can vanish by chance, so use the linear
  # dependence pattern of many random inputs.
  support = np.zeros(length, bool)
  for seed in range(3):
    x = jax.random.normal(jax.random.key(seed), (1, length))
    support |= np.asarray(first_frame_grad(x)[0]) != 0
  assert not support[rf:].any()
  assert support[:rf].any() and support[rf - 1] | support[rf - 2]


def test_masked_pooling_equals_unpadded_clip():
  model = build_encoder("cnn12_tiny")
  long_len, short_len = 3600, 2900
  key = jax.random.key(3)
  x = jax.random.normal(key, (2, long_len))
  params = model.init(jax.random.key(4), x)
  padded = x.at[1, short_len:].set(0.0)
  mask = jnp.ones((2, long_len)).at[1, short_len:].set(0.0)
  pooled = jax.jit(lambda x, mask=None: model.apply(
      params, x, mask=mask, method=model.pooled_features))
  masked = pooled(padded, mask)
  alone = pooled(x[1:, :short_len])
  full = pooled(x[:1])
  np.testing.assert_allclose(masked[1], alone[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(masked[0], full[0], rtol=1e-5, atol=1e-6)


def test_dropout_only_in_training():
  model = build_encoder("cnn12_tiny")
  x = jax.random.normal(jax.random.key(5), (2, 2000))
  params = model.init(jax.random.key(6), x)
  apply = jax.jit(model.apply, static_argnames="train")
  a = apply(params, x)
  b = apply(params, x)
  np.testing.assert_array_equal(a, b)
  c = apply(params, x, train=True, rngs={"dropout": jax.random.key(7)})
  assert a.shape == c.shape == (2, model.arch.embed_dim)
  assert not np.allclose(a, c)


def test_rejects_wrong_rank():
  model = build_encoder("cnn12_tiny")
  params = model.init(jax.random.key(0), jnp.zeros((1, 2000)))
  with pytest.raises(ValueError, match=r"\[batch, time\]"):
    model.apply(params, jnp.zeros((1, 2000, 1)), method=model.trace)
