"""The activity study's figure: live maps and band features per layer.

Trained models are solid lines, their untrained init dashed in the same
colour (the control); the same measure of the inputs is dotted.
"""
from typing import Any, Dict, List

import numpy as np

from sonify_jax import plotting

_PANELS = (
    ("live_fraction", "fraction of maps live on >= 1 clip"),
    ("mean_activation_rate", "mean activation rate (clips live / clips)"),
    ("band.mean_sonification_centroid", "spectral centroid (Hz)"),
    ("band.spread_sonification_centroid",
     "centroid spread over maps (std, Hz)"),
    ("band.mean_bandwidth_ratio", "bandwidth: sonification / input"),
)
# Panels that also draw the same measure of the inputs (dotted).
_INPUT_KEYS = {"band.mean_sonification_centroid": "band.mean_input_centroid",
               "band.spread_sonification_centroid":
                   "band.spread_input_centroid"}


def _get(entry: Dict[str, Any], key: str) -> float:
  for part in key.split("."):
    entry = entry.get(part) if entry else None
  return np.nan if entry is None else float(entry)


def _series(per_layer: Dict[str, Any], variant: str, key: str) -> List[float]:
  return [_get(per_layer[l].get(variant), key)
          for l in sorted(per_layer, key=int)]


def caption(result: Dict[str, Any]) -> str:
  """Plain-text caption with the headline numbers and their controls."""
  parts = [f"Feature-map activity on {result.get('clips')} clips "
           f"({result.get('dataset')}). A map is live on a clip when its "
           "block output is non-zero anywhere. Solid: trained; dashed: the "
           "untrained init of the same run (control). Centroids: "
           f"sonifications of each studied map's top-{result['k']} clips; "
           "dotted: the same clips' inputs. A band-selective layer has "
           "sonification centroids that spread over maps (each map its own "
           "band) whatever the inputs."]
  for name, per_layer in result["models"].items():
    layers = sorted(per_layer, key=int)  # JSON keys sort as strings
    first, last = layers[0], layers[-1]
    t = lambda l, k, v="trained": _get(per_layer[l].get(v), k)  # pylint: disable=cell-var-from-loop
    parts.append(
        f"{name}: live fraction L{first} {t(first, 'live_fraction'):.2f} "
        f"(untrained {t(first, 'live_fraction', 'untrained'):.2f}), "
        f"L{last} {t(last, 'live_fraction'):.2f} "
        f"(untrained {t(last, 'live_fraction', 'untrained'):.2f}); "
        f"L{first} centroid spread over maps "
        f"{t(first, 'band.spread_sonification_centroid'):.0f} Hz "
        f"(untrained "
        f"{t(first, 'band.spread_sonification_centroid', 'untrained'):.0f} "
        f"Hz; inputs "
        f"{t(first, 'band.spread_input_centroid'):.0f} Hz).")
    if "kernel_band" in per_layer[first]["trained"]:
      parts.append(
          f"{name}: block-1 filters' mean bandwidth "
          f"{t(first, 'kernel_band.mean_bandwidth'):.0f} Hz (untrained "
          f"{t(first, 'kernel_band.mean_bandwidth', 'untrained'):.0f} Hz; a "
          f"flat response {t(first, 'kernel_band.flat_bandwidth'):.0f} Hz).")
  return " ".join(parts).replace("nan", "n/a")


def draw(path: str, result: Dict[str, Any]) -> str:
  """Writes the 4-panel figure to ``path``; returns its caption."""
  fig, axes = plotting.new_figure(1, len(_PANELS), (3.6 * len(_PANELS), 3.6))
  colors = ["C0", "C1", "C2", "C3", "C4", "C5"]
  for (key, label), ax in zip(_PANELS, axes[0]):
    for color, (name, per_layer) in zip(colors, result["models"].items()):
      layers = sorted(int(l) for l in per_layer)
      ax.plot(layers, _series(per_layer, "trained", key), "o-", color=color,
              label=f"{name} trained")
      if any("untrained" in e for e in per_layer.values()):
        ax.plot(layers, _series(per_layer, "untrained", key), "s--",
                color=color, alpha=0.7, label=f"{name} untrained (control)")
      if key in _INPUT_KEYS:
        ax.plot(layers, _series(per_layer, "trained", _INPUT_KEYS[key]), ":",
                color=color, alpha=0.6, label=f"{name} inputs")
    ax.set_xlabel("layer (block)")
    ax.set_title(label, fontsize=9)
    ax.set_xticks(layers)
    ax.grid(alpha=0.3)
  axes[0, 0].set_ylim(-0.03, 1.03)
  axes[0, 1].set_ylim(-0.03, 1.03)
  axes[0, -1].axhline(1.0, color="gray", linewidth=0.8)
  axes[0, 0].legend(fontsize=7)
  axes[0, 2].legend(fontsize=7)
  text = caption(result)
  fig.tight_layout()
  plotting.save_figure(fig, path)
  return text
