r"""Input pipeline throughput next to the SimCLR train step's.

Prints clips/s for

1. host pipeline: decode WAV files from disk (a fresh decode on every read,
   no cache), two non-overlapping 2.5 s crops, batch -- ``train_batches``
   (grain) with ``prefetch=0``: no read-ahead beyond the batch asked for
   (``--num_workers`` grain reader threads read its rows, or grain's worker
   processes, which always keep one batch each ahead);
2. + augmentation: ``train_batches`` with one batch of grain prefetch, and
   ``augment_batch`` (jit'd on the default backend) applied to both views in
   the consumer, as a host-side augmentation would run;
3. grain readers compared: (1) with ``--num_workers`` threads and with as
   many worker processes, in the same run;
4. the SimCLR train step (``make_simclr_train_step``, full-size CNN12 unless
   --model says otherwise, batch 8 x 2 crops x 2.5 s, NT-Xent, Adam) with
   and without on-device augmentation.

The input keeps up when (1)/(2) >= (4). Usage:

  python benchmarks/input_bench.py                  # WAVs made in a temp dir
  python benchmarks/input_bench.py --wavs=embedded  # the shipped WAV files
  python benchmarks/input_bench.py --parts=train    # train step only (GPU)
  python benchmarks/input_bench.py --parts=input,workers --worker_type=process
"""
import os
import sys
import tempfile
import time

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from sonify_jax import flag_check  # pylint: disable=g-import-not-at-top,wrong-import-position
from sonify_jax.domains import Choice, Float, Int, Lazy, ListOf, Text  # pylint: disable=g-import-not-at-top,wrong-import-position
from sonify_jax.models import registry  # pylint: disable=g-import-not-at-top,wrong-import-position

_WAVS = flags.DEFINE_string(
    "wavs", "temp", "'temp': write --num_files random 8 kHz WAVs of "
    "--clip_seconds to a temp dir; 'embedded': the shipped embedded WAVs; "
    "or a folder of WAV files.")
_NUM_FILES = flags.DEFINE_integer("num_files", 64, "WAVs to write for temp.")
_CLIP_SECONDS = flags.DEFINE_float("clip_seconds", 10.0,
                                   "Length of the temp WAVs (AudioSet: 10).")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Clips per step.")
_CROP = flags.DEFINE_integer("crop_samples", 20000, "Samples per crop.")
_INPUT_STEPS = flags.DEFINE_integer(
    "input_steps", 200, "Batches timed through the input (30 batches take "
    "a tenth of a second: too few to time on a shared machine).")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 3, "Train steps timed.")
_WORKERS = flags.DEFINE_integer("num_workers", 2, "Readers per batch.")
_WORKER_TYPE = flags.DEFINE_enum("worker_type", "thread",
                                 ["thread", "process"], "Reader kind.")
_MODEL = flags.DEFINE_string("model", "cnn12", "Encoder architecture.")
_PARTS = flags.DEFINE_list("parts", ["input", "workers", "train"],
                           "Which figures: input, workers (grain threads vs "
                           "processes), train.")

FLAG_DOMAINS = {
    "wavs": Text(r".+", "'temp', 'embedded' or a folder of WAV files"),
    "num_files": Int(1), "clip_seconds": Float(0.0, low_open=True),
    "batch_size": Int(1), "crop_samples": Int(1), "input_steps": Int(1),
    "train_steps": Int(1), "num_workers": Int(1),
    "worker_type": flag_check.ANY,
    "model": Lazy(lambda: Choice(registry.TRAINABLE)),
    "parts": ListOf(Choice(("input", "workers", "train")), str)}
flag_check.register(FLAG_DOMAINS)


class WavFileSource:
  """A ClipSource that decodes its WAV file on every read (no cache)."""

  def __init__(self, paths, name="wavs"):
    self.paths = list(paths)
    self.name = name
    self.num_classes = 1
    self.multilabel = False
    self.class_names = ["any"]

  def __len__(self):
    return len(self.paths)

  def __getitem__(self, index):
    import numpy as np  # pylint: disable=g-import-not-at-top
    from sonify_jax import audio_io  # pylint: disable=g-import-not-at-top
    return {"audio": audio_io.load_audio(self.paths[index]),
            "label": np.int32(0), "id": self.paths[index]}


