"""The whole demo on the embedded data: train, analyse, listen.

``run_story(workdir)``:
  1. trains a small contrastive (configs/demo_simclr.py) and a small
     supervised (configs/demo_supervised.py) model with the trainer;
  2. runs the coherence study (all layers) on both, on the runs' own data
     (the validation split where there is one), with its controls: the
     untrained step-0 init of each run, and a random live map;
  3. runs the top-k study on both (a few layers, strongest maps, a few
     clips shared by both models), each sonification next to its controls;
  4. sonifies the contrastive model's strongest maps at each of its kept
     checkpoints (feature evolution);
  5. builds the atlas of both models (every map of every layer on its top
     clips) inside the gallery folder, with its page (``atlas.html``),
     linked from the gallery;
  6. writes the listening gallery comparing them (with the coherence and
     evolution figures), and prints where it is.

Clips are cropped / zero-padded to 1 s (``CLIP_SECONDS``) so every study
compiles one shape per layer; the embedded clips are 1-4 s long.
Re-running resumes training from the workdir's checkpoints.
"""
import os
import time
from typing import Any, Dict, Optional, Tuple

import numpy as np

from sonify_jax import config_files
from sonify_jax.analysis.core import common

CLIP_SECONDS = 1.0
SHARED_CLIPS = 3  # clips heard through both models at every top-k layer


def shared_clips(source, max_clips: Optional[int], count: int):
  """``count`` clip indices of distinct classes where possible (the first
  clip of each class in source order), for the same-clip comparison."""
  n = len(source) if max_clips is None else min(len(source), max_clips)
  chosen, seen = [], set()
  for i in range(n):
    label = source[i]["label"]
    key = int(label) if getattr(label, "ndim", 0) == 0 else tuple(
        int(v) for v in label)
    if key not in seen:
      seen.add(key)
      chosen.append(i)
    if len(chosen) == count:
      break
  return chosen or list(range(min(n, count)))


def _config(name: str, arg: Optional[str]):
  here = os.path.dirname(os.path.abspath(__file__))
  path = os.path.join(here, "..", "..", "configs", name)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config {path} not found (run from a checkout "
                            "or an editable install)")
  return config_files.load_module(path).get_config(arg)


