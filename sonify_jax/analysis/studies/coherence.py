"""Coherence between clips and their sonifications (thesis 6.3).

For every clip and layer: take the clip's most active map of that layer
(argmax over maps of the max-over-time activation), sonify it, and compute
the magnitude-squared coherence (``scipy.signal.coherence``, Welch, Hann
window, ``nperseg`` samples, 50 % overlap) between the clip and the
sonification. **Top-5 coherence** of a clip is the mean of the 5 largest
coherence values over the frequency bins. A layer's score is the mean over
clips; across runs (seeds / independently trained models) we report the
mean and the half-width of the 95 % Student-t interval of the run means.

An all-zero sonification (a dead map) or an all-zero clip has undefined
coherence (0/0); it counts as 0: nothing of the input survives.
"""
import os
import time
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import scipy.signal

from sonify_jax import atomic_io
from sonify_jax.analysis import studies
from sonify_jax.analysis.core import common
from sonify_jax.analysis.core import controls
from sonify_jax.analysis.core import shares
from sonify_jax.models.network import Network

Params = Any


def top_coherence(x: np.ndarray, y: np.ndarray, top: int = 5,
                  nperseg: int = 256) -> np.ndarray:
  """Mean of the ``top`` largest magnitude-squared coherence values (a
  number of the two signals alone: no sample rate enters it).

  Args:
    x, y: ``[..., T]`` signals (broadcast against each other).
  Returns:
    ``[...]`` scores in [0, 1]; 0 where a signal is all zero.
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  length = x.shape[-1]
  if y.shape[-1] != length:
    raise ValueError(f"signals differ in length: {length} vs {y.shape[-1]}")
  nperseg = min(nperseg, length)
  with np.errstate(invalid="ignore", divide="ignore"):  # silent -> 0 below
    _, cxy = scipy.signal.coherence(x, y, window="hann",
                                    nperseg=nperseg, axis=-1)
  cxy = np.nan_to_num(cxy, nan=0.0, posinf=0.0, neginf=0.0)
  silent = (np.abs(x).max(-1) == 0) | (np.abs(y).max(-1) == 0)
  top = min(top, cxy.shape[-1])
  score = np.sort(cxy, axis=-1)[..., -top:].mean(-1)
  return np.where(silent, 0.0, score)


def most_active_sonifications(params: Params, arch: Network,
                              audio: np.ndarray, layers: Tuple[int, ...],
                              batch_size: int) -> Dict[int, np.ndarray]:
  """``{layer: [B, T]}`` sonification of each clip's most active map."""
  return condition_sonifications(controls.TRAINED, params, arch, audio,
                                 layers, batch_size)


def condition_sonifications(condition: str, params: Params,
                            arch: Network, audio: np.ndarray,
                            layers: Tuple[int, ...], batch_size: int,
                            clip_indices: Optional[Sequence[int]] = None,
                            seed: int = controls.DEFAULT_SEED
                            ) -> Dict[int, np.ndarray]:
  """``{layer: [B, T]}``: each clip's map for ``condition`` (see
  ``controls.choose_maps``), sonified with ``params`` (the condition's
  encoder: the untrained one for ``untrained``)."""
  acts = common.layer_activations(params, audio, layers, arch)
  if clip_indices is None:
    clip_indices = np.arange(audio.shape[0])
  out = {}
  for layer, a in zip(layers, acts):
    maps = controls.choose_maps(condition, np.asarray(a), clip_indices, layer,
                                seed)
    out[layer] = common.sonify_pairs(params, audio, maps, layer, arch,
                                     batch_size)
  return out


