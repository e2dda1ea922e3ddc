"""Multi-host JAX on one machine, and the sonify_jax.distributed helpers.

The main test starts two real JAX processes on loopback (gloo CPU
collectives, 4 virtual devices each), each reading only its own half of every
global batch through the input pipeline, runs the project's SimCLR step and
saves the state with the trainer's orbax Checkpointer from both processes.
Independent reference: one process with 8 devices on the same global batch.
"""
import functools
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

import helpers  # pylint: disable=g-import-not-at-top
from launch import multihost_check  # pylint: disable=g-import-not-at-top
from sonify_jax import distributed  # pylint: disable=g-import-not-at-top

TIMEOUT_S = 300
STEPS = 2


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int):
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("JAX_", "XLA_", "TPU_"))}
  # Cheaper LLVM passes: compilation dominates this test's CPU time, and all
  # three processes use the same flags, so their numerics stay comparable.
  env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} "
             "--xla_backend_optimization_level=0 "
             "--xla_llvm_disable_expensive_passes=true",
             JAX_PLATFORMS="cpu", PYTHONPATH=REPO, PYTHONUNBUFFERED="1")
  return env


def _start(args, devices, log_path):
  log = open(log_path, "w")
  proc = subprocess.Popen(
      [sys.executable, "-m", "launch.multihost_check", f"--steps={STEPS}",
       "--global_batch=16",
       *args], cwd=REPO, env=_env(devices), stdout=log,
      stderr=subprocess.STDOUT)
  proc.log_file = log
  return proc


def _run_all(runs):
  """Starts ``(args, devices, log)`` runs together and waits for all; kills
  whatever is left on a failure, a timeout or an interrupt."""
  procs = []
  try:
    for args, devices, log in runs:
      procs.append(_start(args, devices, log))
    helpers.wait_together(procs, TIMEOUT_S)
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
      proc.log_file.close()
  for proc, (_, _, log) in zip(procs, runs):
    if proc.returncode != 0:  # -9: killed at the timeout
      with open(log) as f:
        tail = f.read()[-4000:]
      pytest.fail(f"{log} exited with {proc.returncode}:\n{tail}")


def _params(npz):
  return {k: npz[k] for k in npz.files if not k.startswith("__")}


@pytest.mark.slow   # ~45 s; the distributed helpers' tests below are the fast path, tests/test_steps.py proves 8 devices equal 1
def test_two_processes_match_one_process(tmp_path):
  port = _free_port()
  workdir = tmp_path / "two procs"
  logs = [str(tmp_path / f"p{i}.log") for i in range(2)] + [
      str(tmp_path / "ref.log")]
  runs = [(["--cpu_collectives=gloo",
            f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
            f"--process_id={i}", f"--workdir={workdir}",
            f"--out={tmp_path}/p{{process_id}}.npz"], 4, logs[i])
          for i in range(2)]
  runs.append(([f"--out={tmp_path}/ref.npz"], 8, logs[2]))
  _run_all(runs)

  p0, p1, ref = (np.load(tmp_path / f"{n}.npz") for n in ("p0", "p1", "ref"))
  assert int(p0["__process_count__"]) == 2 and int(ref["__process_count__"]) \
      == 1
  assert str(ref["__step_kind__"]) == "simclr" == str(p0["__step_kind__"])
  init = _initial_params()
  moved = 0
  for name, want in _params(ref).items():
    # Replicated params: both processes hold the same values ...
    np.testing.assert_array_equal(p0[name], p1[name], err_msg=name)
    # ... which equal the 1-process/8-device run up to float rounding of the
    # cross-process reductions.
    # Gloo's cross-process reductions sum in another order than one
    # process does: float32 round-off of ~1e-5, far below what a wrong shard
    # of the batch would change.
    np.testing.assert_allclose(p0[name], want, rtol=1e-4, atol=1e-5,
                               err_msg=name)
    moved += not np.allclose(init[name], want)
  assert moved == len(init)  # the steps really trained every tensor
  np.testing.assert_allclose(p0["__losses__"], ref["__losses__"], rtol=1e-5)

  # Orbax in multi-process mode: both processes saved cooperatively; the
  # checkpoint restores (in each process, and here in a single process with
  # another device count) to the trained params.
  assert bool(p0["__restored_ok__"]) and bool(p1["__restored_ok__"])
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  assert checkpoints.available_steps(str(workdir)) == [STEPS]
  restored = checkpoints.load_state(str(workdir), _initial_state())
  assert int(restored.step) == STEPS
  restored = multihost_check.flatten_params(restored.params)
  assert restored.keys() == _params(ref).keys()
  for name, value in restored.items():
    np.testing.assert_array_equal(value, p0[name], err_msg=name)
  with open(logs[0]) as f:
    assert "data: pipeline" in f.read()


@functools.lru_cache(maxsize=1)
def _initial_state():
  """The check's TrainState before training (same seed, same model)."""
  from sonify_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  model, optimizer = multihost_check.simclr_model_and_optimizer(
      "cnn12_tiny", STEPS)
  return state_lib.create_train_state(model, optimizer,
                                      jax.random.PRNGKey(0))


def _initial_params():
  return multihost_check.flatten_params(_initial_state().params)


