"""Multi-panel figures of the analysis studies (PNG, atomic writes).

Spectrogram panels use ``sonify_jax.plotting`` (log-spectrogram, Agg
backend); this module only lays them out.
"""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from sonify_jax import plotting


def topk_grid(path: str,
              rows: Sequence[Tuple[str, Sequence[Tuple[np.ndarray,
                                                         np.ndarray]]]],
              sample_rate: int, title: str = "") -> str:
  """The thesis' Figure A.1 layout.

  Args:
    path: PNG path.
    rows: one row per feature map: ``(label, [(input, sonification), ...])``
      with the top clips in rank order; each pair takes two columns.
  """
  cols = 2 * max(1, max(len(r[1]) for r in rows))
  fig, axes = plotting.new_figure(len(rows), cols, (2.2 * cols,
                                                    1.8 * len(rows) + 0.6))
  for i, (label, pairs) in enumerate(rows):
    for j in range(cols // 2):
      ax_in, ax_son = axes[i, 2 * j], axes[i, 2 * j + 1]
      if j >= len(pairs):
        ax_in.axis("off")
        ax_son.axis("off")
        continue
      audio, sonif = pairs[j]
      plotting.draw_spectrogram(ax_in, audio, sample_rate,
                                f"{label}: input {j + 1}",
                                zero_label=plotting.SILENT_LABEL)
      plotting.draw_spectrogram(ax_son, sonif, sample_rate,
                                f"{label}: sonification {j + 1}")
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return plotting.save_figure(fig, path)


def layer_curves(path: str, layers: Sequence[int],
                 curves: Dict[str, Tuple[Sequence[float],
                                         Optional[Sequence[float]]]],
                 ylabel: str, title: str = "",
                 baselines: Optional[Dict[str, float]] = None) -> str:
  """Score per layer, one line per model/variant, optional CI error bars.

  Args:
    curves: ``{name: (values [L], half_widths [L] or None[, style])}``;
      NaN half-widths draw no bar; ``style`` is passed to ``errorbar``.
    baselines: ``{name: value}`` drawn as dashed horizontal lines.
  """
  fig, axes = plotting.new_figure(1, 1, (6.5, 4))
  _draw_curves(axes[0, 0], layers, curves, ylabel, title, baselines)
  return plotting.save_figure(fig, path)


def _draw_curves(ax, layers, curves, ylabel, title, baselines):
  for name, (values, errs, *style) in curves.items():
    values = np.asarray(values, np.float64)
    if errs is not None:
      errs = np.nan_to_num(np.asarray(errs, np.float64), nan=0.0)
    style = {"marker": "o", **(style[0] if style else {})}
    ax.errorbar(list(layers), values, yerr=errs, capsize=3, label=name,
                **style)
  for name, value in (baselines or {}).items():
    ax.axhline(value, linestyle="-.", linewidth=1, color="gray")
    ax.annotate(name, (layers[0], value), fontsize=7, color="gray",
                xytext=(0, 3), textcoords="offset points")
  ax.set_xlabel("layer (block)")
  ax.set_ylabel(ylabel)
  ax.set_xticks(list(layers))
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  if title:
    ax.set_title(title, fontsize=9)


# Line styles of the conditions: controls dashed, each with its own marker.
_CONDITION_STYLE = {"trained": dict(linestyle="-", marker="o"),
                    "untrained": dict(linestyle="--", marker="s"),
                    "random_map": dict(linestyle=(0, (2, 2)), marker="^")}


def interval_note(n: int, confidence: float = 0.95) -> str:
  """What the error bars are: an interval only when there is one (n >= 2)."""
  if n >= 2:
    return f"mean and {confidence:.0%} t-interval over n={n} runs"
  return "n=1 run: no interval"


ConditionModels = Dict[str, Tuple[Dict[str, Tuple[
    Sequence[float], Optional[Sequence[float]]]], int]]


def condition_curves(path: str, layers: Sequence[int],
                     models: ConditionModels, ylabel: str, title: str = "",
                     baselines: Optional[Dict[str, float]] = None) -> str:
  """Trained model vs its controls per layer, one colour per model.

  Args:
    models: ``{model: ({condition: (values [L], half_widths [L] or None)},
      n_runs)}``; conditions are ``controls.CONDITIONS``. The trained curve
      is solid, the controls dashed and labelled; error bars only for
      n >= 2, and the title says which.
    baselines: ``{name: value}`` drawn as grey horizontal lines.
  """
  return condition_panels(path, [dict(layers=layers, models=models,
                                      ylabel=ylabel, title=title,
                                      baselines=baselines)])


def condition_panels(path: str, panels: Sequence[Dict]) -> str:
  """Several :func:`condition_curves` panels side by side in one PNG.

  Args:
    panels: dicts with the keyword arguments of ``condition_curves`` (less
      ``path``).
  """
  fig, axes = plotting.new_figure(1, len(panels), (6.5 * len(panels), 4.3))
  for ax, panel in zip(axes[0], panels):
    curves, note = _condition_curve_set(panel["models"])
    title = panel.get("title") or ""
    _draw_curves(ax, panel["layers"], curves, panel["ylabel"],
                 f"{title}\n({note})" if title else note,
                 panel.get("baselines"))
  return plotting.save_figure(fig, path)


def _condition_curve_set(models: ConditionModels):
  from sonify_jax.analysis.core import controls  # pylint: disable=g-import-not-at-top
  curves, ns = {}, set()
  for i, (name, (conditions, n)) in enumerate(models.items()):
    ns.add(int(n))
    for condition, (values, errs) in conditions.items():
      label = f"{name}: {controls.LABELS.get(condition, condition)}"
      curves[f"{label} (n={n})"] = (
          values, errs if n >= 2 else None,
          dict(color=f"C{i}", **_CONDITION_STYLE.get(condition, {})))
  note = "; ".join(interval_note(n) for n in sorted(ns))
  return curves, note


def evolution_grid(path: str, inputs: Sequence[Tuple[str, np.ndarray]],
                   steps: Sequence[int],
                   sonifications: Sequence[Sequence[np.ndarray]],
                   sample_rate: int, title: str = "",
                   marked_step: Optional[int] = None) -> str:
  """Rows: (map, clip) pairs; columns: the input, then the sonification at
  each checkpoint step.

  Args:
    inputs: ``[(row_label, clip), ...]``.
    steps: checkpoint steps (column order).
    sonifications: ``[row][step]`` waveforms.
    marked_step: a step whose column titles say "(selected)".
  """
  cols = 1 + len(steps)
  fig, axes = plotting.new_figure(len(inputs), cols,
                                  (2.2 * cols, 1.8 * len(inputs) + 0.6))
  for i, ((label, clip), row) in enumerate(zip(inputs, sonifications)):
    plotting.draw_spectrogram(axes[i, 0], clip, sample_rate, f"{label}: input",
                              zero_label=plotting.SILENT_LABEL)
    for j, (step, sonif) in enumerate(zip(steps, row)):
      selected = " (selected)" if step == marked_step else ""
      plotting.draw_spectrogram(axes[i, j + 1], sonif, sample_rate,
                                f"step {step}{selected}")
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return plotting.save_figure(fig, path)
