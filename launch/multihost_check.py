r"""Multi-host sanity check: a few data-parallel SimCLR steps.

Each process reads only its own rows of every global batch -- through the
project's input pipeline (``pipeline.train_batches`` with this process's
index, over synthetic clips) or sliced from a synthetic global batch
(``distributed.host_local_batch_slice``) -- assembles the global array
(``distributed.global_batch``) and runs a few training steps over a mesh of
all devices. Each process writes the resulting (replicated) parameters to
``--out`` (``{process_id}`` in the path is replaced), so a run with N
processes can be compared with a single-process run over the same number of
devices: they must agree to float rounding. With ``--workdir`` every process
also saves the state through the trainer's orbax Checkpointer and restores it.

The step is ``sonify_jax.train.steps.make_simclr_train_step`` when that module
is importable (``--step=auto`` / ``simclr``), otherwise (``--step=ntxent``) a
self-contained data-parallel NT-Xent SGD step defined here.

On a Cloud TPU pod slice, on every worker (see ``launch.tpu_vm check``):
  python -m launch.multihost_check --out=/tmp/mh_{process_id}.npz

Two processes on one machine, 4 virtual CPU devices each:
  for i in 0 1; do XLA_FLAGS=--xla_force_host_platform_device_count=4 \
    JAX_PLATFORMS=cpu python -m launch.multihost_check --cpu_collectives=gloo \
    --coordinator_address=127.0.0.1:12345 --num_processes=2 --process_id=$i \
    --out=/tmp/mh_$i.npz & done; wait
"""
import time
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from absl import flags
import numpy as np

from sonify_jax import atomic_io
from sonify_jax import cli
from sonify_jax import flag_check
from sonify_jax.domains import Choice, Int, Lazy, OrNone, Text
from sonify_jax.errors import UserError
from sonify_jax.models import registry

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
  flags.DEFINE_integer("num_processes", None, "Number of processes.")
  flags.DEFINE_integer("process_id", None, "This process's id.")
  flags.DEFINE_string("cpu_collectives", None,
                      "CPU collectives implementation ('gloo') for "
                      "multi-process CPU runs.")
  flags.DEFINE_string("out", None, "Where to write the final params (.npz); "
                      "'{process_id}' is replaced.")
  flags.DEFINE_string("workdir", None, "If set, every process saves the "
                      "final state there with the trainer's orbax "
                      "Checkpointer and restores it again.")
  flags.DEFINE_enum("step", "auto", ["auto", "simclr", "ntxent"],
                    "Which train step to run.")
  flags.DEFINE_enum("data", "auto", ["auto", "pipeline", "synthetic"],
                    "Where each process's rows come from: the project's "
                    "input pipeline (pipeline.train_batches with this "
                    "process's index) over synthetic clips, or rows sliced "
                    "from a synthetic global batch. auto: pipeline if "
                    "importable.")
  flags.DEFINE_string("arch", "cnn12_tiny", "Encoder architecture.")
  flags.DEFINE_integer("steps", 3, "Number of train steps.")
  flags.DEFINE_integer("global_batch", 0, "Global batch size (clips); 0: two "
                       "per device.")
  flags.DEFINE_integer("clip_samples", 0, "Samples per crop; 0: the "
                       "shortest crop that gives the encoder's last block "
                       "two frames (2626 for the CNN12 family).")
  flags.DEFINE_integer("seed", 0, "Seed of data and init.")
  flag_check.register(FLAG_DOMAINS)


_TEXT = Text(r".+", "a path")
FLAG_DOMAINS = {
    "coordinator_address": OrNone(Text(r"[^\s:]+:\d+", "host:port")),
    "num_processes": OrNone(Int(1)), "process_id": OrNone(Int(0)),
    "cpu_collectives": OrNone(Choice(("gloo", "mpi"))),
    "out": OrNone(_TEXT), "workdir": OrNone(_TEXT),
    "step": flag_check.ANY, "data": flag_check.ANY,
    "arch": Lazy(lambda: Choice(registry.TRAINABLE)), "steps": Int(1),
    "global_batch": Int(0, meaning="0: two per device"),
    "clip_samples": Int(0, meaning="0: the shortest that works"),
    "seed": Int(0)}


