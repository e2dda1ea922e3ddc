"""Sanity study: do the sonifications depend on what the network learned?

The cascading model-parameter randomisation test of Adebayo et al. (2018,
"Sanity checks for saliency maps") on raw audio. For each layer ``L`` and
explanation rule, the same (clip, map) pairs are sonified by the trained
network and by networks whose blocks are re-initialised

* from the top down (cascade): blocks ``L``, then ``L`` and ``L - 1``, ...,
  then every block ``1..L`` (the whole network random);
* one at a time (independent): block ``b`` alone, for each ``b <= L``;

and each randomised sonification is compared with the trained one by

* the Spearman rank correlation of their spectrograms (a log does not
  change ranks, so this is the rank correlation of log-magnitude
  spectrograms too);
* the absolute Pearson correlation of their waveforms (a random weight can
  flip a sonification's sign, which changes nothing a listener hears),

each with a 95 % t-interval over the pairs. The re-initialised weights are
the run's own untrained init (its step-0 checkpoint, or the seeded init of a
converted network), so "every block random" is exactly the untrained
network. Reference levels: ``identical`` (1: the trained sonification with
itself), ``unrelated audio`` (a trained sonification against that of
another clip: what two sonifications share by being sonifications) and
``input`` (the trained sonification against the clip itself: what comes
from the input alone).

The rule ``visualize`` (feature visualization, :mod:`sonify_jax.
visualize`) takes part the same way: each map of the pairs is visualised by
the trained and by each randomised network from the same key, and the
sounds are compared by measures that ignore where in time the sound sits
(:mod:`sonify_jax.visualize.compare`: the rank correlation of mean power
spectra, the largest absolute cross-correlation over lags); its "unrelated"
level is a map's visualization against another map's, its ceiling the same
trained network's visualization from another seed (what two runs of the
optimisation share: a measure that cannot tell those apart from two maps
cannot judge survival, and the verdict says so), and it has no "input"
level (it reads no clip).

A verdict per layer and rule says where the full-cascade similarity sits
between the unrelated level and identity (at or below "unrelated audio":
random weights change a sonification as much as another clip would), and
whether the trained sonifications resemble each other more than their
inputs (a network signature rather than a picture of the clip).
"""
import functools
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy.stats

from sonify_jax import atomic_io, plotting
from sonify_jax.analysis import studies
from sonify_jax.analysis.core import common
from sonify_jax.analysis.core import controls
from sonify_jax.analysis.core import shares
from sonify_jax.transpose import rules as rules_lib
from sonify_jax.errors import UserError
from sonify_jax.visualize import compare as visual_compare

DEFAULT_RULES = ("deconvnet", "guided", "gradient")
VISUALIZE = "visualize"
VISUALIZE_SECONDS = 0.25
VISUALIZE_STEPS = 128
# At least this many maps are visualised per layer (the pairs' maps, then the
# layer's strongest on average over the clips): few clips share few maps.
VISUALIZE_MAPS = 8
DEFAULT_SECONDS = 1.0
DEFAULT_CLIPS = 8
# Share of the way from "unrelated audio" to "identical" that the fully
# randomised network keeps: above MOSTLY, the weights matter little.
MOSTLY = 0.5
LITTLE = 0.2
# visualize: a measure judges survival only where two seeds of the trained
# network share this much more than two of its maps do.
RESOLVES = 0.1
METRICS = ("spectrogram_spearman", "waveform_abs_pearson")


def block_param_names(net, block: int) -> Tuple[str, ...]:
  """The params' keys of block ``block`` (its convs and affine layers)."""
  return tuple(getattr(layer, "name") for layer in net.blocks[block - 1]
               if hasattr(layer, "name") and getattr(layer, "name"))


def randomised(trained, random, net, blocks: Sequence[int]):
  """``trained`` with every param of ``blocks`` taken from ``random``."""
  out = dict(trained)
  for block in blocks:
    for name in block_param_names(net, block):
      out[name] = random[name]
  return out


def spectrogram_spearman(a: np.ndarray, b: np.ndarray,
                         sample_rate: int) -> float:
  """Rank correlation of two signals' power spectrograms."""
  _, _, pa = plotting.power_spectrogram(a, sample_rate)
  _, _, pb = plotting.power_spectrogram(b, sample_rate)
  if np.ptp(pa) == 0 or np.ptp(pb) == 0:
    return float("nan")
  return float(scipy.stats.spearmanr(pa.ravel(), pb.ravel())[0])


