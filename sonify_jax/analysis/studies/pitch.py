"""Pitch study: does a layer's sonification keep the input's fundamental?

For pitch networks (CREPE) on a folder of pitched clips. For every clip and
layer, the clip's strongest live maps are sonified, and the f0 of the input
and of each sonification are read by an estimator that knows nothing of the
network (``librosa.pyin``). The score of a sonification is the share of the
input's voiced frames where the sonification is voiced with an f0 within 50
cents of the input's. Against the controls that could refute it:

* ``random_map``: a random live map of the trained network, same clip;
* ``untrained``: the same maps of the untrained init (every block random);
* ``top_block_random``: the same maps with block ``L`` alone re-initialised
  (the first step of the sanity study's cascade).

95 % t-intervals are over clips (each clip's mean over its maps). Where the
run has a frame head (converted CREPE), the network's own pitch reading of
each sonification (``models.crepe_pitch``) is scored the same way, beside
its reading of the input itself (how often CREPE and pyin agree at all).
Every condition also reports ``input_waveform_r``, the |Pearson r| of each
sonification with its input: a chain that lets the waveform through keeps
the f0 without any selectivity, so the share is read against it.
"""
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from sonify_jax import atomic_io, plotting
from sonify_jax.analysis import studies
from sonify_jax.analysis.core import common
from sonify_jax.analysis.core import controls
from sonify_jax.analysis.core import shares
from sonify_jax.analysis.studies import sanity
from sonify_jax.transpose import rules as rules_lib
from sonify_jax.errors import UserError
from sonify_jax.models.network import FrameHead
from sonify_jax.visualize import compare

TOLERANCE_CENTS = 50.0
FMIN_HZ, FMAX_HZ = 65.0, 1050.0   # C2 .. C6
FRAME_SECONDS = 0.064
HOP_SECONDS = 0.016
# The network reads every 4th pyin frame: a CREPE full frame costs ~1 GMAC.
NETWORK_EVERY = 4
CONDITIONS = ("trained", "random_map", "top_block_random", "untrained")
LABELS = {"trained": "trained, top maps", "random_map": "random live map",
          "top_block_random": "top block random", "untrained": "untrained"}


def _frames(rate: int):
  frame = 1 << int(np.round(np.log2(FRAME_SECONDS * rate)))
  return frame, max(1, int(round(HOP_SECONDS * rate)))


def f0(audio: np.ndarray, rate: int):
  """``(f0 Hz [..., F] (NaN unvoiced), voiced [..., F])`` by pyin."""
  import librosa  # pylint: disable=g-import-not-at-top
  frame, hop = _frames(rate)
  hz, voiced, _ = librosa.pyin(np.asarray(audio, np.float32), fmin=FMIN_HZ,
                               fmax=FMAX_HZ, sr=rate, frame_length=frame,
                               hop_length=hop)
  return hz, voiced


def share_within(reference_hz: np.ndarray, reference_voiced: np.ndarray,
                 hz: np.ndarray, voiced: np.ndarray) -> float:
  """Share of the reference's voiced frames where ``hz`` is voiced and
  within :data:`TOLERANCE_CENTS`; NaN where the reference has none."""
  n = min(len(reference_hz), len(hz))
  ref, ref_v = reference_hz[:n], reference_voiced[:n]
  if not ref_v.any():
    return float("nan")
  cents = compare.cents_apart(hz[:n], ref)
  hit = voiced[:n] & np.isfinite(cents) & (cents <= TOLERANCE_CENTS)
  return float(hit[ref_v].mean())


def _network_pitch(run, audio: np.ndarray):
  """``(f0, voiced)`` of CREPE's own reading, on every
  :data:`NETWORK_EVERY`-th frame of pyin's grid (centred frames)."""
  from sonify_jax.models import crepe_pitch  # pylint: disable=g-import-not-at-top
  _, hop = _frames(run.arch.sample_rate)
  hz, periodicity = crepe_pitch.pitch({**run.trained, **run.frame_head},
                                      run.arch, audio,
                                      hop=hop * NETWORK_EVERY)
  return hz, periodicity > crepe_pitch.VOICED_THRESHOLD


def _input_f0(clips: np.ndarray, rate: int, share: shares.Share):
  """Per clip ``(f0, voiced)`` by pyin, each process reading its own."""
  def read(own):
    hz, voiced = f0(clips[own], rate)
    return np.stack([hz, voiced.astype(hz.dtype)], axis=1)
  both = shares.split_rows(read, np.arange(len(clips)), share)
  return [(hz, voiced > 0) for hz, voiced in both]


def _every(f0_voiced):
  hz, voiced = f0_voiced
  return hz[::NETWORK_EVERY], voiced[::NETWORK_EVERY]


