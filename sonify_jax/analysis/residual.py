"""Residual-signal study (thesis 6.2).

For each layer L, every eval clip ``x`` is replaced by the residual
``x - s_L(x)``, where ``s_L(x)`` is the (peak-scaled) sonification of the
clip's most active map of layer L, and the classifier is re-evaluated. If a
layer's top map captures what the classifier relies on, removing it costs
mAP; the plot shows mAP per layer against the baseline on the intact clips.

The classifier is a ``ClassifierModel``'s (encoder params, head params);
:func:`make_classifier_fn` turns them into a jit-compiled scoring function,
and :func:`evaluate_residuals` takes any scoring function and any
sonification function, so each is testable on its own.
"""
import os
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax import outputs
from sonify_jax.analysis import common
from sonify_jax.models.architecture import Architecture

Params = Any
ScoreFn = Callable[[np.ndarray], np.ndarray]          # [B, T] -> [B, C]
SonifyFn = Callable[[np.ndarray, Tuple[int, ...]], Dict[int, np.ndarray]]


def make_classifier_fn(encoder_params: Params, head_params: Params,
                       arch: Architecture, multilabel: bool) -> ScoreFn:
  """Scores ``[B, C]`` (sigmoid or softmax) of a ClassifierModel.

  ``head_params`` is ``params['head']`` of a ClassifierModel
  (``{'logits': {'kernel': [E, C], 'bias': [C]}}``).
  """
  from sonify_jax.models.composite import ClassifierModel  # pylint: disable=g-import-not-at-top
  num_classes = int(np.shape(head_params["logits"]["kernel"])[-1])
  model = ClassifierModel(arch_name=arch.name, num_classes=num_classes,
                          multilabel=multilabel)
  params = {"encoder": encoder_params, "head": head_params}

  @jax.jit
  def scores(audio):
    return model.scores(model.apply({"params": params}, audio))

  return lambda audio: np.asarray(scores(jnp.asarray(audio, jnp.float32)))


def most_active_sonify_fn(params: Params, arch: Architecture,
                          batch_size: int) -> SonifyFn:
  """The study's default: each clip's most active map per layer."""
  from sonify_jax.analysis import coherence  # pylint: disable=g-import-not-at-top

  def fn(audio, layers):
    return coherence.most_active_sonifications(params, arch, audio, layers,
                                               batch_size)
  return fn


def _metrics(scores, labels, multilabel):
  from sonify_jax.train import metrics  # pylint: disable=g-import-not-at-top
  return metrics.compute_metrics(scores, labels, multilabel)


def evaluate_residuals(score_fn: ScoreFn, sonify_fn: SonifyFn, source,
                       layers: Sequence[int], min_samples: int,
                       batch_size: int = 16,
                       clip_samples: Optional[int] = None,
                       max_clips: Optional[int] = None,
                       progress: bool = True) -> Dict[str, Any]:
  """Baseline and per-layer residual metrics in one pass over ``source``.

  Only scores ``[N, C]`` and labels are kept, never the clips.

  Returns:
    ``{'baseline': metrics, 'layers': {layer: metrics}, 'clips': N}`` with
    metrics from ``sonify_jax.train.metrics.compute_metrics``.
  """
  layers = tuple(layers)
  base, per_layer = [], {l: [] for l in layers}
  labels = []
  total = len(source) if max_clips is None else min(len(source), max_clips)
  bar = common.Progress("residual", total, enabled=progress)
  for batch in common.iter_clip_batches(source, batch_size, min_samples,
                                        clip_samples, max_clips):
    valid = batch["valid"]
    audio = batch["audio"]
    base.append(score_fn(audio)[valid])
    sonifs = sonify_fn(audio, layers)
    for layer in layers:
      per_layer[layer].append(score_fn(audio - sonifs[layer])[valid])
    labels.append(batch["label"][valid])
    bar.update(int(valid.sum()))
  bar.close()
  if not labels:
    raise ValueError("the source holds no clips")
  labels = np.concatenate(labels)
  multilabel = bool(getattr(source, "multilabel", labels.ndim == 2))
  return {"baseline": _metrics(np.concatenate(base), labels, multilabel),
          "layers": {l: _metrics(np.concatenate(per_layer[l]), labels,
                                 multilabel) for l in layers},
          "clips": int(labels.shape[0])}


def run_residual(encoder_params: Params, head_params: Params,
                 arch: Architecture, source, out_dir: str,
                 layers: Optional[Sequence[int]] = None,
                 batch_size: int = 16, clip_samples: Optional[int] = None,
                 max_clips: Optional[int] = None,
                 metric: str = "mAP", progress: bool = True
                 ) -> Dict[str, Any]:
  """Residual study of one classifier; writes residual.json/residual.png."""
  from sonify_jax.analysis import figures  # pylint: disable=g-import-not-at-top
  layers = common.check_layers(layers, arch)
  score_fn = make_classifier_fn(encoder_params, head_params, arch,
                                bool(source.multilabel))
  result = evaluate_residuals(
      score_fn, most_active_sonify_fn(encoder_params, arch, batch_size),
      # The classifier needs the whole encoder's receptive field.
      source, layers, arch.min_input_length(arch.num_blocks), batch_size,
      clip_samples, max_clips, progress)
  os.makedirs(out_dir, exist_ok=True)
  figures.layer_curves(
      os.path.join(out_dir, "residual.png"), layers,
      {"residual (x - top-map sonification)":
       ([result["layers"][l][metric] for l in layers], None)},
      ylabel=metric, title="Classifier on residual signals per layer",
      baselines={f"baseline {result['baseline'][metric]:.3f}":
                 result["baseline"][metric]})
  outputs.write_json(os.path.join(out_dir, "residual.json"),
                  {"metric": metric, "layers": list(layers),
                   "baseline": result["baseline"],
                   "residual": {str(l): result["layers"][l] for l in layers},
                   "clips": result["clips"]})
  return result
