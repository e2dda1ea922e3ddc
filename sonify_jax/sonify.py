r"""Sonify feature maps of a network for an audio file.

  python -m sonify_jax.sonify --audio clip.wav --layer 6 --maps 0,5 --out DIR \
      [--checkpoint RUN | RUN/checkpoints/STEP | --seed 0 --model cnn12] \
      [--rule deconvnet|guided|gradient|input_x_gradient]

``RUN`` is a training workdir or a converted network
(``python -m sonify_jax.convert``). ``--maps top:N`` picks the clip's N most
active maps of the layer. Any input format soundfile/librosa decodes is
accepted, mixed to mono and resampled to the network's rate.
Writes DIR/input.wav, DIR/layer{L}_map{M}.wav/.png and DIR/index.json; DIR is
built beside its final place and renamed in when complete, so a failed run
leaves the previous DIR (or none). Bad input ends in one ``error:`` line and
exit status 2: a flag's value outside its domain (``FLAG_DOMAINS``) while the
flags are parsed, what needs the network or the clip before anything is
written.
"""
from absl import app
from absl import flags

from sonify_jax import cli, flag_check, paths
from sonify_jax.transpose.rules import RULES
from sonify_jax.domains import Choice, Float, Int, Lazy, OrNone, Text
from sonify_jax.sonify_files import load_model, sonify_file

_AUDIO = flags.DEFINE_string("audio", None, "Input audio file.")
_LAYER = flags.DEFINE_integer("layer", None, "Block number (1..number of "
                              "blocks of the network).")
_MAPS = flags.DEFINE_string(
    "maps", "top:3", "Comma-separated feature-map indices, or top:N.")
_OUT = flags.DEFINE_string("out", None, "Output directory.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Training workdir, its checkpoints dir, or one step "
    "folder (RUN/checkpoints/800); default: a seeded random init.")
_STEP = flags.DEFINE_string(
    "step", None, "Checkpoint step: N, 'latest', or (default) the step the "
    "run selected on validation (its latest when it ranks none).")
_MODEL = flags.DEFINE_string("model", "cnn12", "Registered network of a random "
                             "init (without --checkpoint).")
_RULE = flags.DEFINE_enum("rule", "deconvnet", RULES, "How ReLUs transpose: "
                          "the deconvnet's (the thesis), guided backprop, the "
                          "plain gradient, or input x gradient.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random init.")
_MAX_SECONDS = flags.DEFINE_float(
    "max_seconds", 120.0, "Refuse longer clips (the deconvnet holds every "
    "layer's activations for the whole clip in memory).")



def _network_names():
  from sonify_jax.models.registry import NETWORKS  # pylint: disable=g-import-not-at-top
  return Choice(sorted(NETWORKS))


# Every flag's domain, checked while the flags are parsed (flag_check);
# what needs the network or the clip (the layer's range, a map's index,
# top:N against the layer's width, the clip's length) is checked in main,
# before anything is written.
FLAG_DOMAINS = {
    "audio": OrNone(Text(r".+", "an audio file path")),
    "layer": OrNone(Int(1, meaning="a block number")),
    "maps": Text(r"\s*(top:\s*\d+|\d+(\s*,\s*\d+)*)\s*",
                 "map indices like 0,5, or top:N"),
    "out": OrNone(Text(r".+", "an output folder")),
    "checkpoint": OrNone(Text(r".+", "a run folder")),
    "step": OrNone(Text(r"(?i)\s*(-?\d+|latest|best|selected)?\s*",
                        "a step number, 'latest' or 'best'")),
    "model": Lazy(_network_names),
    "rule": flag_check.ANY,
    "seed": Int(0),
    "max_seconds": Float(0.0, low_open=True, meaning="seconds"),
}
flag_check.register(FLAG_DOMAINS)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for flag in (_AUDIO, _LAYER, _OUT):
    if flag.value is None:
      raise app.UsageError(f"--{flag.name} is required")
  step = None
  model_record = {"checkpoint": None, "random_init_seed": _SEED.value}
  if _CHECKPOINT.value is not None:
    from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
    choice = checkpoints.choose_step(_CHECKPOINT.value,
                                     checkpoints.parse_step(_STEP.value))
    print(f"checkpoint: {_CHECKPOINT.value} {choice.describe()}")
    step = choice.step
    model_record = {"checkpoint": paths.resolve(_CHECKPOINT.value),
                    **choice.record()}
  params, arch = load_model(_CHECKPOINT.value, step, _MODEL.value,
                            _SEED.value)
  maps, index = sonify_file(_AUDIO.value, _LAYER.value, _MAPS.value,
                            _OUT.value, params, arch,
                            max_seconds=_MAX_SECONDS.value,
                            model_record=model_record, rule=_RULE.value)
  print(f"sonified layer {_LAYER.value} maps {maps}: {index}")


if __name__ == "__main__":
  cli.run(main)
