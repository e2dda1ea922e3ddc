r"""The planted fact of a pitch head, measured: visualize output bins spread
over 50-1000 Hz and read each sound's f0 with pyin (librosa), an estimator
independent of the network, for the trained head and its untrained init
(step 0 of the converted run: the control), over several seeds.

  python scripts/visualize_bins.py --checkpoint=/tmp/zoo/crepe-tiny \
      --out=/tmp/vis_bins_tiny.json [--bins=24] [--seeds=3] [--steps=128] \
      [--seconds=0.064]

Per bin and seed: the share of the sound's frames whose pyin f0 is within
25 cents of the bin's frequency (unvoiced frames count as misses), and the
network's own reading (its pitch decoder, median over frames). Prints the
mean share over bins per seed and its 95 % t-interval over seeds, for the
trained and the untrained network; writes everything as JSON.
"""
import json
import time

from absl import app
from absl import flags
import jax
import numpy as np

from sonify_jax import atomic_io, cli, flag_check, run_loading
from sonify_jax.analysis.core import common
from sonify_jax.domains import Float, Int, Text
from sonify_jax.models import pitch_track
from sonify_jax.visualize import Settings, compare, visualize

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Converted pitch run.")
_OUT = flags.DEFINE_string("out", None, "JSON to write.")
_BINS = flags.DEFINE_integer("bins", 24, "Bins, log-spread over 50-1000 Hz.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds per bin.")
_STEPS = flags.DEFINE_integer("steps", 128, "Optimisation steps.")
_SECONDS = flags.DEFINE_float("seconds", 0.064, "Length of each sound.")
CENTS = 25.0

FLAG_DOMAINS = {
    "checkpoint": Text(r".+", "a converted pitch run"),
    "out": Text(r".+", "a JSON file"),
    "bins": Int(2, 360, meaning="bins"),
    "seeds": Int(1, 100, meaning="seeds"),
    "steps": Int(1, 100000, meaning="steps"),
    "seconds": Float(0.0, 10.0, low_open=True, meaning="seconds"),
}
flag_check.register(FLAG_DOMAINS)


def _pyin_hits(wave, rate, hz):
  return float(np.mean(compare.cents_apart(compare.frame_f0s(wave, rate), hz)
                       < CENTS))


def main(argv):
  del argv
  for flag in (_CHECKPOINT, _OUT):
    if flag.value is None:
      raise app.UsageError(f"--{flag.name} is required")
  result = {"checkpoint": _CHECKPOINT.value, "steps": _STEPS.value,
            "seconds": _SECONDS.value, "cents": CENTS, "networks": {}}
  for name, step in (("trained", None), ("untrained", 0)):
    params, net, _ = run_loading.load(_CHECKPOINT.value, step, with_head=True)
    hz = pitch_track.bin_hz(net)
    targets = np.geomspace(50, 1000, _BINS.value)
    bins = sorted({int(np.argmin(np.abs(np.log(hz / t)))) for t in targets})
    per_seed = []
    rows = []
    for seed in range(_SEEDS.value):
      start = time.time()
      out = visualize(params, net, "head", bins, jax.random.PRNGKey(seed),
                      seconds=_SECONDS.value,
                      settings=Settings(steps=_STEPS.value))
      hits = []
      for b, wave, act in zip(bins, out.waveforms, out.activation):
        _, read, _ = pitch_track.track(params, net, wave, net.sample_rate
                                       // 100)
        hit = _pyin_hits(wave, net.sample_rate, hz[b])
        hits.append(hit)
        rows.append({"seed": seed, "bin": b, "hz": float(hz[b]),
                     "pyin_share": hit, "network_reads_hz":
                     float(np.median(read)), "logit": float(act)})
      per_seed.append(float(np.mean(hits)))
      print(f"{name} seed {seed}: mean share {per_seed[-1]:.2f} over "
            f"{len(bins)} bins ({time.time() - start:.0f} s)", flush=True)
    mean, half = common.t_interval(per_seed)
    result["networks"][name] = {"bins": bins, "per_seed": per_seed,
                                "mean": mean, "ci95": half, "rows": rows}
    print(f"{name}: {mean:.2f} ±{half:.2f} of frames within {CENTS:g} cents "
          "of the bin", flush=True)
  atomic_io.write_json(_OUT.value, result)


if __name__ == "__main__":
  cli.run(main)
