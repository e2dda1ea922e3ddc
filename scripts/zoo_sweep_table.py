r"""Prints docs/zoo.md's capacity-sweep tables from the studies' JSON.

One ``--study=pitch`` folder per network (``pitch.json``); for each
network and layer, the share of the input's voiced frames whose f0 the
sonification keeps (pyin, 50 cents), mean ± 95 % half-width over clips, in
every condition (trained top map, random live map, top block random,
untrained), and the trained sonification's |waveform r| with its input.
One ``--study=residual`` folder per network (``residual.json``, a pitch
network's): per layer, the share of the voiced frames whose f0 the network
still reads within 50 cents once the map's sonification is subtracted, per
condition. One ``--study=sanity`` folder per network (``sanity.json``): per
layer and rule, the |waveform r| of the trained network's sonification with the one
whose every weight up to the layer is random (mean ± 95 % half-width over
(clip, map) pairs), and with another clip's (unrelated audio).

  python scripts/zoo_sweep_table.py /tmp/sweep/pitch_crepe-tiny \
      /tmp/sweep/pitch_fcn-993 ...
"""
import json
import os
import sys

CONDITIONS = ("trained", "random_map", "top_block_random", "untrained")


def _by_layer(per_layer):
  """A JSON ``{layer: ...}`` table's items in layer order (its keys are
  strings: '10' would sort before '2')."""
  return sorted(per_layer.items(), key=lambda kv: int(kv[0]))


def _cell(entry):
  if not entry or entry.get("mean") is None:
    return "n/a"
  return f"{entry['mean']:.2f} ±{entry['ci95']:.2f}"


def _sanity(folders):
  rules = ("deconvnet", "guided", "gradient")
  print("| network | layer | pairs | " + " | ".join(
      f"{r}: all random (unrelated)" for r in rules) + " |")
  print("|---|---|---|" + "---|" * len(rules))
  for folder in folders:
    with open(os.path.join(folder, "sanity.json")) as f:
      study = json.load(f)
    for layer, part in _by_layer(study["layers"]):
      cells = []
      for rule in rules:
        entry = part["rules"].get(rule)
        if entry is None:
          cells.append("n/a")
          continue
        every = entry["cascade"][-1]["waveform_abs_pearson"]
        unrelated = entry["references"]["unrelated_audio"][
            "waveform_abs_pearson"]
        cells.append(f"{_cell(every)} ({unrelated['mean']:.2f})")
      print(f"| {study['arch']} | {layer} | {part['pairs']} | "
            + " | ".join(cells) + " |")


def _residual(folders):
  conditions = ("trained", "untrained", "random_map")
  print("| network | layer | clips | x - s(x), s = top map | untrained "
        "init's top map | random live map |")
  print("|---|---|---|---|---|---|")
  for folder in folders:
    with open(os.path.join(folder, "residual.json")) as f:
      study = json.load(f)
    name = os.path.basename(os.path.normpath(folder)).replace("residual_", "")
    for layer, part in _by_layer(study["per_layer"]):
      cells = [_cell({"mean": part[c]["pitch_kept"],
                      "ci95": part[c]["pitch_kept_ci95"] or 0.0})
               if c in part else "n/a" for c in conditions]
      print(f"| {name} | {layer} | {study['clips']} | " + " | ".join(cells)
            + " |")


def main(folders):
  def holding(name):
    return [f for f in folders if os.path.exists(os.path.join(f, name))]
  for name, table in (("pitch.json", _pitch), ("residual.json", _residual),
                      ("sanity.json", _sanity)):
    if holding(name):
      table(holding(name))


def _pitch(folders):
  print("| network | layer | clips | trained, top map | random live map | "
        "top block random | untrained | trained \\|waveform r\\| |")
  print("|---|---|---|---|---|---|---|---|")
  for folder in folders:
    with open(os.path.join(folder, "pitch.json")) as f:
      study = json.load(f)
    for layer, part in _by_layer(study["layers"]):
      shares = [_cell(part[c]["pyin_share"]) for c in CONDITIONS]
      clips = part["trained"]["pyin_share"]["n"]
      print(f"| {study['arch']} | {layer} | {clips} | " + " | ".join(shares)
            + f" | {_cell(part['trained']['input_waveform_r'])} |")


if __name__ == "__main__":
  if len(sys.argv) < 2:
    print("error: name one or more study folders (pitch.json or "
          "sanity.json in each)", file=sys.stderr)
    sys.exit(2)
  missing = [f for f in sys.argv[1:] if not any(os.path.isfile(
      os.path.join(f, n)) for n in ("pitch.json", "sanity.json",
                                    "residual.json"))]
  if missing:
    print(f"error: no pitch.json, residual.json or sanity.json in "
          f"{missing[0]}", file=sys.stderr)
    sys.exit(2)
  main(sys.argv[1:])
