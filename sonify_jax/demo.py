r"""The README's main command: the whole story on the embedded default data.

  python -m sonify_jax.demo --workdir /tmp/sonify_demo
"""
import os

from absl import app
from absl import flags
import jax.numpy as jnp
import numpy as np

from sonify_jax import audio_io, deconvnet, outputs
from sonify_jax.models.architecture import SAMPLE_RATE
from sonify_jax.sonify import random_encoder

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/sonify_demo",
                               "Where everything is written.")
_LAYERS = flags.DEFINE_list("layers", ["2", "4", "6"], "Layers to sonify.")


def demo_clip(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
  """A reproducible test clip: a rising chirp, a harmonic tone, noise bursts."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
  chirp = np.sin(2 * np.pi * (200 * t + 800 * t ** 2))
  tone = sum(np.sin(2 * np.pi * 330 * h * t) / h for h in (1, 2, 3))
  bursts = rng.normal(size=t.size) * ((t % 0.5) < 0.05)
  clip = 0.4 * chirp + 0.3 * tone * (t > seconds / 2) + 0.3 * bursts
  return (0.8 * clip / np.abs(clip).max()).astype(np.float32)


def sonify_demo(workdir: str, layers) -> str:
  params, arch = random_encoder("cnn12", seed=0)
  clip = demo_clip()
  out_dir = os.path.join(workdir, "sonify_random_init")
  audio_io.write_wav(os.path.join(out_dir, "input.wav"), clip)
  entries = []
  for layer in layers:
    strength = deconvnet.feature_map_activations(
        params, jnp.asarray(clip[None]), layer, arch)[0]
    maps = [int(m) for m in np.argsort(-np.asarray(strength))[:2]]
    sonified = np.asarray(deconvnet.sonify(params, clip[None], layer, maps,
                                           arch))[0]
    for m, s in zip(maps, sonified):
      paths = outputs.write_pair(out_dir, f"layer{layer}_map{m}", clip, s,
                                 title=f"random-init CNN12, layer {layer}, "
                                 f"map {m}")
      entries.append({"layer": layer, "map": m, **paths})
      print(f"  layer {layer} map {m}: {os.path.join(out_dir, paths['wav'])}")
  return outputs.write_json(os.path.join(out_dir, "index.json"),
                            {"input": "input.wav", "sonifications": entries})


def main(argv):
  del argv
  index = sonify_demo(_WORKDIR.value, [int(l) for l in _LAYERS.value])
  print(f"done: {index}")


if __name__ == "__main__":
  app.run(main)
