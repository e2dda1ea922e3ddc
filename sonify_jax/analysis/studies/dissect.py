"""Dissection: what each map responds to, labelled against exact answers.

Network Dissection (Bau et al. 2017) for sound. Every map of a layer is run
on a generated probe set whose concepts are known exactly
(:mod:`sonify_jax.analysis.core.probes`: tones and harmonic complexes at
known f0, band noise at known centres, clicks at known times). Per map:

* its activation is thresholded at its top 0.5 % quantile over every probe
  and position (NetDissect-Lite's ``QUANTILE = 0.005``), each position
  placed at the input sample its receptive field centres on;
* the IoU of that with each concept's time mask (where the concept sounds);
  the best concept is the map's label, a detector where IoU > 0.04
  (``SCORE_THRESHOLD``);
* tuning curves: its mean activation where the probe sounds, per f0 (tones,
  complexes) and per band (noise); its preferred f0 is the peak of the tone
  and complex curves together.

The same for the untrained init (the control). Per layer: the number of
detectors of each kind, trained and untrained, mean and 95 % t-interval over
probe draws (``--max_clips`` is not read: the probe set is generated;
``--probe=DIR`` adds recorded notes and sounds to every draw).
:func:`head_tuning` does the same reading for a pitch head's bins (which
f0 each bin prefers). Writes ``dissect.json`` and ``dissect.png``.
"""
import functools
import os
from typing import Any, Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from sonify_jax import atomic_io, plotting
from sonify_jax.analysis import studies
from sonify_jax.analysis.core import common, controls, probes, shares
from sonify_jax.errors import UserError
from sonify_jax.models import forward, framing
from sonify_jax.models import network as network_lib
from sonify_jax.visualize import compare

QUANTILE = 0.005
SCORE_THRESHOLD = 0.04
DRAWS = 3
SECONDS = 0.5
HEAD_BATCH = 32   # clips per call of head_tuning


