r"""docs/zoo.md's capacity-sweep figures from the studies' JSON.

  python scripts/zoo_figures.py --sweep=/tmp/sweep --out=docs/figures

Reads ``SWEEP/pitch_NAME/pitch.json`` and ``SWEEP/sanity_NAME/sanity.json``
(the folders docs/zoo.md's commands write) for the networks that have them
and draws two PNGs, each with the CREPE capacities (4, 8, 16, 24, 32 filters
per unit of width) on the left and the three FCN-F0 networks on the right,
one colour per layer, error bars the 95 % intervals over clips (pitch) or
(clip, map) pairs (sanity) that the JSON holds:

* ``zoo_pitch.png``: share of the input's voiced frames whose note the
  top map's sonification keeps, trained (solid) vs the untrained init
  (dashed);
* ``zoo_sanity.png``: deconvnet |waveform r| of the trained network's
  sonification with the one whose every weight up to the layer is random,
  with another clip's (dotted) as the floor.
"""
import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

CREPE = (("crepe-tiny", 4), ("crepe-small", 8), ("crepe-medium", 16),
         ("crepe-large", 24), ("crepe-full", 32))
FCN = ("fcn-929", "fcn-993", "fcn-1953")
COLOURS = ("tab:blue", "tab:orange")   # first and last layer studied


def _load(sweep, study, name):
  path = os.path.join(sweep, f"{study}_{name}", f"{study}.json")
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def _layers(study):
  return sorted(study["layers"], key=int)


def pitch_points(study, layer, condition):
  entry = study["layers"][layer][condition]["pyin_share"]
  return entry["mean"], entry["ci95"]


def sanity_points(study, layer, reference=False):
  entry = study["layers"][layer]["rules"]["deconvnet"]
  if reference:
    ref = entry["references"]["unrelated_audio"]["waveform_abs_pearson"]
    return ref["mean"], 0.0
  every = entry["cascade"][-1]["waveform_abs_pearson"]
  return every["mean"], every["ci95"]


def _panel(ax_crepe, ax_fcn, sweep, study_name, series, ylabel):
  """``series``: ``[(label suffix, linestyle, points(study, layer))]``."""
  for col, ax, nets in ((0, ax_crepe, CREPE), (1, ax_fcn,
                                               [(n, i) for i, n in
                                                enumerate(FCN)])):
    studies = [(x, _load(sweep, study_name, n)) for n, x in nets]
    studies = [(x, s) for x, s in studies if s is not None]
    if not studies:
      ax.set_visible(False)
      continue
    # Each network's first and last layer studied, one colour each.
    for which, colour in zip((0, -1), COLOURS):
      for offset, (suffix, style, points) in enumerate(series):
        xs, ys, es, labels = [], [], [], set()
        for x, s in studies:
          layer = _layers(s)[which]
          mean, half = points(s, layer)
          if mean is None:
            continue
          xs.append(x)
          ys.append(mean)
          es.append(half or 0.0)
          labels.add(layer)
        name = ("first" if which == 0 else "last") + " layer studied (" + (
            "/".join(sorted(labels, key=int))) + ")"
        if col == 1:   # separate networks: no line joins them
          xs = [x + 0.08 * (offset - 0.5) + 0.02 * which for x in xs]
        ax.errorbar(xs, ys, yerr=es, color=colour,
                    linestyle=style if col == 0 else "none",
                    marker="os"[offset], mfc=colour if offset == 0 else "w",
                    capsize=3, label=f"{name}, {suffix}")
    if col == 0:
      ax.set_xticks([x for _, x in CREPE])
      ax.set_xlabel("CREPE capacity (filters per unit width: tiny 4 ... "
                    "full 32)")
      ax.set_ylabel(ylabel)
    else:
      ax.set_xticks(range(len(FCN)))
      ax.set_xticklabels(FCN)
      ax.set_xlabel("FCN-F0 (8 kHz)")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sweep", required=True)
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  from sonify_jax import plotting  # pylint: disable=g-import-not-at-top
  fig, axes = plotting.new_figure(1, 2, (12, 4.5))
  _panel(axes[0][0], axes[0][1], args.sweep, "pitch", [
      ("trained top map", "-", lambda s, l: pitch_points(s, l, "trained")),
      ("untrained init", "--",
       lambda s, l: pitch_points(s, l, "untrained"))],
         "voiced frames whose note the sonification keeps\n(pyin, 50 cents; "
         "95 % CI over clips)")
  fig.suptitle("Does the top map's sonification keep the input's note? "
               "Trained vs untrained init, against capacity", fontsize=10)
  print(plotting.save_figure(fig, os.path.join(args.out, "zoo_pitch.png")))
  fig, axes = plotting.new_figure(1, 2, (12, 4.5))
  _panel(axes[0][0], axes[0][1], args.sweep, "sanity", [
      ("every weight random", "-", sanity_points),
      ("another clip (floor)", ":",
       lambda s, l: sanity_points(s, l, reference=True))],
         "deconvnet |waveform r| with the trained\nsonification (95 % CI "
         "over pairs)")
  fig.suptitle("How much of the sonification survives re-initialising "
               "every weight? Against capacity", fontsize=10)
  print(plotting.save_figure(fig, os.path.join(args.out, "zoo_sanity.png")))


if __name__ == "__main__":
  main()