def check_flags() -> None:
  """The rules between flags (each flag's own domain is checked while
  parsing): before JAX starts or any process connects."""
  if FLAGS.workdir and FLAGS.step == "ntxent":
    raise UserError("--workdir needs --step=simclr or auto (the project's "
                    "train step saves a TrainState); --step=ntxent has none")
  given = [FLAGS.num_processes is not None, FLAGS.process_id is not None]
  if any(given) and not all(given):
    raise UserError("--num_processes and --process_id go together")
  if all(given) and FLAGS.process_id >= FLAGS.num_processes:
    raise UserError(f"--process_id={FLAGS.process_id} must be below "
                    f"--num_processes={FLAGS.num_processes}")


def default_clip_samples(arch: str) -> int:
  """The shortest crop that gives ``arch``'s last block two frames (its
  receptive field plus one stride), from the network's description."""
  from sonify_jax.models import get_network  # pylint: disable=g-import-not-at-top
  net = get_network(arch)
  return (net.min_input_length(net.num_blocks) +
          net.total_stride(net.num_blocks))


def make_global_data(seed: int, num_steps: int, global_batch: int,
                     clip_samples: int, sample_rate: int) -> np.ndarray:
  """Deterministic audio ``[steps, global_batch, 2, clip_samples]``.

  Two crops per clip (the pipeline's ``num_crops=2`` layout): the second crop
  is the first one with a different gain and a little noise, so the two views
  are positives that differ. Tones of 100-2000 Hz at ``sample_rate``.
  """
  rng = np.random.default_rng(seed)
  base = rng.standard_normal((num_steps, global_batch, clip_samples))
  t = np.arange(clip_samples) / float(sample_rate)
  freqs = rng.uniform(100, 2000, size=(num_steps, global_batch, 1))
  tone = np.sin(2 * np.pi * freqs * t)
  view1 = 0.5 * tone + 0.1 * base
  view2 = 0.3 * tone + 0.1 * rng.standard_normal(base.shape)
  return np.stack([view1, view2], axis=2).astype(np.float32)


def local_batches(data: str, seed: int, num_steps: int, global_batch: int,
                  clip_samples: int, sample_rate: int, mesh
                  ) -> Tuple[Iterator[np.ndarray], str]:
  """This process's rows ``[B_local, 2, clip_samples]`` for each step.

  Returns:
    (iterator over the steps' local audio, data kind used).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from sonify_jax import distributed  # pylint: disable=g-import-not-at-top
  if data in ("auto", "pipeline"):
    try:
      from sonify_jax.data import pipeline  # pylint: disable=g-import-not-at-top
      from sonify_jax.data.sources import ArraySource  # pylint: disable=g-import-not-at-top
    except ImportError:
      if data == "pipeline":
        raise
    else:
      # 2 * global_batch clips, each long enough for two disjoint crops.
      clips = make_global_data(seed, 1, 2 * global_batch,
                               clip_samples + clip_samples // 2,
                               sample_rate)[0]
      source = ArraySource([c.reshape(-1) for c in clips],
                           np.zeros(len(clips), np.int32), num_classes=1,
                           name="multihost_check")
      it = pipeline.train_batches(
          source, global_batch_size=global_batch, crop_samples=clip_samples,
          num_crops=2, seed=seed, process_index=jax.process_index(),
          process_count=jax.process_count(), prefetch=0)
      return (next(it)["audio"] for _ in range(num_steps)), "pipeline"
  everything = make_global_data(seed, num_steps, global_batch, clip_samples,
                                sample_rate)
  rows = distributed.host_local_batch_slice(global_batch, mesh=mesh)
  return (everything[i, rows] for i in range(num_steps)), "synthetic"


def nt_xent_reference(z1, z2, temperature):
  """2N-sample NT-Xent (SimCLR) loss, positives ``(z1[i], z2[i])``."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  z = jnp.concatenate([z1, z2], axis=0)
  z = z / jnp.linalg.norm(z, axis=-1, keepdims=True).clip(1e-12)
  n = z1.shape[0]
  sim = z @ z.T / temperature
  sim = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, sim)
  positives = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
  logp = jax_log_softmax(sim)
  return -jnp.take_along_axis(logp, positives[:, None], axis=1).mean()


def jax_log_softmax(x):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.nn.log_softmax(x, axis=-1)


