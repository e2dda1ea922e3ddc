r"""Combine one study's results over runs (seeds): mean and 95 % t-interval.

  python -m sonify_jax.analysis.aggregate --study=coherence \
      --runs=/tmp/coh/seed0,/tmp/coh/seed1,/tmp/coh/seed2 --out=/tmp/coh/all
  python -m sonify_jax.analysis.aggregate --study=residual \
      --runs='/tmp/res/seed*' --out=/tmp/res/all
  (--runs and --out may be gs:// URLs, globs included)

Each run dir holds the study's JSON (``coherence.json``, ``residual.json``,
...) written for one run. Every study JSON has ``per_layer`` tables,
``{layer: {condition: number or {name: number, ...}}}`` with the conditions
of ``analysis.core.controls`` (trained / untrained / random_map), possibly
nested under a path (coherence: ``models/<kind>/per_layer``); a dict keyed by layer
numbers whose entries have a ``trained`` key counts too (activity:
``models/<name>``). Each numeric leaf is
one observation per run; this module reports, per table, layer and leaf,
``{'mean', 'ci_half_width', 'n', 'values'}`` with the half-width of the
Student-t interval (``scipy.stats.t``) -- null when n < 2 -- in one strict
JSON (``aggregate_<study>.json``) and one figure (``aggregate_<study>.png``,
the study's headline metric; error bars only where n >= 2).
"""
import glob
import json
import os
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import numpy as np

from sonify_jax import atomic_io
from sonify_jax import mirror
from sonify_jax import paths
from sonify_jax.analysis.core import common
from sonify_jax.analysis.core import controls
from sonify_jax.errors import UserError

STUDY_FILES = {"coherence": "coherence.json", "residual": "residual.json",
               "layer_importance": "layer_importance.json",
               "topk": "topk.json", "activity": "activity.json",
               "time_invariance": "time_invariance.json"}


DIFFERENCES = tuple(f"{controls.TRAINED}-{c}"
                    for c in (controls.UNTRAINED, controls.RANDOM_MAP))


def expand_runs(spec: Sequence[str]) -> List[str]:
  """Comma-separated dirs and/or globs -> sorted, de-duplicated dirs."""
  out: List[str] = []
  for item in spec:
    for part in str(item).split(","):
      part = part.strip()
      if not part:
        continue
      matches = _glob(part) if glob.has_magic(part) else [part]
      if not matches:
        raise UserError(f"--runs pattern {part!r} matches nothing")
      out.extend(m for m in matches if m not in out)
  if not out:
    raise UserError("no runs given (--runs=DIR1,DIR2,... or a glob)")
  return out


def _glob(pattern: str) -> List[str]:
  """Sorted matches of ``pattern``, a local path or a URL (epath's glob,
  from the folder above the first wildcard; ``**`` is refused on gs://)."""
  if paths.is_local(pattern):
    return sorted(glob.glob(pattern))
  scheme, _, rest = pattern.partition("://")
  parts = rest.split("/")
  first = next(i for i, part in enumerate(parts) if glob.has_magic(part))
  root = paths.as_path(f"{scheme}://" + "/".join(parts[:first]))
  return sorted(str(p) for p in root.glob("/".join(parts[first:])))


def _strict_load(path: str) -> Dict[str, Any]:
  def refuse(name):
    raise UserError(f"{path} holds {name}: not strict JSON")
  with paths.as_path(path).open("r") as f:
    try:
      return json.load(f, parse_constant=refuse)
    except json.JSONDecodeError as error:  # a torn or hand-edited file
      raise UserError(f"{path} is not valid JSON ({error})") from None


def load_results(study: str, runs: Sequence[str]) -> List[Dict[str, Any]]:
  """The study JSON of every run dir (a path to the JSON itself works too)."""
  if study not in STUDY_FILES:
    raise UserError(f"unknown study {study!r}; known: {sorted(STUDY_FILES)}")
  results = []
  for run in runs:
    path = run if run.endswith(".json") else paths.join(
        run, STUDY_FILES[study])
    if not paths.as_path(path).is_file():
      raise UserError(f"{path} not found (run the {study} study on {run} "
                      "first)")
    results.append(_strict_load(path))
  return results


def _is_layer_table(value: Any) -> bool:
  """``{'1': {'trained': ...}, '3': {...}}``: layers to conditions."""
  return (isinstance(value, dict) and bool(value) and
          all(str(k).isdigit() and isinstance(v, dict) and
              controls.TRAINED in v for k, v in value.items()))


