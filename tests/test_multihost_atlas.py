"""The atlas over two JAX processes equals the atlas of one (issue 31).

``python -m sonify_jax.analysis.run --study=atlas`` started as two real
``jax.distributed`` processes on loopback (gloo CPU collectives, 4 virtual
devices each; the environment variables a launcher sets), on 7 clips of
several lengths (an odd count: the shares differ), against the same command
as one process with 8 devices:

* the index is the same (the global top-k per map: same clips, same
  activations to float32 rounding; same files), and every file it names
  holds the same audio (to 16-bit WAV rounding);
* process 1's part of a layer lost (as if it was killed before it
  finished): rerun, process 0 reads its part back (its files are not
  written again) and process 1 sonifies its own; the index is the same.

The same two processes run the coherence and activity studies, which split
their clips the same way (each process streams its share; per-clip scores,
live counts and top-k tables are exchanged), the sanity, pitch, time
invariance and top-k studies (each process sonifies and scores the pairs of
its own clips, and gets the others'; top-k's entries are written by their
clip's process) and dissect (each process runs its share of the probes):
the JSON is the one process's (to float32 rounding, timings aside), written
and recorded by the chief. And ``deconvnet.sonify_clip_pairs``
called in each of the two processes (on its 4 devices, pairs of 3 clips,
an odd count) gives what one device gives.

A few minutes on 2 cores (several starts of two processes): ``-m slow``.
"""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import soundfile

import helpers
from sonify_jax import audio_io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 600
RATE = 8000

pytestmark = pytest.mark.slow


def _env(devices: int, process=None, port=None):
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("JAX_", "XLA_", "TPU_"))}
  env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu", PYTHONPATH=REPO, PYTHONUNBUFFERED="1")
  if process is not None:
    env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
               JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(process),
               JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo")
  return env