def run_story(workdir: str, quick: bool = False,
              steps: Optional[int] = None, max_clips: Optional[int] = None
              ) -> Dict[str, Any]:
  """Runs the demo; returns the paths and the headline numbers.

  Args:
    workdir: everything goes under it (``simclr/``, ``supervised/``,
      ``coherence/``, ``topk_*``, ``evolution_contrastive/``,
      ``gallery/index.html``).
    quick: a reduced run (few training steps, fewer clips/layers) for tests
      and smoke checks; the outputs are not meaningful.
    steps: training steps per model (default 800, quick 4).
    max_clips: clips of the test split per study (default all, quick 6).
  """
  from sonify_jax.analysis.studies import atlas  # pylint: disable=g-import-not-at-top
  from sonify_jax.analysis.pages import atlas_page  # pylint: disable=g-import-not-at-top
  from sonify_jax.analysis.studies import coherence  # pylint: disable=g-import-not-at-top
  from sonify_jax.analysis.core import controls  # pylint: disable=g-import-not-at-top
  from sonify_jax.analysis.studies import evolution  # pylint: disable=g-import-not-at-top
  from sonify_jax.analysis.pages import gallery  # pylint: disable=g-import-not-at-top
  from sonify_jax.analysis import run_data  # pylint: disable=g-import-not-at-top
  from sonify_jax.analysis.studies import topk  # pylint: disable=g-import-not-at-top
  from sonify_jax.data import catalog  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import checkpoints, probe, trainer  # pylint: disable=g-import-not-at-top

  start = time.time()
  workdir = os.path.abspath(workdir)
  steps = steps or (4 if quick else 800)
  if quick and max_clips is None:
    max_clips = 6
  models = {}
  for name, config_file, arg in (
      ("contrastive", "demo_simclr.py", f"steps={steps}"),
      ("supervised", "demo_supervised.py", f"steps={steps}")):
    config = _config(config_file, arg)
    if quick:
      config.batch_size = 8
      config.log_every_steps = 1
      if "eval_every_steps" in config:
        config.eval_every_steps = 0
      config.checkpoint_every_steps = steps
    run_dir = os.path.join(workdir, "simclr" if name == "contrastive"
                           else "supervised")
    common.log(f"[story] training the {name} model ({steps} steps) in "
               f"{run_dir} ({time.time() - start:.0f} s so far)")
    final = trainer.train_and_evaluate(config, run_dir)
    # Trained encoder and its untrained step-0 init (the control).
    models[name] = controls.load_run(run_dir)
    common.log(f"[story] {name}: " + ", ".join(
        f"{k}={v:.4f}" for k, v in sorted(final.items())))

  arch = models["supervised"].arch
  clip_samples = int(CLIP_SECONDS * arch.sample_rate)
  last = arch.num_blocks
  topk_layers = (2, last) if quick else common.spread_layers(arch, 4)
  layers = (2, last) if quick else None   # coherence and atlas: all
  common.log(f"[story] linear probe of the contrastive encoder and its "
             f"untrained init ({time.time() - start:.0f} s so far)")
  probed = probe.probe_run(
      os.path.join(workdir, "simclr"), catalog.get_source("embedded", "train"),
      catalog.get_source("embedded", "test"),
      val_source=catalog.get_source("embedded", "validation"))
  # The runs' own data: validation split where the dataset has one.
  source, data = run_data.study_source(models["supervised"].info)
  common.log(f"[story] coherence study on {len(source)} {data['split']} "
             f"clips ({time.time() - start:.0f} s so far)")
  coh = coherence.run_coherence(
      {k: [run] for k, run in models.items()}, source,
      os.path.join(workdir, "coherence"), layers=layers,
      clip_samples=clip_samples, max_clips=max_clips)
  topk_dirs = {}
  shared = shared_clips(source, max_clips, 2 if quick else SHARED_CLIPS)
  for name, run in models.items():
    common.log(f"[story] top-k study, {name} ({time.time() - start:.0f} s "
               "so far)")
    out = os.path.join(workdir, f"topk_{name}")
    topk.run_topk(run.trained, run.arch, source, out, layers=topk_layers,
                  k=3, max_maps=2 if quick else 3,
                  clip_samples=clip_samples, max_clips=max_clips,
                  model_name=name, figure_maps=4, untrained=run.untrained,
                  shared_clips=shared)
    topk_dirs[name] = out
  # Feature evolution of the contrastive model over its kept checkpoints.
  common.log(f"[story] feature evolution, contrastive "
             f"({time.time() - start:.0f} s so far)")
  evo_dir = os.path.join(workdir, "evolution_contrastive")
  simclr_dir = os.path.join(workdir, "simclr")
  ckpts, evo_arch = evolution.load_checkpoints(simclr_dir)
  evo = evolution.run_evolution(
      ckpts, evo_arch, source, evo_dir, layers=common.spread_layers(arch, 2),
      maps_per_layer=2 if quick else 3, clip_samples=clip_samples,
      max_clips=max_clips, progress=True,
      selected_step=checkpoints.choose_step(simclr_dir).step)
  del evo
  figures = {f"Mean top-5 coherence between each {data['split']} clip and "
             "the sonification of its most active map, per layer (solid), "
             "next to its controls (dashed). The controls are the untrained "
             "init of the same run and a random live map of the trained "
             "model.":
             (os.path.join(workdir, "coherence", "coherence.png"),
              coherence_headline(coh))}
  figures.update(_activity_and_time_invariance(list(models.items()), source,
                                              workdir, quick, max_clips))
  # Does it depend on the weights? The sanity study of both models.
  from sonify_jax.analysis.studies import sanity  # pylint: disable=g-import-not-at-top
  sanity_dirs = {}
  for name, run in models.items():
    common.log(f"[story] sanity study, {name} ({time.time() - start:.0f} s "
               "so far)")
    sanity_dirs[name] = os.path.join(workdir, f"sanity_{name}")
    sanity.run_sanity(run, source, sanity_dirs[name],
                      layers=(2,) if quick else common.spread_layers(arch, 3),
                      rules=("deconvnet", "gradient"),
                      max_clips=3 if quick else 6,
                      clip_samples=clip_samples, model_name=name)
  # What do its maps respond to? Dissection on generated probes (no data).
  from sonify_jax.analysis.studies import dissect  # pylint: disable=g-import-not-at-top
  dissect_dirs = {}
  for name, run in models.items():
    common.log(f"[story] dissection, {name} ({time.time() - start:.0f} s "
               "so far)")
    dissect_dirs[name] = os.path.join(workdir, f"dissect_{name}")
    dissect.run_dissect(run, dissect_dirs[name],
                        layers=(2,) if quick else common.spread_layers(
                            arch, 3), draws=2 if quick else dissect.DRAWS,
                        model_name=name)
  # The atlas: every map of every layer of both models, inside the gallery.
  gallery_dir = os.path.join(workdir, "gallery")
  atlas_dirs = {}
  for name, run in models.items():
    common.log(f"[story] atlas, {name} ({time.time() - start:.0f} s so far)")
    atlas_dirs[name] = os.path.join(gallery_dir, "atlas", name)
    atlas.run_atlas(run.trained, run.arch, source, atlas_dirs[name],
                    layers=layers, k=2 if quick else 5,
                    clip_samples=clip_samples, max_clips=max_clips,
                    model_name=name)
  atlas_page.write_atlas_page(
      gallery_dir, atlas_dirs,
      title="sonify_jax atlas: every feature map of both models")
  page = gallery.write_gallery(
      gallery_dir, topk_dirs, links={
          "The atlas: every feature map of every layer of both models, "
          "each on its top clips": "atlas.html"},
      title="sonify_jax: contrastive vs supervised CNN12 (embedded data)",
      notes="What the feature maps of each model respond to, as sound: the "
      "same clips through both models, then the top clips of each model's "
      "strongest maps, each next to its controls.",
      figures=figures, evolution={"contrastive": evo_dir},
      sanity=sanity_dirs, dissect=dissect_dirs)
  seconds = time.time() - start
  print(f"Listening gallery: file://{page}")
  rates = ", ".join(f"{k} {v['clips_per_s']:.1f} clips/s"
                    for k, v in coh.items())
  print(f"Coherence figure: "
        f"{os.path.join(workdir, 'coherence', 'coherence.png')} ({rates})")
  trained, init = probed["trained"], probed["init"]
  print("Linear probe, contrastive encoder (block-11 whole-clip means, "
        f"embedded train+validation -> test): trained {trained.accuracy:.3f}"
        f", its untrained init {init.accuracy:.3f}, majority class "
        f"{trained.majority:.3f}")
  print(f"Done in {seconds / 60:.1f} min; everything is under {workdir}")
  return {"gallery": page, "coherence": coh, "topk": topk_dirs,
          "probe": {k: v.to_dict() for k, v in probed.items()},
          "seconds": seconds}