def find_tables(result: Any, prefix: str = "") -> Iterator[
    Tuple[str, Dict[str, Any]]]:
  """``(path, table)`` for every ``per_layer`` key in a result, and every
  dict keyed by layer numbers whose entries hold a ``trained`` condition."""
  if _is_layer_table(result):
    yield prefix, result
    return
  if isinstance(result, dict):
    for key, value in result.items():
      if key == "per_layer" and isinstance(value, dict):
        yield prefix, value
      elif isinstance(value, dict):
        yield from find_tables(value, f"{prefix}/{key}" if prefix else key)


def flatten(cell: Any, prefix: str = "") -> Dict[str, float]:
  """Numeric leaves of a nested dict as ``{'a/b': value}`` (nulls,
  booleans and strings are not measurements and are skipped)."""
  if isinstance(cell, dict):
    out = {}
    for key, value in cell.items():
      out.update(flatten(value, f"{prefix}/{key}" if prefix else str(key)))
    return out
  if cell is None:  # not measured / not applicable (a strict JSON NaN)
    return {}
  if isinstance(cell, (int, float)) and not isinstance(cell, bool):
    return {prefix: float(cell)}
  return {}


def paired_differences(observation: Dict[str, float]) -> Dict[str, float]:
  """``trained - control`` of one run, per leaf: ``{'trained-untrained/mAP':
  ...}``. Over runs these are paired differences, whose interval says
  whether the trained model beats a control free of the seed-to-seed
  spread both share."""
  out = {}
  for leaf, value in observation.items():
    head, sep, rest = leaf.partition("/")
    if head != controls.TRAINED:
      continue
    for control in (controls.UNTRAINED, controls.RANDOM_MAP):
      other = observation.get(control + sep + rest)
      if other is not None:
        out[f"{controls.TRAINED}-{control}{sep}{rest}"] = value - other
  return out


def combine(results: Sequence[Dict[str, Any]], confidence: float = 0.95
            ) -> Dict[str, Dict[str, Any]]:
  """``{table path: {'layers': [...], 'cells': {layer: {leaf: stats}}}}``.

  ``stats`` is ``{'mean', 'ci_half_width', 'n', 'values'}`` over the runs
  with a finite value for that leaf (``ci_half_width`` NaN, i.e. null in
  JSON, for n < 2). Leaves ``trained-untrained[/...]`` and
  ``trained-random_map[/...]`` hold the paired differences
  (:func:`paired_differences`).
  """
  tables: Dict[str, Dict[str, List[Dict[str, float]]]] = {}
  for result in results:
    for path, table in find_tables(result):
      for layer, cell in table.items():
        tables.setdefault(path, {}).setdefault(str(layer), []).append(
            flatten(cell))
  if not tables:
    raise UserError("the results hold no per_layer tables (written by an "
                    "older version of the study? rerun it)")
  out = {}
  for path, layers in tables.items():
    cells = {}
    for layer, observations in layers.items():
      observations = [dict(o, **paired_differences(o)) for o in observations]
      leaves = sorted({k for o in observations for k in o})
      cells[layer] = {}
      for leaf in leaves:
        values = [o[leaf] for o in observations
                  if leaf in o and np.isfinite(o[leaf])]
        mean, half = common.t_interval(values, confidence)
        cells[layer][leaf] = {"mean": mean, "ci_half_width": half,
                              "n": len(values), "values": values}
    order = sorted(cells, key=lambda l: (not l.isdigit(), int(l)
                                         if l.isdigit() else 0, l))
    out[path] = {"layers": order, "cells": cells}
  return out


def _panels(combined: Dict[str, Dict[str, Any]], metric: str,
            ylabel: str) -> List[Dict[str, Any]]:
  """One figure panel per table: series per (sub-path), style per condition.

  A leaf ``condition`` or ``condition/.../metric`` is plotted; other leaves
  (secondary metrics) stay in the JSON only.
  """
  panels = []
  for path, table in combined.items():
    layers = [l for l in table["layers"] if l.isdigit()]
    series: Dict[str, Dict[str, Tuple[List[float], List[float]]]] = {}
    ns: Dict[str, int] = {}
    for leaf in sorted({k for c in table["cells"].values() for k in c}):
      parts = leaf.split("/")
      if parts[0] not in controls.CONDITIONS:
        continue
      if len(parts) > 1 and parts[-1] != metric:
        continue
      name = "/".join(parts[1:-1]) or path or "model"
      cells = [table["cells"][l].get(leaf) for l in layers]
      means = [c["mean"] if c else float("nan") for c in cells]
      halves = [c["ci_half_width"] if c else float("nan") for c in cells]
      series.setdefault(name, {})[parts[0]] = (means, halves)
      n = min((c["n"] for c in cells if c), default=0)
      ns[name] = min(ns.get(name, n), n)
    if series:
      panels.append(dict(layers=[int(l) for l in layers], ylabel=ylabel,
                         title=path, models={k: (v, ns[k])
                                             for k, v in series.items()}))
  return panels


