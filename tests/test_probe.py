"""The linear probe against planted facts, and its whole-clip features."""
import jax
import numpy as np
import pytest

from sonify_jax.data.sources import ArraySource
from sonify_jax.models.registry import get_network
from sonify_jax.models.encoder import Encoder
from sonify_jax.models.composite import init_params
from sonify_jax.train import probe


def _blobs(rng, n, num_classes, dim, spread):
  labels = np.arange(n) % num_classes
  centres = rng.normal(size=(num_classes, dim)) * spread
  return centres[labels] + rng.normal(size=(n, dim)), labels


def test_separable_features_are_probed_perfectly():
  rng = np.random.default_rng(0)
  x, y = _blobs(rng, 240, 4, 8, spread=20.0)
  result = probe.linear_probe(x[:160], y[:160], x[160:], y[160:])
  assert result.accuracy == 1.0
  assert result.val_accuracy == 1.0
  assert result.majority == pytest.approx(0.25)  # balanced classes
  assert (result.num_train, result.num_test) == (160, 80)


def test_shuffled_labels_give_chance():
  rng = np.random.default_rng(1)
  x, y = _blobs(rng, 1200, 4, 8, spread=20.0)
  y = rng.permutation(y)  # features now say nothing about the labels
  result = probe.linear_probe(x[:400], y[:400], x[400:], y[400:])
  # 800 test clips, 4 classes: chance 0.25 with a standard error of 0.015.
  assert abs(result.accuracy - 0.25) < 0.07


def test_majority_baseline_is_the_most_frequent_train_class():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(30, 3))
  y_train = np.array([2] * 12 + [0] * 6 + [1] * 6)
  y_test = np.array([2, 2, 0, 1, 1, 1])
  result = probe.linear_probe(x[:24], y_train, x[24:], y_test)
  assert result.majority == pytest.approx(2 / 6)


def test_c_is_chosen_without_the_test_split():
  rng = np.random.default_rng(3)
  x, y = _blobs(rng, 200, 3, 5, spread=1.0)
  test_x, test_y = x[150:], y[150:]
  a = probe.linear_probe(x[:150], y[:150], test_x, test_y)
  b = probe.linear_probe(x[:150], y[:150], test_x, rng.permutation(test_y))
  assert a.c == b.c and a.val_accuracy == b.val_accuracy


def test_a_given_validation_set_chooses_c_and_joins_the_final_fit():
  rng = np.random.default_rng(6)
  x, y = _blobs(rng, 300, 3, 5, spread=20.0)
  result = probe.linear_probe(x[:100], y[:100], x[200:], y[200:],
                              val=(x[100:200], y[100:200]))
  assert result.val_accuracy == 1.0 and result.accuracy == 1.0
  assert result.num_train == 200


@pytest.mark.parametrize("bad", ["nan", "one_class", "float_labels", "dims"])
def test_bad_inputs_raise(bad):
  rng = np.random.default_rng(4)
  x, y = rng.normal(size=(40, 3)), np.arange(40) % 2
  tx, ty = x[:10].copy(), y[:10]
  if bad == "nan":
    x[0, 0] = np.nan
  elif bad == "one_class":
    y = np.zeros(40, int)
  elif bad == "float_labels":
    y = y.astype(np.float32)
  else:
    tx = tx[:, :2]
  with pytest.raises(ValueError):
    probe.linear_probe(x, y, tx, ty)


def test_encoder_features_pool_each_clip_whole():
  """Batched, zero-padded, masked features equal each clip's own mean."""
  arch = get_network("cnn12_tiny")
  encoder = Encoder(net=arch, dropout_rate=0.0)
  params = init_params(encoder, jax.random.PRNGKey(0))
  rng = np.random.default_rng(5)
  # Two lengths (two compiles); batches of 2 pad both to 4000 samples.
  lengths = (arch.min_input_length(11) + 30, 4000, 2800)
  audios = [rng.normal(size=n).astype(np.float32) * 0.1 for n in lengths]
  source = ArraySource(audios, [0, 1, 0], num_classes=2)
  features, labels = probe.encoder_features(params, "cnn12_tiny", source,
                                            batch_size=2)
  assert features.shape == (3, arch.channels[-1])
  np.testing.assert_array_equal(labels, [0, 1, 0])
  alone_fn = jax.jit(lambda p, a: encoder.apply(
      {"params": p}, a, method=Encoder.pooled_features))
  for audio, row in zip(audios[:2], features):
    alone = alone_fn(params, audio[None])[0]
    np.testing.assert_allclose(row, alone, rtol=1e-4, atol=1e-6)
