r"""Do dissection and feature visualization agree? Measured per layer, for a
run's trained weights and its untrained init (step 0), over several seeds.

  python scripts/method_agreement.py --checkpoint=/tmp/zoo/crepe-tiny \
      --layers=2,4 --out=/tmp/agree_tiny.json [--seeds=3] [--steps=128] \
      [--seconds=0.064]

Per layer and seed, ``explain.explain_layer`` (what the atlas's --explain
writes) visualises every map of the trained and the untrained network from
the same key and dissects both on a probe draw of that seed. Of the maps
dissection labels with a frequency (a tone or complex: its f0; a noise
band: its centre), the share whose visualization's pyin f0 is within a
semitone of the f0 or inside the band. Prints the mean share over seeds
with its 95 % t-interval, trained and untrained; writes every count as
JSON.
"""
import tempfile

from absl import app
from absl import flags
import numpy as np

from sonify_jax import atomic_io, cli, flag_check, run_loading
from sonify_jax.analysis.core import common, explain
from sonify_jax.domains import Float, Int, ListOf, Text

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A run folder.")
_OUT = flags.DEFINE_string("out", None, "JSON to write.")
_LAYERS = flags.DEFINE_list("layers", None, "Blocks to measure.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds (visualization keys and "
                              "probe draws).")
_STEPS = flags.DEFINE_integer("steps", explain.STEPS, "Optimisation steps.")
_SECONDS = flags.DEFINE_float("seconds", explain.SECONDS,
                              "Length of each visualization.")

FLAG_DOMAINS = {
    "checkpoint": Text(r".+", "a run folder"),
    "out": Text(r".+", "a JSON file"),
    "layers": ListOf(Int(1)),
    "seeds": Int(1, 100, meaning="seeds"),
    "steps": Int(1, 100000, meaning="steps"),
    "seconds": Float(0.0, 10.0, low_open=True, meaning="seconds"),
}
flag_check.register(FLAG_DOMAINS)


def main(argv):
  del argv
  for flag in (_CHECKPOINT, _OUT, _LAYERS):
    if flag.value is None:
      raise app.UsageError(f"--{flag.name} is required")
  trained, net, _ = run_loading.load(_CHECKPOINT.value, None)
  untrained, _, _ = run_loading.load(_CHECKPOINT.value, 0)
  result = {"checkpoint": _CHECKPOINT.value, "network": net.name,
            "steps": _STEPS.value, "seconds": _SECONDS.value,
            "agree_cents": explain.AGREE_CENTS, "layers": {}}
  for layer in (int(l) for l in _LAYERS.value):
    net.check_block(layer)
    per_seed = {"trained": [], "untrained": []}
    for seed in range(_SEEDS.value):
      with tempfile.TemporaryDirectory() as folder:
        out = explain.explain_layer(trained, untrained, net, layer, folder,
                                    steps=_STEPS.value,
                                    seconds=_SECONDS.value, seed=seed)
      for name in per_seed:
        per_seed[name].append(out["agreement"][name])
      print(f"layer {layer} seed {seed}: " + ", ".join(
          f"{name} {a['agree']}/{a['labelled']}"
          for name, a in out["agreement"].items()), flush=True)
    entry = {}
    for name, runs in per_seed.items():
      shares = [a["share"] for a in runs if a["share"] is not None]
      mean, half = common.t_interval(shares) if shares else (np.nan, np.nan)
      entry[name] = {"mean": float(mean), "ci95": float(half),
                     "per_seed": runs}
      print(f"layer {layer} {name}: {mean:.2f} ±{half:.2f} of labelled maps "
            "agree", flush=True)
    result["layers"][str(layer)] = entry
  atomic_io.write_json(_OUT.value, result)


if __name__ == "__main__":
  cli.run(main)