def run_pitch(run: controls.RunParams, source, out_dir: str,
              layers: Optional[Sequence[int]] = None,
              rule: str = rules_lib.DEFAULT_RULE, maps_per_clip: int = 2,
              max_clips: Optional[int] = None,
              clip_samples: Optional[int] = None, batch_size: int = 16,
              model_name: str = "model",
              seed: int = controls.DEFAULT_SEED,
              share: Optional[shares.Share] = None) -> Dict[str, Any]:
  """Runs the study; writes ``pitch.json`` and ``pitch.png``.

  Over several processes (``share``, default the running process's), each
  reads the f0 of its own clips and sonifies and scores their pairs, and
  every process gets every clip's scores (``shares.split_rows``): the JSON
  is the one a single process writes.
  """
  share = share or shares.Share.of_process()
  arch = run.arch
  rules_lib.check(rule)
  layers = common.check_layers(layers, arch)
  random = run.untrained
  if random is None:
    random = common.random_params(arch, seed)
  rate = arch.sample_rate
  length = clip_samples or int(sanity.DEFAULT_SECONDS * rate)
  clips, ids = sanity.load_clips(source, max_clips or len(source), length,
                                 arch.min_input_length(max(layers)))
  inputs = _input_f0(clips, rate, share)
  keep = [i for i, (_, v) in enumerate(inputs) if v.any()]
  if not keep:
    raise UserError("no clip has a voiced frame by pyin: the pitch study "
                    "needs pitched sounds (scripts/make_pitched_audio.py)")
  own = run.frame_head is not None and isinstance(arch.head, FrameHead)
  result: Dict[str, Any] = {
      "model": model_name, "arch": arch.name, "sample_rate": rate,
      "rule": rule, "source": getattr(source, "name", "source"),
      "clips": [ids[i] for i in keep],
      "unvoiced_clips": [ids[i] for i in range(len(ids)) if i not in keep],
      "clip_samples": length, "maps_per_clip": maps_per_clip,
      "tolerance_cents": TOLERANCE_CENTS, "estimator": "librosa.pyin",
      "fmin_hz": FMIN_HZ, "fmax_hz": FMAX_HZ, "conditions": list(CONDITIONS),
      "layers": {}}
  if own:
    per_clip = shares.split_rows(lambda mine: np.array([
        share_within(*_every(inputs[keep[i]]),
                     *_network_pitch(run, clips[keep[i]])) for i in mine]),
                                 np.arange(len(keep)), share)
    result["network_on_input"] = sanity._interval(per_clip.tolist())  # pylint: disable=protected-access
  clips, inputs = clips[keep], [inputs[i] for i in keep]
  bar = common.Progress("pitch", len(layers) * len(CONDITIONS), unit="runs")
  for layer in layers:
    rows, maps = sanity._pairs(run, clips, layer, maps_per_clip)  # pylint: disable=protected-access
    entry: Dict[str, Any] = {"pairs": int(len(rows))}
    if not len(rows):
      result["layers"][str(layer)] = entry
      bar.update(len(CONDITIONS))
      continue
    (acts,) = common.layer_activations(run.trained, clips, (layer,), arch)
    random_maps = controls.random_live_maps(
        np.asarray(acts)[rows], np.arange(len(rows)), layer, seed)
    settings = {
        "trained": (run.trained, maps),
        "random_map": (run.trained, random_maps),
        "top_block_random": (sanity.randomised(run.trained, random, arch,
                                               [layer]), maps),
        "untrained": (random, maps)}
    for condition in CONDITIONS:
      params, chosen = settings[condition]

      def scores_of(pairs, params=params, chosen=chosen):
        """Per pair: pyin share, |waveform r| (and the network's share)."""
        s = common.sonify_pairs(params, clips[rows[pairs]], chosen[pairs],
                                layer, arch, batch_size, rule=rule)
        hz, voiced = f0(s, rate)
        out = []
        for p, r in enumerate(rows[pairs]):
          row = [share_within(*inputs[r], hz[p], voiced[p]),
                 sanity.waveform_abs_pearson(s[p], clips[r])]
          if own:
            row.append(share_within(*_every(inputs[r]),
                                    *_network_pitch(run, s[p])))
          out.append(row)
        return np.array(out, np.float64).reshape(len(pairs), 2 + own)

      scores = shares.split_rows(scores_of, rows, share)
      metrics = {"pyin_share": _over_clips(rows, scores[:, 0].tolist()),
                 # How much of the input the chain lets through: a network
                 # that keeps the whole waveform keeps its f0 too, so the
                 # share above is read against this.
                 "input_waveform_r": _over_clips(rows,
                                                 scores[:, 1].tolist())}
      if own:
        metrics["network_share"] = _over_clips(rows, scores[:, 2].tolist())
      entry[condition] = metrics
      bar.update(1)
    result["layers"][str(layer)] = entry
  bar.close()
  result["headline"] = headline(result)
  if share.chief:   # every process holds the result; one writes it
    os.makedirs(out_dir, exist_ok=True)
    result["figure"] = os.path.basename(save_figure(
        result, os.path.join(out_dir, "pitch.png")))
    atomic_io.write_json(os.path.join(out_dir, "pitch.json"), result)
  return result


