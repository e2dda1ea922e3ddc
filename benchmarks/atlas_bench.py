r"""Atlas budget: how long the full atlas takes, and how it scales.

Prints, for a seeded random init of ``--arch`` (default full CNN12):

1. the whole atlas (``analysis.atlas.run_atlas``: all ``--layers``, top
   ``--k``) over ``--dataset``/``--split`` (default the embedded test
   split): clips/s of the streaming top-k pass, sonifications/s per layer
   (compile, compute and file writing included), total time and peak RSS;
2. how the two phases grow with clip length (``--scale_seconds``, default
   1, 10, 60 s) and number of clips (``--scale_clips``): the top-k pass on
   synthetic clips, and ``deconvnet.sonify_clip_pairs`` on a fixed batch of
   pairs of ``--scale_layers`` (compile excluded), with the atlas time these
   rates imply for ``6016 * k`` pairs (CNN12's maps);
3. pairs/s of ``sonify_clip_pairs`` and clips/s of the top-k pass against
   the number of local devices they are split over (``--device_counts``,
   default 1 and all; :mod:`sonify_jax.over_devices`), and each count's
   time against one device's. On a CPU, ``XLA_FLAGS=
   --xla_force_host_platform_device_count=8`` gives 8 virtual devices that
   share the cores: the ratio is then the cost of splitting, not a speed-up.

Usage::

  python benchmarks/atlas_bench.py                        # full CNN12 atlas
  python benchmarks/atlas_bench.py --arch=cnn12_tiny --scale_seconds=1,10
  python benchmarks/atlas_bench.py --skip_atlas --scale_layers=11
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python \
      benchmarks/atlas_bench.py --arch=cnn12_tiny --skip_atlas \
      --scale_seconds=1 --device_counts=1,8
"""
import os
import resource
import shutil
import tempfile
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax import deconvnet, over_devices
from sonify_jax import config_check
from sonify_jax import flag_check
from sonify_jax.analysis.core import common
from sonify_jax.analysis.studies import atlas
from sonify_jax.analysis.studies import topk
from sonify_jax.data import catalog
from sonify_jax.data.sources import ArraySource
from sonify_jax.errors import UserError
from sonify_jax.domains import (Choice, Either, Float, Int, Lazy, ListOf,
                                OrNone, Text)
from sonify_jax.models import build_encoder
from sonify_jax.models import registry
from sonify_jax.models.registry import get_network

_ARCH = flags.DEFINE_string("arch", "cnn12", "Network name.")
_DATASET = flags.DEFINE_string("dataset", "embedded", "catalog source.")
_SPLIT = flags.DEFINE_string("split", "test", "Split.")
_LAYERS = flags.DEFINE_list("layers", None, "Layers (default all).")
_K = flags.DEFINE_integer("k", 5, "Top clips per map.")
_MAX_CLIPS = flags.DEFINE_integer("max_clips", None, "First clips only.")
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Atlas folder (default a temp dir, removed).")
_SKIP_ATLAS = flags.DEFINE_bool("skip_atlas", False, "Only the scaling part.")
_SCALE_SECONDS = flags.DEFINE_list("scale_seconds", ["1", "10", "60"],
                                   "Clip lengths of the scaling part.")
_SCALE_CLIPS = flags.DEFINE_list("scale_clips", ["8", "32"],
                                 "Clip counts of the top-k scaling part.")
_SCALE_LAYERS = flags.DEFINE_list("scale_layers", ["6", "11"],
                                  "Layers of the sonify scaling part.")
_SCALE_PAIRS = flags.DEFINE_integer("scale_pairs", 16,
                                    "Pairs per timed sonify batch.")
_DEVICE_COUNTS = flags.DEFINE_list(
    "device_counts", None, "Local device counts to split over (default: 1 "
    "and all).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per figure "
                                "(the best is kept).")

