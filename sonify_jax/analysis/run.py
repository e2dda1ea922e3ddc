r"""Command line for the analysis studies: parse, check, load, dispatch.

  python -m sonify_jax.analysis.run --study=topk --workdir=/tmp/topk \
      --checkpoint=/tmp/simclr_run --layers=3,6,9 --k=5 --max_maps=8
  python -m sonify_jax.analysis.run --study=coherence --workdir=/tmp/coh \
      --checkpoint=contrastive=/tmp/simclr_a,contrastive=/tmp/simclr_b \
      --checkpoint=supervised=/tmp/sup_a,supervised=/tmp/sup_b
  python -m sonify_jax.analysis.run --study=residual --workdir=/tmp/res \
      --checkpoint=/tmp/sup_run
  python -m sonify_jax.analysis.run --study=layer_importance \
      --workdir=/tmp/li --checkpoint=/tmp/simclr_run --modes=fconly
  python -m sonify_jax.analysis.run --study=evolution --workdir=/tmp/evo \
      --checkpoint=/tmp/simclr_run
  python -m sonify_jax.analysis.run --study=atlas --workdir=/tmp/atlas \
      --checkpoint=/tmp/simclr_run --layers=all --k=5
  python -m sonify_jax.analysis.run --study=activity --workdir=/tmp/act \
      --checkpoint=contrastive=/tmp/simclr_run,supervised=/tmp/sup_run
  python -m sonify_jax.analysis.run --study=time_invariance \
      --workdir=/tmp/ti --checkpoint=/tmp/simclr_run
  python -m sonify_jax.analysis.run --study=gallery --workdir=/tmp/site \
      --checkpoint=contrastive=/tmp/topk_a,supervised=/tmp/topk_b

A study is one module, ``sonify_jax.analysis.studies.<name>``, found by its
name (``studies.get``): its flags, its checks, its run, its JSON. This
command only dispatches, in this order, so that bad input stops it before
anything is read or written:

1. absl parses the flags; each has a domain (``FLAG_DOMAINS``, made absl
   validators by ``flag_check``), so a bad value is one ``error:`` line;
2. the study is looked up, and a flag the user set that the study does not
   read is refused (``--rule`` with ``--study=coherence``), as are flags
   that contradict each other (``--audio_dir`` with ``--dataset``);
3. the study checks its own options (``Study.check``);
4. only then are the checkpoints and the data read and the study run.

``--checkpoint`` takes training workdirs (or their ``checkpoints`` dirs), as
``path`` or ``name=path``, comma-separated and/or repeated; for the gallery
it takes top-k output folders. Every study writes JSON + PNG into
``--workdir``, with the controls (``analysis.core.controls``: the run's
untrained step-0 init and a random live map) next to the trained model.

Checkpoint: by default each run's *selected* step: the best on validation by
its ``best_metric`` (what ``final_metrics.json`` names, else what orbax ranks
best), or its latest where the run ranks none (SimCLR without a validation
metric); ``--step=N`` reads step N, ``--step=latest`` the last one. One line
says which step and why, and each study's JSON records it
(``checkpoints``: name, path and ``checkpoint_step``/``_selected_on``/
``_selected_by``/``_why`` per run; the same fields at the top level when the
study has one run).

Data: by default the run's own dataset (``checkpoints/run.json``), its
``validation`` split where it has one (``analysis.run_data``);
``--dataset``/``--split``/``--data_dir`` override that, and a classifier
whose head predicts another number of classes is refused.
"""
import json
import types
from typing import List, Optional, Tuple

from absl import app
from absl import flags
import numpy as np

from sonify_jax import cli
from sonify_jax import flag_check
from sonify_jax import mirror
from sonify_jax.analysis import studies
from sonify_jax.domains import (Choice, Either, Float, Int, Lazy, ListOf,
                                OrNone, Path, Text)
from sonify_jax.errors import UserError

STUDIES = studies.names()
# transpose.rules.RULES (not imported here: it imports jax).
RULES = ("deconvnet", "guided", "gradient", "input_x_gradient")
# The sanity study also compares feature visualizations (studies.sanity).
SANITY_RULES = RULES + ("visualize",)
LI_MODES = ("fconly", "full")

