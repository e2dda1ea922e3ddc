"""Residual-signal study (thesis 6.2).

For each layer L, every eval clip ``x`` is replaced by the residual
``x - s_L(x)``, where ``s_L(x)`` is the (peak-scaled) sonification of the
clip's most active map of layer L, and the classifier is re-evaluated. If a
layer's top map captures what the classifier relies on, removing it costs
mAP; the plot shows mAP per layer against the baseline on the intact clips,
next to the controls (``analysis.core.controls``): the untrained init's
most active map, and a random live map, subtracted instead.

The classifier is a ``ClassifierModel``'s (encoder params, head params);
:func:`make_classifier_fn` turns them into a jit-compiled scoring function,
and :func:`evaluate_residuals` takes any scoring function and any
sonification function, so each is testable on its own.

A network whose head reads pitch (CREPE, FCN-F0: ``pitch_track``) needs no
labels: :func:`run_pitch_residual` tracks each clip and its residual with
the network's own head (as ``python -m sonify_jax.track`` does) and scores
the share of the frames it calls voiced on the intact clip (strongest bin
>= 0.5) whose f0 on the residual stays within 50 cents: 1 when the
subtracted map carried nothing the pitch reading needs, 0 when removing it
moved every voiced frame's pitch.
"""
import os
from typing import Any, Callable, Dict, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax import atomic_io
from sonify_jax.analysis import studies
from sonify_jax.analysis.core import common
from sonify_jax.analysis.core import controls
from sonify_jax.analysis.core import shares
from sonify_jax.errors import UserError
from sonify_jax.models.network import Network
from sonify_jax.visualize import compare

Params = Any
ScoreFn = Callable[[np.ndarray], np.ndarray]          # [B, T] -> [B, C]
# (audio [B, T], layers, clip indices [B]) -> {layer: [B, T]}
SonifyFn = Callable[..., Dict[int, np.ndarray]]


def make_classifier_fn(encoder_params: Params, head_params: Params,
                       arch: Network, multilabel: bool) -> ScoreFn:
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


def condition_sonify_fn(condition: str, run: controls.RunParams,
                        batch_size: int,
                        seed: int = controls.DEFAULT_SEED) -> SonifyFn:
  """What a condition subtracts: the trained model's most active map, the
  untrained init's most active map, or a random live map of the trained
  model (``controls.choose_maps``), each sonified by its own encoder."""
  from sonify_jax.analysis.studies import coherence  # pylint: disable=g-import-not-at-top
  params = controls.condition_params(condition, run)

  def fn(audio, layers, indices=None):
    return coherence.condition_sonifications(condition, params, run.arch,
                                             audio, tuple(layers), batch_size,
                                             indices, seed)
  return fn


def most_active_sonify_fn(params: Params, arch: Network,
                          batch_size: int) -> SonifyFn:
  """The study's default: each clip's most active map per layer."""
  return condition_sonify_fn(controls.TRAINED,
                             controls.RunParams(params, None, arch),
                             batch_size)


def _metrics(scores, labels, multilabel):
  from sonify_jax.train import metrics  # pylint: disable=g-import-not-at-top
  return metrics.compute_metrics(scores, labels, multilabel)