def stream_coherence(params: Params, arch: Network, source,
                     layers: Optional[Sequence[int]] = None,
                     batch_size: int = 16, clip_samples: Optional[int] = None,
                     max_clips: Optional[int] = None, top: int = 5,
                     nperseg: int = 256, progress: bool = True,
                     untrained: Optional[Params] = None,
                     seed: int = controls.DEFAULT_SEED,
                     share: Optional[shares.Share] = None) -> Dict[str, Any]:
  """One model, one pass over ``source``, with its controls.

  Args:
    untrained: the run's untrained encoder (the ``untrained`` control);
      None leaves that control out.
    seed: of the random-live-map control.
    share: this process's share of the clips (default: the running
      process's, ``shares.Share.of_process``); every process returns the
      means over every clip, summed in clip order whatever the split.
  Returns:
    ``{'layers': [L...], 'mean': {layer: float} (trained), 'conditions':
    {condition: {layer: float}}, 'clips': N, 'seconds': wall time incl.
    compiling, 'clips_per_s': N / seconds, 'clips_per_s_warm': clips/s after
    the first batch}``.
  """
  layers = common.check_layers(layers, arch)
  min_samples = arch.min_input_length(max(layers))
  run = controls.RunParams(params, untrained, arch)
  conditions = controls.conditions_of(run)
  # Each clip's score by clip index: summed in clip order once every
  # process's are in, so the split does not change the sum.
  scores_of = {c: {l: {} for l in layers} for c in conditions}
  share = share or shares.Share.of_process()
  total = len(source) if max_clips is None else min(len(source), max_clips)
  bar = common.Progress("coherence", share.clips_of(total), enabled=progress)
  start = time.perf_counter()
  warm_start, warm_count = None, 0  # after the first batch: no compiling
  for batch in common.iter_clip_batches(
      source, batch_size, min_samples, clip_samples, max_clips,
      owns=share.owns):
    valid = batch["valid"]
    for condition in conditions:
      sonifs = condition_sonifications(
          condition, controls.condition_params(condition, run), arch,
          batch["audio"], layers, batch_size, batch["index"], seed)
      for layer in layers:
        scores = top_coherence(batch["audio"][valid], sonifs[layer][valid],
                               top, nperseg)
        scores_of[condition][layer].update(zip(
            batch["index"][valid].tolist(), np.asarray(scores).tolist()))
    if warm_start is None:
      warm_start = time.perf_counter()
    else:
      warm_count += int(valid.sum())
    bar.update(int(valid.sum()))
  seconds = time.perf_counter() - start
  warm_seconds = time.perf_counter() - (warm_start or start)
  bar.close()
  every = {c: {l: {} for l in layers} for c in conditions}
  for part in shares.gather({c: {str(l): sorted(v.items())
                                 for l, v in per.items()}
                             for c, per in scores_of.items()}, share):
    for c in conditions:
      for l in layers:
        every[c][l].update((int(i), v) for i, v in part[c][str(l)])
  count = len(every[controls.TRAINED][layers[0]])
  if count == 0:
    raise ValueError("the source holds no clips")
  means = {c: {l: float(np.sum([v for _, v in sorted(every[c][l].items())],
                               dtype=np.float64)) / count
               for l in layers} for c in conditions}
  return {"layers": list(layers), "mean": means[controls.TRAINED],
          "conditions": means,
          "clips": count, "seconds": seconds,
          "clips_per_s": count / max(seconds, 1e-9),
          # Throughput once compiled (NaN with a single batch).
          "clips_per_s_warm": (warm_count / warm_seconds if warm_count
                               else float("nan"))}


def summarize_runs(per_run: Sequence[Dict[str, Any]], confidence: float = 0.95
                   ) -> Dict[str, Any]:
  """Mean and t-interval half-width over runs, per layer and condition.

  The top-level ``mean``/``ci_half_width``/``runs`` are the trained
  model's; ``conditions`` holds the same for every condition; ``per_layer``
  is ``{layer: {condition: mean}}`` (what ``analysis.aggregate`` reads).
  """
  layers = per_run[0]["layers"]
  conditions = [c for c in controls.CONDITIONS
                if all(c in r.get("conditions", {controls.TRAINED: 0})
                       for r in per_run)]
  table = {}
  for condition in conditions:
    runs = [[_condition_mean(r, condition)[l] for l in layers]
            for r in per_run]
    stats = [common.t_interval([r[i] for r in runs], confidence)
             for i in range(len(layers))]
    table[condition] = {"mean": [m for m, _ in stats],
                        "ci_half_width": [h for _, h in stats],
                        "runs": runs}
  trained = table[controls.TRAINED]
  return {"layers": list(layers), "mean": trained["mean"],
          "ci_half_width": trained["ci_half_width"], "runs": trained["runs"],
          "conditions": table,
          "per_layer": {str(l): {c: table[c]["mean"][i] for c in conditions}
                        for i, l in enumerate(layers)},
          "confidence": confidence}