def waveform_abs_pearson(a: np.ndarray, b: np.ndarray) -> float:
  if np.std(a) == 0 or np.std(b) == 0:
    return float("nan")
  return float(abs(np.corrcoef(a, b)[0, 1]))


def similarities(a: np.ndarray, b: np.ndarray, sample_rate: int
                 ) -> Dict[str, List[float]]:
  """Both metrics of each row pair of ``a``, ``b`` ``[P, T]``."""
  return {"spectrogram_spearman": [spectrogram_spearman(x, y, sample_rate)
                                   for x, y in zip(a, b)],
          "waveform_abs_pearson": [waveform_abs_pearson(x, y)
                                   for x, y in zip(a, b)]}


def _interval(values: Sequence[float]) -> Dict[str, Any]:
  values = [v for v in values if np.isfinite(v)]
  mean, half = common.t_interval(values)
  return {"mean": mean if values else None,
          "ci95": half if np.isfinite(half) else None, "n": len(values)}


def metrics_of(rule: str) -> Tuple[str, str]:
  """``(spectral, waveform)`` measures a rule's outputs are compared by."""
  return visual_compare.METRICS if rule == VISUALIZE else METRICS


def summarise(per_pair: Dict[str, List[float]]) -> Dict[str, Any]:
  return {metric: _interval(values) for metric, values in per_pair.items()}


def _kept_share(kept, unrelated, metric, ceiling=None):
  """Where the randomised similarity sits from "unrelated audio" (0) to
  "identical" (1), or to ``ceiling`` (visualize: the same network from
  another seed, the most two of its runs share)."""
  m, u = kept[metric]["mean"], unrelated[metric]["mean"]
  top = 1.0 if ceiling is None else ceiling[metric]["mean"]
  return (m - u) / max(top - u, 1e-9)


def verdict(layer: int, rule: str, kept: Dict[str, Any],
            unrelated: Dict[str, Any], inputs: Optional[Dict[str, Any]],
            ceiling: Optional[Dict[str, Any]] = None) -> str:
  """One sentence: how much of the layer's sonifications (visualizations)
  survive random weights (the larger share of the two metrics decides);
  ``inputs`` None for a rule that reads no clip."""
  spec, wave = metrics_of(rule)
  values = [d[metric]["mean"] for d in (kept, unrelated, inputs or kept)
            for metric in (spec, wave)]
  if any(v is None for v in values):
    return (f"layer {layer} {rule}: too few live maps on distinct clips to "
            "compare")
  if ceiling is not None and all(
      ceiling[m]["mean"] is None or
      ceiling[m]["mean"] - unrelated[m]["mean"] < RESOLVES
      for m in (spec, wave)):
    return (f"layer {layer} {rule}: two seeds of the same trained network "
            f"share no more ({ceiling[spec]['mean']:.2f}, "
            f"{ceiling[wave]['mean']:.2f}) than two of its maps "
            f"({unrelated[spec]['mean']:.2f}, {unrelated[wave]['mean']:.2f}):"
            " these measures cannot tell what survives re-initialisation")
  share = max(_kept_share(kept, unrelated, m, ceiling) for m in (spec, wave)
              if ceiling is None or
              ceiling[m]["mean"] - unrelated[m]["mean"] >= RESOLVES)
  if share >= MOSTLY:
    what = "mostly architecture and input, little from the learned weights"
  elif share <= LITTLE:
    what = "they depend on the learned weights"
  else:
    what = "partly the learned weights, partly architecture and input"
  u = unrelated[spec]["mean"]
  x = inputs[spec]["mean"] if inputs else None
  if x is not None and u > x:
    what += (f"; the trained sonifications of different clips resemble each "
             f"other ({u:.2f}) more than their own inputs ({x:.2f}): a "
             "signature of the network more than of the clip")

  def stated(metric, label):
    half = kept[metric]["ci95"]
    interval = f" ±{half:.2f}" if half is not None else ""
    levels = f"unrelated {'maps' if inputs is None else 'audio'} " + (
        f"{unrelated[metric]['mean']:.2f}")
    if ceiling is not None:
      levels += f", another seed {ceiling[metric]['mean']:.2f}"
    if inputs is not None:
      levels += f", the input {inputs[metric]['mean']:.2f}"
    return f"a {label} of {kept[metric]['mean']:.2f}{interval} ({levels})"
  if rule == VISUALIZE:
    return (f"layer {layer} visualizations keep "
            f"{stated(spec, 'mean-spectrum rank correlation')} and "
            f"{stated(wave, 'largest |cross-correlation|')} with the trained "
            f"network's when every weight up to layer {layer} is random: "
            f"{what}.")
  return (f"layer {layer} {rule} sonifications keep "
          f"{stated(spec, 'spectrogram rank correlation')} and "
          f"{stated(wave, '|waveform correlation|')} with the trained "
          f"network's when every weight up to layer {layer} is random: "
          f"{what}.")


