r"""Training throughput on this machine (prints figures; not a test).

1. CNN12 (full size) SimCLR train step: global batch 8 clips x 2 views x 2.5 s
   (20000 samples at 8 kHz), augmentations on, Adam; clips/s on the default
   devices (1 CPU device unless XLA_FLAGS says otherwise).
2. NT-Xent over the global batch on 1 vs 8 virtual CPU devices (each in a
   subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``):
   (a) the loss + gradient alone on [256, 512] projections, (b) a whole
   SimCLR step with the same global batch.

  python benchmarks/train_bench.py [--steps 3] [--model cnn12] [--skip_devices]
"""
import json
import os
import subprocess
import sys
import time

from absl import flags
import numpy as np

# Runnable as a plain script from a checkout (without `pip install -e .`).
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)
from sonify_jax import flag_check  # pylint: disable=g-import-not-at-top,wrong-import-position
from sonify_jax.domains import Choice, Float, Int, Lazy  # pylint: disable=g-import-not-at-top,wrong-import-position
from sonify_jax.models import registry  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_integer("steps", 3, "Timed steps.")
flags.DEFINE_string("model", "cnn12", "Model of the throughput figure.")
flags.DEFINE_integer("batch", 8, "Clips per step of the throughput figure.")
flags.DEFINE_float("seconds", 2.5, "Crop length in seconds.")
flags.DEFINE_integer("nt_batch", 256, "Global batch of the NT-Xent figure.")
flags.DEFINE_integer("nt_dim", 512, "Projection size of the NT-Xent figure.")
flags.DEFINE_string("device_model", "cnn12",
                    "Model of the 1-vs-8-device SimCLR step.")
flags.DEFINE_integer("device_batch", 8, "Global batch of that step.")
flags.DEFINE_bool("skip_devices", False, "Skip the 1-vs-8-device figures.")
flags.DEFINE_bool("skip_throughput", False, "Skip the throughput figure.")
flags.DEFINE_bool("child", False, "Internal: one device-count run.")

_TRAINABLE = Lazy(lambda: Choice(registry.TRAINABLE))
FLAG_DOMAINS = {
    "steps": Int(1), "model": _TRAINABLE, "batch": Int(1),
    "seconds": Float(0.0, low_open=True), "nt_batch": Int(8),
    "nt_dim": Int(1), "device_model": _TRAINABLE, "device_batch": Int(8),
    "skip_devices": flag_check.ANY, "skip_throughput": flag_check.ANY,
    "child": flag_check.ANY}
flag_check.register(FLAG_DOMAINS)


def _time(fn, steps, warmup=1):
  for _ in range(warmup):
    fn()
  start = time.perf_counter()
  for _ in range(steps):
    fn()
  return (time.perf_counter() - start) / steps


def simclr_step_time(model_name, batch, seconds, steps, augment=True):
  """Seconds per SimCLR train step (compile excluded)."""
  import jax  # pylint: disable=g-import-not-at-top
  from sonify_jax.data import augment as augment_lib  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import optim, state, steps as steps_lib  # pylint: disable=g-import-not-at-top
  model = state.SimCLRModel(arch_name=model_name)
  optimizer = optim.make_optimizer(1e-3, 1e-3, 10, 1000)
  mesh = steps_lib.make_mesh()
  train_state = state.create_train_state(model, optimizer,
                                         jax.random.PRNGKey(0))
  step = steps_lib.make_simclr_train_step(
      model, optimizer, mesh,
      augment_lib.AugmentConfig() if augment else None, temperature=0.2)
  samples = int(seconds * 8000)
  audio = np.random.default_rng(0).standard_normal(
      (batch, 2, samples)).astype(np.float32) * 0.1
  key = jax.random.PRNGKey(1)
  holder = {"state": train_state}

  def run():
    holder["state"], metrics = step(holder["state"], {"audio": audio}, key)
    jax.block_until_ready(metrics["loss"])

  t0 = time.perf_counter()
  run()
  compile_s = time.perf_counter() - t0
  return _time(run, steps, warmup=0), compile_s