FLAG_DOMAINS = {
    "arch": Lazy(lambda: Choice(tuple(registry.NETWORKS))), "dataset": config_check.Dataset(),
    "split": config_check.Split(empty_ok=False),
    "layers": OrNone(Either(ListOf(Choice(("all",)), str), ListOf(Int(1)),
                            "'all' or comma-separated integers >= 1")),
    "k": Int(1),
    "max_clips": OrNone(Int(1)), "workdir": OrNone(Text(r".+", "a folder")),
    "skip_atlas": flag_check.ANY,
    "scale_seconds": ListOf(Float(0.0, low_open=True), float, empty_ok=True),
    "scale_clips": ListOf(Int(1), empty_ok=True),
    "scale_layers": ListOf(Int(1), empty_ok=True), "scale_pairs": Int(1),
    "device_counts": OrNone(ListOf(Int(1), int)), "repeats": Int(1)}
flag_check.register(FLAG_DOMAINS)


def _peak_rss_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def _load() -> str:
  return "load average %.1f %.1f %.1f" % os.getloadavg()


def _full_atlas(params, arch, layers):
  source = catalog.get_source(_DATASET.value, _SPLIT.value)
  out = _WORKDIR.value or tempfile.mkdtemp(prefix="atlas_bench_")
  start = time.perf_counter()
  index = atlas.run_atlas(params, arch, source, out, layers=layers,
                          k=_K.value, max_clips=_MAX_CLIPS.value,
                          model_name="random init")
  total = time.perf_counter() - start
  seconds = sum(c["seconds"] for c in index["clips"].values())
  print(f"\n== atlas of {arch.name} ({len(index['layers'])} layers, k="
        f"{_K.value}) over {_DATASET.value}/{_SPLIT.value}: "
        f"{len(index['clips'])} distinct top clips ({seconds:.0f} s of audio)")
  tp = index["topk_pass"]
  if tp["seconds"]:
    print(f"top-k pass: {tp['clips']} clips in {tp['seconds']:.1f} s = "
          f"{tp['clips'] / tp['seconds']:.1f} clips/s")
  print(f"{'layer':>5} {'maps':>5} {'dead':>5} {'pairs':>6} {'s':>7} "
        f"{'sonif/s':>8}")
  for part in index["layers"]:
    dead = sum(m["dead"] for m in part["maps"])
    rate = part["pairs"] / part["seconds"] if part["seconds"] else 0.0
    print(f"{part['layer']:5d} {len(part['maps']):5d} {dead:5d} "
          f"{part['pairs']:6d} {part['seconds']:7.1f} {rate:8.1f}")
  pairs = sum(p["pairs"] for p in index["layers"])
  print(f"total {total:.0f} s ({total / 60:.1f} min) for {pairs} "
        f"sonifications; peak RSS {_peak_rss_gib():.2f} GiB; {_load()}")
  if not _WORKDIR.value:
    shutil.rmtree(out, ignore_errors=True)


def _scaling(params, arch):
  rng = np.random.default_rng(0)
  lengths = [int(float(s) * arch.sample_rate) for s in _SCALE_SECONDS.value]
  counts = [int(c) for c in _SCALE_CLIPS.value]
  layers = tuple(range(1, arch.num_blocks + 1))
  print(f"\n== scaling ({_load()})")
  print("top-k pass, all layers (clips/s, compile excluded):")
  for length in lengths:
    row = []
    for count in counts:
      clips = [0.3 * rng.standard_normal(length).astype(np.float32)
               for _ in range(count)]
      source = ArraySource(clips, [0] * count, 1)
      batch = min(8, count)
      topk.stream_topk(params, arch, source, layers, _K.value, batch,
                       max_clips=batch, progress=False)  # compile
      start = time.perf_counter()
      topk.stream_topk(params, arch, source, layers, _K.value, batch,
                       progress=False)
      row.append(f"{count} clips {count / (time.perf_counter() - start):7.2f}")
    print(f"  {length / arch.sample_rate:5.0f} s clips: " + ", ".join(row),
          flush=True)
  print(f"sonify_clip_pairs, {_SCALE_PAIRS.value} pairs from 2 clips "
        "(pairs/s, compile excluded; atlas = 6016 * k pairs at this rate):")
  for layer in (int(l) for l in _SCALE_LAYERS.value):
    row = []
    for length in lengths:
      pairs, clips_per_call = atlas.batch_shape(arch, layer, length,
                                                _SCALE_PAIRS.value / 2)
      pairs = min(pairs, _SCALE_PAIRS.value)
      x = jnp.asarray(0.3 * rng.standard_normal((clips_per_call, length)),
                      jnp.float32)
      valid = jnp.full((clips_per_call,), length, jnp.int32)
      slots = jnp.arange(pairs, dtype=jnp.int32) % clips_per_call
      maps = jnp.arange(pairs, dtype=jnp.int32) % arch.channels[layer - 1]
      run = lambda: deconvnet.sonify_clip_pairs(params, x, valid, slots,
                                                maps, layer, arch)
      jax.block_until_ready(run())
      start = time.perf_counter()
      jax.block_until_ready(run())
      rate = pairs / (time.perf_counter() - start)
      row.append(f"{length / arch.sample_rate:.0f} s {rate:7.2f}")
    print(f"  layer {layer:2d}: " + ", ".join(row), flush=True)
  print(f"peak RSS {_peak_rss_gib():.2f} GiB")


