"""Whole-clip (utterance-level) evaluation of a classifier.

Clips of any length are scored whole: ``pipeline.eval_batches`` zero-pads each
batch to its longest clip and the mask restricts the encoder's temporal mean
to each clip's own frames, so a clip scores the same in any batch as alone.
"""
import time
from typing import Any, Callable, Dict, Optional, Tuple

from absl import logging
import numpy as np

from sonify_jax.data import pipeline
from sonify_jax.data.sources import ClipSource
from sonify_jax.data.sources import SAMPLE_RATE
from sonify_jax.models.registry import get_network
from sonify_jax.train import metrics as metrics_lib

# Batch lengths are rounded up to this many samples so that a dataset of
# varied clip lengths compiles a handful of shapes rather than one per batch;
# the mask makes the padding invisible to the scores.
PAD_MULTIPLE = SAMPLE_RATE // 2


def predict(eval_step: Callable[[Any, Dict], np.ndarray], params: Any,
            source: ClipSource, *, arch_name: str, batch_size: int,
            max_samples: Optional[int] = None,
            pad_multiple: int = PAD_MULTIPLE,
            progress: bool = False) -> Tuple[np.ndarray, np.ndarray]:
  """Scores and labels of every readable clip of ``source``, in order.

  Args:
    eval_step: ``steps.make_eval_step(model, mesh)``.
    params: the model's params (or a TrainState).
    source: clips to score.
    arch_name: the encoder's architecture (for its receptive field).
    batch_size: clips per batch.
    max_samples: clips longer than this are truncated to their start.
    pad_multiple: batch length rounding (see ``PAD_MULTIPLE``).
    progress: log progress every few batches.

  Returns:
    (scores float32 ``[N, C]``, labels int32 ``[N]`` or float32 ``[N, C]``)
    over the N readable clips (unreadable ones are dropped and logged by the
    pipeline).
  """
  if len(source) == 0:
    raise ValueError(f"eval source {getattr(source, 'name', '?')!r} is empty")
  arch = get_network(arch_name)
  scores, labels = [], []
  with pipeline.eval_batches(
      source, batch_size=batch_size, max_samples=max_samples,
      min_samples=arch.min_input_length(arch.num_blocks),
      pad_multiple=pad_multiple, log_every=20 if progress else 0) as batches:
    for batch in batches:
      valid = np.asarray(batch["valid"], bool)
      out = eval_step(params, {"audio": batch["audio"],
                               "mask": batch["mask"]})
      scores.append(np.asarray(out, np.float32)[valid])
      labels.append(np.asarray(batch["label"])[valid])
    stats = batches.stats
  if getattr(stats, "unreadable", None):
    logging.warning("evaluation skipped %d unreadable clips",
                    len(stats.unreadable))
  if not scores or sum(len(s) for s in scores) == 0:
    raise ValueError("no readable clip to evaluate")
  return np.concatenate(scores), np.concatenate(labels)


def evaluate(eval_step: Callable[[Any, Dict], np.ndarray], params: Any,
             source: ClipSource, *, arch_name: str, batch_size: int,
             multilabel: bool, max_samples: Optional[int] = None,
             prefix: str = "eval/") -> Dict[str, float]:
  """mAP, mAUC, d-prime and accuracy of whole-clip scores on ``source``.

  Returns:
    ``{prefix + name: value}`` from ``metrics.compute_metrics``, plus
    ``prefix + 'num_clips'`` and ``prefix + 'seconds'``.
  """
  start = time.time()
  scores, labels = predict(eval_step, params, source, arch_name=arch_name,
                           batch_size=batch_size, max_samples=max_samples)
  out = score_metrics(scores, labels, multilabel, prefix)
  out[prefix + "seconds"] = time.time() - start
  return out


def score_metrics(scores: np.ndarray, labels: np.ndarray, multilabel: bool,
                  prefix: str = "eval/") -> Dict[str, float]:
  """``metrics.compute_metrics`` of :func:`predict`'s output, prefixed, with
  ``prefix + 'num_clips'``."""
  results = metrics_lib.compute_metrics(scores, labels, multilabel)
  out = {prefix + k: float(v) for k, v in results.items()}
  out[prefix + "num_clips"] = float(len(scores))
  return out
