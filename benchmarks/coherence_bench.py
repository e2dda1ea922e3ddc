r"""Throughput of the coherence study on the embedded (demo) test split.

  python benchmarks/coherence_bench.py [--model=cnn12_tiny]
      [--workdir=RUN] [--batch_size=16] [--max_clips=N]

Prints clips/s including compilation and once compiled (after the first
batch), all 11 layers, clips cropped/padded to 1 s as in the demo story.
Uses a trained run's encoder with --workdir, else seeded random params
(throughput does not depend on the weights).
"""
from absl import flags

from sonify_jax import flag_check
from sonify_jax.domains import Choice, Int, Lazy, OrNone, Text
from sonify_jax.models import registry

_MODEL = flags.DEFINE_string("model", "cnn12_tiny", "Network name.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Trained run (optional).")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Clips per batch.")
_MAX_CLIPS = flags.DEFINE_integer("max_clips", None, "Clips to use.")

FLAG_DOMAINS = {"model": Lazy(lambda: Choice(tuple(registry.NETWORKS))),
                "workdir": OrNone(Text(r".+", "a trained run's folder")),
                "batch_size": Int(1), "max_clips": OrNone(Int(1))}
flag_check.register(FLAG_DOMAINS)


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  from sonify_jax.analysis.studies import coherence  # pylint: disable=g-import-not-at-top
  from sonify_jax.analysis.core import common  # pylint: disable=g-import-not-at-top
  from sonify_jax.demo import story  # pylint: disable=g-import-not-at-top
  from sonify_jax.data import catalog  # pylint: disable=g-import-not-at-top
  from sonify_jax.models.registry import get_network  # pylint: disable=g-import-not-at-top
  if _WORKDIR.value:
    from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
    params, arch_name = checkpoints.load_encoder(_WORKDIR.value)
    arch = get_network(arch_name)
  else:
    arch = get_network(_MODEL.value)
    params = common.random_params(arch, 0)
  source = catalog.get_source("embedded", "test")
  result = coherence.stream_coherence(
      params, arch, source, None, batch_size=_BATCH.value,
      clip_samples=story.CLIP_SAMPLES, max_clips=_MAX_CLIPS.value)
  print(f"coherence study, {arch.name}, 11 layers, {result['clips']} clips "
        f"of 1 s, batch {_BATCH.value}, {jax.devices()[0].platform} "
        f"x{jax.device_count()}: {result['clips_per_s']:.2f} clips/s incl. "
        f"compile ({result['seconds']:.1f} s), "
        f"{result['clips_per_s_warm']:.2f} clips/s compiled")


if __name__ == "__main__":
  from sonify_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)  # --help exits 0, quiet library logs, 'error:' lines