def _other_clip(rows: np.ndarray) -> np.ndarray:
  """Per pair, the next pair (cyclically) of another clip (itself when
  every pair is of one clip)."""
  n = len(rows)
  return np.array([next((q % n for q in range(p + 1, p + n)
                         if rows[q % n] != rows[p]), p) for p in range(n)])


def _pairs(run, clips: np.ndarray, layer: int, maps_per_clip: int
           ) -> Tuple[np.ndarray, np.ndarray]:
  """(clip row, map) pairs: each clip's strongest live maps at ``layer``."""
  return _pairs_of(_strengths(run, clips, layer), maps_per_clip)


def _strengths(run, clips: np.ndarray, layer: int) -> np.ndarray:
  """``[clips, maps]``: each map's strength on each clip (trained)."""
  (acts,) = common.layer_activations(run.trained, clips, (layer,), run.arch)
  return np.asarray(acts)


def _pairs_of(acts: np.ndarray, maps_per_clip: int
              ) -> Tuple[np.ndarray, np.ndarray]:
  rows, maps = [], []
  for row, a in enumerate(acts):
    for m in np.argsort(-a)[:maps_per_clip]:
      if a[m] > 0:
        rows.append(row)
        maps.append(int(m))
  return np.array(rows, np.int64), np.array(maps, np.int64)


def load_clips(source, count: int, length: int, min_samples: int
               ) -> Tuple[np.ndarray, List[str]]:
  """The first ``count`` clips, cropped / zero-padded to ``length``."""
  count = min(count, len(source))
  if count < 2:
    raise UserError("the sanity study needs at least 2 clips (its "
                    "'unrelated audio' reference compares clips)")
  clips = np.stack([common.load_clip(source, i, min_samples, length)
                    for i in range(count)])
  ids = [str(source[i].get("id", i)) for i in range(count)]
  return clips, ids


