"""Metrics against scikit-learn (test-only dependency) on random data with
ties."""
import numpy as np
import pytest
import scipy.stats

sklearn_metrics = pytest.importorskip("sklearn.metrics")

from sonify_jax.train import metrics  # pylint: disable=g-import-not-at-top


def _random_multilabel(seed, n=60, c=7, decimals=1):
  rng = np.random.RandomState(seed)
  # Rounded scores: many ties inside and across classes.
  scores = np.round(rng.uniform(size=(n, c)), decimals)
  labels = (rng.uniform(size=(n, c)) < 0.3).astype(np.float32)
  labels[:, 0] = 0  # a class without positives: skipped
  labels[:, 1] = 1  # a class without negatives: skipped by AUC only
  labels[0, 2] = 1
  return scores, labels


@pytest.mark.parametrize("seed,decimals", [(0, 1), (1, 2), (2, 6)])
def test_map_and_auc_match_sklearn(seed, decimals):
  scores, labels = _random_multilabel(seed, decimals=decimals)
  with_pos = [c for c in range(labels.shape[1]) if labels[:, c].any()]
  both = [c for c in with_pos if not labels[:, c].all()]
  ref_ap = np.mean([sklearn_metrics.average_precision_score(
      labels[:, c], scores[:, c]) for c in with_pos])
  ref_auc = np.mean([sklearn_metrics.roc_auc_score(labels[:, c], scores[:, c])
                     for c in both])
  np.testing.assert_allclose(
      metrics.average_precision_macro(scores, labels), ref_ap, rtol=1e-12)
  np.testing.assert_allclose(metrics.auc_macro(scores, labels), ref_auc,
                             rtol=1e-12)
  out = metrics.compute_metrics(scores, labels, multilabel=True)
  np.testing.assert_allclose(out["mAP"], ref_ap, rtol=1e-12)
  np.testing.assert_allclose(out["mAUC"], ref_auc, rtol=1e-12)
  np.testing.assert_allclose(out["d_prime"],
                             np.sqrt(2) * scipy.stats.norm.ppf(ref_auc))
  # Multilabel accuracy: the top-scoring class is one of the positives.
  top = scores.argmax(1)
  np.testing.assert_allclose(out["accuracy"],
                             np.mean(labels[np.arange(len(top)), top]))


def test_single_label_metrics_match_sklearn():
  rng = np.random.RandomState(5)
  n, c = 80, 5
  labels = rng.randint(0, c, n)
  scores = np.round(rng.dirichlet(np.ones(c), n), 1)
  hot = np.eye(c)[labels]
  out = metrics.compute_metrics(scores, labels, multilabel=False)
  np.testing.assert_allclose(
      out["mAP"], sklearn_metrics.average_precision_score(hot, scores,
                                                          average="macro"))
  np.testing.assert_allclose(
      out["mAUC"], sklearn_metrics.roc_auc_score(hot, scores,
                                                 average="macro"))
  # argmax with ties picks the first maximum, as np.argmax does.
  np.testing.assert_allclose(
      out["accuracy"],
      sklearn_metrics.accuracy_score(labels, scores.argmax(1)))


def test_known_answers():
  # Perfect ranking, inverted ranking, constant scores.
  labels = np.array([[1], [1], [0], [0]])
  assert metrics.auc_macro(np.array([[4.], [3.], [2.], [1.]]), labels) == 1.0
  assert metrics.auc_macro(np.array([[1.], [2.], [3.], [4.]]), labels) == 0.0
  assert metrics.auc_macro(np.ones((4, 1)), labels) == 0.5
  assert metrics.average_precision_macro(np.ones((4, 1)), labels) == 0.5
  assert metrics.d_prime(0.5) == 0.0
  np.testing.assert_allclose(metrics.d_prime(scipy.stats.norm.cdf(1.0)),
                             np.sqrt(2))


def test_bad_input_errors():
  good = np.zeros((3, 2))
  with pytest.raises(ValueError, match="NaN"):
    metrics.average_precision_macro(np.full((3, 2), np.nan), np.eye(2)[[0, 1,
                                                                         0]])
  with pytest.raises(ValueError, match="rows"):
    metrics.accuracy(good, np.array([0, 1]))
  with pytest.raises(ValueError, match="lie in"):
    metrics.accuracy(good, np.array([0, 1, 2]))
  with pytest.raises(ValueError, match="multilabel"):
    metrics.compute_metrics(good, np.array([0, 1, 1]), multilabel=True)
  with pytest.raises(ValueError, match="empty"):
    metrics.auc_macro(np.zeros((0, 2)), np.zeros((0, 2)))