_STUDY = flags.DEFINE_enum("study", None, STUDIES, "Which study to run.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.")
_CHECKPOINT = flags.DEFINE_multi_string(
    "checkpoint", [], "Training workdir(s) as path or name=path; "
    "comma-separated and/or repeated (gallery: top-k output folders).")
_STEP = flags.DEFINE_string(
    "step", None, "Checkpoint step: N, 'latest', or (default) the step the "
    "run selected on validation (its latest when it ranks none).")
_DATASET = flags.DEFINE_string(
    "dataset", None, "catalog source name (default: the run's own, from "
    "its checkpoints/run.json).")
_SPLIT = flags.DEFINE_string(
    "split", None, "Split studied (default: 'validation' where the dataset "
    "has one, else the run's eval_split).")
_TRAIN_SPLIT = flags.DEFINE_string(
    "train_split", None, "Probe train split (layer_importance; default the "
    "run's train_split).")
_AUDIO_DIR = flags.DEFINE_string(
    "audio_dir", None, "A plain folder of audio files (any format, any rate, "
    "recursive) to study instead of a dataset: what a converted network "
    "(no dataset of its own) needs; labels are the first-level sub-folders. "
    "layer_importance fits its probe on some files and scores it on the "
    "others (a grouped split, recorded in its JSON).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Data folder (default: the "
                                "run's config.data_dir).")
_LAYERS = flags.DEFINE_list("layers", None, "Blocks, or 'all' (default).")
_K = flags.DEFINE_integer("k", 5, "Top clips per map (topk, atlas, "
                          "activity).")
_MAX_MAPS = flags.DEFINE_integer("max_maps", None,
                                 "Strongest maps per layer (topk, activity).")
_MAPS_PER_LAYER = flags.DEFINE_integer("maps_per_layer", 4,
                                       "Maps per layer (evolution).")
_MODES = flags.DEFINE_list("modes", list(LI_MODES),
                           "layer_importance modes.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Clips per batch.")
_CLIP_SECONDS = flags.DEFINE_float(
    "clip_seconds", None, "Crop/zero-pad every clip to this length (one "
    "compiled shape); default: whole clips grouped by length.")
_MAX_CLIPS = flags.DEFINE_integer("max_clips", None,
                                  "Only the first clips of the split.")
_RULE = flags.DEFINE_enum(
    "rule", "deconvnet", RULES,
    "How ReLUs transpose (topk, atlas, pitch): the thesis' deconvnet, "
    "guided backprop, the plain gradient, input x gradient.")
_RULES = flags.DEFINE_list(
    "rules", ["deconvnet", "guided", "gradient"],
    "sanity: the rules compared (and 'visualize': feature visualization).")
_MAPS_PER_CLIP = flags.DEFINE_integer(
    "maps_per_clip", 2, "sanity, pitch: each clip's strongest live maps "
    "sonified per layer.")
_EXPLAIN = flags.DEFINE_bool(
    "explain", False, "atlas: also each map's feature visualization, how "
    "much of it survives re-initialisation, and its dissection label and "
    "tuning curve (docs/visualize.md).")
_PROBE = flags.DEFINE_string(
    "probe", None, "dissect: a folder of recorded probes added to the "
    "generated ones (notes.tsv's f0_hz labels a note; other files are "
    "labelled by their sub-folder), as scripts/make_pitched_audio.py "
    "lays them out.")
_PAIR_FIGURES = flags.DEFINE_bool("pair_figures", True,
                                  "topk: one spectrogram PNG per clip.")

_POSITIVE = Int(1)


def _dataset_names():
  from sonify_jax.data import catalog  # pylint: disable=g-import-not-at-top
  return Either(Choice(catalog.NAMES), Text(r"folder:.+"),
                f"one of {', '.join(catalog.NAMES)}, or folder:<name>")


