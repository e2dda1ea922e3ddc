"""Feature-map activity and band selectivity (thesis 5.3.1).

The thesis reports that the first layers of both models are band-selective
filters, that supervised deep layers have fewer active maps and that
contrastive deep layers (8, 9) stay active. This study measures both, per
layer, next to the untrained init of the same run (the control: how much of
it does the architecture do anyway?).

**Activity.** A map is *live on a clip* when its block output (after ReLU
and pool) is non-zero anywhere in the clip, i.e. its max over time is > 0.
Per layer we report the fraction of maps live on at least one clip of the
dataset, the distribution over maps of the *activation rate* (fraction of
clips on which the map is live), the fraction of maps live on every clip,
and the mean activation (time-mean of the block output, averaged over clips
and maps). One streamed forward pass serves every layer; memory is
``[maps]`` counters per layer plus a running top-k per map.

**Band selectivity.** Block 1's filters are measured from their weights
(:func:`kernel_band`: centroid and bandwidth of each kernel's power
response). For each studied map (every map live on >= 1 clip, or
a seeded random sample of ``max_maps`` of them) we sonify the map on its
``k`` strongest clips and compute the spectral centroid and bandwidth of the
sonification and of the input. A band-selective map has sonifications whose
centroid sits in its own band whatever the input (centroids spread across
maps, bandwidth narrower than the input's); a map that passes its input
through has sonification centroids that track the inputs'.

Spectral features are librosa's definitions (``spectral_centroid``:
``sum_f f S / sum_f S`` of the magnitude STFT per frame; ``spectral_bandwidth``
with p = 2 around it), written here on ``scipy.signal.stft`` because
librosa's first call JIT-compiles through numba (~15 CPU s) for a two-line
formula. Frames are averaged weighted by their energy (``sum_f S^2``), so a
mostly-silent sonification is described by where its energy is. An all-zero
signal has no centroid (``None`` in JSON) and is counted as silent.
"""
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import scipy.signal

from sonify_jax import atomic_io
from sonify_jax.analysis import studies
from sonify_jax.analysis.core import common
from sonify_jax.analysis.core import controls
from sonify_jax.analysis.core import shares
from sonify_jax.errors import UserError
from sonify_jax.models import network as network_lib
from sonify_jax.models.network import Network

Params = Any
RATE_BINS = np.linspace(0.0, 1.0, 11)


# ----------------------------------------------------------------------------
# Pure measurements.

def spectral_centroid_bandwidth(signals: np.ndarray, sample_rate: int,
                                n_fft: int = 256, hop: int = 64
                                ) -> Tuple[np.ndarray, np.ndarray]:
  """Energy-weighted spectral centroid and bandwidth in Hz.

  Args:
    signals: ``[..., T]`` waveforms.
  Returns:
    ``(centroid [...], bandwidth [...])``; NaN where a signal is all zero.
  """
  signals = np.asarray(signals, np.float64)
  nperseg = min(n_fft, signals.shape[-1])
  freqs, _, z = scipy.signal.stft(signals, fs=sample_rate, window="hann",
                                  nperseg=nperseg, noverlap=nperseg - hop,
                                  boundary="zeros", padded=True, axis=-1)
  mag = np.abs(z)  # [..., F, frames]
  f = freqs[:, None]
  with np.errstate(invalid="ignore", divide="ignore"):
    total = mag.sum(-2)  # [..., frames]
    centroid_t = (f * mag).sum(-2) / total
    spread_t = np.sqrt((mag * (f - centroid_t[..., None, :]) ** 2).sum(-2)
                       / total)
    energy = (mag ** 2).sum(-2)
    weight = energy / energy.sum(-1, keepdims=True)
    centroid = np.nansum(weight * centroid_t, -1)
    bandwidth = np.nansum(weight * spread_t, -1)
  silent = ~(np.abs(signals).max(-1) > 0)
  return (np.where(silent, np.nan, centroid),
          np.where(silent, np.nan, bandwidth))


def first_conv(arch: Network):
  """The first conv of block 1 (its filters read the waveform), or None
  when block 1 holds none."""
  convs = [l for l in arch.blocks[0] if isinstance(l, network_lib.Conv)]
  return convs[0] if convs else None


