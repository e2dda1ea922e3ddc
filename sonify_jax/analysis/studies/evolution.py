"""Feature evolution over training (thesis 5.3.3).

On the run's selected checkpoint (best on validation; the CLI and the demo
pass it, else the largest step), pick the strongest feature maps of each
layer and each map's top clip (one streamed top-1 pass); then sonify the
same (map, clip) pairs with the encoder of every kept checkpoint and lay the
spectrograms out as a sequence (rows: pairs; columns: input, then steps;
the selected step's column is marked, and the JSON records it).

Writes ``evolution.json``, ``evolution_layerLL.png`` and the WAVs
``layerLL/mapMMMM_stepSSSSSSS.wav`` (plus ``layerLL/mapMMMM_input.wav``).
"""
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from sonify_jax import atomic_io, audio_io
from sonify_jax.analysis import studies
from sonify_jax.analysis.core import common, shares
from sonify_jax.models.network import Network

Params = Any


def load_checkpoints(workdir: str, steps: Optional[Sequence[int]] = None
                     ) -> Tuple[Sequence[Tuple[int, Params]], Network]:
  """``([(step, encoder params), ...], arch)`` of a training run's kept
  checkpoints (all, or ``steps``), oldest first."""
  from sonify_jax.models.registry import get_network  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  steps = sorted(steps or checkpoints.available_steps(workdir))
  if not steps:
    raise FileNotFoundError(f"no checkpoints under {workdir}")
  out, arch_name = [], None
  for step in steps:
    params, arch_name = checkpoints.load_encoder(workdir, step)
    out.append((int(step), params))
  return out, get_network(arch_name)


