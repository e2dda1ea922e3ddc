r"""Command line for the analysis studies.

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

``--checkpoint`` takes training workdirs (or their ``checkpoints`` dirs), as
``path`` or ``name=path``, comma-separated and/or repeated; for the gallery
it takes top-k output folders. Every study writes JSON + PNG into
``--workdir``, with the controls (``analysis.controls``: the run's untrained
step-0 init and a random live map) next to the trained model.

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
import contextlib
import json
import os
from typing import Dict, List, Optional, Tuple

from absl import app
from absl import flags
import numpy as np

from sonify_jax import cli
from sonify_jax import mirror
from sonify_jax.errors import UserError

STUDIES = ("topk", "residual", "layer_importance", "coherence", "evolution",
           "gallery", "atlas", "activity", "time_invariance", "sanity",
           "pitch")

_STUDY = flags.DEFINE_enum("study", None, STUDIES, "Which study to run.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.")
_CHECKPOINT = flags.DEFINE_multi_string(
    "checkpoint", [], "Training workdir(s) as path or name=path; "
    "comma-separated and/or repeated.")
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
    "(no dataset of its own) needs; labels are the first-level sub-folders.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Data folder (default: the "
                                "run's config.data_dir).")
_LAYERS = flags.DEFINE_list("layers", None, "Blocks, or 'all' (default).")
_K = flags.DEFINE_integer("k", 5, "Top clips per map (topk).",
                          lower_bound=1)
_MAX_MAPS = flags.DEFINE_integer("max_maps", None,
                                 "Strongest maps per layer (topk, gallery).",
                                 lower_bound=1)
_MAPS_PER_LAYER = flags.DEFINE_integer("maps_per_layer", 4,
                                       "Maps per layer (evolution).",
                                       lower_bound=1)
_MODES = flags.DEFINE_list("modes", ["fconly", "full"],
                           "layer_importance modes.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Clips per batch.",
                              lower_bound=1)
_CLIP_SECONDS = flags.DEFINE_float(
    "clip_seconds", None, "Crop/zero-pad every clip to this length (one "
    "compiled shape); default: whole clips grouped by length.",
    lower_bound=1e-3)
_MAX_CLIPS = flags.DEFINE_integer("max_clips", None,
                                  "Only the first clips of the split.",
                                  lower_bound=1)
_RULE = flags.DEFINE_enum(
    "rule", "deconvnet", ("deconvnet", "guided", "gradient",
                          "input_x_gradient"),
    "How ReLUs transpose (topk, atlas, pitch): the thesis' deconvnet, "
    "guided backprop, the plain gradient, input x gradient.")
_RULES = flags.DEFINE_list(
    "rules", ["deconvnet", "guided", "gradient"],
    "sanity: the rules compared.")
_MAPS_PER_CLIP = flags.DEFINE_integer(
    "maps_per_clip", 2, "sanity, pitch: each clip's strongest live maps "
    "sonified per layer.", lower_bound=1)
_PAIR_FIGURES = flags.DEFINE_bool("pair_figures", True,
                                  "topk: one spectrogram PNG per clip.")


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
  from sonify_jax.analysis.cli import run_data  # pylint: disable=g-import-not-at-top
  from sonify_jax.data import sources  # pylint: disable=g-import-not-at-top
  if _AUDIO_DIR.value:
    if _DATASET.value or _SPLIT.value:
      raise UserError("--audio_dir replaces --dataset/--split; give one")
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


def _print_metrics(label: str, metrics: Dict[str, float]) -> str:
  return f"{label}: " + ", ".join(f"{k} {v:.4f}"
                                  for k, v in sorted(metrics.items()))


def _parse_layers(values: Optional[List[str]]) -> Optional[List[int]]:
  """``--layers`` as block numbers; None for all."""
  if not values or values == ["all"]:
    return None
  try:
    return [int(v) for v in values]
  except ValueError:
    raise UserError(f"--layers must be block numbers like 3,6,9 or 'all', "
                    f"got {','.join(values)!r}") from None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _STUDY.value or not _WORKDIR.value:
    raise app.UsageError("--study and --workdir are required")
  from sonify_jax.deconv import rules  # pylint: disable=g-import-not-at-top
  for rule in _RULES.value:
    rules.check(rule)
  ckpts = parse_checkpoints(_CHECKPOINT.value)
  if not ckpts:
    raise app.UsageError("--checkpoint is required")
  # A gs:// --workdir: the study writes into a local stand-in folder (with
  # what is there already), uploaded when the study succeeds.
  with mirror.staged(_WORKDIR.value) as out:
    if not out.remote:
      _run_study(_STUDY.value, ckpts, _WORKDIR.value, print)
      return
    _run_study(_STUDY.value, ckpts, out.local,
               lambda text: print(text.replace(out.local, out.dest)))


def _run_study(study: str, ckpts: List[Tuple[str, str]], workdir: str,
               say) -> None:
  """Runs ``study`` into the local folder ``workdir``; ``say`` prints a
  line (naming paths in ``workdir`` where the user will find them)."""
  from sonify_jax.analysis.core import controls  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  layers = _parse_layers(_LAYERS.value)

  if study == "gallery":
    from sonify_jax.analysis.pages import gallery  # pylint: disable=g-import-not-at-top
    with contextlib.ExitStack() as stack:  # gs:// topk folders: local copies
      path = gallery.write_gallery(workdir, {
          name: stack.enter_context(mirror.pulled(topk_dir))
          for name, topk_dir in ckpts})
    say(f"gallery: {path}")
    return

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
  clip_samples = (int(round(_CLIP_SECONDS.value * rate))
                  if _CLIP_SECONDS.value else None)
  common_kw = dict(batch_size=_BATCH.value, clip_samples=clip_samples,
                   max_clips=_MAX_CLIPS.value)
  source = _source(runs[0][1], labelled=study in ("residual",
                                                   "layer_importance"))
  for name, run in runs[1:]:
    if not _AUDIO_DIR.value:
      _source(run)  # every run must fit the data studied (class count)

  if study in ("activity", "time_invariance"):
    from sonify_jax.analysis.cli import studies_cli  # pylint: disable=g-import-not-at-top
    studies_cli.run_study(study, runs, source, workdir, layers, k=_K.value,
                          max_maps=_MAX_MAPS.value, say=say, **common_kw)
    record_checkpoints(os.path.join(workdir, f"{study}.json"), chosen)

  if study == "topk":
    from sonify_jax.analysis.studies import topk  # pylint: disable=g-import-not-at-top
    for entry, (name, run) in zip(chosen, runs):
      out = workdir if len(runs) == 1 else os.path.join(workdir, name)
      topk.run_topk(run.trained, run.arch, source, out, layers=layers,
                    k=_K.value, max_maps=_MAX_MAPS.value, model_name=name,
                    pair_figures=_PAIR_FIGURES.value,
                    untrained=run.untrained, rule=_RULE.value, **common_kw)
      record_checkpoints(os.path.join(out, "topk.json"), [entry])
      say(f"topk ({name}): {out}/topk.json")
  elif study == "atlas":
    from sonify_jax.analysis.studies import atlas  # pylint: disable=g-import-not-at-top
    from sonify_jax.analysis.pages import atlas_page  # pylint: disable=g-import-not-at-top
    outs = {}
    for entry, (name, run) in zip(chosen, runs):
      out = workdir if len(runs) == 1 else os.path.join(workdir, name)
      atlas.run_atlas(run.trained, run.arch, source, out, layers=layers,
                      k=_K.value, model_name=name, rule=_RULE.value,
                      **common_kw)
      record_checkpoints(os.path.join(out, atlas.INDEX), [entry])
      say(f"atlas ({name}): {out}/{atlas.INDEX}")
      outs[name] = out
    atlas_page.write_atlas_page(workdir, outs)  # logs where the page is
  elif study == "sanity":
    from sonify_jax.analysis.studies import sanity  # pylint: disable=g-import-not-at-top
    for entry, (name, run) in zip(chosen, runs):
      out = workdir if len(runs) == 1 else os.path.join(workdir, name)
      result = sanity.run_sanity(
          run, source, out, layers=layers, rules=_RULES.value,
          maps_per_clip=_MAPS_PER_CLIP.value,
          max_clips=_MAX_CLIPS.value or sanity.DEFAULT_CLIPS,
          clip_samples=clip_samples, batch_size=_BATCH.value,
          model_name=name)
      record_checkpoints(os.path.join(out, "sanity.json"), [entry])
      for line in sanity.verdicts(result):
        say(line)
      say(f"sanity ({name}): {out}/sanity.json, {out}/sanity.png")
  elif study == "pitch":
    from sonify_jax.analysis.studies import pitch  # pylint: disable=g-import-not-at-top
    for entry, (name, run) in zip(chosen, runs):
      out = workdir if len(runs) == 1 else os.path.join(workdir, name)
      result = pitch.run_pitch(
          run, source, out, layers=layers, rule=_RULE.value,
          maps_per_clip=_MAPS_PER_CLIP.value, max_clips=_MAX_CLIPS.value,
          clip_samples=clip_samples, batch_size=_BATCH.value,
          model_name=name)
      record_checkpoints(os.path.join(out, "pitch.json"), [entry])
      say(result["headline"])
      say(f"pitch ({name}): {out}/pitch.json, {out}/pitch.png")
  elif study == "coherence":
    from sonify_jax.analysis.studies import coherence  # pylint: disable=g-import-not-at-top
    models: Dict[str, list] = {}
    for name, run in runs:
      models.setdefault(name, []).append(run)
    summary = coherence.run_coherence(models, source, workdir, layers=layers,
                                      **common_kw)
    record_checkpoints(os.path.join(workdir, "coherence.json"), chosen)
    for name, s in summary.items():
      say(f"{name}: {s['clips_per_s']:.2f} clips/s; mean top-5 coherence "
            f"per layer {s['layers']}:")
      for condition, table in s["conditions"].items():
        say(f"  {controls.LABELS[condition]}: " +
              ", ".join(f"{m:.3f}" for m in table["mean"]))
    say(f"coherence: {workdir}/coherence.png")
  elif study == "residual":
    from sonify_jax.analysis.studies import residual  # pylint: disable=g-import-not-at-top
    name, run = runs[0]
    if run.head is None:
      raise UserError(f"{ckpts[0][1]} is not a classifier run (no "
                      "classifier head): the residual study needs one")
    result = residual.run_residual(run.trained, run.head, run.arch, source,
                                   workdir, layers=layers,
                                   untrained=run.untrained, **common_kw)
    record_checkpoints(os.path.join(workdir, "residual.json"), chosen[:1])
    say(_print_metrics("intact clips", result["baseline"]))
    for condition, per_layer in result["conditions"].items():
      say(f"residual x - s(x), s = {controls.LABELS[condition]}:")
      for layer, metrics in per_layer.items():
        say("  " + _print_metrics(f"L{layer}", metrics))
    say(f"residual: {workdir}/residual.json, {workdir}/residual.png")
  elif study == "layer_importance":
    from sonify_jax.analysis.studies import layer_importance  # pylint: disable=g-import-not-at-top
    name, run = runs[0]
    train = _source(run, _TRAIN_SPLIT.value or (run.info or {}).get(
        "config", {}).get("train_split", "train"), what="probe train")
    layer_importance.run_layer_importance(
        run.trained, run.arch, train, source, workdir, layers=layers,
        modes=_MODES.value, untrained=run.untrained, **common_kw)
    record_checkpoints(os.path.join(workdir, "layer_importance.json"),
                       chosen[:1])
    say(f"layer importance: {workdir}/layer_importance.png")
  elif study == "evolution":
    from sonify_jax.analysis.studies import evolution  # pylint: disable=g-import-not-at-top
    checkpoints, arch = evolution.load_checkpoints(ckpts[0][1])
    evolution.run_evolution(checkpoints, arch, source, workdir,
                            layers=layers,
                            maps_per_layer=_MAPS_PER_LAYER.value,
                            selected_step=chosen[0][2].step, **common_kw)
    record_checkpoints(os.path.join(workdir, "evolution.json"), chosen[:1])
    say(f"evolution: {workdir}/evolution.json")


if __name__ == "__main__":
  cli.run(main)
