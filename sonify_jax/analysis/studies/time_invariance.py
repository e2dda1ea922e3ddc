"""Time-invariance of sonification (thesis Fig. 5.1).

The thesis states that max-pool/unpool keeps time-invariance: shifting the
input by ``k`` samples shifts the sonification by ``k``. This study checks
it per layer. For a clip ``x`` (``length + max_shift`` samples) and a shift
``k`` it sonifies ``a = x[:length]`` and ``b = x[k:k + length]`` (the same
sound, ``k`` samples earlier in ``b``) with the same map (the most active map
of ``a``), re-aligns ``b``'s sonification onto ``a``'s (``s_b[t]`` against
``s_a[t + k]``) and reports the relative error
``||s_b - s_a(shifted back)|| / ||s_a||`` on the interior of the overlap.

Where it is exact and where it cannot be. Convolutions are shift-equivariant;
a max-pool of stride 2 is only equivariant to even shifts. Block ``L`` sits
behind ``p = min(L, 8)`` pools, so its output is equivariant to shifts that
are multiples of ``2**p`` (:meth:`Network.total_stride`): with such a
``k`` the two forward passes see the same values in the same pool windows,
record the same switches, and the sonifications agree to float32 rounding
-- except within a margin of the clip edges, where one of the two clips has
frames the other lacks (margin = the layer's receptive field + its stride,
excluded from the error). With any other ``k`` the pool windows see a
different phase of the signal, other samples win, the switches change and
the sonification is a different signal, not a shifted one: the error
measures by how much.

Sonifications are compared unscaled (``scale=False``): the thesis' scaling
(unit peak times ``max|x|``) divides by the peak of the whole clip, which
may lie in the part only one of the two clips holds.

Next to the waveform error, the same relative error of STFT magnitudes
(:func:`aligned_spectral_error`) says how different the sonifications
*sound* where the waveforms differ.

The alignment is checked independently per clip: the lag that maximises the
cross-correlation of the two sonifications (``scipy.signal.correlate``) is
reported next to ``k``.
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
from sonify_jax.models.network import Network

Params = Any
FLOAT32_EPS = float(np.finfo(np.float32).eps)


# ----------------------------------------------------------------------------
# Pure measurements.

def edge_margin(arch: Network, layer: int) -> int:
  """Samples at each end of the overlap that edge effects may touch."""
  return arch.min_input_length(layer) + arch.total_stride(layer)


def aligned_error(s_a: np.ndarray, s_b: np.ndarray, k: int, margin: int
                  ) -> np.ndarray:
  """Relative error of ``s_b[t]`` against ``s_a[t + k]`` away from the edges.

  Args:
    s_a, s_b: ``[..., T]`` sonifications of ``x[:T]`` and ``x[k:k + T]``.
    k: the shift (>= 0).
    margin: samples excluded at both ends of the overlap ``t in [0, T - k)``.
  Returns:
    ``[...]`` relative L2 errors; NaN where ``s_a`` is zero on the interior
    (nothing to compare) or the interior is empty.
  """
  s_a = np.asarray(s_a, np.float64)
  s_b = np.asarray(s_b, np.float64)
  length = s_a.shape[-1]
  lo, hi = margin, length - k - margin
  if hi <= lo:
    return np.full(s_a.shape[:-1], np.nan)
  ref = s_a[..., lo + k:hi + k]
  diff = s_b[..., lo:hi] - ref
  norm = np.sqrt((ref ** 2).sum(-1))
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(norm > 0, np.sqrt((diff ** 2).sum(-1)) / norm, np.nan)


def aligned_spectral_error(s_a: np.ndarray, s_b: np.ndarray, k: int,
                           margin: int, n_fft: int = 256) -> np.ndarray:
  """As :func:`aligned_error` on STFT magnitudes (Hann, ``n_fft``, hop
  ``n_fft // 4``) of the aligned interiors: blind to the phase of the fine
  structure, so it says whether the shifted sonification still *sounds*
  like the shifted original where the waveforms differ."""
  s_a = np.asarray(s_a, np.float64)
  s_b = np.asarray(s_b, np.float64)
  lo, hi = margin, s_a.shape[-1] - k - margin
  if hi - lo < n_fft:
    return np.full(s_a.shape[:-1], np.nan)
  mag = lambda x: np.abs(scipy.signal.stft(
      x, nperseg=n_fft, noverlap=n_fft - n_fft // 4, axis=-1)[2])
  ref = mag(s_a[..., lo + k:hi + k])
  diff = mag(s_b[..., lo:hi]) - ref
  norm = np.sqrt((ref ** 2).sum((-2, -1)))
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(norm > 0, np.sqrt((diff ** 2).sum((-2, -1))) / norm,
                    np.nan)


def best_lag(s_a: np.ndarray, s_b: np.ndarray, max_lag: int) -> int:
  """The ``k`` in ``[0, max_lag]`` that best aligns ``s_b[t]`` with
  ``s_a[t + k]`` (maximum cross-correlation)."""
  corr = scipy.signal.correlate(np.asarray(s_a, np.float64),
                                np.asarray(s_b, np.float64), mode="full")
  lags = scipy.signal.correlation_lags(len(s_a), len(s_b), mode="full")
  keep = (lags >= 0) & (lags <= max_lag)
  return int(lags[keep][np.argmax(corr[keep])])


def pick_shifts(stride: int, max_shift: int, rng: np.random.Generator
                ) -> Tuple[int, int]:
  """A random multiple of ``stride`` and a random non-multiple, both in
  ``[1, max_shift]``."""
  if max_shift < stride:
    raise UserError(f"max_shift {max_shift} is below the stride {stride}")
  multiple = stride * int(rng.integers(1, max_shift // stride + 1))
  while True:
    other = int(rng.integers(1, max_shift + 1))
    if other % stride:
      return multiple, other


def _stats(values: np.ndarray) -> Dict[str, Any]:
  values = values[np.isfinite(values)]
  if not values.size:
    return {"mean": None, "median": None, "max": None, "clips": 0}
  return {"mean": float(values.mean()), "median": float(np.median(values)),
          "max": float(values.max()), "clips": int(values.size)}


def measure_layer(params: Params, arch: Network, clips: np.ndarray,
                  layer: int, length: int, shifts: Tuple[int, int],
                  batch_size: int = 16,
                  share: shares.Share = shares.Share()
                  ) -> Tuple[Dict[str, Any], Dict]:
  """Aligned errors of one layer for a multiple and a non-multiple shift.

  Args:
    clips: ``[N, length + max(shifts)]``.
    shifts: ``(k_multiple, k_non_multiple)``.
    share: this process's share of the clips: it runs the forwards and
      sonifications of its own clips and gets every other process's.
  Returns:
    ``(summary, overlay)``: JSON-able per-layer numbers, and the first clip's
    aligned sonifications for the figure.
  """
  a = clips[:, :length]
  maps = shares.split_rows(lambda own: np.asarray(common.layer_activations(
      params, a[own], (layer,), arch)[0]).argmax(1), np.arange(len(a)), share)
  s_a = shares.sonify_pairs(params, a, maps, layer, arch, batch_size, share,
                            scale=False)
  margin = edge_margin(arch, layer)
  stride = arch.total_stride(layer)
  out: Dict[str, Any] = {"stride": stride, "margin": margin,
                         "maps": maps.tolist()}
  overlay = {"s_a": s_a[0], "margin": margin}
  for kind, k in zip(("multiple", "non_multiple"), shifts):
    b = clips[:, k:k + length]
    s_b = shares.sonify_pairs(params, b, maps, layer, arch, batch_size,
                              share, scale=False)
    err = aligned_error(s_a, s_b, k, margin)
    spectral = aligned_spectral_error(s_a, s_b, k, margin)
    lags = [best_lag(sa, sb, max(shifts)) if np.any(sa) and np.any(sb)
            else None for sa, sb in zip(s_a, s_b)]
    found = [l for l in lags if l is not None]
    out[kind] = {"k": int(k), "k_mod_stride": int(k % stride),
                 "relative_error": _stats(err),
                 "spectrogram_relative_error": _stats(spectral),
                 "per_clip": err.tolist(),
                 "lag_found_equals_k": (float(np.mean(np.equal(found, k)))
                                        if found else None)}
    overlay[kind] = {"k": int(k), "s_b": s_b[0], "error": float(err[0])}
  return out, overlay


def measure_time_invariance(params: Params, arch: Network,
                            clips: np.ndarray, length: int,
                            layers: Sequence[int], max_shift: int,
                            seed: int = 0, batch_size: int = 16,
                            share: shares.Share = shares.Share()
                            ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
  """``measure_layer`` for every layer; shifts drawn per layer from ``seed``
  (the same shifts for every model measured with the same seed)."""
  summary, overlays = {}, {}
  for layer in layers:
    rng = np.random.default_rng([seed, layer])
    shifts = pick_shifts(arch.total_stride(layer), max_shift, rng)
    summary[str(layer)], overlays[str(layer)] = measure_layer(
        params, arch, clips, layer, length, shifts, batch_size, share)
  return summary, overlays


def statement(result: Dict[str, Any]) -> str:
  """Where exact invariance holds and where it cannot, with the numbers."""
  lines = []
  for name, per_layer in result["models"].items():
    for variant in ("trained", "untrained"):
      entries = [e[variant] for e in per_layer.values() if variant in e]
      if not entries:
        continue
      mult = [e["multiple"]["relative_error"]["max"] for e in entries]
      non = [e["non_multiple"]["relative_error"]["median"] for e in entries]
      spec = [e["non_multiple"]["spectrogram_relative_error"]["median"]
              for e in entries]
      mult = [m for m in mult if m is not None]
      non = [n for n in non if n is not None]
      spec = [n for n in spec if n is not None] or [float("nan")]
      if not mult or not non:
        lines.append(f"{name} ({variant}): no clip had a non-zero "
                     "sonification to compare")
        continue
      lines.append(
          f"{name} ({variant}): k a multiple of the layer's pooling stride "
          f"2^p: max relative error {max(mult):.1e} over layers "
          f"{', '.join(sorted(per_layer, key=int))} (exact up to float32 "
          "rounding, eps "
          f"{FLOAT32_EPS:.1e}, away from {result['edges']}); k not a "
          f"multiple (pool phase changes the switches): median relative "
          f"error {min(non):.2f} to {max(non):.2f} across layers "
          f"(spectrogram magnitudes: {min(spec):.2f} to {max(spec):.2f}).")
  return "\n".join(lines)


# ----------------------------------------------------------------------------
# Study shell.

def load_clips(source, count: Optional[int], samples: int) -> np.ndarray:
  """The first ``count`` clips of ``source``, cropped/zero-padded."""
  n = len(source) if count is None else min(len(source), count)
  if n == 0:
    raise UserError("the source holds no clips")
  return np.stack([common.load_clip(source, i, samples, samples)
                   for i in range(n)])


def run_time_invariance(
    models: Dict[str, Dict[str, Tuple[Params, Network]]], source,
    out_dir: str, layers: Optional[Sequence[int]] = None,
    length: Optional[int] = None, max_shift: Optional[int] = None,
    max_clips: Optional[int] = 8, seed: int = 0, batch_size: int = 16,
    share: Optional[shares.Share] = None) -> Dict[str, Any]:
  """Writes ``time_invariance.json`` and ``time_invariance.png``.

  Args:
    models: ``{name: {'trained': (params, arch), 'untrained': ...}}``.
    length: samples per compared clip (default 1 s at the network's rate);
      must exceed twice the deepest layer's edge margin plus ``max_shift``.
    max_shift: the largest shift drawn (default a quarter of ``length``).
    share: this process's share of the clips (default the running
      process's): every process writes the JSON one process would.
  Returns:
    ``{'models': {name: {str(layer): {'trained': ..., 'untrained': ...}}},
    'statement', 'caption', ...}``.
  """
  from sonify_jax.analysis.figures import time_invariance as fig_lib  # pylint: disable=g-import-not-at-top
  arch0 = next(iter(next(iter(models.values())).values()))[1]
  layers = common.check_layers(layers, arch0)
  length = length or arch0.sample_rate
  max_shift = length // 4 if max_shift is None else max_shift
  deepest = max(layers)
  if length - max_shift <= 2 * edge_margin(arch0, deepest):
    raise UserError(
        f"length {length} - max_shift {max_shift} leaves no interior at "
        f"layer {deepest} (edge margin {edge_margin(arch0, deepest)} samples "
        "each side)")
  clips = load_clips(source, max_clips, length + max_shift)
  share = share or shares.Share.of_process()
  result: Dict[str, Any] = {
      "study": "time_invariance", "metric": "median",
      "dataset": getattr(source, "name", None),
      "clips": int(clips.shape[0]), "length": length, "max_shift": max_shift,
      "seed": seed, "scale": False, "sample_rate": arch0.sample_rate,
      "edges": "the clip edges (receptive field + stride of each layer)",
      "models": {}}
  overlays = {}
  for name, variants in models.items():
    per_variant = {}
    for variant, (params, arch) in variants.items():
      common.log(f"time invariance: {name} ({variant})")
      per_variant[variant], overlays[(name, variant)] = \
          measure_time_invariance(params, arch, clips, length, layers,
                                  max_shift, seed, batch_size, share)
    result["models"][name] = {
        str(l): {v: per_variant[v][str(l)] for v in per_variant}
        for l in layers}
  result["statement"] = statement(result)
  if share.chief:   # every process holds the result; one writes it
    os.makedirs(out_dir, exist_ok=True)
    result["figure"] = "time_invariance.png"
    result["caption"] = fig_lib.draw(
        os.path.join(out_dir, "time_invariance.png"), result, overlays)
    atomic_io.write_json(os.path.join(out_dir, "time_invariance.json"), result)
  return result


# ------------------------------------------------ python -m analysis.run


DEFAULT_CLIPS = 8        # clips compared
DEFAULT_SECONDS = 1.0    # compared length


def run_on_runs(runs: Sequence[Tuple[str, Any]], source, out_dir: str,
                layers: Optional[Sequence[int]] = None,
                batch_size: int = 16, clip_samples: Optional[int] = None,
                max_clips: Optional[int] = None, say=print
                ) -> Dict[str, Any]:
  """:func:`run_time_invariance` on ``[(name, controls.RunParams or
  (params, arch[, untrained]))]``: clips of ``clip_samples`` (default
  ``DEFAULT_SECONDS``), shifts up to a quarter of that, ``max_clips``
  (default ``DEFAULT_CLIPS``) clips; prints (``say``) its statement and
  where it wrote what."""
  models = controls.models_of(runs)
  for name, variants in models.items():
    if controls.UNTRAINED not in variants:
      say(f"note: {name} has no untrained control")
  rate = next(iter(models.values()))[controls.TRAINED][1].sample_rate
  length = clip_samples or int(DEFAULT_SECONDS * rate)
  result = run_time_invariance(
      models, source, out_dir, layers=layers, length=length,
      max_shift=length // 4,
      max_clips=DEFAULT_CLIPS if max_clips is None else max_clips,
      batch_size=batch_size)
  say(result["statement"])
  say(f"time invariance: {out_dir}/time_invariance.json, "
      f"{out_dir}/time_invariance.png")
  return result


def short_headline(result: Dict[str, Any]) -> str:
  """One sentence (the gallery's): the largest error of stride-multiple
  shifts against the smallest median of the others, trained and untrained
  alike."""
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


def _run_study(context) -> None:
  run_on_runs(context.runs, context.source, context.workdir, context.layers,
              say=context.say, **context.common_kw())
  context.record(os.path.join(context.workdir, "time_invariance.json"),
                 context.chosen)


STUDY = studies.Study("time_invariance", studies.DATA_FLAGS, _run_study)
