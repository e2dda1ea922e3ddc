"""Networks as data: the CNN12 sizes, the shape rule against real forward
passes of strided/padded/dilated nets, receptive fields, masked pooling,
JSON round trips and refused descriptions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sonify_jax.errors import UserError
from sonify_jax.models import build_encoder, get_network, network, shapes
from sonify_jax.models import forward, registry


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
  arch = get_network(name)
  assert count == _hand_count(registry.CNN12_KERNELS, arch.channels,
                              arch.embed_dim)
  assert abs(count - approx) / approx < 0.01


def test_architecture_matches_the_thesis():
  arch = get_network("cnn12")
  convs = [b[0] for b in arch.blocks]
  assert [c.kernel_size for c in convs] == [7, 7, 5, 5, 5, 3, 3, 3, 3, 3, 3]
  assert all(c.stride == 1 and c.padding == (0, 0) for c in convs)
  assert arch.channels == (64, 64, 128, 128, 256, 256, 512, 512, 1024, 1024,
                           2048)
  pooled = [any(isinstance(l, network.MaxPool) for l in b)
            for b in arch.blocks]
  assert pooled == [True] * 8 + [False] * 3
  assert arch.sample_rate == 8000 and arch.input_convention == "none"
  x2 = get_network("cnn12_x2")
  assert x2.channels == tuple(2 * c for c in arch.channels)


@pytest.mark.parametrize("length", [4001, 3334])
def test_output_lengths_match_forward(length):
  model = build_encoder("cnn12_tiny")
  x = jax.ShapeDtypeStruct((2, length), jnp.float32)
  params = jax.eval_shape(model.init, jax.random.key(0), x)
  outputs = jax.eval_shape(
      lambda p, x: model.apply(p, x, method=model.block_outputs), params, x)
  arch = model.net
  t = length
  for block in range(1, 12):
    # CNN12 by hand: VALID conv, then floor-halving pools in blocks 1..8.
    t = t - registry.CNN12_KERNELS[block - 1] + 1
    t = t // 2 if block <= 8 else t
    assert arch.output_length(length, block) == t
    assert outputs[block - 1].shape == (2, t, arch.channels[block - 1])


# Strided, dilated, padded convs and overlapping, padded pools: the shape
# rule must agree with what lax computes for each of them.
ODD = network.Network("odd", (
    (network.Pad((3, 1)), network.Conv("c1", 3, 9, stride=3, padding=(4, 2)),
     network.ReLU()),
    (network.Conv("c2", 4, 5, dilation=2, padding="SAME"), network.ReLU(),
     network.Affine("a2"), network.MaxPool(3, 2, (1, 1))),
    (network.Conv("c3", 2, 4, stride=2, use_bias=False),
     network.Identity("dropout"), network.MaxPool(2, 2)),
), sample_rate=16000, input_convention="standardize")


def _odd_params(seed=0):
  from sonify_jax.analysis.core import common  # pylint: disable=g-import-not-at-top
  return common.random_params(ODD, seed)


@pytest.mark.parametrize("length", [61, 62, 100, 257])
def test_shape_rule_matches_lax_on_strided_padded_layers(length):
  params = _odd_params()
  outs = forward.block_outputs(params, jnp.ones((1, length)), ODD)
  for block, out in enumerate(outs, start=1):
    assert out.shape[1] == ODD.output_length(length, block)
  assert outs[1].shape[-1] == 4 and outs[2].shape[-1] == 2


@pytest.mark.parametrize("block", [1, 2, 3])
def test_frame_span_is_the_support_of_each_frame(block):
  """Perturbing one input sample changes only frames whose span
  (``frame_span``) holds it; ``min_input_length`` is the shortest clip with
  one frame."""
  params = _odd_params(1)
  length = 120
  stride, first, last = ODD.frame_span(block)
  base = np.random.default_rng(2).standard_normal((1, length)
                                                  ).astype(np.float32)
  f = jax.jit(lambda x: forward.block_outputs(params, x, ODD, block,
                                              prepared=True)[-1])
  y0 = np.asarray(f(base))
  frames = y0.shape[1]
  depends = np.zeros((frames, length), bool)
  for n in range(length):
    bumped = base.copy()
    bumped[0, n] += 1.0
    depends[:, n] = np.any(np.asarray(f(bumped)) != y0, axis=(0, 2))
  assert depends.any()
  for t in range(frames):
    lo, hi = t * stride + first, t * stride + last
    inside = (np.arange(length) >= lo) & (np.arange(length) <= hi)
    assert not depends[t, ~inside].any()
  rf = ODD.min_input_length(block)
  assert ODD.output_length(rf, block) == 1
  assert ODD.output_length(rf - 1, block) <= 0


def test_valid_lengths_follow_the_shape_rule_layer_by_layer():
  """The traceable per-layer lengths equal the int rule's (clamped at 0)
  on strided, padded and pooled nets, for clips of several lengths."""
  for arch in (get_network("cnn12_tiny"), get_network("crepe_tiny"), ODD):
    for valid in (arch.min_input_length(arch.num_blocks), 2370, 2371, 4001):
      got = shapes.valid_lengths(arch, jnp.array([valid, valid + 3]),
                                 arch.num_blocks)
      t = valid
      for layer, length in zip(arch.layers_upto(arch.num_blocks), got):
        assert int(length[0]) == max(t, 0)
        t = shapes.layer_output_length(layer, t) if t > 0 else t
      assert int(got[-1][0]) == max(arch.output_length(valid,
                                                       arch.num_blocks), 0)


def test_descriptions_round_trip_through_json():
  import json  # pylint: disable=g-import-not-at-top
  for net in list(registry.NETWORKS.values()) + [ODD]:
    back = network.from_dict(json.loads(json.dumps(net.to_dict())))
    assert back == net and hash(back) == hash(net)


@pytest.mark.parametrize("change,match", [
    ({"name": ""}, "name"),
    ({"sample_rate": 0}, "sample_rate"),
    ({"input_convention": "mel"}, "input_convention"),
    ({"blocks": []}, "at least one block"),
    ({"blocks": [[{"type": "lstm"}]]}, "unsupported layer type 'lstm'"),
    ({"blocks": [[{"type": "conv", "name": "c", "features": 2,
                   "kernel_size": 3, "stride": 2, "padding": "SAME"}]]},
     "SAME"),
    ({"blocks": [[{"type": "conv", "name": "c", "features": 0,
                   "kernel_size": 3}]]}, "features"),
    ({"blocks": [[{"type": "conv", "name": "c", "features": 2,
                   "kernel_size": 3, "groups": 2}]]}, "groups"),
    ({"blocks": [[{"type": "max_pool", "size": 2, "stride": 2,
                   "padding": [2, 0]}]]}, "padding"),
    ({"extra": 1}, "unknown field"),
])
def test_bad_descriptions_are_refused_with_the_field(change, match):
  description = registry.CNN12_TINY.to_dict()
  description.update(change)
  with pytest.raises(UserError, match=match):
    network.from_dict(description)


def test_same_padding_matches_pytorch_convention():
  conv = network.Conv("c", 1, 4, padding="SAME")
  assert conv.padding == (1, 2)   # torch: left = total // 2, extra right
  assert network.Conv("c", 1, 5, dilation=2, padding="same").padding == (4, 4)


@pytest.mark.parametrize("block", [1, 8, 11])
def test_receptive_field_is_the_support_of_the_first_frame(block):
  model = build_encoder("cnn12_tiny")
  arch = model.net
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
  assert a.shape == c.shape == (2, model.net.embed_dim)
  assert not np.allclose(a, c)


def test_rejects_wrong_rank():
  model = build_encoder("cnn12_tiny")
  params = model.init(jax.random.key(0), jnp.zeros((1, 2000)))
  with pytest.raises(ValueError, match=r"\[batch, time\]"):
    model.apply(params, jnp.zeros((1, 2000, 1)), method=model.block_outputs)