def evaluate_residuals(score_fn: ScoreFn,
                       sonify_fn: Union[SonifyFn, Dict[str, SonifyFn]],
                       source, layers: Sequence[int], min_samples: int,
                       batch_size: int = 16,
                       clip_samples: Optional[int] = None,
                       max_clips: Optional[int] = None,
                       progress: bool = True,
                       share: shares.Share = shares.Share()
                       ) -> Dict[str, Any]:
  """Baseline and per-layer residual metrics in one pass over ``source``.

  Only scores ``[N, C]`` and labels are kept, never the clips. Each process
  streams its ``share`` of the clips; the metrics are over every clip's
  scores, in clip order.

  Args:
    sonify_fn: what to subtract, ``(audio [B, T], layers, clip indices [B])
      -> {layer: [B, T]}``; or ``{condition: such a function}``.
  Returns:
    ``{'baseline': metrics, 'layers': {layer: metrics} (the first
    condition's), 'conditions': {condition: {layer: metrics}}, 'clips': N}``
    with metrics from ``sonify_jax.train.metrics.compute_metrics``.
  """
  layers = tuple(layers)
  fns = (dict(sonify_fn) if isinstance(sonify_fn, dict)
         else {controls.TRAINED: sonify_fn})
  base, labels, index = [], [], []
  per = {c: {l: [] for l in layers} for c in fns}
  total = len(source) if max_clips is None else min(len(source), max_clips)
  bar = common.Progress("residual", share.clips_of(total), enabled=progress)
  for batch in common.iter_clip_batches(source, batch_size, min_samples,
                                        clip_samples, max_clips,
                                        owns=share.owns):
    valid = batch["valid"]
    index.append(batch["index"][valid])
    audio = batch["audio"]
    base.append(score_fn(audio)[valid])
    for condition, fn in fns.items():
      sonifs = fn(audio, layers, batch["index"])
      for layer in layers:
        per[condition][layer].append(score_fn(audio - sonifs[layer])[valid])
    labels.append(batch["label"][valid])
    bar.update(int(valid.sum()))
  bar.close()
  if not sum(shares.gather(len(labels), share)):
    raise ValueError("the source holds no clips")
  mine = np.concatenate(index) if index else np.zeros(0, np.int64)

  def every(parts):
    """Every process's rows, in clip order."""
    return shares.in_clip_order(
        mine, np.concatenate(parts) if parts else None, share)[1]

  labels = every(labels)
  multilabel = bool(getattr(source, "multilabel", labels.ndim == 2))
  conditions = {c: {l: _metrics(every(per[c][l]), labels,
                                multilabel) for l in layers} for c in fns}
  return {"baseline": _metrics(every(base), labels, multilabel),
          "layers": next(iter(conditions.values())),
          "conditions": conditions,
          "clips": int(labels.shape[0])}


def run_residual(encoder_params: Params, head_params: Params,
                 arch: Network, source, out_dir: str,
                 layers: Optional[Sequence[int]] = None,
                 batch_size: int = 16, clip_samples: Optional[int] = None,
                 max_clips: Optional[int] = None,
                 metric: str = "mAP", progress: bool = True,
                 untrained: Optional[Params] = None,
                 seed: int = controls.DEFAULT_SEED,
                 share: Optional[shares.Share] = None) -> Dict[str, Any]:
  """Residual study of one classifier, with its controls.

  The classifier (trained encoder + head) is fixed; what is subtracted
  varies: its own most active map's sonification (``trained``), the
  untrained init's most active map's (``untrained``, if ``untrained`` is
  given), a random live map's (``random_map``). Writes residual.json
  (``per_layer``: ``{layer: {condition: metrics}}``) and residual.png.
  Over several processes (``share``, default the running process's) each
  streams its share of the clips and writes the JSON one process would.
  """
  from sonify_jax.analysis.figures import panels  # pylint: disable=g-import-not-at-top
  layers = common.check_layers(layers, arch)
  share = share or shares.Share.of_process()
  score_fn = make_classifier_fn(encoder_params, head_params, arch,
                                bool(source.multilabel))
  run = controls.RunParams(encoder_params, untrained, arch)
  result = evaluate_residuals(
      score_fn, {c: condition_sonify_fn(c, run, batch_size, seed)
                 for c in controls.conditions_of(run)},
      # The classifier needs the whole encoder's receptive field.
      source, layers, arch.min_input_length(arch.num_blocks), batch_size,
      clip_samples, max_clips, progress, share)
  conditions = result["conditions"]
  if share.chief:   # every process holds the result; one writes it
    os.makedirs(out_dir, exist_ok=True)
    base = result["baseline"][metric]
    panels.condition_curves(
        os.path.join(out_dir, "residual.png"), layers,
        {"residual x - s(x)": ({c: ([v[l][metric] for l in layers], None)
                               for c, v in conditions.items()}, 1)},
        ylabel=metric, title="Classifier on residual signals per layer",
        baselines={f"intact clips {base:.3f}": base})
    atomic_io.write_json(os.path.join(out_dir, "residual.json"), {
        "metric": metric, "layers": list(layers), "seed": seed,
        "baseline": result["baseline"],
        "residual": {str(l): result["layers"][l] for l in layers},
        "per_layer": {str(l): {c: v[l] for c, v in conditions.items()}
                      for l in layers},
        "clips": result["clips"]})
  return result


PITCH_METRIC = "pitch_kept"
VOICED = 0.5        # CREPE's voicing threshold on the strongest bin
KEPT_CENTS = 50.0   # a quarter tone either side: the same note