def position_centres(net: network_lib.Network, layer: int, length: int
                     ) -> np.ndarray:
  """The input sample each position of ``framing.clip_block_outputs``'s
  block ``layer`` output centres on, for a ``length``-sample clip."""
  stride, first, last = net.frame_span(layer)
  if not framing.is_framed(net):
    count = net.output_length(length, layer)
    return np.arange(count) * stride + (first + last) / 2
  frame = framing.frame_length(net)
  per_frame = net.output_length(frame, layer)
  inside = np.arange(per_frame) * stride + (first + last) / 2
  starts = np.arange(framing.frame_count(net, length)) * framing.hop(net)
  return (starts[:, None] - frame // 2 + inside[None, :]).ravel()


@functools.partial(jax.jit, static_argnames=("net", "layer"))
def _outputs(params, audio, *, net, layer):
  return framing.clip_block_outputs(params, audio, net, layer)[-1]


def activations(params, net: network_lib.Network, layer: int,
                audio: np.ndarray, batch_size: int = 16,
                share: shares.Share = shares.Share()) -> np.ndarray:
  """``[N, positions, C]`` block ``layer`` outputs of the probe clips (each
  process runs its ``share`` of them and gets the others')."""
  def outputs(rows):
    own = audio[rows]
    return np.concatenate([
        np.asarray(_outputs(params, jnp.asarray(own[i:i + batch_size]),
                            net=net, layer=layer))
        for i in range(0, len(own), batch_size)])
  return shares.split_rows(outputs, np.arange(len(audio)), share)


def dissect_maps(acts: np.ndarray, centres: np.ndarray,
                 probe: probes.Probes) -> Dict[str, Any]:
  """Labels, IoUs and tuning curves of every map from ``acts [N, P, C]``."""
  n, positions, channels = acts.shape
  index = np.clip(np.round(centres).astype(int), 0, probe.present.shape[1] - 1)
  present = probe.present[:, index]                        # [N, P]
  concept_of = np.eye(len(probe.concepts), dtype=bool)[probe.concept]  # [N, K]
  masks = concept_of[:, None, :] & present[:, :, None]     # [N, P, K]
  flat = acts.reshape(-1, channels)
  threshold = np.quantile(flat, 1.0 - QUANTILE, axis=0)    # [C]
  # A dead map (never above 0) detects nothing.
  on = (flat > threshold[None]) & (flat > 0)               # [NP, C]
  masks = masks.reshape(-1, masks.shape[-1])               # [NP, K]
  inter = masks.T.astype(np.float64) @ on.astype(np.float64)  # [K, C]
  union = masks.sum(0)[:, None] + on.sum(0)[None, :] - inter
  iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
  best = iou.argmax(axis=0)
  # tuning: mean activation where each probe sounds
  sounding = (acts * present[..., None]).sum(1) / np.maximum(
      present.sum(1), 1)[:, None]                          # [N, C]
  curves = {}
  for kind in curve_kinds(probe):
    ids = probe.of_kind(kind)
    curves[kind] = np.stack([sounding[probe.concept == k].mean(0)
                             for k in ids])                # [V, C]
  f0s = np.array([probe.concepts[k][1] for k in probe.of_kind("tone")])
  preferred = f0s[(curves["tone"] + curves["complex"]).argmax(0)]
  return {"iou": iou, "best": best, "detector": iou[best, range(channels)]
          > SCORE_THRESHOLD, "curves": curves, "preferred_f0": preferred}


def curve_kinds(probe: probes.Probes) -> List[str]:
  """The kinds whose concepts each have a frequency: a tuning curve each."""
  return [kind for kind in probe.kinds() if probe.of_kind(kind) and all(
      np.isfinite(probe.concepts[k][1]) for k in probe.of_kind(kind))]


def detector_counts(result: Dict[str, Any], probe: probes.Probes
                    ) -> Dict[str, int]:
  kinds = np.array([k for k, _ in probe.concepts])[result["best"]]
  return {kind: int(np.sum(result["detector"] & (kinds == kind)))
          for kind in probe.kinds()}


def label_of(probe: probes.Probes, concept: int) -> str:
  kind, value = probe.concepts[concept]
  return kind if np.isnan(value) else f"{kind} {value:.0f} Hz"


def run_dissect(run: controls.RunParams, out_dir: str,
                layers: Optional[Sequence[int]] = None, draws: int = DRAWS,
                seconds: float = SECONDS, batch_size: int = 16,
                model_name: str = "model",
                seed: int = controls.DEFAULT_SEED,
                probe_dir: Optional[str] = None,
                share: Optional[shares.Share] = None) -> Dict[str, Any]:
  """Runs the study; writes ``dissect.json`` and ``dissect.png``.
  ``probe_dir``: recorded probes (:func:`probes.from_folder`) added to
  every draw. Over several processes (``share``, default the running
  process's) each runs the forwards of its share of the probe clips and
  every process writes the JSON one process would."""
  share = share or shares.Share.of_process()
  arch = run.arch
  layers = common.check_layers(layers, arch)
  random = run.untrained
  how = run.untrained_source or "the run's untrained init"
  if random is None:
    random, how = common.random_params(arch, seed), f"random_params({seed})"
  rate = arch.sample_rate
  draws_made = [probes.generate(rate, seconds, d) for d in range(draws)]
  if probe_dir:
    recorded = probes.from_folder(probe_dir, rate, seconds)
    draws_made = [probes.combined(d, recorded) for d in draws_made]
  first = draws_made[0]
  kinds = first.kinds()
  result: Dict[str, Any] = {
      "model": model_name, "arch": arch.name, "sample_rate": rate,
      "untrained": how, "draws": draws, "seconds": seconds,
      "quantile": QUANTILE, "score_threshold": SCORE_THRESHOLD,
      "probe_dir": probe_dir, "kinds": list(kinds),
      "concepts": [label_of(first, k) for k in range(len(first.concepts))],
      "f0_grid": probes.f0_grid(rate).tolist(),
      "band_grid": probes.band_grid(rate).tolist(), "layers": {}}
  if "note" in kinds:
    result["note_grid"] = [first.concepts[k][1]
                           for k in first.of_kind("note")]
  bar = common.Progress("dissect", len(layers) * draws * 2, unit="passes")
  for layer in layers:
    centres = position_centres(arch, layer, first.audio.shape[1])
    entry: Dict[str, Any] = {}
    for name, params in (("trained", run.trained), ("untrained", random)):
      counts: List[Dict[str, int]] = []
      maps_of_first = None
      for probe in draws_made:
        out = dissect_maps(activations(params, arch, layer, probe.audio,
                                       batch_size, share), centres, probe)
        counts.append(detector_counts(out, probe))
        if maps_of_first is None:
          maps_of_first = out
        bar.update(1)
      summary = {}
      for kind in kinds:
        values = [c[kind] for c in counts]
        mean, half = common.t_interval(values)
        summary[kind] = {"mean": float(mean), "ci95": (
            float(half) if np.isfinite(half) else None), "per_draw": values}
      out = maps_of_first
      entry[name] = {
          "detectors": summary,
          "maps": [{"map": m, "label": label_of(first, int(out["best"][m])),
                    "iou": float(out["iou"][out["best"][m], m]),
                    "detector": bool(out["detector"][m]),
                    "preferred_f0": float(out["preferred_f0"][m]),
                    **{f"{kind}_curve": curve[:, m].tolist()
                       for kind, curve in out["curves"].items()}}
                   for m in range(arch.channels[layer - 1])]}
    entry["verdict"] = verdict(layer, entry)
    result["layers"][str(layer)] = entry
  bar.close()
  if share.chief:   # every process holds the result; one writes it
    os.makedirs(out_dir, exist_ok=True)
    result["figure"] = os.path.basename(save_figure(
        result, os.path.join(out_dir, "dissect.png")))
    atomic_io.write_json(os.path.join(out_dir, "dissect.json"), result)
  return result


def verdict(layer: int, entry: Dict[str, Any]) -> str:
  def total(name):
    return sum(d["mean"] for d in entry[name]["detectors"].values())

  def cells(name):
    parts = []
    for kind in entry[name]["detectors"]:
      d = entry[name]["detectors"][kind]
      half = f" ±{d['ci95']:.1f}" if d["ci95"] is not None else ""
      parts.append(f"{kind} {d['mean']:.1f}{half}")
    return ", ".join(parts)
  width = len(entry["trained"]["maps"])
  return (f"layer {layer}: {total('trained'):.1f} of {width} maps detect a "
          f"probe concept (IoU > {SCORE_THRESHOLD}) trained ({cells('trained')}"
          f"), {total('untrained'):.1f} untrained ({cells('untrained')}); "
          "95 % intervals over probe draws.")


def save_figure(result: Dict[str, Any], path: str) -> str:
  layers = sorted(result["layers"], key=int)
  kinds = result["kinds"]
  fig, axes = plotting.new_figure(1, len(layers), (4.0 * len(layers), 3.2))
  x = np.arange(len(kinds))
  for col, layer in enumerate(layers):
    ax = axes[0][col]
    for shift, name, colour in ((-0.2, "trained", "tab:blue"),
                                (0.2, "untrained", "tab:gray")):
      d = result["layers"][layer][name]["detectors"]
      mean = [d[k]["mean"] for k in kinds]
      half = [d[k]["ci95"] or 0.0 for k in kinds]
      ax.bar(x + shift, mean, 0.4, yerr=half, color=colour, label=name,
             capsize=3)
    ax.set_xticks(x)
    ax.set_xticklabels(kinds, fontsize=8)
    ax.set_title(f"layer {layer}", fontsize=9)
    if col == 0:
      ax.set_ylabel("detector maps (95 % CI over draws)", fontsize=8)
      ax.legend(fontsize=8)
  fig.suptitle(f"{result['model']} ({result['arch']}): maps labelled by "
               "dissection, trained vs untrained", fontsize=9)
  return plotting.save_figure(fig, path)


def head_tuning(params, net: network_lib.Network, f0s: np.ndarray,
                seconds: float = 0.1) -> np.ndarray:
  """``[classes]``: the f0 (of ``f0s``) of the harmonic complex each class of
  a pitch head scores highest (mean over frames). ``params`` include the
  head's."""
  rate = net.sample_rate
  # at least two score vectors' worth of samples
  length = max(int(seconds * rate), 2 * net.head_input_length())
  t = np.arange(length) / rate
  rng = np.random.default_rng(0)
  clips = []
  for f in f0s:
    wave = probes.harmonic_complex(f, t, rate, None, rng)
    clips.append((0.3 * wave / np.abs(wave).max()).astype(np.float32))
  clips = np.stack(clips)
  scores = np.concatenate([
      np.asarray(_head_scores(params, jnp.asarray(clips[i:i + HEAD_BATCH]),
                              net=net))
      for i in range(0, len(clips), HEAD_BATCH)])
  return np.asarray(f0s)[scores.argmax(axis=0)]


@functools.partial(jax.jit, static_argnames=("net",))
def _head_scores(params, audio, *, net):
  """``[B, classes]``: each clip's scores, mean over its frames."""
  if isinstance(net.head, network_lib.FrameHead):
    frames = framing.frames_of(net, audio)
    b, f, n = frames.shape
    scores = forward.frame_head_scores(params, net, frames.reshape(b * f, n))
    return scores.reshape(b, f, -1).mean(1)
  return forward.conv_head_scores(params, net, audio).mean(1)


def bin_agreement(preferred: np.ndarray, hz: np.ndarray,
                  within: np.ndarray) -> Dict[str, float]:
  """Spearman of preferred f0 with bin index, and the median distance in
  cents from each bin's own f0, over the bins ``within``."""
  bins = np.flatnonzero(within)
  rho = scipy.stats.spearmanr(bins, preferred[bins])[0]
  cents = compare.cents_apart(preferred[bins], hz[bins])
  return {"spearman": float(rho), "median_cents": float(np.median(cents)),
          "bins": int(len(bins))}


# ------------------------------------------------ python -m analysis.run


def _run_study(context) -> None:
  o = context.options
  for entry, (name, run) in zip(context.chosen, context.runs):
    out = context.out_dir(name)
    result = run_dissect(run, out, layers=context.layers,
                         batch_size=o.batch_size, model_name=name,
                         probe_dir=o.probe)
    context.record(os.path.join(out, "dissect.json"), [entry])
    for layer in sorted(result["layers"], key=int):
      context.say(result["layers"][layer]["verdict"])
    context.say(f"dissect ({name}): {out}/dissect.json, {out}/dissect.png")


def _check(options) -> None:
  if options.probe and not os.path.isdir(options.probe):
    raise UserError(f"--probe {options.probe} is not a folder")


STUDY = studies.Study("dissect", frozenset({"step", "layers", "batch_size",
                                           "probe"}),
                      _run_study, check=_check, reads_data=False)