FLAG_DOMAINS = {
    "study": flag_check.ANY,
    "workdir": OrNone(Text(r".+", "an output folder")),
    "checkpoint": flag_check.ANY,
    "step": OrNone(Text(r"(?i)\s*(-?\d+|latest|best|selected)?\s*",
                        "a step number, 'latest' or 'best'")),
    "dataset": OrNone(Lazy(_dataset_names)),
    "split": OrNone(Text(r".+", "a split name")),
    "train_split": OrNone(Text(r".+", "a split name")),
    "audio_dir": OrNone(Path(empty_ok=False, meaning="a folder of audio")),
    "data_dir": OrNone(Path(empty_ok=False)),
    "layers": OrNone(Either(
        ListOf(Int(1)), ListOf(Choice(("all",)), str),
        "block numbers like 3,6,9, or 'all'")),
    "k": _POSITIVE,
    "max_maps": OrNone(_POSITIVE),
    "maps_per_layer": _POSITIVE,
    "modes": ListOf(Choice(LI_MODES), str),
    "batch_size": _POSITIVE,
    "clip_seconds": OrNone(Float(0.0, low_open=True,
                                 meaning="seconds")),
    "max_clips": OrNone(_POSITIVE),
    "rule": flag_check.ANY,
    "rules": ListOf(Choice(SANITY_RULES), str),
    "maps_per_clip": _POSITIVE,
    "pair_figures": flag_check.ANY,
    "explain": flag_check.ANY,
    "probe": OrNone(Path(empty_ok=False, meaning="a folder of probes")),
}
flag_check.register(FLAG_DOMAINS)


def parse_checkpoints(values: List[str]) -> List[Tuple[str, str]]:
  """``['a=/x,/y', 'b=/z']`` -> ``[('a', '/x'), ('model2', '/y'), ('b',
  '/z')]`` (unnamed entries are numbered by position)."""
  out = []
  for value in values:
    for item in value.split(","):
      item = item.strip()
      if not item:
        continue
      if "=" in item:
        name, path = item.split("=", 1)
      else:
        name, path = f"model{len(out) + 1}", item
      out.append((name.strip(), path.strip()))
  return out


def record_checkpoints(json_path: str, entries) -> None:
  """Adds to a study's JSON which checkpoint step each run read.

  Args:
    json_path: the study's JSON (written by the study; rewritten here).
    entries: ``[(name, path, checkpoints.StepChoice)]``.
  """
  from sonify_jax import atomic_io  # pylint: disable=g-import-not-at-top
  with open(json_path) as f:
    result = json.load(f)
  runs = [dict(name=name, path=path, **choice.record())
          for name, path, choice in entries]
  result["checkpoints"] = runs
  if len(runs) == 1:
    result.update({k: v for k, v in runs[0].items()
                   if k.startswith("checkpoint_")})
  atomic_io.write_json(json_path, result)


def _head_classes(run) -> Optional[int]:
  if run.head is None:
    return None
  return int(np.shape(run.head["logits"]["kernel"])[-1])


def _source(run, split=None, what="eval", labelled=False):
  """The study's data at the network's rate: ``--audio_dir``, else the
  run's own dataset unless --dataset/--split say. ``labelled``: the study
  scores the run's classifier on the labels, so their classes must match
  its head's."""
  from sonify_jax.analysis import run_data  # pylint: disable=g-import-not-at-top
  from sonify_jax.data import sources  # pylint: disable=g-import-not-at-top
  if _AUDIO_DIR.value:
    from sonify_jax.data import audio_folder  # pylint: disable=g-import-not-at-top
    source = audio_folder.AudioFolderSource(
        _AUDIO_DIR.value, run.arch.sample_rate,
        run.arch.min_input_length(1))
    head = _head_classes(run)
    if labelled and head is not None and source.num_classes != head:
      raise UserError(f"--audio_dir {_AUDIO_DIR.value} has "
                      f"{source.num_classes} classes (sub-folders) but the "
                      f"classifier predicts {head}")
    return source
  if (run.info or {}).get("config", {}).get("converted") and not (
      _DATASET.value):
    raise UserError(f"{run.arch.name} is a converted network with no "
                    "dataset of its own: pass --audio_dir=FOLDER (or "
                    "--dataset)")
  source = run_data.study_source(run.info, _DATASET.value,
                                 split or _SPLIT.value, _DATA_DIR.value,
                                 _head_classes(run), what)[0]
  return sources.at_rate(source, run.arch.sample_rate)


def _parse_layers(values: Optional[List[str]]) -> Optional[List[int]]:
  """``--layers`` (its domain: block numbers or 'all') as ints; None for
  all."""
  if not values or values == ["all"]:
    return None
  return [int(v) for v in values]