def flat_bandwidth(sample_rate: int) -> float:
  """Bandwidth (Hz) of a flat response from 0 to the Nyquist frequency."""
  return sample_rate / 2 / np.sqrt(12)


def kernel_band(kernel: np.ndarray, sample_rate: int,
                n_fft: int = 512) -> Dict[str, Any]:
  """Band of each block-1 filter from its weights alone.

  Centroid and bandwidth (Hz) of the power response ``|H(f)|^2`` of every
  ``[k, 1, C]`` kernel column: a band-selective filter has a bandwidth well
  below :func:`flat_bandwidth` (the flat response's), and a bank of them
  spreads its centroids. Unlike the sonifications' spectra, this does not
  see the images that max-unpooling (zero-interleaving) adds around
  ``sample_rate / 4``, which a short kernel cannot remove.
  """
  taps = np.asarray(kernel, np.float64)[:, 0, :]  # [k, C]
  power = np.abs(np.fft.rfft(taps, n_fft, axis=0)) ** 2  # [F, C]
  f = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)[:, None]
  total = power.sum(0)
  with np.errstate(invalid="ignore", divide="ignore"):
    centroid = (f * power).sum(0) / total
    bandwidth = np.sqrt((power * (f - centroid) ** 2).sum(0) / total)
  ok = total > 0
  return {"centroid": np.where(ok, centroid, np.nan).tolist(),
          "bandwidth": np.where(ok, bandwidth, np.nan).tolist(),
          "mean_bandwidth": float(bandwidth[ok].mean()) if ok.any() else None,
          "spread_centroid": float(centroid[ok].std()) if ok.any() else None,
          "flat_bandwidth": float(flat_bandwidth(sample_rate))}


class ActivityCounter:
  """Per-map live counts and activation sums of one layer over a stream."""

  def __init__(self, num_maps: int):
    self.live = np.zeros(num_maps, np.int64)
    self.mean_sum = np.zeros(num_maps, np.float64)
    self.clips = 0

  def update(self, max_activation: np.ndarray, mean_activation: np.ndarray
             ) -> None:
    """Args: ``[B, maps]`` max and mean over time of the block output."""
    self.live += (np.asarray(max_activation) > 0).sum(0)
    self.mean_sum += np.asarray(mean_activation, np.float64).sum(0)
    self.clips += int(np.shape(max_activation)[0])

  def state(self) -> Dict[str, Any]:
    """What :meth:`merge` adds (JSON)."""
    return {"live": self.live.tolist(), "mean_sum": self.mean_sum.tolist(),
            "clips": self.clips}

  def merge(self, states: Sequence[Dict[str, Any]]) -> None:
    """Becomes the sum of ``states`` (every process's, this one's among
    them)."""
    self.live = np.sum([s["live"] for s in states], 0).astype(np.int64)
    self.mean_sum = np.sum([s["mean_sum"] for s in states], 0,
                           dtype=np.float64)
    self.clips = int(sum(s["clips"] for s in states))

  def summary(self) -> Dict[str, Any]:
    if self.clips == 0:
      raise UserError("the source holds no clips")
    rate = self.live / self.clips
    hist, _ = np.histogram(rate, RATE_BINS)
    return {
        "maps": int(rate.size),
        "live_fraction": float(np.mean(self.live > 0)),
        "always_live_fraction": float(np.mean(self.live == self.clips)),
        "dead_maps": int(np.sum(self.live == 0)),
        "mean_activation_rate": float(rate.mean()),
        "activation_rate_quantiles": dict(zip(
            ("min", "q10", "q25", "median", "q75", "q90", "max"),
            np.quantile(rate, [0, .1, .25, .5, .75, .9, 1]).tolist())),
        "activation_rate_histogram": {"bins": RATE_BINS.tolist(),
                                      "counts": hist.tolist()},
        "mean_activation": float(self.mean_sum.sum() / (self.clips *
                                                       rate.size)),
        "activation_rate": rate.tolist()}


