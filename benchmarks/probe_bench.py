r"""Linear probe of the demo SimCLR encoder against its own untrained init.

  PYTHONPATH=$PWD python benchmarks/probe_bench.py [--seeds=3] [--steps=800]
      [--config_arg=...] [--dataset=embedded] [--workdir=DIR]

For each seed: trains ``configs/demo_simclr.py`` (or resumes/loads it from
``--workdir/seed<k>``, so seeds trained in parallel by several calls with
``--first_seed`` can be summarised by one more), then fits a logistic-regression probe
(``sonify_jax.train.probe``) on the frozen block-11 whole-clip means of the
train split (C chosen on the validation split, then refitted on both) and
scores it once on the test split, for the trained encoder and
for the same run's step-0 checkpoint (its untrained init: same seed, same
architecture). Prints one row per seed, the majority-class baseline, and over
the seeds the mean and a 95 % t-interval of trained, init and their
difference (issue 9's target: trained - init >= 10 points).

``--dataset`` takes any single-label catalog name, e.g. a prepared folder of
real recordings; ``--data_dir`` goes with it.
"""
import importlib.util
import os
import sys
import tempfile
import time

from absl import flags
from absl import logging
import numpy as np
from scipy import stats

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from sonify_jax.data import catalog  # pylint: disable=g-import-not-at-top,wrong-import-position
from sonify_jax import config_check, flag_check  # pylint: disable=g-import-not-at-top,wrong-import-position
from sonify_jax.domains import Int, Path, Text  # pylint: disable=g-import-not-at-top,wrong-import-position
from sonify_jax.train import probe, trainer  # pylint: disable=g-import-not-at-top,wrong-import-position

_SEEDS = flags.DEFINE_integer("seeds", 3, "How many training seeds.")
_FIRST_SEED = flags.DEFINE_integer("first_seed", 0, "Seeds are first_seed, "
                                   "first_seed + 1, ...")
_STEPS = flags.DEFINE_integer("steps", 800, "SimCLR steps (the demo story "
                              "trains 800).")
_CONFIG_ARG = flags.DEFINE_string("config_arg", "", "demo_simclr.py arg, "
                                  "e.g. 'tau=0.5'.")
_DATASET = flags.DEFINE_string("dataset", "embedded", "Catalog dataset.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Its data_dir, if built.")
_TRAIN_SPLIT = flags.DEFINE_string("train_split", "train", "Probe fit split.")
_VAL_SPLIT = flags.DEFINE_string("val_split", "validation", "Split that "
                                 "chooses the probe's C ('' = a holdout of "
                                 "train).")
_TEST_SPLIT = flags.DEFINE_string("test_split", "test", "Probe test split.")
_WORKDIR = flags.DEFINE_string("workdir", "", "Keep/reuse the runs here "
                               "(default: a temporary directory).")

FLAG_DOMAINS = {
    "seeds": Int(1), "first_seed": Int(0), "steps": Int(1),
    "config_arg": Text(r"[^,]*", "a demo_simclr.py arg such as 'tau=0.5'"),
    "dataset": config_check.Dataset(), "data_dir": Path(),
    "train_split": config_check.Split(empty_ok=False),
    "val_split": config_check.Split(empty_ok=True),
    "test_split": config_check.Split(empty_ok=False), "workdir": Path()}
flag_check.register(FLAG_DOMAINS)


def demo_config(arg):
  spec = importlib.util.spec_from_file_location(
      "demo_simclr", os.path.join(_ROOT, "configs", "demo_simclr.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def interval(values):
  """(mean, half-width of the 95 % t-interval; nan for one value)."""
  values = np.asarray(values, np.float64)
  if len(values) < 2:
    return float(values.mean()), float("nan")
  half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(
      len(values))
  return float(values.mean()), float(half)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  data_dir = _DATA_DIR.value or None
  train = catalog.get_source(_DATASET.value, _TRAIN_SPLIT.value, data_dir)
  test = catalog.get_source(_DATASET.value, _TEST_SPLIT.value, data_dir)
  val = (catalog.get_source(_DATASET.value, _VAL_SPLIT.value, data_dir)
         if _VAL_SPLIT.value else None)
  root = _WORKDIR.value or tempfile.mkdtemp(prefix="probe_bench_")
  arg = _CONFIG_ARG.value
  if _STEPS.value:
    arg = ",".join(a for a in (arg, f"steps={_STEPS.value}") if a)
  print(f"probe of demo_simclr.py:{arg} on {_DATASET.value} "
        f"({len(train)} {_TRAIN_SPLIT.value} -> {len(test)} "
        f"{_TEST_SPLIT.value} clips, {train.num_classes} classes)")
  rows = []
  for seed in range(_FIRST_SEED.value, _FIRST_SEED.value + _SEEDS.value):
    config = demo_config(arg or None)
    config.seed = seed
    config.dataset = _DATASET.value
    config.data_dir = _DATA_DIR.value
    config.train_split = _TRAIN_SPLIT.value
    config.keep_steps = (0,)
    config.checkpoint_every_steps = config.total_steps
    config.progress = False
    if "listen_clips" in config:
      config.listen_clips = 0   # no TensorBoard sonifications here
    run_dir = os.path.join(root, f"seed{seed}")
    start = time.time()
    trainer.train_and_evaluate(config, run_dir, train_source=train)
    seconds = time.time() - start
    result = probe.probe_run(run_dir, train, test, val_source=val)
    rows.append((result["trained"].accuracy, result["init"].accuracy,
                 result["trained"].majority))
    print(f"seed {seed}: trained {rows[-1][0]:.3f} (C={result['trained'].c:g})"
          f"  init {rows[-1][1]:.3f} (C={result['init'].c:g})  majority "
          f"{rows[-1][2]:.3f}  [{config.total_steps} steps, {seconds:.0f} s "
          "training]", flush=True)
  trained, init, majority = (np.array(c) for c in zip(*rows))
  for name, values in (("trained", trained), ("untrained init", init),
                       ("trained - init", trained - init)):
    mean, half = interval(values)
    print(f"{name:>15}: {mean:.3f} +- {half:.3f} (95 % t-interval, "
          f"n={len(values)})")
  print(f"{'majority class':>15}: {majority.mean():.3f}")
  print(f"runs under {root}")


if __name__ == "__main__":
  from sonify_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)  # --help exits 0, quiet library logs, 'error:' lines