def coherence_headline(summary: Dict[str, Any]) -> str:
  """One sentence: each model's coherence over layers against its
  controls."""
  from sonify_jax.analysis.core import controls  # pylint: disable=g-import-not-at-top
  parts = []
  for name, s in summary.items():
    means = {c: float(np.mean(t["mean"])) for c, t in s["conditions"].items()}
    trained = means.pop(controls.TRAINED)
    parts.append(f"{name} {trained:.3f} (" + ", ".join(
        f"{controls.LABELS[c]} {m:.3f}" for c, m in means.items()) + ")")
  return "Top-5 coherence, mean over layers: " + "; ".join(parts) + "."


def _activity_and_time_invariance(runs, source, workdir: str,
                                  quick: bool = False,
                                  max_clips: Optional[int] = None
                                  ) -> Dict[str, Tuple[str, str]]:
  """Both studies on the demo's models, cheaply (a few layers, few maps and
  clips); returns ``{caption: (png, headline)}`` for the gallery."""
  from sonify_jax.analysis.core import controls  # pylint: disable=g-import-not-at-top
  from sonify_jax.analysis.studies import activity, time_invariance  # pylint: disable=g-import-not-at-top
  arch = controls.as_run(runs[0][1]).arch
  layers = (1, arch.num_blocks) if quick else tuple(sorted(
      {1} | set(common.spread_layers(arch, 3))))
  figures = {}
  out = os.path.join(workdir, "activity")
  result = activity.run_on_runs(runs, source, out, layers, k=2,
                                max_maps=2 if quick else 4,
                                clip_samples=arch.sample_rate,   # 1 s
                                max_clips=max_clips)
  figures[result["caption"]] = (os.path.join(out, result["figure"]),
                                activity.short_headline(result))
  out = os.path.join(workdir, "time_invariance")
  result = time_invariance.run_on_runs(runs, source, out, layers,
                                       max_clips=2)
  figures[result["caption"]] = (os.path.join(out, result["figure"]),
                                time_invariance.short_headline(result))
  return figures