def band_summary(son_centroid: np.ndarray, son_bandwidth: np.ndarray,
                 in_centroid: np.ndarray, in_bandwidth: np.ndarray,
                 pairs_sonified: int) -> Dict[str, Any]:
  """Per-layer summary of ``[maps, k]`` features (NaN: silent sonification,
  or no clip on which the map is live).

  Per map, features are averaged over its non-silent top clips; the layer
  values average over maps that have any.
  """
  silent = np.isnan(son_centroid)
  heard = ~silent.all(1)

  def heard_mean(values):  # mean over each heard map's non-silent clips
    rows = np.where(silent, np.nan, values)[heard]
    return np.nanmean(rows, 1) if rows.size else np.zeros(0)

  per_map = {name: heard_mean(v)
             for name, v in (("sonification_centroid", son_centroid),
                             ("sonification_bandwidth", son_bandwidth),
                             ("input_centroid", in_centroid),
                             ("input_bandwidth", in_bandwidth))}
  out: Dict[str, Any] = {"maps_studied": int(son_centroid.shape[0]),
                         "maps_heard": int(heard.sum()),
                         "pairs_sonified": int(pairs_sonified),
                         "silent_sonifications":
                             int(pairs_sonified - (~silent).sum())}
  for name, values in per_map.items():
    out[f"mean_{name}"] = float(values.mean()) if values.size else None
    out[f"spread_{name}"] = float(values.std()) if values.size else None
  if heard.sum() >= 1:
    ratio = per_map["sonification_bandwidth"] / per_map["input_bandwidth"]
    out["mean_bandwidth_ratio"] = float(np.mean(ratio))
    out["mean_abs_centroid_shift"] = float(np.mean(np.abs(
        per_map["sonification_centroid"] - per_map["input_centroid"])))
  else:
    out["mean_bandwidth_ratio"] = out["mean_abs_centroid_shift"] = None
  out["heard"] = heard.tolist()
  out["per_map"] = {name: v.tolist() for name, v in per_map.items()}
  return out


# ----------------------------------------------------------------------------
# Streaming over a dataset (one model).

def _stream_activity(params: Params, arch: Network, source,
                     layers: Tuple[int, ...], k: int, batch_size: int,
                     clip_samples: Optional[int], max_clips: Optional[int],
                     progress: bool, share: shares.Share):
  """One pass over this process's share of the clips; every process returns
  the counts and top-k over every clip (summed and merged across them)."""
  min_samples = arch.min_input_length(max(layers))
  counters = {l: ActivityCounter(arch.channels[l - 1]) for l in layers}
  tops = {l: common.RunningTopK(arch.channels[l - 1], k) for l in layers}
  total = len(source) if max_clips is None else min(len(source), max_clips)
  bar = common.Progress("activity", share.clips_of(total), enabled=progress)
  for batch in common.iter_clip_batches(
      source, batch_size, min_samples, clip_samples, max_clips,
      owns=share.owns):
    valid = batch["valid"]
    maxes = common.layer_activations(params, batch["audio"], layers, arch)
    means = common.layer_activations(params, batch["audio"], layers, arch,
                                     reduce="mean")
    for layer, mx, mn in zip(layers, maxes, means):
      mx = np.asarray(mx)[valid]
      counters[layer].update(mx, np.asarray(mn)[valid])
      tops[layer].update(mx, batch["index"][valid])
    bar.update(int(valid.sum()))
  bar.close()
  if share.count > 1:
    for layer in layers:
      counters[layer].merge(shares.gather(counters[layer].state(), share))
      tops[layer] = shares.merge_topk(tops[layer], share)
  return counters, tops, min_samples


