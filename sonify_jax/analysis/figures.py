"""Multi-panel figures of the analysis studies (PNG, atomic writes).

Spectrogram panels use ``sonify_jax.plotting`` (log-spectrogram, Agg
backend); this module only lays them out.
"""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from sonify_jax import plotting
from sonify_jax.models.architecture import SAMPLE_RATE


def topk_grid(path: str,
              rows: Sequence[Tuple[str, Sequence[Tuple[np.ndarray,
                                                         np.ndarray]]]],
              title: str = "", sample_rate: int = SAMPLE_RATE) -> str:
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
                                f"{label}: input {j + 1}")
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
    curves: ``{name: (values [L], half_widths [L] or None)}``; NaN
      half-widths draw no bar.
    baselines: ``{name: value}`` drawn as dashed horizontal lines.
  """
  fig, axes = plotting.new_figure(1, 1, (6.5, 4))
  ax = axes[0, 0]
  for name, (values, errs) in curves.items():
    values = np.asarray(values, np.float64)
    if errs is not None:
      errs = np.nan_to_num(np.asarray(errs, np.float64), nan=0.0)
    ax.errorbar(list(layers), values, yerr=errs, marker="o", capsize=3,
                label=name)
  for name, value in (baselines or {}).items():
    ax.axhline(value, linestyle="--", linewidth=1, color="gray")
    ax.annotate(name, (layers[0], value), fontsize=7, color="gray",
                xytext=(0, 3), textcoords="offset points")
  ax.set_xlabel("layer (block)")
  ax.set_ylabel(ylabel)
  ax.set_xticks(list(layers))
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  if title:
    ax.set_title(title, fontsize=10)
  return plotting.save_figure(fig, path)


def evolution_grid(path: str, inputs: Sequence[Tuple[str, np.ndarray]],
                   steps: Sequence[int],
                   sonifications: Sequence[Sequence[np.ndarray]],
                   title: str = "", sample_rate: int = SAMPLE_RATE) -> str:
  """Rows: (map, clip) pairs; columns: the input, then the sonification at
  each checkpoint step.

  Args:
    inputs: ``[(row_label, clip), ...]``.
    steps: checkpoint steps (column order).
    sonifications: ``[row][step]`` waveforms.
  """
  cols = 1 + len(steps)
  fig, axes = plotting.new_figure(len(inputs), cols,
                                  (2.2 * cols, 1.8 * len(inputs) + 0.6))
  for i, ((label, clip), row) in enumerate(zip(inputs, sonifications)):
    plotting.draw_spectrogram(axes[i, 0], clip, sample_rate, f"{label}: input")
    for j, (step, sonif) in enumerate(zip(steps, row)):
      plotting.draw_spectrogram(axes[i, j + 1], sonif, sample_rate,
                                f"step {step}")
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return plotting.save_figure(fig, path)