def nt_xent_time(batch, dim, steps):
  """Seconds per global NT-Xent loss+grad over a shard_map'd batch."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import losses, steps as steps_lib  # pylint: disable=g-import-not-at-top
  mesh = steps_lib.make_mesh()
  rng = np.random.default_rng(0)
  z1 = rng.standard_normal((batch, dim)).astype(np.float32)
  z2 = rng.standard_normal((batch, dim)).astype(np.float32)

  def per_device(a, b):
    return jax.value_and_grad(
        lambda x, y: losses.nt_xent_global(x, y, 0.2, steps_lib.AXIS),
        argnums=(0, 1))(a, b)

  fn = jax.jit(jax.shard_map(per_device, mesh=mesh,
                             in_specs=(P(steps_lib.AXIS), P(steps_lib.AXIS)),
                             out_specs=(P(), (P(steps_lib.AXIS),
                                              P(steps_lib.AXIS)))))
  sharding = NamedSharding(mesh, P(steps_lib.AXIS))
  a, b = jax.device_put(z1, sharding), jax.device_put(z2, sharding)
  return _time(lambda: jax.block_until_ready(fn(a, b)), steps, warmup=1)


def child(args):
  import jax  # pylint: disable=g-import-not-at-top
  out = {"devices": jax.device_count()}
  out["nt_xent_s"] = nt_xent_time(args.nt_batch, args.nt_dim, args.steps * 5)
  out["simclr_step_s"], _ = simclr_step_time(
      args.device_model, args.device_batch, args.seconds, args.steps)
  print("RESULT " + json.dumps(out), flush=True)


def run_child(devices, args):
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["JAX_PLATFORMS"] = "cpu"
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
  cmd = [sys.executable, os.path.abspath(__file__), "--child",
         f"--steps={args.steps}", f"--nt_batch={args.nt_batch}",
         f"--nt_dim={args.nt_dim}", f"--device_model={args.device_model}",
         f"--device_batch={args.device_batch}", f"--seconds={args.seconds}"]
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                        check=False)
  for line in proc.stdout.splitlines():
    if line.startswith("RESULT "):
      return json.loads(line[len("RESULT "):])
  raise RuntimeError(f"{devices}-device run failed:\n{proc.stderr[-3000:]}")


def main(argv):
  del argv
  args = flags.FLAGS
  if args.child:
    child(args)
    return

  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  print(f"CPU cores: {os.cpu_count()}")
  if not args.skip_throughput:
    import jax  # pylint: disable=g-import-not-at-top
    step_s, compile_s = simclr_step_time(args.model, args.batch, args.seconds,
                                         args.steps)
    print(f"{args.model} SimCLR train step, batch {args.batch} x 2 views x "
          f"{args.seconds} s, {jax.device_count()} {jax.devices()[0].platform}"
          f" device(s): {step_s:.3f} s/step = "
          f"{args.batch / step_s:.2f} clips/s "
          f"({2 * args.batch / step_s:.2f} views/s); first call (compile) "
          f"{compile_s:.1f} s")
  if not args.skip_devices:
    results = {n: run_child(n, args) for n in (1, 8)}
    print(f"NT-Xent loss+grad, global batch {args.nt_batch} x {args.nt_dim}:"
          + "".join(f"  {n} device(s) {r['nt_xent_s'] * 1e3:.2f} ms"
                    for n, r in results.items()))
    print(f"{args.device_model} SimCLR step (global NT-Xent), batch "
          f"{args.device_batch} x 2 x {args.seconds} s:"
          + "".join(f"  {n} device(s) {r['simclr_step_s']:.3f} s"
                    for n, r in results.items()))


if __name__ == "__main__":
  from sonify_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)