def run_evolution(checkpoints: Sequence[Tuple[int, Params]],
                  arch: Network, source, out_dir: str,
                  layers: Optional[Sequence[int]] = None,
                  maps_per_layer: int = 4, batch_size: int = 16,
                  clip_samples: Optional[int] = None,
                  max_clips: Optional[int] = None, write_wavs: bool = True,
                  progress: bool = True,
                  selected_step: Optional[int] = None,
                  share: Optional[shares.Share] = None) -> Dict[str, Any]:
  """Evolution study.

  Args:
    checkpoints: ``[(step, encoder params), ...]``.
    arch: the architecture of every checkpoint.
    source: ClipSource to pick the top clips from.
    out_dir: output folder.
    layers: blocks to study (default ``common.spread_layers``).
    maps_per_layer: strongest maps (top-1 activation, selected checkpoint).
    selected_step: the checkpoint that picks the maps and their clips, and
      is marked in the figures: the run's selected step (best on
      validation); None for the largest step.
    share: this process's share of the clips (default the running
      process's): it streams its clips for the top-k and sonifies the pairs
      of its clips; every process returns the whole result and the chief
      writes the files.
  Returns:
    ``{'steps': [...], 'selected_step': int, 'layers': {str(layer):
    [{'map', 'clip_index', 'clip_id', 'activation', 'wavs': {str(step):
    path}, 'dead': {str(step): all-zero sonification}}]}, 'figures':
    {...}}``. Step 0 (the untrained init, which the trainer always keeps)
    is the control.
  """
  from sonify_jax.analysis.figures import panels  # pylint: disable=g-import-not-at-top
  from sonify_jax.analysis.studies import topk  # pylint: disable=g-import-not-at-top
  if not checkpoints:
    raise ValueError("no checkpoints given")
  checkpoints = sorted(checkpoints, key=lambda c: c[0])
  steps = [s for s, _ in checkpoints]
  if len(set(steps)) != len(steps):
    raise ValueError(f"duplicate checkpoint steps: {steps}")
  if selected_step is None:
    selected_step = steps[-1]
  if selected_step not in steps:
    raise ValueError(f"selected step {selected_step} is not among the "
                     f"checkpoints {steps}")
  layers = common.check_layers(
      common.spread_layers(arch) if layers is None else layers, arch)
  min_samples = arch.min_input_length(max(layers))
  selected = dict(checkpoints)[selected_step]
  share = share or shares.Share.of_process()
  tops = topk.stream_topk(selected, arch, source, layers, k=1,
                          batch_size=batch_size, clip_samples=clip_samples,
                          max_clips=max_clips, progress=progress, share=share)
  writes = share.chief
  if writes:
    os.makedirs(out_dir, exist_ok=True)
  result: Dict[str, Any] = {"steps": steps, "selected_step": selected_step,
                            "layers": {}, "figures": {}}
  bar = common.Progress("evolution", len(layers) * len(steps),
                        unit="layer-steps", enabled=progress)
  for layer in layers:
    maps = topk.select_maps(tops[layer], max_maps=maps_per_layer)
    clip_ids = tops[layer].indices[maps, 0]
    clips = [common.load_clip(source, int(i), min_samples, clip_samples)
             for i in clip_ids]
    rows = [[None] * len(steps) for _ in maps]
    for j, (_, params) in enumerate(checkpoints):
      # Group by length: the pair sonifier takes equal-length clips.
      by_len: Dict[int, list] = {}
      for r, c in enumerate(clips):
        by_len.setdefault(c.shape[0], []).append(r)
      for rs in by_len.values():
        out = shares.sonify_pairs(params, np.stack([clips[r] for r in rs]),
                                  maps[rs], layer, arch, batch_size, share,
                                  owners=clip_ids[rs])
        for r, s in zip(rs, out):
          rows[r][j] = s
      bar.update(1)
    entries = []
    layer_dir = os.path.join(out_dir, f"layer{layer:02d}")
    for r, m in enumerate(maps):
      entry = {"map": int(m), "clip_index": int(clip_ids[r]),
               "clip_id": str(source[int(clip_ids[r])].get("id", "")),
               "activation": float(tops[layer].values[m, 0]), "wavs": {},
               "dead": {str(step): not bool(np.any(s))
                        for step, s in zip(steps, rows[r])}}
      if write_wavs:
        files = [(os.path.join(layer_dir, f"map{m:04d}_input.wav"),
                  clips[r])] + [
                      (os.path.join(layer_dir,
                                    f"map{m:04d}_step{step:07d}.wav"), s)
                      for step, s in zip(steps, rows[r])]
        if writes:
          for path, audio in files:
            audio_io.write_wav(path, audio, arch.sample_rate)
        entry["input_wav"] = os.path.relpath(files[0][0], out_dir)
        entry["wavs"] = {str(step): os.path.relpath(path, out_dir)
                         for step, (path, _) in zip(steps, files[1:])}
      entries.append(entry)
    result["layers"][str(layer)] = entries
    fig = os.path.join(out_dir, f"evolution_layer{layer:02d}.png")
    if writes:
      panels.evolution_grid(
          fig, [(f"map {m}", c) for m, c in zip(maps, clips)], steps, rows,
          arch.sample_rate, title=f"layer {layer}: sonification of the "
          f"selected model's (step {selected_step}) top clip per map, "
          "across training", marked_step=selected_step)
    result["figures"][str(layer)] = os.path.relpath(fig, out_dir)
    result.setdefault("_arrays", {})[layer] = rows
  bar.close()
  arrays = result.pop("_arrays")
  if writes:
    atomic_io.write_json(os.path.join(out_dir, "evolution.json"), result)
  result["sonifications"] = arrays  # {layer: [pair][step] waveforms}
  return result


# ------------------------------------------------ python -m analysis.run


def _run_study(context) -> None:
  steps, arch = load_checkpoints(context.checkpoints[0][1])
  run_evolution(steps, arch, context.source, context.workdir,
                layers=context.layers,
                maps_per_layer=context.options.maps_per_layer,
                selected_step=context.chosen[0][2].step,
                **context.common_kw())
  context.record(os.path.join(context.workdir, "evolution.json"),
                 context.chosen[:1])
  context.say(f"evolution: {context.workdir}/evolution.json")


STUDY = studies.Study("evolution", studies.DATA_FLAGS | {"maps_per_layer"},
                      _run_study, max_runs=1)
