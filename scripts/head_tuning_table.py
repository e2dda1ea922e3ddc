r"""Which f0 each bin of a pitch head prefers (dissection's reading of the
head: ``dissect.head_tuning``), for converted runs, trained and untrained.

  python scripts/head_tuning_table.py /tmp/zoo/crepe-tiny /tmp/zoo/fcn-993

Harmonic complexes at quarter-semitone f0s over 50-1000 Hz; per run, over
the bins whose own f0 lies in 55-950 Hz: the Spearman correlation of the
preferred f0 with the bin index and the median distance in cents from the
bin's f0, for the converted weights (step 1) and the untrained init (step 0).
"""
import sys

import numpy as np

from sonify_jax import run_loading
from sonify_jax.analysis.studies import dissect
from sonify_jax.models import pitch_track


def main(folders):
  f0s = np.geomspace(50, 1000, 4 * 12 * 4 + 1)
  print("| network | weights | bins | Spearman (preferred f0, bin) | "
        "median cents from f_b |")
  print("|---|---|---|---|---|")
  for folder in folders:
    for name, step in (("trained", None), ("untrained", 0)):
      params, net, _ = run_loading.load(folder, step, with_head=True)
      hz = pitch_track.bin_hz(net)
      got = dissect.bin_agreement(dissect.head_tuning(params, net, f0s), hz,
                                  (hz > 55) & (hz < 950))
      print(f"| {net.name} | {name} | {got['bins']} | {got['spearman']:.4f} "
            f"| {got['median_cents']:.1f} |", flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