def _band_selectivity(params: Params, arch: Network, source, layer: int,
                      top: common.RunningTopK, live: np.ndarray,
                      max_maps: Optional[int], seed: int, batch_size: int,
                      min_samples: int, clip_samples: Optional[int]
                      ) -> Dict[str, Any]:
  maps = np.flatnonzero(live)
  if max_maps is not None and maps.size > max_maps:
    rng = np.random.default_rng(seed + layer)
    maps = np.sort(rng.choice(maps, max_maps, replace=False))
  k = top.k
  feats = np.full((4, maps.size, k), np.nan)
  pairs = [(i, j, int(top.indices[m, j]))
           for i, m in enumerate(maps) for j in range(k)
           if top.indices[m, j] >= 0 and top.values[m, j] > 0]
  # Pairs go in chunks of equal-length clips, loaded when needed.
  for start in range(0, len(pairs), batch_size):
    chunk = pairs[start:start + batch_size]
    clips = [common.load_clip(source, c, min_samples, clip_samples)
             for _, _, c in chunk]
    by_length: Dict[int, list] = {}
    for p, clip in zip(chunk, clips):
      by_length.setdefault(clip.shape[0], []).append((p, clip))
    for group in by_length.values():
      audio = np.stack([c for _, c in group])
      son = common.sonify_pairs(params, audio,
                                np.array([maps[p[0]] for p, _ in group]),
                                layer, arch, batch_size)
      sc, sb = spectral_centroid_bandwidth(son, arch.sample_rate)
      ic, ib = spectral_centroid_bandwidth(audio, arch.sample_rate)
      for n, ((i, j, _), _) in enumerate(group):
        feats[:, i, j] = sc[n], sb[n], ic[n], ib[n]
  out = band_summary(*feats, pairs_sonified=len(pairs))
  out["maps"] = maps.tolist()
  return out


def measure_activity(params: Params, arch: Network, source,
                     layers: Optional[Sequence[int]] = None, k: int = 3,
                     max_maps: Optional[int] = 32, seed: int = 0,
                     batch_size: int = 16, clip_samples: Optional[int] = None,
                     max_clips: Optional[int] = None, progress: bool = True,
                     share: Optional[shares.Share] = None) -> Dict[str, Any]:
  """Activity and band selectivity of one encoder on ``source``.

  Args:
    share: this process's share of the clips for the streaming pass
      (default: the running process's); the counts and top-k are then
      combined, so every process measures the same.
    k: strongest clips per map sonified for the spectral features.
    max_maps: maps per layer studied for band selectivity (a seeded random
      sample of the live maps); None: every live map.
  Returns:
    ``{str(layer): ActivityCounter.summary() plus {'band': band summary}}``
    and ``'clips'``.
  """
  layers = common.check_layers(layers, arch)
  counters, tops, min_samples = _stream_activity(
      params, arch, source, layers, k, batch_size, clip_samples, max_clips,
      progress, share or shares.Share.of_process())
  out: Dict[str, Any] = {}
  for layer in layers:
    summary = counters[layer].summary()
    summary["band"] = _band_selectivity(
        params, arch, source, layer, tops[layer], counters[layer].live > 0,
        max_maps, seed, batch_size, min_samples, clip_samples)
    first = first_conv(arch)
    if layer == 1 and first is not None:
      summary["kernel_band"] = kernel_band(
          params[first.name]["kernel"], arch.sample_rate / first.dilation)
    out[str(layer)] = summary
  out["clips"] = counters[layers[0]].clips
  return out


# ----------------------------------------------------------------------------
# Study shell: several models, each with its untrained control.

def headline(result: Dict[str, Any]) -> str:
  """One printed line per model: live fraction and centroids per layer."""
  lines = []
  for name, per_layer in result["models"].items():
    parts = []
    for layer in sorted(per_layer, key=int):  # JSON keys sort as strings
      entry = per_layer[layer]
      t, u = entry["trained"], entry.get("untrained")
      live = f"{t['live_fraction']:.2f}"
      if u:
        live += f" (untrained {u['live_fraction']:.2f})"
      cen = t["band"]["mean_sonification_centroid"]
      cen_in = t["band"]["mean_input_centroid"]
      parts.append(f"L{layer} live {live}, centroid "
                   f"{_hz(cen)} vs input {_hz(cen_in)}")
      if "kernel_band" in t:
        parts[-1] += (", filter bandwidth "
                      f"{_hz(t['kernel_band']['mean_bandwidth'])}"
                      + (f" (untrained "
                         f"{_hz(u['kernel_band']['mean_bandwidth'])})"
                         if u else "") + f" of {_hz(t['kernel_band']['flat_bandwidth'])} flat")
    lines.append(f"{name}: " + "; ".join(parts))
  return "\n".join(lines)


