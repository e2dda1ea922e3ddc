r"""Prints build and random-access read throughput of the TFDS array_record
path (what a grain-style loader sees), on synthetic 10 s clips.

  python benchmarks/array_record_bench.py [--clips=600] [--seconds=10]
      [--workdir=/tmp/bench_array_record]

Figures: build clips/s (decode + resample 16 -> 8 kHz + write), and read
clips/s / MB/s for random indices through catalog.get_source (one thread,
and several threads as a grain worker pool would use).
"""
import concurrent.futures
import os
import shutil
import sys
import time

from absl import flags
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sonify_jax.data import builders  # pylint: disable=g-import-not-at-top
from sonify_jax.data import catalog  # pylint: disable=g-import-not-at-top
from sonify_jax import flag_check  # pylint: disable=g-import-not-at-top
from sonify_jax.domains import Float, Int, Text  # pylint: disable=g-import-not-at-top

_CLIPS = flags.DEFINE_integer("clips", 600, "Number of clips.")
_SECONDS = flags.DEFINE_float("seconds", 10.0, "Clip length (AudioSet: 10).")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/bench_array_record",
                               "Scratch folder (deleted at the end).")
_THREADS = flags.DEFINE_integer("threads", 4, "Reader threads.")

FLAG_DOMAINS = {"clips": Int(1), "seconds": Float(0.0, low_open=True),
                "workdir": Text(r".+", "a folder path"), "threads": Int(1)}
flag_check.register(FLAG_DOMAINS)


def main(argv):
  del argv
  import soundfile  # pylint: disable=g-import-not-at-top
  root = os.path.join(_WORKDIR.value, "sc")
  data_dir = os.path.join(_WORKDIR.value, "tfds")
  shutil.rmtree(_WORKDIR.value, ignore_errors=True)
  rng = np.random.default_rng(0)
  os.makedirs(os.path.join(root, "yes"))
  for i in range(_CLIPS.value):
    audio = 0.1 * rng.standard_normal(int(16000 * _SECONDS.value))
    soundfile.write(os.path.join(root, "yes", f"{i:06d}_nohash_0.wav"),
                    audio.astype(np.float32), 16000, subtype="PCM_16")
  for name in ("validation_list.txt", "testing_list.txt"):
    open(os.path.join(root, name), "w").close()
  start = time.perf_counter()
  builders.build("speech_commands", root, data_dir)
  build_s = time.perf_counter() - start
  print(f"build: {_CLIPS.value / build_s:.1f} clips/s (1 process)")

  source = catalog.get_source("speech_commands", "train", data_dir)
  order = rng.permutation(len(source))
  source[0]  # open the shards
  start = time.perf_counter()
  nbytes = sum(source[int(i)]["audio"].nbytes for i in order)
  read_s = time.perf_counter() - start
  print(f"random read, 1 thread: {len(order) / read_s:.0f} clips/s, "
        f"{nbytes / 2 / read_s / 2**20:.0f} MB/s of int16 on disk")
  with concurrent.futures.ThreadPoolExecutor(_THREADS.value) as pool:
    start = time.perf_counter()
    list(pool.map(lambda i: source[int(i)]["audio"].size, order))
    read_s = time.perf_counter() - start
  print(f"random read, {_THREADS.value} threads: "
        f"{len(order) / read_s:.0f} clips/s")
  shutil.rmtree(_WORKDIR.value, ignore_errors=True)


if __name__ == "__main__":
  from sonify_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)  # --help exits 0, quiet library logs, 'error:' lines
