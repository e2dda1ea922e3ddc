"""A checkpoint written on one device topology loads on another.

Training runs on a TPU slice (here: 8 virtual devices, params replicated over
a mesh); sonification runs on a laptop with one device.
"""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from sonify_jax.train import checkpoints

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_encoder_saved_on_8_devices_loads_on_1(tmp_path):
  assert jax.device_count() == 8
  mesh = jax.make_mesh((8,), ("data",))
  replicated = NamedSharding(mesh, PartitionSpec())
  kernel = np.random.default_rng(0).normal(size=(7, 1, 4)).astype(np.float32)
  state = {"params": {"encoder": {"block1": {
      "kernel": jax.device_put(jnp.asarray(kernel), replicated),
      "bias": jax.device_put(jnp.arange(4.0), replicated)}}},
           "step": jax.device_put(jnp.int32(3), replicated)}
  workdir = str(tmp_path / "run")
  checkpointer = checkpoints.Checkpointer(workdir, keep_last=1)
  checkpointer.save(3, state)
  checkpointer.close()
  checkpoints.save_run_info(workdir, {"model": "cnn12_tiny"},
                            arch="cnn12_tiny")

  out = tmp_path / "loaded.npz"
  script = textwrap.dedent(f"""
      import jax, numpy as np
      from sonify_jax.train import checkpoints
      assert jax.device_count() == 1
      encoder, arch = checkpoints.load_encoder({workdir!r})
      assert arch == "cnn12_tiny", arch
      np.savez({str(out)!r}, kernel=np.asarray(encoder["block1"]["kernel"]),
               bias=np.asarray(encoder["block1"]["bias"]))
  """)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
             JAX_PLATFORMS="cpu", PYTHONPATH=_REPO)
  result = subprocess.run([sys.executable, "-c", script], env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  loaded = np.load(out)
  np.testing.assert_array_equal(loaded["kernel"], kernel)
  np.testing.assert_array_equal(loaded["bias"], np.arange(4.0))