def _condition_mean(run: Dict[str, Any], condition: str) -> Dict[int, float]:
  if "conditions" in run:
    return run["conditions"][condition]
  return run["mean"]  # a trained-only result


def run_coherence(models: Dict[str, Sequence[Any]],
                  source, out_dir: str,
                  layers: Optional[Sequence[int]] = None,
                  batch_size: int = 16, clip_samples: Optional[int] = None,
                  max_clips: Optional[int] = None, top: int = 5,
                  nperseg: int = 256, progress: bool = True,
                  seed: int = controls.DEFAULT_SEED) -> Dict[str, Any]:
  """Coherence study for several model kinds, several runs each.

  Args:
    models: ``{'contrastive': [run, ...], 'supervised': [...]}`` -- each
      list holds the runs (seeds) of one kind; a run is a
      ``controls.RunParams`` (trained + untrained encoder) or a
      ``(params, arch)`` pair (no untrained control).
    source: ClipSource of eval clips.
    out_dir: writes ``coherence.json`` and ``coherence.png``.
    seed: of the random-live-map control.
  Returns:
    ``{kind: summarize_runs(...) plus 'clips_per_s', 'num_runs'}``.
  """
  from sonify_jax.analysis.figures import panels  # pylint: disable=g-import-not-at-top
  summary: Dict[str, Any] = {}
  for kind, runs in models.items():
    if not runs:
      raise ValueError(f"model kind {kind!r} has no runs")
    per_run = []
    for i, run in enumerate(runs):
      run = controls.as_run(run)
      common.log(f"coherence: {kind} run {i + 1}/{len(runs)}")
      per_run.append(stream_coherence(run.trained, run.arch, source, layers,
                                      batch_size, clip_samples, max_clips,
                                      top, nperseg, progress,
                                      untrained=run.untrained, seed=seed))
    summary[kind] = summarize_runs(per_run)
    clips = sum(r["clips"] for r in per_run)
    seconds = sum(r["seconds"] for r in per_run)
    summary[kind]["clips_per_s"] = clips / max(seconds, 1e-9)
    warm = [r["clips_per_s_warm"] for r in per_run
            if np.isfinite(r["clips_per_s_warm"])]
    summary[kind]["clips_per_s_warm"] = (float(np.mean(warm)) if warm
                                         else float("nan"))
    summary[kind]["num_runs"] = len(per_run)
  if shares.Share.of_process().chief:   # every process holds the result
    os.makedirs(out_dir, exist_ok=True)
    first = next(iter(summary.values()))
    panels.condition_curves(
        os.path.join(out_dir, "coherence.png"), first["layers"],
        {k: ({c: (t["mean"], t["ci_half_width"])
              for c, t in v["conditions"].items()}, v["num_runs"])
         for k, v in summary.items()},
        ylabel=f"mean top-{top} coherence",
        title="Input vs its most active map's sonification")
    atomic_io.write_json(os.path.join(out_dir, "coherence.json"),
                         {"top": top, "nperseg": nperseg, "seed": seed,
                          "metric": f"top{top}_coherence",
                          "conditions": list(controls.CONDITIONS),
                          "models": summary})
  return summary


# ------------------------------------------------ python -m analysis.run


def _run_study(context) -> None:
  models: Dict[str, list] = {}
  for name, run in context.runs:
    models.setdefault(name, []).append(run)
  summary = run_coherence(models, context.source, context.workdir,
                          layers=context.layers, **context.common_kw())
  context.record(os.path.join(context.workdir, "coherence.json"),
                 context.chosen)
  for name, s in summary.items():
    context.say(f"{name}: {s['clips_per_s']:.2f} clips/s; mean top-5 "
                f"coherence per layer {s['layers']}:")
    for condition, table in s["conditions"].items():
      context.say(f"  {controls.LABELS[condition]}: " +
                  ", ".join(f"{m:.3f}" for m in table["mean"]))
  context.say(f"coherence: {context.workdir}/coherence.png")


STUDY = studies.Study("coherence", studies.DATA_FLAGS, _run_study)