def aggregate(study: str, runs: Sequence[str], out_dir: str,
              confidence: float = 0.95) -> Dict[str, Any]:
  """Combines ``study`` over ``runs``; writes ``aggregate_<study>.json`` and
  ``aggregate_<study>.png`` into ``out_dir``; returns the JSON payload."""
  from sonify_jax.analysis.figures import panels  # pylint: disable=g-import-not-at-top
  results = load_results(study, runs)
  combined = combine(results, confidence)
  metric = str(results[0].get("metric", ""))
  payload = {"study": study, "runs": [paths.resolve(r) for r in runs],
             "num_runs": len(runs), "confidence": confidence,
             "metric": metric, "conditions": list(controls.CONDITIONS),
             "tables": combined}
  # A gs:// out_dir: written locally, uploaded at the end (mirror.py).
  with mirror.staged(out_dir, pull=False) as staged:
    os.makedirs(staged.local, exist_ok=True)
    atomic_io.write_json(
        os.path.join(staged.local, f"aggregate_{study}.json"), payload)
    figure_panels = _panels(combined, metric, metric or study)
    if figure_panels:
      panels.condition_panels(
          os.path.join(staged.local, f"aggregate_{study}.png"), figure_panels)
      payload["figure"] = paths.join(out_dir, f"aggregate_{study}.png")
  payload["json"] = paths.join(out_dir, f"aggregate_{study}.json")
  return payload


def check_flags(f) -> None:
  """Raises UserError for a required flag left out (each value's domain,
  ``FLAG_DOMAINS``, was checked while the flags were parsed; nothing has
  been read or written yet)."""
  missing = [n for n in ("study", "runs", "out") if not getattr(f, n)]
  if missing:
    raise UserError(f"{', '.join('--' + n for n in missing)} "
                    f"{'is' if len(missing) == 1 else 'are'} required "
                    f"(--study, --runs and --out)")


def main(argv):
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  check_flags(f)
  result = aggregate(f.study, expand_runs(f.runs), f.out, f.confidence)
  print(f"{f.study} over {result['num_runs']} runs: {result['json']}"
        + (f", {result['figure']}" if "figure" in result else ""))
  for path, table in result["tables"].items():
    for layer in table["layers"]:
      cells = table["cells"][layer]
      text = ", ".join(
          f"{leaf} {c['mean']:.4f}" + (f"±{c['ci_half_width']:.4f}"
                                       if c["n"] >= 2 else f" (n={c['n']})")
          for leaf, c in cells.items()
          if leaf.split("/")[0] in controls.CONDITIONS + DIFFERENCES and (
              "/" not in leaf or leaf.endswith("/" + result["metric"])))
      print(f"  {path or '.'} L{layer}: {text}")


def _flag_domains():
  from sonify_jax import flag_check  # pylint: disable=g-import-not-at-top
  from sonify_jax.domains import Float, ListOf, OrNone, Path, Text  # pylint: disable=g-import-not-at-top
  return {
      "study": flag_check.ANY,
      "runs": OrNone(ListOf(Text(r".*", "a folder or glob"), str)),
      "out": OrNone(Path(empty_ok=False, meaning="not a file")),
      "confidence": Float(0.0, 1.0, low_open=True, high_open=True,
                          meaning="e.g. 0.95"),
  }


def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  from sonify_jax import flag_check  # pylint: disable=g-import-not-at-top
  flags.DEFINE_enum("study", None, sorted(STUDY_FILES), "Which study.")
  flags.DEFINE_list("runs", None, "Study output dirs of the runs (comma-"
                    "separated; globs allowed).")
  flags.DEFINE_string("out", None, "Output folder.")
  flags.DEFINE_float("confidence", 0.95, "Interval confidence.")
  flag_check.register(_flag_domains())


if __name__ == "__main__":
  from sonify_jax import cli  # pylint: disable=g-import-not-at-top
  _define_flags()
  cli.run(main)