def pitch_kept(f0_intact: np.ndarray, confidence_intact: np.ndarray,
               f0_residual: np.ndarray) -> Optional[float]:
  """Share of the intact clip's voiced frames whose residual f0 is within
  :data:`KEPT_CENTS`; None when no frame is voiced."""
  voiced = np.asarray(confidence_intact) >= VOICED
  if not voiced.any():
    return None
  cents = compare.cents_apart(np.asarray(f0_residual)[voiced],
                              np.asarray(f0_intact)[voiced])
  return float(np.mean(cents <= KEPT_CENTS))


def run_pitch_residual(params: Params, arch: Network, source, out_dir: str,
                       layers: Optional[Sequence[int]] = None,
                       batch_size: int = 16,
                       clip_samples: Optional[int] = None,
                       max_clips: Optional[int] = None,
                       progress: bool = True,
                       untrained: Optional[Params] = None,
                       seed: int = controls.DEFAULT_SEED,
                       share: Optional[shares.Share] = None
                       ) -> Dict[str, Any]:
  """Residual study of a network with a pitch head, with its controls.

  ``params`` holds the encoder's and the head's (``run_loading.load(...,
  with_head=True)``); the network that reads the pitch is fixed, what is
  subtracted varies as in :func:`run_residual`. Clips on which the network
  calls no frame voiced are skipped (counted in the JSON). Writes
  residual.json (``per_layer``: ``{layer: {condition: {'pitch_kept',
  'pitch_kept_ci95', 'clips'}}}``) and residual.png. Over several processes
  (``share``, default the running process's) each streams its share of the
  clips and writes the JSON one process would.
  """
  share = share or shares.Share.of_process()
  from sonify_jax.analysis.figures import panels  # pylint: disable=g-import-not-at-top
  from sonify_jax.models import pitch_track  # pylint: disable=g-import-not-at-top
  layers = common.check_layers(layers, arch)
  encoder = {k: v for k, v in params.items() if k != arch.head.name}
  run = controls.RunParams(encoder, untrained, arch)
  fns = {c: condition_sonify_fn(c, run, batch_size, seed)
         for c in controls.conditions_of(run)}
  hop = arch.sample_rate // 100   # 10 ms, the track command's default

  def reading(audio):
    _, f0, confidence = pitch_track.track(params, arch, np.asarray(audio),
                                          hop)
    return f0, confidence

  # Per clip: its voiced share (NaN: no voiced frame, skipped), then the
  # kept share of each (condition, layer).
  per_clip, index = [], []
  min_samples = max(arch.min_input_length(arch.num_blocks),
                    arch.head_input_length())
  total = len(source) if max_clips is None else min(len(source), max_clips)
  bar = common.Progress("residual (pitch)", share.clips_of(total),
                        enabled=progress)
  for batch in common.iter_clip_batches(source, batch_size, min_samples,
                                        clip_samples, max_clips,
                                        owns=share.owns):
    rows = np.flatnonzero(batch["valid"])
    audio = batch["audio"]
    sonifs = {c: fn(audio, layers, batch["index"]) for c, fn in fns.items()}
    for row in rows:
      index.append(batch["index"][row])
      f0, confidence = reading(audio[row])
      if not (confidence >= VOICED).any():
        per_clip.append([np.nan] * (1 + len(fns) * len(layers)))
        continue
      per_clip.append([float(np.mean(confidence >= VOICED))] + [
          pitch_kept(f0, confidence, reading(
              audio[row] - np.asarray(sonifs[c][layer][row]))[0])
          for c in fns for layer in layers])
    bar.update(len(rows))
  bar.close()
  _, per_clip = shares.in_clip_order(
      np.asarray(index, np.int64),
      np.asarray(per_clip, np.float64) if index else None, share)
  if per_clip is None:
    raise ValueError("the source holds no clips")
  voiced = per_clip[np.isfinite(per_clip[:, 0])]
  voiced_shares, unvoiced = voiced[:, 0].tolist(), len(per_clip) - len(voiced)
  kept = {c: {l: voiced[:, 1 + i * len(layers) + j].tolist()
              for j, l in enumerate(layers)} for i, c in enumerate(fns)}
  if not voiced_shares:
    raise UserError(f"{arch.name} calls no frame of any clip voiced "
                    f"(strongest bin >= {VOICED}): no pitch to keep")

  def summary(values):
    mean, half = common.t_interval(values)
    return {PITCH_METRIC: mean,
            f"{PITCH_METRIC}_ci95": None if np.isnan(half) else half,
            "clips": len(values)}

  per_layer = {str(l): {c: summary(kept[c][l]) for c in fns} for l in layers}
  result = {"metric": PITCH_METRIC, "layers": list(layers), "seed": seed,
            "voiced_threshold": VOICED, "kept_cents": KEPT_CENTS,
            "hop_samples": hop,
            "baseline": {PITCH_METRIC: 1.0,
                         "voiced_share": float(np.mean(voiced_shares))},
            "residual": {k: v[controls.TRAINED] for k, v in per_layer.items()},
            "per_layer": per_layer, "clips": len(voiced_shares),
            "clips_unvoiced": unvoiced}
  if share.chief:   # every process holds the result; one writes it
    os.makedirs(out_dir, exist_ok=True)
    panels.condition_curves(
        os.path.join(out_dir, "residual.png"), layers,
        {"residual x - s(x)": ({c: (
            [per_layer[str(l)][c][PITCH_METRIC] for l in layers],
            [per_layer[str(l)][c][f"{PITCH_METRIC}_ci95"] or 0.0
             for l in layers]) for c in fns}, len(voiced_shares))},
        ylabel=f"voiced frames whose f0 stays within {KEPT_CENTS:.0f} cents",
        title=f"{arch.name} tracking residual signals (95 % CI over clips)",
        baselines={"intact clips 1.0": 1.0})
    atomic_io.write_json(os.path.join(out_dir, "residual.json"), result)
  return result