def _over_clips(rows: np.ndarray, scores: List[float]) -> Dict[str, Any]:
  """Mean of each clip's maps, then the interval over clips."""
  per_clip: Dict[int, List[float]] = {}
  for r, v in zip(rows, scores):
    if np.isfinite(v):
      per_clip.setdefault(int(r), []).append(v)
  return sanity._interval([float(np.mean(v)) for v in per_clip.values()])  # pylint: disable=protected-access


def headline(result: Dict[str, Any]) -> str:
  """The layer whose top maps keep the pitch best, against its controls."""
  best = None
  for layer, entry in result["layers"].items():
    if "trained" in entry:
      m = entry["trained"]["pyin_share"]["mean"]
      if m is not None and (best is None or m > best[1]):
        best = (layer, m)
  if best is None:
    return "pitch: no layer had a live map to sonify"
  layer, m = best
  entry = result["layers"][layer]
  controls_text = ", ".join(
      f"{LABELS[c]} {entry[c]['pyin_share']['mean']:.2f}"
      for c in CONDITIONS[1:]
      if entry[c]["pyin_share"]["mean"] is not None)
  half = entry["trained"]["pyin_share"]["ci95"]
  interval = f" ±{half:.2f}" if half is not None else ""
  return (f"{result['model']}: layer {layer}'s top-map {result['rule']} "
          f"sonifications keep the input's f0 (pyin, within 50 cents) on "
          f"{m:.2f}{interval} of its voiced frames ({controls_text}).")


def save_figure(result: Dict[str, Any], path: str) -> str:
  """Share of voiced frames kept per layer: one line per condition with its
  95 % interval; a panel for the network's own pitch reading where it has
  one, and one for the sonifications' |waveform r| with their input."""
  layers = sorted(result["layers"], key=int)
  metrics = ["pyin_share"] + (["network_share"]
                              if "network_on_input" in result else []) + [
                                  "input_waveform_r"]
  fig, axes = plotting.new_figure(1, len(metrics), (7.0 * len(metrics), 4.5))
  titles = {"pyin_share": "f0 kept by pyin",
            "network_share": "f0 kept by the network's own reading",
            "input_waveform_r": "|waveform r| with the input"}
  x = np.array([int(l) for l in layers])
  for ax, metric in zip(axes[0], metrics):
    for offset, condition in enumerate(CONDITIONS):
      mean, half = [], []
      for layer in layers:
        value = result["layers"][layer].get(condition, {}).get(metric, {})
        mean.append(value.get("mean") if value.get("mean") is not None
                    else np.nan)
        half.append(value.get("ci95") or 0.0)
      ax.errorbar(x + 0.08 * (offset - 1.5), mean, yerr=half, marker="o",
                  capsize=3, label=LABELS[condition])
    if metric == "network_share":
      ax.axhline(result["network_on_input"]["mean"], color="gray",
                 linestyle="--", label="network on the input itself")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks(x)
    ax.set_xlabel("layer")
    ax.set_ylabel("|Pearson r|" if metric == "input_waveform_r"
                  else "share of the input's voiced frames")
    ax.set_title(titles[metric])
  axes[0][0].legend(fontsize=8)
  fig.suptitle(f"{result['model']} ({result['arch']}, {result['rule']}): "
               "does a sonification keep the input's pitch? (95 % CI over "
               f"{len(result['clips'])} clips)")
  return plotting.save_figure(fig, path)


# ------------------------------------------------ python -m analysis.run


def _run_study(context) -> None:
  o = context.options
  for entry, (name, run) in zip(context.chosen, context.runs):
    out = context.out_dir(name)
    result = run_pitch(run, context.source, out, layers=context.layers,
                       rule=o.rule, maps_per_clip=o.maps_per_clip,
                       max_clips=o.max_clips,
                       clip_samples=context.clip_samples,
                       batch_size=o.batch_size, model_name=name)
    context.record(os.path.join(out, "pitch.json"), [entry])
    context.say(result["headline"])
    context.say(f"pitch ({name}): {out}/pitch.json, {out}/pitch.png")


STUDY = studies.Study("pitch",
                      studies.DATA_FLAGS | {"rule", "maps_per_clip"},
                      _run_study)