# --------------------------------------------------------- unit: resolving


@pytest.fixture
def clean_env(monkeypatch):
  for name in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES,
               distributed.ENV_PROCESS_ID):
    monkeypatch.delenv(name, raising=False)
  return monkeypatch


def test_resolve_config_sources(clean_env):
  single = distributed.resolve_config(on_cloud_tpu=False)
  assert single.mode == "single"
  explicit = distributed.resolve_config("10.0.0.2:1234", 4, 3,
                                        on_cloud_tpu=False)
  assert (explicit.mode, explicit.coordinator_address, explicit.num_processes,
          explicit.process_id) == ("explicit", "10.0.0.2:1234", 4, 3)
  assert distributed.resolve_config(on_cloud_tpu=True).mode == "cloud_tpu"
  assert distributed.resolve_config(num_processes=1).mode == "single"
  clean_env.setenv(distributed.ENV_COORDINATOR, "h:9")
  clean_env.setenv(distributed.ENV_NUM_PROCESSES, "2")
  clean_env.setenv(distributed.ENV_PROCESS_ID, "1")
  from_env = distributed.resolve_config(on_cloud_tpu=False)
  assert (from_env.mode, from_env.num_processes, from_env.process_id) == (
      "explicit", 2, 1)
  # Arguments win over the environment.
  assert distributed.resolve_config(process_id=0).process_id == 0


def test_resolve_config_errors(clean_env):
  with pytest.raises(ValueError, match="coordinator_address"):
    distributed.resolve_config(num_processes=2, process_id=0)
  with pytest.raises(ValueError, match=r"in \[0, 2\)"):
    distributed.resolve_config("h:1", 2, 2)
  with pytest.raises(ValueError, match="host:port"):
    distributed.resolve_config("hostonly", 2, 0)
  with pytest.raises(ValueError, match="without num_processes"):
    distributed.resolve_config(process_id=1, on_cloud_tpu=False)
  with pytest.raises(ValueError, match=">= 1"):
    distributed.resolve_config(num_processes=0)
  clean_env.setenv(distributed.ENV_NUM_PROCESSES, "two")
  with pytest.raises(ValueError, match="not an integer"):
    distributed.resolve_config()


def test_initialize_if_needed_is_a_noop_for_one_process(clean_env):
  config = distributed.initialize_if_needed()
  assert config.mode in ("single", "already")
  assert jax.process_count() == 1 and distributed.is_chief()
  # Too late for multi-process once JAX has run: a clear error, not a hang.
  jax.numpy.zeros(1).block_until_ready()
  if not jax.distributed.is_initialized():
    with pytest.raises(RuntimeError, match="before any JAX computation"):
      distributed.initialize_if_needed("127.0.0.1:1", 2, 0)


# ------------------------------------------------------- unit: batch rows


def test_host_local_batch_slice_partitions_the_batch():
  slices = [distributed.host_local_batch_slice(24, p, 4) for p in range(4)]
  rows = np.concatenate([np.arange(24)[s] for s in slices])
  np.testing.assert_array_equal(rows, np.arange(24))  # disjoint, covering
  assert slices[1] == slice(6, 12)
  with pytest.raises(ValueError, match="divisible"):
    distributed.host_local_batch_slice(10, 0, 4)
  with pytest.raises(ValueError, match="out of range"):
    distributed.host_local_batch_slice(8, 4, 4)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  assert distributed.host_local_batch_slice(16, mesh=mesh) == slice(0, 16)
  with pytest.raises(ValueError, match="mesh axis"):
    distributed.host_local_batch_slice(12, mesh=mesh)


def test_global_batch_places_rows_on_devices():
  mesh = Mesh(np.array(jax.devices()), ("data",))
  n = len(jax.devices())
  local = {"audio": np.arange(n * 2 * 3, dtype=np.float32).reshape(n * 2, 3),
           "label": np.arange(n * 2, dtype=np.int32)}
  out = distributed.global_batch(local, mesh)
  for name, x in out.items():
    assert x.sharding.is_equivalent_to(NamedSharding(mesh, P("data")), x.ndim)
    np.testing.assert_array_equal(np.asarray(x), local[name])
    for shard in x.addressable_shards:  # device i holds rows 2i, 2i + 1
      i = mesh.devices.tolist().index(shard.device)
      np.testing.assert_array_equal(np.asarray(shard.data),
                                    local[name][2 * i:2 * i + 2])
  on_device = distributed.global_batch(
      {"audio": jax.device_put(local["audio"])}, mesh)["audio"]
  assert on_device.sharding.is_equivalent_to(
      NamedSharding(mesh, P("data")), 2)
  np.testing.assert_array_equal(np.asarray(on_device), local["audio"])
  with pytest.raises(ValueError, match="split"):
    distributed.global_batch({"audio": np.zeros((n + 1, 3))}, mesh)
  with pytest.raises(ValueError, match="scalar"):
    distributed.global_batch({"x": np.float32(1)}, mesh)
  rep = distributed.replicate({"w": np.ones((2, 2))}, mesh)
  assert rep["w"].sharding.is_fully_replicated
  np.testing.assert_array_equal(distributed.to_host(rep)["w"], np.ones((2, 2)))