def run_sanity(run: controls.RunParams, source, out_dir: str,
               layers: Optional[Sequence[int]] = None,
               rules: Sequence[str] = DEFAULT_RULES, maps_per_clip: int = 2,
               max_clips: int = 8, clip_samples: Optional[int] = None,
               batch_size: int = 16, model_name: str = "model",
               seed: int = controls.DEFAULT_SEED,
               share: Optional[shares.Share] = None) -> Dict[str, Any]:
  """Runs the study; writes ``sanity.json`` and ``sanity.png`` into
  ``out_dir``; returns the JSON's content.

  Over several processes (``share``, default the running process's), each
  sonifies the pairs of its own clips and every process gets them all
  (``shares.split_rows``): the JSON is the one a single process writes.
  """
  share = share or shares.Share.of_process()
  arch = run.arch
  layers = common.check_layers(layers, arch)
  if not rules:
    raise UserError("no rules to compare (--rules names none)")
  for rule in rules:
    if rule != VISUALIZE:
      rules_lib.check(rule)
  random = run.untrained
  how = run.untrained_source or "the run's untrained init"
  if random is None:
    random, how = common.random_params(arch, seed), f"random_params({seed})"
  length = clip_samples or int(DEFAULT_SECONDS * arch.sample_rate)
  clips, ids = load_clips(source, max_clips, length,
                          arch.min_input_length(max(layers)))
  rate = arch.sample_rate
  result: Dict[str, Any] = {
      "model": model_name, "arch": arch.name, "sample_rate": rate,
      "source": getattr(source, "name", "source"), "clips": ids,
      "clip_samples": length, "maps_per_clip": maps_per_clip,
      "rules": list(rules), "randomised_with": how,
      "metrics": {rule: list(metrics_of(rule)) for rule in rules},
      "layers": {}}
  bar = common.Progress("sanity", sum(len(rules) * (1 + 2 * l)
                                      for l in layers), unit="networks")
  for layer in layers:
    strengths = _strengths(run, clips, layer)
    rows, maps = _pairs_of(strengths, maps_per_clip)
    entry: Dict[str, Any] = {"pairs": int(len(rows)), "rules": {}}
    for rule in rules:
      if not len(rows):
        entry["rules"][rule] = {"verdict": (
            f"layer {layer} {rule}: no live map on any clip (nothing to "
            "compare)")}
        bar.update(1 + 2 * layer)
        continue

      if rule == VISUALIZE:
        visual_maps = _maps_to_visualize(strengths, maps)
        # the same key for every network: only the weights differ
        sonify = functools.partial(_visualize, arch=arch, layer=layer,
                                   maps=visual_maps, seed=seed)
        compared = functools.partial(visual_compare.similarities,
                                     sample_rate=rate)
        trained = sonify(run.trained)
        other = np.roll(np.arange(len(visual_maps)), -1)
        apart = other != np.arange(len(visual_maps))
        reseeded = _visualize(run.trained, arch=arch, layer=layer,
                              maps=visual_maps, seed=seed + 1)
        references = {
            "identical": summarise(compared(trained, trained)),
            "unrelated_maps": summarise(compared(trained[apart],
                                                 trained[other[apart]])),
            "other_seed": summarise(compared(trained, reseeded))}
        unrelated, inputs = references["unrelated_maps"], None
        ceiling = references["other_seed"]
      else:
        def sonify(params, rule=rule, rows=rows, maps=maps):
          return shares.sonify_pairs(params, clips[rows], maps, layer, arch,
                                     batch_size, share, owners=rows,
                                     rule=rule)
        compared = functools.partial(similarities, sample_rate=rate)
        trained = sonify(run.trained)
        other = _other_clip(rows)
        apart = other != np.arange(len(rows))
        references = {
            "identical": summarise(compared(trained, trained)),
            "unrelated_audio": summarise(compared(
                trained[apart], trained[other[apart]])),
            "input": summarise(compared(trained, clips[rows]))}
        unrelated, inputs = (references["unrelated_audio"],
                             references["input"])
        ceiling = None
      bar.update(1)
      cascade, independent = [], []
      for depth in range(1, layer + 1):
        blocks = range(layer - depth + 1, layer + 1)
        s = sonify(randomised(run.trained, random, arch, blocks))
        cascade.append({"blocks_randomised": list(blocks),
                        **summarise(compared(trained, s))})
        bar.update(1)
      for block in range(1, layer + 1):
        s = sonify(randomised(run.trained, random, arch, [block]))
        independent.append({"block": block,
                            **summarise(compared(trained, s))})
        bar.update(1)
      entry["rules"][rule] = {
          "references": references, "cascade": cascade,
          "independent": independent,
          "metrics": list(metrics_of(rule)),
          "verdict": verdict(layer, rule, cascade[-1], unrelated, inputs,
                             ceiling)}
    result["layers"][str(layer)] = entry
  bar.close()
  if share.chief:   # every process holds the result; one writes it
    os.makedirs(out_dir, exist_ok=True)
    result["figure"] = os.path.basename(save_figure(
        result, os.path.join(out_dir, "sanity.png")))
    result["headline"] = headline(result)
  atomic_io.write_json(os.path.join(out_dir, "sanity.json"), result)
  return result


def _maps_to_visualize(strengths: np.ndarray, maps: np.ndarray
                       ) -> np.ndarray:
  """The pairs' maps, then the layer's strongest on average over the clips
  (``strengths [clips, maps]``), up to :data:`VISUALIZE_MAPS` (or the
  layer's width)."""
  chosen = [int(m) for m in np.unique(maps)]
  for m in np.argsort(-strengths.mean(axis=0)):
    if len(chosen) >= VISUALIZE_MAPS:
      break
    if int(m) not in chosen:
      chosen.append(int(m))
  return np.array(sorted(chosen), np.int64)


def _visualize(params, *, arch, layer: int, maps: np.ndarray, seed: int
               ) -> np.ndarray:
  """``[maps, T]`` visualizations of ``maps`` of ``layer`` by ``params``."""
  import jax  # pylint: disable=g-import-not-at-top
  from sonify_jax import visualize  # pylint: disable=g-import-not-at-top
  seconds = max(VISUALIZE_SECONDS, arch.min_input_length(layer)
                / arch.sample_rate)
  return visualize.visualize(
      params, arch, layer, [int(m) for m in maps], jax.random.PRNGKey(seed),
      seconds=seconds,
      settings=visualize.Settings(steps=VISUALIZE_STEPS)).waveforms