def _hz(value) -> str:
  return "n/a" if value is None else f"{value:.0f} Hz"


def run_activity(models: Dict[str, Dict[str, Tuple[Params, Network]]],
                 source, out_dir: str, **measure_kw) -> Dict[str, Any]:
  """Writes ``activity.json`` and ``activity.png``; returns the result.

  Args:
    models: ``{name: {'trained': (params, arch), 'untrained': (params,
      arch)}}``; ``'untrained'`` (the step-0 init of the same run) may be
      missing.
    measure_kw: ``layers``, ``k``, ``max_maps``, ... of
      :func:`measure_activity`.
  Returns:
    ``{'models': {name: {str(layer): {'trained': ..., 'untrained': ...}}},
    'clips', 'k', 'max_maps', 'figure', 'caption'}``.
  """
  from sonify_jax.analysis.figures import activity as activity_figure  # pylint: disable=g-import-not-at-top
  k = measure_kw.setdefault("k", 3)
  max_maps = measure_kw.setdefault("max_maps", 32)
  result: Dict[str, Any] = {"study": "activity", "metric": "live_fraction",
                            "k": k, "max_maps": max_maps,
                            "dataset": getattr(source, "name", None),
                            "models": {}}
  for name, variants in models.items():
    measured = {}
    for variant, (params, arch) in variants.items():
      common.log(f"activity: {name} ({variant})")
      measured[variant] = measure_activity(params, arch, source,
                                           **measure_kw)
    result["clips"] = measured["trained"].pop("clips")
    for m in measured.values():
      m.pop("clips", None)
    result["models"][name] = {
        layer: {v: measured[v][layer] for v in measured}
        for layer in measured["trained"]}
  result["random_map"] = ("not applicable: activity is measured over every "
                          "map; band features use a random sample of live "
                          "maps")
  if shares.Share.of_process().chief:   # every process holds the result
    os.makedirs(out_dir, exist_ok=True)
    result["figure"] = "activity.png"
    result["caption"] = activity_figure.draw(
        os.path.join(out_dir, "activity.png"), result)
    atomic_io.write_json(os.path.join(out_dir, "activity.json"), result)
  return result


# ------------------------------------------------ python -m analysis.run


DEFAULT_MAX_MAPS = 32       # live maps per layer with band features


def run_on_runs(runs: Sequence[Tuple[str, Any]], source, out_dir: str,
                layers: Optional[Sequence[int]] = None, k: int = 5,
                max_maps: Optional[int] = None, batch_size: int = 16,
                clip_samples: Optional[int] = None,
                max_clips: Optional[int] = None, say=print
                ) -> Dict[str, Any]:
  """:func:`run_activity` on ``[(name, controls.RunParams or (params,
  arch[, untrained]))]``; prints (``say``) its headline and where it wrote
  what, with a note for a run without its untrained control."""
  models = controls.models_of(runs)
  for name, variants in models.items():
    if controls.UNTRAINED not in variants:
      say(f"note: {name} has no untrained control")
  result = run_activity(
      models, source, out_dir, layers=layers, k=k,
      max_maps=DEFAULT_MAX_MAPS if max_maps is None else max_maps,
      batch_size=batch_size, clip_samples=clip_samples, max_clips=max_clips)
  say(headline(result))
  say(f"activity: {out_dir}/activity.json, {out_dir}/activity.png")
  return result


def short_headline(result: Dict[str, Any]) -> str:
  """One sentence (the gallery's): each model's live-map share at its
  deepest layer studied, against its untrained init."""
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


def _run_study(context) -> None:
  run_on_runs(context.runs, context.source, context.workdir, context.layers,
              k=context.options.k, max_maps=context.options.max_maps,
              say=context.say, **context.common_kw())
  context.record(os.path.join(context.workdir, "activity.json"),
                 context.chosen)


STUDY = studies.Study("activity", studies.DATA_FLAGS | {"k", "max_maps"},
                      _run_study)