def make_ntxent_step(arch_name: str, mesh, temperature: float = 0.2,
                     learning_rate: float = 0.05) -> Tuple[Callable, Callable]:
  """Self-contained data-parallel SimCLR SGD step (no augmentation).

  Each device embeds its rows of both views; embeddings are all-gathered over
  'data' so the loss sees the global batch; gradients are pmean'd.

  Returns:
    (init_fn(key, clip_samples) -> params, step(params, audio [B, 2, T]) ->
    (params, loss)).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jax.sharding import PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from sonify_jax.models import build_encoder  # pylint: disable=g-import-not-at-top
  from sonify_jax.models.heads import ProjectionMLP  # pylint: disable=g-import-not-at-top

  encoder = build_encoder(arch_name, dropout_rate=0.0)
  head = ProjectionMLP(hidden_dim=32, out_dim=16)

  def init_fn(key, clip_samples):
    k1, k2 = jax.random.split(key)
    enc = encoder.init(k1, np.zeros((1, clip_samples), np.float32))["params"]
    proj = head.init(k2, np.zeros((1, encoder.arch.embed_dim),
                                  np.float32))["params"]
    return {"encoder": enc, "projection": proj}

  def project(params, audio):
    h = encoder.apply({"params": params["encoder"]}, audio)
    return head.apply({"params": params["projection"]}, h)

  def local_loss(params, audio):
    # audio: this device's rows [b, 2, T].
    z1 = project(params, audio[:, 0])
    z2 = project(params, audio[:, 1])
    g1 = jax.lax.all_gather(z1, "data", tiled=True)
    g2 = jax.lax.all_gather(z2, "data", tiled=True)
    return nt_xent_reference(g1, g2, temperature)

  def device_step(params, audio):
    loss, grads = jax.value_and_grad(local_loss)(params, audio)
    # Every device computes the same global loss from its own embeddings'
    # contribution; the full gradient is the sum over devices.
    grads = jax.lax.psum(grads, "data")
    params = jax.tree_util.tree_map(lambda p, g: p - learning_rate * g,
                                    params, grads)
    return params, jax.lax.pmean(loss, "data")

  step = jax.jit(jax.shard_map(device_step, mesh=mesh,
                               in_specs=(P(), P("data")),
                               out_specs=(P(), P())))
  return init_fn, step


def simclr_model_and_optimizer(arch_name: str, num_steps: int,
                               learning_rate: float = 1e-3):
  """The SimCLR model and optimiser of the check (a small projection head).

  Raises:
    ImportError: if ``sonify_jax.train`` is not available.
  """
  from sonify_jax.train import optim, state as state_lib  # pylint: disable=g-import-not-at-top
  model = state_lib.SimCLRModel(arch_name=arch_name, dropout_rate=0.1,
                                proj_hidden=32, proj_out=16)
  optimizer = optim.make_optimizer(learning_rate, weight_decay=1e-3,
                                   warmup_steps=0,
                                   total_steps=max(num_steps, 1) + 1)
  return model, optimizer


def make_simclr_step(arch_name: str, mesh, num_steps: int,
                     temperature: float = 0.2, learning_rate: float = 1e-3
                     ) -> Tuple[Callable, Callable]:
  """The project's SimCLR step (``train.steps``), without augmentation.

  Dropout stays on: the step draws one key per *global* example, so the
  result must not depend on how the batch is split over processes.

  Returns:
    (init_fn(key, clip_samples) -> TrainState, step(state, audio [B, 2, T]) ->
    (state, loss)).

  Raises:
    ImportError: if ``sonify_jax.train`` is not available.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import state as state_lib, steps  # pylint: disable=g-import-not-at-top

  model, optimizer = simclr_model_and_optimizer(arch_name, num_steps,
                                                learning_rate)
  train_step = steps.make_simclr_train_step(model, optimizer, mesh,
                                            augment_config=None,
                                            temperature=temperature)
  rng = jax.random.PRNGKey(1)

  def init_fn(key, clip_samples):
    del clip_samples  # param shapes do not depend on the clip length
    return state_lib.create_train_state(model, optimizer, key)

  def step(state, audio):
    state, metrics = train_step(state, {"audio": audio}, rng)
    return state, metrics["loss"]

  return init_fn, step


def flatten_params(tree) -> Dict[str, np.ndarray]:
  import jax  # pylint: disable=g-import-not-at-top
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    key = "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)
    flat[key] = np.asarray(leaf)
  return flat


def atomic_savez(path: str, arrays: Dict[str, np.ndarray]) -> None:
  with atomic_io.atomic_path(path) as tmp:
    with open(tmp, "wb") as f:  # a file object: savez adds no .npz suffix
      np.savez(f, **arrays)