def check_flags(study: studies.Study, flag_values=flags.FLAGS
                ) -> types.SimpleNamespace:
  """The checks that need no file: a flag the user set that ``study`` does
  not read, flags that contradict each other, then the study's own
  ``check``. Returns the study's options (its flags' values).

  Raises:
    UserError: the first problem, naming the flag and the study.
  """
  used = study.flags | studies.COMMON_FLAGS
  for name in sorted(FLAG_DOMAINS):
    if name not in used and flag_values[name].present:
      reads = ", ".join(f"--{n}" for n in sorted(used - {"study"}))
      raise UserError(f"--{name} is not used by --study={study.name} (it "
                      f"reads {reads}); leave it out")
  present = lambda n: n in used and flag_values[n].present  # pylint: disable=unnecessary-lambda-assignment
  if present("audio_dir"):
    clash = [f"--{n}" for n in ("dataset", "split", "data_dir")
             if present(n)]
    if clash:
      raise UserError(f"--audio_dir replaces {'/'.join(clash)}: give one")
  options = types.SimpleNamespace(**{n: flag_values[n].value
                                     for n in sorted(used)})
  if study.check is not None:
    study.check(options)
  return options


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _STUDY.value or not _WORKDIR.value:
    raise app.UsageError("--study and --workdir are required")
  # Several hosts (a TPU pod slice, or JAX_COORDINATOR_ADDRESS /
  # JAX_NUM_PROCESSES / JAX_PROCESS_ID): the atlas splits its clips among
  # the processes (analysis/core/shares.py); only the chief prints.
  from sonify_jax import distributed  # pylint: disable=g-import-not-at-top
  distributed.initialize_if_needed()
  say = print if distributed.is_chief() else (lambda text: None)
  study = studies.get(_STUDY.value)
  options = check_flags(study)
  ckpts = parse_checkpoints(_CHECKPOINT.value)
  if not ckpts:
    raise app.UsageError("--checkpoint is required")
  if study.max_runs is not None and len(ckpts) > study.max_runs:
    raise UserError(f"--study={study.name} studies {study.max_runs} run, "
                    f"got {len(ckpts)} --checkpoint entries: run it once "
                    "per run")
  # A gs:// --workdir: the study writes into a local stand-in folder (with
  # what is there already), uploaded when the study succeeds.
  with mirror.staged(_WORKDIR.value) as out:
    if not out.remote:
      _run_study(study, options, ckpts, _WORKDIR.value, say)
      return
    _run_study(study, options, ckpts, out.local,
               lambda text: say(text.replace(out.local, out.dest)))


def _run_study(study: studies.Study, options, ckpts: List[Tuple[str, str]],
               workdir: str, say) -> None:
  """Loads what ``study`` reads and runs it into the local folder
  ``workdir``; ``say`` prints a line (naming paths in ``workdir`` where the
  user will find them)."""
  from sonify_jax import distributed  # pylint: disable=g-import-not-at-top
  context = studies.Context(options=options, checkpoints=ckpts,
                            workdir=workdir, say=say,
                            layers=_parse_layers(_LAYERS.value),
                            data=_source,
                            # the chief writes the studies' files
                            record=(record_checkpoints
                                    if distributed.is_chief()
                                    else lambda json_path, entries: None))
  if not study.reads_runs:
    study.run(context)
    return
  from sonify_jax.analysis.core import controls  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  runs = [(name, controls.load_run(path, checkpoints.parse_step(_STEP.value)))
          for name, path in ckpts]
  # [(name, path, StepChoice)] per run, in --checkpoint order.
  chosen = [(name, path, run.choice)
            for (name, path), (_, run) in zip(ckpts, runs)]
  for name, path, choice in chosen:  # evolution: the step it marks
    say(f"checkpoint ({name}): {path} {choice.describe()}")
  rate = runs[0][1].arch.sample_rate
  if any(run.arch.sample_rate != rate for _, run in runs):
    raise UserError("the runs compared have different sample rates: study "
                    "them one at a time")
  for _, run in runs:  # the blocks asked for, before any clip is read
    for layer in context.layers or ():
      run.arch.check_block(layer)
  context.runs, context.chosen = runs, chosen
  context.clip_samples = (int(round(_CLIP_SECONDS.value * rate))
                          if _CLIP_SECONDS.value else None)
  if not study.reads_data:
    study.run(context)
    return
  context.source = _source(runs[0][1], labelled=study.labelled)
  for _, run in runs[1:]:
    if not _AUDIO_DIR.value:
      _source(run)  # every run must fit the data studied (class count)
  study.run(context)


if __name__ == "__main__":
  cli.run(main)
