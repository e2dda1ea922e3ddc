"""Command-line glue of the activity and time-invariance studies.

``analysis/run.py`` loads the runs and the data and hands them here; this
module turns them into the studies' ``{name: {'trained': (params, arch),
'untrained': (params, arch)}}`` input, runs the study and prints its
headline (with the untrained control next to every number).
"""
from typing import Any, Dict, Optional, Sequence, Tuple

from sonify_jax.analysis.core import controls

STUDIES = ("activity", "time_invariance")
DEFAULT_MAX_MAPS = 32       # activity: live maps per layer with band features
DEFAULT_TI_CLIPS = 8        # time invariance: clips compared
DEFAULT_TI_SECONDS = 1.0    # time invariance: compared length


def models_of(runs: Sequence[Tuple[str, Any]]) -> Dict[str, Dict[str, Any]]:
  """``[(name, run)]`` -> the studies' model dict; ``run`` is a
  ``controls.RunParams`` or a ``(params, arch[, untrained])`` tuple."""
  models = {}
  for name, run in runs:
    run = controls.as_run(run)
    variants = {"trained": (run.trained, run.arch)}
    if run.untrained is not None:
      variants["untrained"] = (run.untrained, run.arch)
    models[name] = variants
  return models


def run_study(study: str, runs: Sequence[Tuple[str, Any]], source,
              workdir: str, layers: Optional[Sequence[int]] = None,
              k: int = 5, max_maps: Optional[int] = None,
              batch_size: int = 16, clip_samples: Optional[int] = None,
              max_clips: Optional[int] = None,
              say=print) -> Dict[str, Any]:
  """Runs ``study`` on ``runs`` and prints (``say``) where it wrote what."""
  models = models_of(runs)
  for name, variants in models.items():
    if "untrained" not in variants:
      say(f"note: {name} has no untrained control")
  if study == "activity":
    from sonify_jax.analysis.studies import activity  # pylint: disable=g-import-not-at-top
    result = activity.run_activity(
        models, source, workdir, layers=layers, k=k,
        max_maps=DEFAULT_MAX_MAPS if max_maps is None else max_maps,
        batch_size=batch_size, clip_samples=clip_samples,
        max_clips=max_clips)
    say(activity.headline(result))
    say(f"activity: {workdir}/activity.json, {workdir}/activity.png")
    return result
  if study == "time_invariance":
    from sonify_jax.analysis.studies import time_invariance  # pylint: disable=g-import-not-at-top
    rate = next(iter(models.values()))["trained"][1].sample_rate
    length = clip_samples or int(DEFAULT_TI_SECONDS * rate)
    result = time_invariance.run_time_invariance(
        models, source, workdir, layers=layers, length=length,
        max_shift=length // 4,
        max_clips=DEFAULT_TI_CLIPS if max_clips is None else max_clips,
        batch_size=batch_size)
    say(result["statement"])
    say(f"time invariance: {workdir}/time_invariance.json, "
          f"{workdir}/time_invariance.png")
    return result
  raise ValueError(f"unknown study {study!r}; known: {STUDIES}")


def story_figures(runs: Sequence[Tuple[str, Any]], source, workdir: str,
                  quick: bool = False, max_clips: Optional[int] = None
                  ) -> Dict[str, str]:
  """Both studies on the demo's models, cheaply (a few layers, few maps and
  clips); returns ``{caption: (png, headline)}`` for the gallery."""
  import os  # pylint: disable=g-import-not-at-top
  from sonify_jax.analysis.core import common  # pylint: disable=g-import-not-at-top
  arch = controls.as_run(runs[0][1]).arch
  last = arch.num_blocks
  layers = (1, last) if quick else tuple(sorted(
      {1} | set(common.spread_layers(arch, 3))))
  clip_samples = arch.sample_rate   # 1 s
  figures = {}
  for study, kw in (("activity", dict(k=2, max_maps=2 if quick else 4,
                                      clip_samples=clip_samples,
                                      max_clips=max_clips)),
                    ("time_invariance", dict(max_clips=2))):
    out = os.path.join(workdir, study)
    result = run_study(study, runs, source, out, layers, **kw)
    headline = (time_invariance_headline(result)
                if study == "time_invariance" else activity_headline(result))
    figures[result["caption"]] = (os.path.join(out, result["figure"]),
                                  headline)
  return figures


def activity_headline(result: Dict[str, Any]) -> str:
  """One sentence: each model's live-map share at its deepest layer
  studied, against its untrained init."""
  parts = []
  for name, per_layer in result["models"].items():
    layer = max(per_layer, key=int)
    entry = per_layer[layer]
    text = f"{name} {entry['trained']['live_fraction']:.2f}"
    if entry.get("untrained"):
      text += f" (untrained {entry['untrained']['live_fraction']:.2f})"
    parts.append(text)
  return (f"Share of feature maps live on a clip at layer {layer}: "
          + "; ".join(parts) + ".")


def time_invariance_headline(result: Dict[str, Any]) -> str:
  """One sentence: the largest error of stride-multiple shifts against the
  smallest median of the others, trained and untrained alike."""
  multiple, other = {}, {}
  for per_layer in result["models"].values():
    for entry in per_layer.values():
      for variant in ("trained", "untrained"):
        if variant in entry:
          e = entry[variant]
          multiple[variant] = max(multiple.get(variant, 0.0),
                                  e["multiple"]["relative_error"]["max"])
          other[variant] = min(other.get(variant, float("inf")),
                               e["non_multiple"]["relative_error"]["median"])
  text = "; ".join(f"{v}: max {multiple[v]:.1e} vs median {other[v]:.2f}"
                   for v in multiple)
  return ("A shift by a multiple of the pooling stride shifts the "
          "sonification exactly, any other shift changes it (relative "
          f"error, {text}).")