# ------------------------------------------------ python -m analysis.run


def _print_metrics(label: str, metrics: Dict[str, float]) -> str:
  return f"{label}: " + ", ".join(f"{k} {v:.4f}"
                                  for k, v in sorted(metrics.items()))


def _run_study(context) -> None:
  _, run = context.runs[0]
  workdir = context.workdir
  if run.head is None:
    _run_pitch_study(context, run)
    return
  result = run_residual(run.trained, run.head, run.arch, context.source,
                        workdir, layers=context.layers,
                        untrained=run.untrained, **context.common_kw())
  context.record(os.path.join(workdir, "residual.json"), context.chosen[:1])
  context.say(_print_metrics("intact clips", result["baseline"]))
  for condition, per_layer in result["conditions"].items():
    context.say(f"residual x - s(x), s = {controls.LABELS[condition]}:")
    for layer, metrics in per_layer.items():
      context.say("  " + _print_metrics(f"L{layer}", metrics))
  context.say(f"residual: {workdir}/residual.json, {workdir}/residual.png")


def _run_pitch_study(context, run) -> None:
  from sonify_jax import run_loading  # pylint: disable=g-import-not-at-top
  from sonify_jax.models import pitch_track  # pylint: disable=g-import-not-at-top
  path = context.checkpoints[0][1]
  if not pitch_track.has_pitch_head(run.arch):
    raise UserError(f"{path} is not a classifier run (no classifier head) "
                    "and its network has no pitch head: the residual study "
                    "needs one of them")
  params, _, _ = run_loading.load(path, run.step, with_head=True)
  workdir = context.workdir
  result = run_pitch_residual(params, run.arch, context.source, workdir,
                              layers=context.layers, untrained=run.untrained,
                              **context.common_kw())
  context.record(os.path.join(workdir, "residual.json"), context.chosen[:1])
  context.say(f"{result['clips']} clips with voiced frames "
              f"({result['clips_unvoiced']} without); share of voiced frames "
              f"whose f0 stays within {KEPT_CENTS:.0f} cents on x - s(x):")
  for layer, conditions in result["per_layer"].items():
    context.say(f"  L{layer}: " + ", ".join(
        f"{controls.LABELS[c]} {v[PITCH_METRIC]:.3f}"
        + (f" ±{v[PITCH_METRIC + '_ci95']:.3f}"
           if v[PITCH_METRIC + "_ci95"] is not None else "")
        for c, v in conditions.items()))
  context.say(f"residual: {workdir}/residual.json, {workdir}/residual.png")


STUDY = studies.Study("residual", studies.DATA_FLAGS, _run_study,
                      labelled=True, max_runs=1)