def _run(args, envs, logs, command=("-m", "sonify_jax.analysis.run")):
  procs = [subprocess.Popen(
      [sys.executable, *command, *args], cwd=REPO,
      env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
           for env, log in zip(envs, logs)]
  helpers.wait_together(procs, TIMEOUT_S)
  for p, log in zip(procs, logs):
    assert p.returncode == 0, open(log).read()[-4000:]


def _comparable(index):
  """The index without timings."""
  index = json.loads(json.dumps(index))
  index.pop("topk_pass")
  index.pop("checkpoints", None)
  for layer in index["layers"]:
    layer.pop("seconds")
  for key in [k for k in index if k.startswith("checkpoint_")]:
    index.pop(key)
  return index


def _assert_same_atlas(ours_dir, ref_dir):
  ours = json.load(open(os.path.join(ours_dir, "atlas.json")))
  ref = json.load(open(os.path.join(ref_dir, "atlas.json")))
  a, b = _comparable(ours), _comparable(ref)
  for la, lb in zip(a["layers"], b["layers"]):
    for ma, mb in zip(la["maps"], lb["maps"]):
      for ra, rb in zip(ma["top"], mb["top"]):
        assert ra["activation"] == pytest.approx(rb["activation"],
                                                 rel=1e-5, abs=1e-6)
        ra["activation"] = rb["activation"]
        for key in ("centroid_hz",):
          if ra[key] is not None:
            assert ra[key] == pytest.approx(rb[key], rel=1e-3, abs=1.0)
            ra[key] = rb[key]
      ma["activation"], ma["centroid_hz"] = mb["activation"], mb[
          "centroid_hz"]
  assert a == b
  files = [r["wav"] for l in ref["layers"] for m in l["maps"]
           for r in m["top"] if r["wav"]]
  files += [c["wav"] for c in ref["clips"].values()]
  assert files
  for rel in files:
    x, _ = soundfile.read(os.path.join(ours_dir, rel))
    y, _ = soundfile.read(os.path.join(ref_dir, rel))
    np.testing.assert_allclose(x, y, atol=2.5 / 32768, err_msg=rel)


def _run_and_audio(tmp_path):
  """A converted CNN12 tiny (random weights) and 7 clips of 5 lengths."""
  from sonify_jax.importers import Imported, run_dir  # pylint: disable=g-import-not-at-top
  from sonify_jax.models import encoder, registry  # pylint: disable=g-import-not-at-top
  net = registry.get_network("cnn12_tiny")
  run = run_dir.write(Imported(net, jax.tree.map(
      np.asarray, encoder.init_params(net, 3)), None, {"source": "test"}),
                      str(tmp_path / "run"))
  audio = tmp_path / "audio" / "sounds"
  os.makedirs(audio)
  rng = np.random.default_rng(0)
  for i, seconds in enumerate((0.5, 0.7, 0.5, 1.0, 0.6, 0.5, 0.8)):
    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + (
        0.05 * rng.standard_normal(t.size))
    audio_io.write_wav(str(audio / f"c{i}.wav"), wave, RATE)
  return run, str(tmp_path / "audio")


def _free_port():
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_write_the_atlas_of_one(tmp_path):
  run, audio = _run_and_audio(tmp_path)
  args = [f"--checkpoint={run}", f"--audio_dir={audio}",
          "--study=atlas", "--layers=2,4", "--k=2"]
  ref = str(tmp_path / "one")
  _run(args + [f"--workdir={ref}"], [_env(8)], [str(tmp_path / "one.log")])

  port = _free_port()
  two = str(tmp_path / "two")
  logs = [str(tmp_path / f"p{i}.log") for i in range(2)]
  _run(args + [f"--workdir={two}"], [_env(4, i, port) for i in range(2)],
       logs)
  _assert_same_atlas(two, ref)
  assert os.path.isfile(os.path.join(two, "atlas.html"))

  # Process 1 "killed" before its part of layer 4 was done: its resume
  # file, its files there and the layer's marker are gone.
  layer = os.path.join(two, "layer04")
  index = json.load(open(os.path.join(two, "atlas.json")))
  entries = [r for m in index["layers"][1]["maps"] for r in m["top"]
             if r["wav"]]
  theirs = [r["wav"] for r in entries if r["clip"] % 2 == 1]
  ours = {r["wav"]: os.path.getmtime(os.path.join(two, r["wav"]))
          for r in entries if r["clip"] % 2 == 0}
  assert theirs and ours
  for rel in theirs:
    os.remove(os.path.join(two, rel))
  os.remove(os.path.join(layer, "part.p001of002.json"))
  os.remove(os.path.join(layer, "layer.json"))
  port = _free_port()
  _run(args + [f"--workdir={two}"], [_env(4, i, port) for i in range(2)],
       logs)
  _assert_same_atlas(two, ref)
  for rel, mtime in ours.items():   # process 0 resumed its part
    assert os.path.getmtime(os.path.join(two, rel)) == mtime, rel


_TIMINGS = ("seconds", "clips_per_s", "clips_per_s_warm", "checkpoints")


def _without_timings(value):
  if isinstance(value, dict):
    return {k: _without_timings(v) for k, v in value.items()
            if k not in _TIMINGS and not k.startswith("checkpoint_")}
  if isinstance(value, list):
    return [_without_timings(v) for v in value]
  return value


@pytest.mark.parametrize("study,extra", [
    ("coherence", ["--layers=2,4"]),
    ("activity", ["--layers=2,4", "--k=2"]),
    ("sanity", ["--layers=2,4", "--rules=deconvnet,gradient",
                "--max_clips=7", "--maps_per_clip=1"]),
    ("pitch", ["--layers=2,4", "--maps_per_clip=1"]),
    ("time_invariance", ["--layers=2,4"]),
    ("topk", ["--layers=2,4", "--k=2", "--max_maps=3"]),
    ("dissect", ["--layers=2,3"])])
def test_two_processes_give_the_study_of_one(tmp_path, study, extra):
  run, audio = _run_and_audio(tmp_path)
  data = [] if study == "dissect" else [f"--audio_dir={audio}"]
  args = [f"--checkpoint={run}", *data, f"--study={study}",
          "--batch_size=2", *extra]
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  _run(args + [f"--workdir={one}"], [_env(8)], [str(tmp_path / "one.log")])
  port = _free_port()
  logs = [str(tmp_path / f"p{i}.log") for i in range(2)]
  _run(args + [f"--workdir={two}"], [_env(4, i, port) for i in range(2)],
       logs)
  ref = json.load(open(os.path.join(one, f"{study}.json")))
  ours = json.load(open(os.path.join(two, f"{study}.json")))
  helpers.assert_json_close(_without_timings(ours), _without_timings(ref),
                            rel=1e-4, abs_=1e-6)
  assert ours["checkpoints"] == ref["checkpoints"]   # the chief recorded
  if study == "topk":   # every entry's files, written by its clip's owner
    wavs = [e[key] for layer in ref["layers"].values()
            for entries in layer.values() for e in entries
            for key in ("input_wav", "sonification_wav")]
    assert wavs
    for rel in wavs:
      x, _ = soundfile.read(os.path.join(two, rel))
      y, _ = soundfile.read(os.path.join(one, rel))
      np.testing.assert_allclose(x, y, atol=2.5 / 32768, err_msg=rel)
  if study in ("coherence", "activity"):
    # Each process streamed its own share: 4 and 3 of the 7 clips. (Sanity
    # and pitch split their pairs by shares.split_rows, tests/test_shares.py.)
    for log, clips in zip(logs, (4, 3)):
      assert f"[{study}] {clips}/{clips} clips" in open(log).read()


_PAIRS_SCRIPT = """
import sys
import numpy as np
from sonify_jax import distributed, deconvnet
from sonify_jax.analysis.core import common
from sonify_jax.models import registry
distributed.initialize_if_needed()
import jax
arch = registry.get_network("cnn12_tiny")
params = common.random_params(arch, 5)
rng = np.random.default_rng(0)
lengths = (1400, 1201, 900)
x = np.zeros((3, 1400), np.float32)
for s, n in enumerate(lengths):
  x[s, :n] = rng.standard_normal(n)
slots = rng.integers(0, 3, 13).astype(np.int32)
maps = rng.integers(0, arch.channels[3], 13).astype(np.int32)
devices = jax.local_devices()[:1] if sys.argv[2] == "one" else None
out = deconvnet.sonify_clip_pairs(params, x, np.asarray(lengths, np.int32),
                                  slots, maps, 4, arch, devices=devices)
np.save(sys.argv[1].format(jax.process_index()), np.asarray(out))
print(len(jax.local_devices()), jax.process_count())
"""


def test_clip_pairs_in_two_processes_equal_one_device(tmp_path):
  script = str(tmp_path / "pairs.py")
  with open(script, "w") as f:
    f.write(_PAIRS_SCRIPT)
  _run([str(tmp_path / "one.npy"), "one"], [_env(1)],
       [str(tmp_path / "one.log")], command=(script,))
  port = _free_port()
  logs = [str(tmp_path / f"p{i}.log") for i in range(2)]
  _run([str(tmp_path / "p{}.npy"), "all"], [_env(4, i, port)
                                             for i in range(2)],
       logs, command=(script,))
  one = np.load(tmp_path / "one.npy")
  assert one.shape == (13, 1400) and np.abs(one).max() > 0
  for i, log in enumerate(logs):
    assert open(log).read().split()[-2:] == ["4", "2"]
    np.testing.assert_allclose(np.load(str(tmp_path / f"p{i}.npy")), one,
                               atol=1e-5 * np.abs(one).max())