def headline(result: Dict[str, Any]) -> str:
  """One sentence for the whole study: the deepest layer's first rule."""
  layer = max(result["layers"], key=int)
  rule = result["rules"][0]
  return result["layers"][layer]["rules"][rule]["verdict"]


def verdicts(result: Dict[str, Any]) -> List[str]:
  return [entry["rules"][rule]["verdict"]
          for _, entry in sorted(result["layers"].items(),
                                 key=lambda kv: int(kv[0]))
          for rule in result["rules"]]


def save_figure(result: Dict[str, Any], path: str) -> str:
  """Similarity vs blocks randomised from the top, one panel per layer and
  metric, one line (with its 95 % band) per rule; references dashed."""
  layers = sorted(result["layers"], key=int)
  cols = len(layers)
  fig, axes = plotting.new_figure(len(METRICS), cols,
                                  (max(4.0 * cols, 6.0), 7.0))
  colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
  titles = ("spectral rank corr.", "waveform corr. (|r|; visualize: "
            "largest over lags)")
  for col, layer in enumerate(layers):
    for row, title in enumerate(titles):
      ax = axes[row][col]
      for colour, rule in zip(colours, result["rules"]):
        data = result["layers"][layer]["rules"][rule]
        if "cascade" not in data:
          continue
        metric = metrics_of(rule)[row]
        points = [data["references"]["identical"]] + data["cascade"]
        x = np.arange(len(points))
        mean = np.array([p[metric]["mean"] if p[metric]["mean"] is not None
                         else np.nan for p in points], float)
        half = np.array([p[metric]["ci95"] if p[metric]["ci95"] is not None
                         else 0.0 for p in points], float)
        ax.plot(x, mean, "o-", color=colour, label=rule)
        ax.fill_between(x, mean - half, mean + half, color=colour, alpha=0.2)
        for ref, style in (("unrelated_audio", "--"),
                           ("unrelated_maps", "--"), ("input", ":"),
                           ("other_seed", "-.")):
          if ref not in data["references"]:
            continue
          level = data["references"][ref][metric]["mean"]
          if level is not None:
            ax.axhline(level, color=colour, linestyle=style, linewidth=1)
      ax.axhline(1.0, color="gray", linewidth=0.8)
      ax.set_ylim(-0.05, 1.05)
      ax.set_xticks(range(int(layer) + 1))
      ax.set_xlabel("blocks randomised from the top")
      if col == 0:
        ax.set_ylabel(title)
      if row == 0:
        ax.set_title(f"layer {layer}")
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=len(labels) + 1,
             title="rule (95 % band; dashed: unrelated audio (visualize: "
             "another map), dotted: the input, dash-dot: visualize from "
             "another seed, gray: identical)", fontsize=9, title_fontsize=9,
             bbox_to_anchor=(0.5, -0.06))
  fig.suptitle(f"{result['model']} ({result['arch']}): similarity to the "
               "trained network's sonifications as its weights are "
               "randomised (95 % CI over pairs)")
  return plotting.save_figure(fig, path)


# ------------------------------------------------ python -m analysis.run


def _check(options) -> None:
  twice = sorted({r for r in options.rules if options.rules.count(r) > 1})
  if twice:
    raise UserError(f"--rules names {', '.join(twice)} twice: each rule is "
                    "compared once")


def _run_study(context) -> None:
  o = context.options
  for entry, (name, run) in zip(context.chosen, context.runs):
    out = context.out_dir(name)
    result = run_sanity(run, context.source, out, layers=context.layers,
                        rules=o.rules, maps_per_clip=o.maps_per_clip,
                        max_clips=o.max_clips or DEFAULT_CLIPS,
                        clip_samples=context.clip_samples,
                        batch_size=o.batch_size, model_name=name)
    context.record(os.path.join(out, "sanity.json"), [entry])
    for line in verdicts(result):
      context.say(line)
    context.say(f"sanity ({name}): {out}/sanity.json, {out}/sanity.png")


STUDY = studies.Study("sanity",
                      studies.DATA_FLAGS | {"rules", "maps_per_clip"},
                      _run_study, check=_check)
