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

About a minute on 2 cores (three starts of two processes): ``-m slow``.
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


def _run(args, envs, logs):
  procs = [subprocess.Popen(
      [sys.executable, "-m", "sonify_jax.analysis.run", *args], cwd=REPO,
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


def test_two_processes_write_the_atlas_of_one(tmp_path):
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
  args = [f"--checkpoint={run}", f"--audio_dir={tmp_path / 'audio'}",
          "--study=atlas", "--layers=2,4", "--k=2"]
  ref = str(tmp_path / "one")
  _run(args + [f"--workdir={ref}"], [_env(8)], [str(tmp_path / "one.log")])

  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
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
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  _run(args + [f"--workdir={two}"], [_env(4, i, port) for i in range(2)],
       logs)
  _assert_same_atlas(two, ref)
  for rel, mtime in ours.items():   # process 0 resumed its part
    assert os.path.getmtime(os.path.join(two, rel)) == mtime, rel