def checkpoint_roundtrip(state: Any, workdir: str, step: int) -> bool:
  """Saves ``state`` with the trainer's Checkpointer from every process, then
  restores it; True when the restored params equal the saved ones."""
  import jax  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  ckpt = checkpoints.Checkpointer(workdir, keep_last=1)
  # All processes call save: orbax writes each one's shards and only the
  # primary process writes the metadata and finalizes the directory.
  ckpt.save(step, state)
  restored = ckpt.restore(state, step)
  ckpt.close()
  same = jax.tree_util.tree_map(
      lambda a, b: bool(np.array_equal(np.asarray(a.addressable_data(0)),
                                       np.asarray(b.addressable_data(0)))),
      state.params, restored.params)
  return all(jax.tree_util.tree_leaves(same))


def run(arch: str = "cnn12_tiny", num_steps: int = 3, global_batch_size: int = 16,
        clip_samples: int = 0, seed: int = 0, step_kind: str = "auto",
        workdir: Optional[str] = None, data: str = "auto"
        ) -> Tuple[Dict[str, np.ndarray], np.ndarray, str, Optional[bool]]:
  """Runs the check in this (already initialized) process.

  ``clip_samples`` 0 is :func:`default_clip_samples`; the audio is at the
  encoder's sample rate.

  Returns:
    (flat params after the steps, losses [num_steps], step kind used,
    whether the checkpoint round trip restored the same params (None: no
    ``workdir``)).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jax.sharding import Mesh  # pylint: disable=g-import-not-at-top
  from sonify_jax import distributed  # pylint: disable=g-import-not-at-top
  from sonify_jax.models import get_network  # pylint: disable=g-import-not-at-top

  clip_samples = clip_samples or default_clip_samples(arch)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  batches, data = local_batches(data, seed, num_steps, global_batch_size,
                                clip_samples, get_network(arch).sample_rate,
                                mesh)
  if distributed.is_chief():
    print(f"data: {data}", flush=True)
  if step_kind in ("auto", "simclr"):
    try:
      init_fn, step = make_simclr_step(arch, mesh, num_steps)
      step_kind = "simclr"
    except ImportError:
      if step_kind == "simclr":
        raise
      step_kind = "ntxent"
  if step_kind == "ntxent":
    init_fn, step = make_ntxent_step(arch, mesh)
  state = init_fn(jax.random.PRNGKey(seed), clip_samples)
  # Committed, replicated params: the step's outputs have this sharding too,
  # so step 1 reuses step 0's executable.
  state = distributed.replicate(jax.device_get(state), mesh)
  losses = []
  for i, local in enumerate(batches):
    t0 = time.time()
    # Only this process's rows are read; the global array is assembled.
    batch = distributed.global_batch(local, mesh)
    state, loss = step(state, batch)
    losses.append(float(distributed.to_host(loss)))
    if distributed.is_chief():
      print(f"step {i}: loss {losses[-1]:.6f} ({time.time() - t0:.1f}s)",
            flush=True)
  restored_ok = None
  if workdir:
    if step_kind != "simclr":
      raise ValueError("--workdir needs the project's train step (TrainState)")
    restored_ok = checkpoint_roundtrip(state, workdir, num_steps)
  params = getattr(state, "params", state)
  return (flatten_params(distributed.to_host(params)), np.array(losses),
          step_kind, restored_ok)


def main(argv):
  del argv
  check_flags()
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation",
                      FLAGS.cpu_collectives)
  from sonify_jax import distributed  # pylint: disable=g-import-not-at-top
  distributed.initialize_if_needed(FLAGS.coordinator_address,
                                   FLAGS.num_processes, FLAGS.process_id,
                                   initialization_timeout=60)
  print(f"process {jax.process_index()}/{jax.process_count()}: "
        f"{jax.local_device_count()} local, {jax.device_count()} global "
        "devices", flush=True)
  global_batch = FLAGS.global_batch or 2 * jax.device_count()
  params, losses, kind, restored_ok = run(
      FLAGS.arch, FLAGS.steps, global_batch, FLAGS.clip_samples,
      FLAGS.seed, FLAGS.step, FLAGS.workdir, FLAGS.data)
  if FLAGS.out:
    path = FLAGS.out.replace("{process_id}", str(jax.process_index()))
    params["__losses__"] = losses
    params["__step_kind__"] = np.array(kind)
    params["__process_count__"] = np.array(jax.process_count())
    if restored_ok is not None:
      params["__restored_ok__"] = np.array(restored_ok)
    atomic_savez(path, params)
  distributed.sync("multihost_check_done")
  print(f"process {jax.process_index()} done ({kind})", flush=True)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
