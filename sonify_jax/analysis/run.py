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
  python -m sonify_jax.analysis.run --study=gallery --workdir=/tmp/site \
      --checkpoint=contrastive=/tmp/topk_a,supervised=/tmp/topk_b

``--checkpoint`` takes training workdirs (or their ``checkpoints`` dirs), as
``path`` or ``name=path``, comma-separated and/or repeated; for the gallery
it takes top-k output folders. Every study writes JSON + PNG into
``--workdir``.
"""
from typing import Dict, List, Tuple

from absl import app
from absl import flags

from sonify_jax import cli

STUDIES = ("topk", "residual", "layer_importance", "coherence", "evolution",
           "gallery", "atlas")

_STUDY = flags.DEFINE_enum("study", None, STUDIES, "Which study to run.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.")
_CHECKPOINT = flags.DEFINE_multi_string(
    "checkpoint", [], "Training workdir(s) as path or name=path; "
    "comma-separated and/or repeated.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default latest).")
_DATASET = flags.DEFINE_string("dataset", "embedded", "catalog source name.")
_SPLIT = flags.DEFINE_string("split", "test", "Split studied.")
_TRAIN_SPLIT = flags.DEFINE_string("train_split", "train",
                                   "Train split (layer_importance).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Data folder, if needed.")
_LAYERS = flags.DEFINE_list("layers", None, "Blocks, or 'all' (default).")
_K = flags.DEFINE_integer("k", 5, "Top clips per map (topk).")
_MAX_MAPS = flags.DEFINE_integer("max_maps", None,
                                 "Strongest maps per layer (topk, gallery).")
_MAPS_PER_LAYER = flags.DEFINE_integer("maps_per_layer", 4,
                                       "Maps per layer (evolution).")
_MODES = flags.DEFINE_list("modes", ["fconly", "full"],
                           "layer_importance modes.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Clips per batch.")
_CLIP_SECONDS = flags.DEFINE_float(
    "clip_seconds", None, "Crop/zero-pad every clip to this length (one "
    "compiled shape); default: whole clips grouped by length.")
_MAX_CLIPS = flags.DEFINE_integer("max_clips", None,
                                  "Only the first clips of the split.")
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


def load_classifier(path: str, step=None):
  """(encoder params, head params, arch) of a supervised run."""
  from sonify_jax.models.architecture import get_architecture  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  encoder, arch_name = checkpoints.load_encoder(path, step)
  raw = checkpoints.load_state(path, step=step)
  try:
    head = raw["params"]["head"]
  except (KeyError, TypeError):
    raise ValueError(f"{path} is not a classifier run (no params['head'])"
                     ) from None
  return encoder, head, get_architecture(arch_name)


def load_encoder(path: str, step=None):
  from sonify_jax.models.architecture import get_architecture  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  params, arch_name = checkpoints.load_encoder(path, step)
  return params, get_architecture(arch_name)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _STUDY.value or not _WORKDIR.value:
    raise app.UsageError("--study and --workdir are required")
  ckpts = parse_checkpoints(_CHECKPOINT.value)
  if not ckpts:
    raise app.UsageError("--checkpoint is required")
  study, workdir = _STUDY.value, _WORKDIR.value
  layers = ([int(l) for l in _LAYERS.value]
            if _LAYERS.value and _LAYERS.value != ["all"] else None)
  clip_samples = (int(round(_CLIP_SECONDS.value * 8000))
                  if _CLIP_SECONDS.value else None)
  common_kw = dict(batch_size=_BATCH.value, clip_samples=clip_samples,
                   max_clips=_MAX_CLIPS.value)

  if study == "gallery":
    from sonify_jax.analysis import gallery  # pylint: disable=g-import-not-at-top
    path = gallery.write_gallery(workdir, dict(ckpts))
    print(f"gallery: {path}")
    return

  from sonify_jax.data import catalog  # pylint: disable=g-import-not-at-top
  source = catalog.get_source(_DATASET.value, _SPLIT.value, _DATA_DIR.value)

  if study == "topk":
    from sonify_jax.analysis import topk  # pylint: disable=g-import-not-at-top
    import os  # pylint: disable=g-import-not-at-top
    for name, path in ckpts:
      params, arch = load_encoder(path, _STEP.value)
      out = workdir if len(ckpts) == 1 else os.path.join(workdir, name)
      topk.run_topk(params, arch, source, out, layers=layers, k=_K.value,
                    max_maps=_MAX_MAPS.value, model_name=name,
                    pair_figures=_PAIR_FIGURES.value, **common_kw)
      print(f"topk ({name}): {out}/topk.json")
  elif study == "atlas":
    from sonify_jax.analysis import atlas  # pylint: disable=g-import-not-at-top
    import os  # pylint: disable=g-import-not-at-top
    from sonify_jax.analysis import atlas_page  # pylint: disable=g-import-not-at-top
    outs = {}
    for name, path in ckpts:
      params, arch = load_encoder(path, _STEP.value)
      out = workdir if len(ckpts) == 1 else os.path.join(workdir, name)
      atlas.run_atlas(params, arch, source, out, layers=layers, k=_K.value,
                      model_name=name, **common_kw)
      print(f"atlas ({name}): {out}/{atlas.INDEX}")
      outs[name] = out
    print(f"atlas page: {atlas_page.write_atlas_page(workdir, outs)}")
  elif study == "coherence":
    from sonify_jax.analysis import coherence  # pylint: disable=g-import-not-at-top
    models: Dict[str, list] = {}
    for name, path in ckpts:
      models.setdefault(name, []).append(load_encoder(path, _STEP.value))
    summary = coherence.run_coherence(models, source, workdir, layers=layers,
                                      **common_kw)
    for name, s in summary.items():
      print(f"{name}: {s['clips_per_s']:.2f} clips/s; mean top-5 coherence "
            "per layer " + ", ".join(f"{m:.3f}" for m in s["mean"]))
    print(f"coherence: {workdir}/coherence.png")
  elif study == "residual":
    from sonify_jax.analysis import residual  # pylint: disable=g-import-not-at-top
    encoder, head, arch = load_classifier(ckpts[0][1], _STEP.value)
    result = residual.run_residual(encoder, head, arch, source, workdir,
                                   layers=layers, **common_kw)
    print(f"baseline mAP {result['baseline']['mAP']:.4f}; residual: " +
          ", ".join(f"L{l} {m['mAP']:.4f}"
                    for l, m in result["layers"].items()))
  elif study == "layer_importance":
    from sonify_jax.analysis import layer_importance  # pylint: disable=g-import-not-at-top
    params, arch = load_encoder(ckpts[0][1], _STEP.value)
    train = catalog.get_source(_DATASET.value, _TRAIN_SPLIT.value,
                               _DATA_DIR.value)
    layer_importance.run_layer_importance(
        params, arch, train, source, workdir, layers=layers,
        modes=_MODES.value, **common_kw)
    print(f"layer importance: {workdir}/layer_importance.png")
  elif study == "evolution":
    from sonify_jax.analysis import evolution  # pylint: disable=g-import-not-at-top
    checkpoints, arch = evolution.load_checkpoints(ckpts[0][1])
    evolution.run_evolution(checkpoints, arch, source, workdir,
                            layers=layers or (2, 5, 8, 11),
                            maps_per_layer=_MAPS_PER_LAYER.value,
                            **common_kw)
    print(f"evolution: {workdir}/evolution.json")


if __name__ == "__main__":
  cli.run(main)
