"""The time-invariance figure (thesis Fig. 5.1 style).

Top rows: for a few layers of the first model, the sonification of ``x``
and the sonification of ``x`` shifted by ``k`` then shifted back, overlaid
(left: ``k`` a multiple of the pooling stride; right: not a multiple); the
excluded edge margins are shaded. Bottom row: relative error per layer,
trained solid, untrained init dashed, the trained model's spectrogram-
magnitude error dotted with triangles, float32 epsilon dotted grey; an
exact 0 is drawn at 1e-9 (log axis).
"""
from typing import Any, Dict, Tuple

import numpy as np

from sonify_jax import plotting

# float32 rounding, drawn as the floor the study's statement compares against
# (the same value as studies.time_invariance.FLOAT32_EPS; computed here, as
# the study imports this module to draw its figure).
FLOAT32_EPS = float(np.finfo(np.float32).eps)

_KINDS = (("multiple", "k a multiple of the stride"),
          ("non_multiple", "k not a multiple"))


def _overlay_layers(layers, count: int = 3):
  if len(layers) <= count:
    return list(layers)
  picks = np.linspace(0, len(layers) - 1, count).round().astype(int)
  return [layers[i] for i in sorted(set(picks))]


def caption(result: Dict[str, Any]) -> str:
  return ("Time invariance of sonification: sonify x and x shifted by k "
          "samples, shift back, compare on the interior (edge margins "
          "excluded, unscaled sonifications of each clip's most active map "
          f"of x; {result['clips']} clips). " +
          result["statement"].replace("\n", " "))


def draw(path: str, result: Dict[str, Any],
         overlays: Dict[Tuple[str, str], Dict[str, Any]]) -> str:
  """Writes the figure; returns its caption."""
  first = next(iter(result["models"]))
  layers = sorted(result["models"][first], key=int)
  shown = _overlay_layers(layers)
  rows = len(shown) + 1
  fig, axes = plotting.new_figure(rows, 2, (11, 2.2 * rows + 0.5))
  trained = overlays[(first, "trained")]
  for row, layer in enumerate(shown):
    o = trained[layer]
    s_a = o["s_a"]
    for col, (kind, label) in enumerate(_KINDS):
      ax = axes[row, col]
      k = o[kind]["k"]
      t = (np.arange(s_a.shape[0] - k) + k) / result["sample_rate"]
      ax.plot(t, s_a[k:], linewidth=0.8, label="sonification of x")
      ax.plot(t, o[kind]["s_b"][:s_a.shape[0] - k], linewidth=0.8,
              alpha=0.7, label=f"of x shifted by {k}, shifted back")
      m = o["margin"]
      rate = result["sample_rate"]
      ax.axvspan(t[0], t[0] + m / rate, color="gray", alpha=0.2)
      ax.axvspan(t[-1] - m / rate, t[-1], color="gray", alpha=0.2)
      err = o[kind]["error"]
      err_text = "no signal" if not np.isfinite(err) else f"{err:.1e}"
      ax.set_title(f"{first}, layer {layer}: {label} (k={k}); relative "
                   f"error {err_text}", fontsize=8)
      ax.tick_params(labelsize=6)
      if row == 0 and col == 0:
        ax.legend(fontsize=7, loc="upper right")
  for col, (kind, label) in enumerate(_KINDS):
    ax = axes[-1, col]
    for i, (name, per_layer) in enumerate(result["models"].items()):
      keys = sorted(per_layer, key=int)  # JSON keys sort as strings
      xs = [int(l) for l in keys]
      for variant, style, measure in (
          ("trained", "o-", "relative_error"),
          ("untrained", "s--", "relative_error"),
          ("trained", "^:", "spectrogram_relative_error")):
        ys = [(e.get(variant) or {}).get(kind, {}).get(measure, {}).get(
            "median") for e in (per_layer[l] for l in keys)]
        if any(y is not None for y in ys):
          ys = [np.nan if y is None else max(y, 1e-9) for y in ys]
          ax.semilogy(xs, ys, style, color=f"C{i}",
                      label=f"{name} {variant}"
                      + (" (control)" if variant == "untrained" else "")
                      + (", spectrogram" if "spectrogram" in measure
                         else ""))
    ax.axhline(FLOAT32_EPS, linestyle=":", color="gray", linewidth=1)
    ax.set_xlabel("layer (block)")
    ax.set_ylabel("median relative error (0 drawn at 1e-9)")
    ax.set_title(label, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  text = caption(result)
  fig.tight_layout()
  plotting.save_figure(fig, path)
  return text