def _wav_paths(tmp):
  """The WAV files to read, per --wavs."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from sonify_jax import audio_io  # pylint: disable=g-import-not-at-top
  if _WAVS.value == "embedded":
    from sonify_jax.data import embedded  # pylint: disable=g-import-not-at-top
    rows = embedded.read_manifest()
    return [os.path.join(embedded.EMBEDDED_DIR, r["file"]) for r in rows]
  if _WAVS.value != "temp":
    return sorted(os.path.join(_WAVS.value, f)
                  for f in os.listdir(_WAVS.value) if f.endswith(".wav"))
  rng = np.random.default_rng(0)
  n = int(_CLIP_SECONDS.value * 8000)
  paths = []
  for i in range(_NUM_FILES.value):
    t = np.arange(n) / 8000
    audio = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + \
        0.05 * rng.normal(size=n)
    paths.append(audio_io.write_wav(os.path.join(tmp, f"clip{i:04d}.wav"),
                                    audio.astype(np.float32)))
  return paths


def _rate(clips, seconds):
  return clips / seconds if seconds > 0 else float("inf")


def bench_host(source, worker_type):
  """clips/s of ``train_batches(prefetch=0)`` (decode, crop, batch)."""
  from sonify_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  b, steps = _BATCH.value, _INPUT_STEPS.value
  with pipeline.train_batches(
      source, global_batch_size=b, crop_samples=_CROP.value, num_crops=2,
      seed=0, num_workers=_WORKERS.value, worker_type=worker_type,
      prefetch=0) as it:
    next(it)  # start threads / worker processes
    start = time.perf_counter()
    for _ in range(steps):
      next(it)
    rate = _rate(steps * b, time.perf_counter() - start)
    print(f"  {worker_type} readers: {it.stats.summary()}")
  return rate


def bench_input(paths):
  """(host clips/s, host + augmentation clips/s)."""
  import jax  # pylint: disable=g-import-not-at-top
  from sonify_jax.data import augment, pipeline  # pylint: disable=g-import-not-at-top
  source = WavFileSource(paths)
  b, steps = _BATCH.value, _INPUT_STEPS.value
  kwargs = dict(global_batch_size=b, crop_samples=_CROP.value, num_crops=2,
                seed=0, num_workers=_WORKERS.value,
                worker_type=_WORKER_TYPE.value)

  # Production rate alone: no read-ahead beyond the batch asked for.
  host = bench_host(source, _WORKER_TYPE.value)

  aug = augment.make_augment_fn(augment.AugmentConfig())
  key = jax.random.key(0)

  def augmented(batch, step):
    k1, k2 = jax.random.split(jax.random.fold_in(key, step))
    return (aug(k1, batch["audio"][:, 0]), aug(k2, batch["audio"][:, 1]))

  with pipeline.train_batches(source, start_step=steps, prefetch=1,
                              **kwargs) as it:
    jax.block_until_ready(augmented(next(it), 0))  # compile, start workers
    # grain is at most one batch ahead when the clock starts; from here
    # decoding (threads, workers) overlaps augmentation (consumer).
    start = time.perf_counter()
    for step in range(steps):
      jax.block_until_ready(augmented(next(it), step))
    full = _rate(steps * b, time.perf_counter() - start)
  return host, full


def bench_train_step():
  """{label: clips/s} of the SimCLR train step with/without augmentation."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from sonify_jax.data import augment  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import optim, state as state_lib, steps  # pylint: disable=g-import-not-at-top
  b = _BATCH.value
  mesh = steps.make_mesh(jax.devices()[:1])
  model = state_lib.SimCLRModel(arch_name=_MODEL.value)
  optimizer = optim.make_optimizer(1e-3, 1e-3, 0, 1000)
  batch = {"audio": np.random.default_rng(0).normal(
      0, 0.1, (b, 2, _CROP.value)).astype(np.float32)}
  out = {}
  for label, config in (("no augmentation", None),
                        ("with augmentation", augment.AugmentConfig())):
    state = state_lib.create_train_state(model, optimizer, jax.random.key(0))
    step = steps.make_simclr_train_step(model, optimizer, mesh, config, 0.1)
    start = time.perf_counter()
    state, metrics = step(state, batch, jax.random.key(1))
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(_TRAIN_STEPS.value):
      state, metrics = step(state, batch, jax.random.key(1))
    jax.block_until_ready(metrics)
    seconds = time.perf_counter() - start
    out[label] = _rate(_TRAIN_STEPS.value * b, seconds)
    print(f"  train step {label}: first call {compile_s:.1f} s, "
          f"{seconds / _TRAIN_STEPS.value:.3f} s/step, "
          f"loss {float(metrics['loss']):.3f}")
  return out


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  print(f"backend {jax.default_backend()}: {jax.devices()[0].device_kind}, "
        f"{os.cpu_count()} host CPUs; batch {_BATCH.value} x 2 crops x "
        f"{_CROP.value} samples")
  results = {}
  if "input" in _PARTS.value or "workers" in _PARTS.value:
    with tempfile.TemporaryDirectory() as tmp:
      paths = _wav_paths(tmp)
      print(f"input: {len(paths)} WAV files ({_WAVS.value}), decoded on "
            f"every read, {_WORKERS.value} {_WORKER_TYPE.value} reader(s)")
      if "input" in _PARTS.value:
        host, full = bench_input(paths)
        results["input pipeline (decode, crop, batch)"] = host
        results["input pipeline + augment (jit'd)"] = full
      if "workers" in _PARTS.value:
        for kind in ("thread", "process"):
          results[f"grain, {_WORKERS.value} {kind} readers, prefetch=0"] = (
              bench_host(WavFileSource(paths), kind))
  if "train" in _PARTS.value:
    print(f"train step: SimCLR {_MODEL.value}, 1 device")
    for label, rate in bench_train_step().items():
      results[f"train step {_MODEL.value} ({label})"] = rate
  print("\nclips/s")
  for label, rate in results.items():
    print(f"  {label:50s} {rate:10.1f}")


if __name__ == "__main__":
  from sonify_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)  # --help exits 0, quiet library logs, 'error:' lines
