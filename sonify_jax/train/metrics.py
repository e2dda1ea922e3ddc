"""Clip-level evaluation metrics (numpy, host side).

Conventions follow the AudioSet literature (and scikit-learn, which the tests
use as the reference):

* mAP: per-class average precision ``sum_n (R_n - R_{n-1}) P_n`` over the
  distinct score thresholds (tied scores form one threshold, no
  interpolation), averaged over the classes that have at least one positive;
  classes without positives have no defined AP and are skipped.
* mAUC: per-class ROC AUC with tied scores counted as half (the trapezoidal
  ROC, equal to the Mann-Whitney statistic), averaged over the classes with
  at least one positive and one negative.
* d-prime: ``sqrt(2) * Phi^-1(AUC)`` of the macro AUC.
* accuracy: single-label -- fraction of clips whose argmax score is the
  label; multilabel -- top-1 accuracy: fraction of clips whose highest-scoring
  class is one of their positive labels.
"""
from typing import Dict, Union

import numpy as np
import scipy.stats


def _as_scores(scores) -> np.ndarray:
  scores = np.asarray(scores, np.float64)
  if scores.ndim != 2:
    raise ValueError(f"scores must be [N, C], got shape {scores.shape}")
  if scores.shape[0] == 0:
    raise ValueError("scores is empty: no clips to evaluate")
  if not np.all(np.isfinite(scores)):
    raise ValueError("scores contain NaN or inf")
  return scores


def _as_multi_hot(labels, num_classes: int) -> np.ndarray:
  """``[N]`` int labels or ``[N, C]`` 0/1 labels -> bool ``[N, C]``."""
  labels = np.asarray(labels)
  if labels.ndim == 1:
    if not np.issubdtype(labels.dtype, np.integer):
      raise TypeError(f"[N] labels must be integers, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
      raise ValueError(
          f"labels must lie in 0..{num_classes - 1}, got {labels.min()}.."
          f"{labels.max()}")
    return np.eye(num_classes, dtype=bool)[labels]
  if labels.ndim != 2 or labels.shape[1] != num_classes:
    raise ValueError(f"labels must be [N] or [N, {num_classes}], got "
                     f"shape {labels.shape}")
  if not np.all((labels == 0) | (labels == 1)):
    raise ValueError("multi-hot labels must be 0 or 1")
  return labels.astype(bool)


def _check(scores, labels):
  scores = _as_scores(scores)
  labels = _as_multi_hot(labels, scores.shape[1])
  if labels.shape[0] != scores.shape[0]:
    raise ValueError(f"{scores.shape[0]} score rows but {labels.shape[0]} "
                     "label rows")
  return scores, labels


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
  """AP of one class: ``scores [N]``, bool ``positives [N]`` (>= 1 positive)."""
  order = np.argsort(-scores, kind="mergesort")
  s = scores[order]
  y = positives[order].astype(np.float64)
  # Last index of each run of tied scores: one threshold per distinct score.
  last = np.r_[np.nonzero(np.diff(s))[0], y.size - 1]
  tps = np.cumsum(y)[last]
  precision = tps / (last + 1)
  recall = tps / tps[-1]
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(scores: np.ndarray, positives: np.ndarray) -> float:
  """ROC AUC of one class (ties count 1/2); needs both classes present."""
  ranks = scipy.stats.rankdata(scores)  # average ranks for ties
  n_pos = positives.sum()
  n_neg = positives.size - n_pos
  return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) /
               (n_pos * n_neg))


def average_precision_macro(scores, labels) -> float:
  """Macro mAP over classes with >= 1 positive (NaN if there are none).

  Args:
    scores: ``[N, C]`` class scores (any monotone scale).
    labels: ``[N, C]`` 0/1 multi-hot or ``[N]`` int labels.
  """
  scores, labels = _check(scores, labels)
  aps = [average_precision(scores[:, c], labels[:, c])
         for c in range(scores.shape[1]) if labels[:, c].any()]
  return float(np.mean(aps)) if aps else float("nan")


def auc_macro(scores, labels) -> float:
  """Macro ROC AUC over classes with both positives and negatives (else NaN).

  Args:
    scores: ``[N, C]``.
    labels: ``[N, C]`` 0/1 multi-hot or ``[N]`` int labels.
  """
  scores, labels = _check(scores, labels)
  aucs = [roc_auc(scores[:, c], labels[:, c])
          for c in range(scores.shape[1])
          if labels[:, c].any() and not labels[:, c].all()]
  return float(np.mean(aucs)) if aucs else float("nan")


def d_prime(auc: Union[float, np.ndarray]) -> Union[float, np.ndarray]:
  """Sensitivity index ``sqrt(2) * Phi^-1(auc)`` (inf at AUC 1, -inf at 0)."""
  out = np.sqrt(2.0) * scipy.stats.norm.ppf(auc)
  return float(out) if np.ndim(out) == 0 else out


def accuracy(scores, labels) -> float:
  """Top-1 accuracy.

  Args:
    scores: ``[N, C]``.
    labels: ``[N]`` int labels (single-label), or ``[N, C]`` multi-hot: a clip
      counts as correct when its argmax class is one of its positives (a
      one-hot ``[N, C]`` therefore gives plain single-label accuracy).
  """
  scores, labels = _check(scores, labels)
  top = np.argmax(scores, axis=1)
  return float(np.mean(labels[np.arange(labels.shape[0]), top]))


def compute_metrics(scores, labels, multilabel: bool) -> Dict[str, float]:
  """``{'mAP', 'mAUC', 'd_prime', 'accuracy'}`` of clip-level scores.

  Args:
    scores: ``[N, C]`` probabilities (or logits) per clip.
    labels: single-label: ``[N]`` int; multilabel: ``[N, C]`` multi-hot.
    multilabel: which of the two label forms to expect.
  """
  labels = np.asarray(labels)
  if multilabel and labels.ndim != 2:
    raise ValueError(f"multilabel labels must be [N, C], got {labels.shape}")
  if not multilabel and labels.ndim != 1:
    raise ValueError(f"single-label labels must be [N], got {labels.shape}")
  scores, hot = _check(scores, labels)
  mauc = auc_macro(scores, hot)
  return {
      "mAP": average_precision_macro(scores, hot),
      "mAUC": mauc,
      "d_prime": d_prime(mauc),
      "accuracy": accuracy(scores, hot),
  }