def _best(run, repeats: int) -> float:
  jax.block_until_ready(run())  # compile
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(run())
    times.append(time.perf_counter() - start)
  return min(times)


def _devices(params, arch):
  local = jax.local_devices()
  counts = ([int(c) for c in _DEVICE_COUNTS.value] if _DEVICE_COUNTS.value
            else sorted({1, len(local)}))
  if max(counts) > len(local):
    raise UserError(f"--device_counts: {max(counts)} > the "
                               f"{len(local)} local devices")
  rng = np.random.default_rng(1)
  length = int(float(_SCALE_SECONDS.value[0]) * arch.sample_rate)
  print(f"\n== over devices ({len(local)} local; {length} samples; best "
        f"of {_REPEATS.value}; {_load()})")
  print(f"{'what':>28} " + " ".join(f"{n:>9d}" for n in counts)
        + "   time vs 1 device")
  x = 0.3 * rng.standard_normal((64, length)).astype(np.float32)
  rows = []
  for layer in (int(l) for l in _SCALE_LAYERS.value):
    pairs, clips = atlas.batch_shape(arch, layer, length, 8.0)
    slots = jnp.arange(pairs, dtype=jnp.int32) % clips
    maps = jnp.arange(pairs, dtype=jnp.int32) % arch.channels[layer - 1]
    clip_batch = jnp.asarray(x[:clips])
    valid = jnp.full((clips,), length, jnp.int32)
    times = []
    for n in counts:
      with over_devices.only(local[:n]):
        times.append(_best(lambda: deconvnet.sonify_clip_pairs(
            params, clip_batch, valid, slots, maps, layer, arch),
                           _REPEATS.value))
    rows.append((f"layer {layer} pairs/s ({pairs})", pairs, times))
  layers = tuple(range(1, arch.num_blocks + 1))
  batch = jnp.asarray(x[:32])
  times = []
  for n in counts:
    with over_devices.only(local[:n]):
      times.append(_best(lambda: common.layer_activations(
          params, batch, layers, arch), _REPEATS.value))
  rows.append(("top-k pass clips/s (32)", 32, times))
  for label, work, times in rows:
    print(f"{label:>28} " + " ".join(f"{work / t:9.2f}" for t in times)
          + "   " + " ".join(f"{t / times[0]:.2f}x" for t in times))


def main(argv):
  del argv
  arch = get_network(_ARCH.value)
  layers = ([int(l) for l in _LAYERS.value]
            if _LAYERS.value and _LAYERS.value != ["all"] else None)
  for layer in (layers or []) + [int(l) for l in _SCALE_LAYERS.value]:
    arch.check_block(layer)  # the layer rule needs --arch: here, first
  print(f"devices: {jax.devices()}  cpus: {os.cpu_count()}  {_load()}")
  # The model's own (He) init, as training starts: its deep maps are live.
  params = jax.jit(build_encoder(arch.name).init)(
      jax.random.PRNGKey(0), jnp.zeros((1, 4096)))["params"]
  if not _SKIP_ATLAS.value:
    _full_atlas(params, arch, layers)
  _scaling(params, arch)
  _devices(params, arch)


if __name__ == "__main__":
  from sonify_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)  # --help exits 0, quiet library logs, 'error:' lines
