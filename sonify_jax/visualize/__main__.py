r"""Synthesise the sound each map of a layer wants to hear.

  python -m sonify_jax.visualize --checkpoint=RUN [--step=N] --layer=L \
      --maps=SPEC --out=DIR [--seconds=S] [--iterations=N] [--seed=K] \
      [--audio=CLIP] [--where=mean|centre] [--scale_from=FOLDER]

``RUN`` is a training workdir or a converted network, ``--step`` as the
sonify command's (``--step=0`` is the untrained init). ``--layer`` is a
block number, or ``head`` for a network with a head (CREPE's 360 pitch
bins, FCN-F0's 486): each map is then one class, its logit averaged over
frames. ``SPEC``: ``0,5,9``; ``all``; ``top:N``, the N maps the ``--audio``
clip drives most. ``--scale_from``: the decorrelating scale is the mean
spectrum of that folder's audio instead of 1/f. Writes
``DIR/<layer>_<map>.wav``, its spectrogram ``.png`` and
``DIR/visualize.json``, built beside DIR and renamed in; bad input ends in
one ``error:`` line and exit status 2 before anything is written.
"""
from absl import app
from absl import flags

from sonify_jax import cli, flag_check, paths
from sonify_jax.domains import Choice, Float, Int, OrNone, Text

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Training workdir or converted network (its folder, "
    "checkpoints folder or one step folder).")
_STEP = flags.DEFINE_string(
    "step", None, "Checkpoint step: N (0: the untrained init), 'latest', or "
    "(default) the step the run selected.")
_LAYER = flags.DEFINE_string("layer", None, "Block number, or 'head'.")
_MAPS = flags.DEFINE_string("maps", None, "Map indices like 0,5,9; 'all'; "
                            "or top:N on --audio.")
_OUT = flags.DEFINE_string("out", None, "Output folder.")
_SECONDS = flags.DEFINE_float("seconds", 0.5, "Length of each sound.")
_ITERATIONS = flags.DEFINE_integer("iterations", 256, "Optimisation steps.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the optimisation (its "
                             "start and transforms).")
_AUDIO = flags.DEFINE_string("audio", None, "Clip that ranks maps for "
                             "--maps=top:N.")
_WHERE = flags.DEFINE_string("where", "mean", "A block map's objective: its "
                             "mean over time, or the unit at the centre.")
_SCALE_FROM = flags.DEFINE_string(
    "scale_from", None, "Folder of audio whose mean spectrum is the "
    "decorrelating scale (default 1/f).")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.05, "Adam's step.")

FLAG_DOMAINS = {
    "checkpoint": OrNone(Text(r".+", "a run folder")),
    "step": OrNone(Text(r"(?i)\s*(-?\d+|latest|best|selected)?\s*",
                        "a step number, 'latest' or 'best'")),
    "layer": OrNone(Text(r"(?i)\s*(\d+|head)\s*", "a block number or 'head'")),
    "maps": OrNone(Text(r"(?i)\s*(all|top:\s*\d+|\d+(\s*,\s*\d+)*)\s*",
                        "map indices like 0,5, 'all' or top:N")),
    "out": OrNone(Text(r".+", "an output folder")),
    "seconds": Float(0.0, 60.0, low_open=True, meaning="seconds"),
    "iterations": Int(1, 100000, meaning="steps"),
    "seed": Int(0),
    "audio": OrNone(Text(r".+", "an audio file path")),
    "where": Choice(("mean", "centre")),
    "scale_from": OrNone(Text(r".+", "an audio folder")),
    "learning_rate": Float(0.0, 10.0, low_open=True, meaning="a step size"),
}
flag_check.register(FLAG_DOMAINS)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for flag in (_CHECKPOINT, _LAYER, _MAPS, _OUT):
    if flag.value is None:
      raise app.UsageError(f"--{flag.name} is required")
  # Heavy imports after the flags are checked: a usage error stays quick.
  import jax  # pylint: disable=g-import-not-at-top
  from sonify_jax import audio_io, run_loading  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  from sonify_jax.visualize import files, objective, optimize  # pylint: disable=g-import-not-at-top
  files.check_output_dir(_OUT.value)
  layer = files.parse_layer(_LAYER.value)
  params, net, choice = run_loading.load(
      _CHECKPOINT.value, checkpoints.parse_step(_STEP.value),
      with_head=layer == objective.HEAD)
  print(f"checkpoint: {_CHECKPOINT.value} {choice.describe()}")
  settings = optimize.Settings(steps=_ITERATIONS.value,
                               learning_rate=_LEARNING_RATE.value,
                               where=_WHERE.value)
  objective.check(net, layer, settings.where)
  audio = (None if _AUDIO.value is None
           else audio_io.load_audio(_AUDIO.value, net.sample_rate))
  maps = files.parse_maps(_MAPS.value, params, net, layer, audio, settings)
  scale = (None if _SCALE_FROM.value is None else files.reference_scale(
      _SCALE_FROM.value, net, _SECONDS.value, settings))
  result = optimize.visualize(params, net, layer, maps,
                              jax.random.PRNGKey(_SEED.value),
                              seconds=_SECONDS.value, settings=settings,
                              scale=scale)
  record = {"checkpoint": paths.resolve(_CHECKPOINT.value), **choice.record(),
            "scale": "1/f" if _SCALE_FROM.value is None else
                     {"mean_spectrum_of": paths.resolve(_SCALE_FROM.value)}}
  index = files.write(_OUT.value, result, net, layer, seed=_SEED.value,
                      seconds=_SECONDS.value, settings=settings,
                      record=record)
  print(f"visualized layer {layer} maps {maps} of {net.name}: {index}")


if __name__ == "__main__":
  cli.run(main)
