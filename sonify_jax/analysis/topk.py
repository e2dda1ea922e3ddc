"""Top-k activating clips per feature map, sonified (the thesis' Figure A.1).

One pass over a ClipSource keeps, for every map of every requested layer,
the ``k`` clips with the highest activation (max over time of the block
output, as ``deconvnet.feature_map_activations``); memory is
``[maps, k]`` per layer plus one batch of clips. The kept clips are then read
again by index, sonified with the batched deconvnet (one (clip, map) pair
per row), and written out:

  out_dir/topk.json                       the index (see ``run_topk``)
  out_dir/layerLL/mapMMMM_rR_input.wav    the clip
  out_dir/layerLL/mapMMMM_rR_sonif.wav    its sonification for that map
  out_dir/layerLL/mapMMMM_rR.png          input | sonification spectrograms
  out_dir/figure_layerLL.png              Figure A.1 layout for the layer

Clip lengths follow ``analysis.common`` (equal-length runs, optional fixed
crop; clips shorter than the deepest layer's receptive field zero-padded).
"""
import os
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from sonify_jax import audio_io, outputs
from sonify_jax.analysis import common
from sonify_jax.models.architecture import SAMPLE_RATE, Architecture

Params = Any


def stream_topk(params: Params, arch: Architecture, source,
                layers: Optional[Sequence[int]] = None, k: int = 5,
                batch_size: int = 16, clip_samples: Optional[int] = None,
                max_clips: Optional[int] = None, progress: bool = True
                ) -> Dict[int, common.RunningTopK]:
  """Streams ``source`` once; returns ``{layer: RunningTopK}``.

  ``RunningTopK.values[m, r]`` is the activation of the rank-``r`` clip of
  map ``m`` and ``.indices[m, r]`` its index in ``source`` (-1 if fewer than
  ``k`` clips were seen).
  """
  layers = common.check_layers(layers, arch)
  min_samples = arch.min_input_length(max(layers))
  tops = {l: common.RunningTopK(arch.channels[l - 1], k) for l in layers}
  total = len(source) if max_clips is None else min(len(source), max_clips)
  bar = common.Progress("topk: activations", total, enabled=progress)
  for batch in common.iter_clip_batches(source, batch_size, min_samples,
                                        clip_samples, max_clips):
    acts = common.layer_activations(params, batch["audio"], layers, arch)
    valid = batch["valid"]
    for layer, a in zip(layers, acts):
      tops[layer].update(np.asarray(a)[valid], batch["index"][valid])
    bar.update(int(valid.sum()))
  bar.close()
  if bar.done == 0:
    raise ValueError("the source holds no clips")
  return tops


def select_maps(top: common.RunningTopK, maps: Optional[Sequence[int]] = None,
                max_maps: Optional[int] = None) -> np.ndarray:
  """Maps to report: ``maps`` as given, else all, else the ``max_maps`` with
  the strongest top-1 activation (ties by map index)."""
  num_maps = top.values.shape[0]
  if maps is not None:
    maps = np.asarray(list(maps), np.int64)
    bad = maps[(maps < 0) | (maps >= num_maps)]
    if bad.size:
      raise ValueError(f"feature map(s) {bad.tolist()} out of range 0.."
                       f"{num_maps - 1}")
    return maps
  if max_maps is None or max_maps >= num_maps:
    return np.arange(num_maps)
  order = np.lexsort((np.arange(num_maps), -top.values[:, 0]))
  return np.sort(order[:max_maps])


def run_topk(params: Params, arch: Architecture, source, out_dir: str,
             layers: Optional[Sequence[int]] = None, k: int = 5,
             maps: Optional[Union[Sequence[int], Dict[int, Sequence[int]]]]
             = None, max_maps: Optional[int] = None, batch_size: int = 16,
             clip_samples: Optional[int] = None,
             max_clips: Optional[int] = None, figure_clips: int = 3,
             figure_maps: int = 16, pair_figures: bool = True,
             model_name: str = "model", progress: bool = True
             ) -> Dict[str, Any]:
  """Top-k study: stream, sonify the kept clips, write WAVs/figures/JSON.

  Args:
    params, arch: encoder params and architecture.
    source: a ClipSource.
    out_dir: output folder (created).
    layers: 1-based blocks (default all).
    k: clips kept per map.
    maps: maps to report, for every layer (a list) or per layer (a dict);
      default all maps, or ``max_maps`` strongest.
    max_maps: cap on maps reported per layer (strongest top-1 activation).
    batch_size: clips per forward batch and pairs per sonify batch.
    clip_samples: optional fixed clip length (crop / zero-pad).
    max_clips: only stream the first clips of the source.
    figure_clips: top clips per map in the layer figure (Figure A.1: 3).
    figure_maps: maps (rows) in the layer figure.
    pair_figures: write one input|sonification PNG per (map, rank).
    model_name: recorded in the index (the gallery's column title).
  Returns:
    the index written to ``out_dir/topk.json``: ``{'model', 'source',
    'sample_rate', 'k', 'layers': {str(layer): {str(map): [entry, ...]}}}``,
    one entry per rank: ``{'rank', 'clip_index', 'clip_id', 'activation',
    'input_wav', 'sonification_wav', 'figure'}`` (paths relative to
    ``out_dir``; 'figure' None without pair figures), plus
    ``'figures': {str(layer): path}``.
  """
  layers = common.check_layers(layers, arch)
  min_samples = arch.min_input_length(max(layers))
  os.makedirs(out_dir, exist_ok=True)
  tops = stream_topk(params, arch, source, layers, k, batch_size,
                     clip_samples, max_clips, progress)
  index: Dict[str, Any] = {
      "model": model_name, "arch": arch.name,
      "source": getattr(source, "name", "source"),
      "sample_rate": SAMPLE_RATE, "k": k, "layers": {}, "figures": {}}
  todo = sum(len(select_maps(tops[l], _maps_for(maps, l), max_maps))
             for l in layers)
  bar = common.Progress("topk: sonify + write", todo, unit="maps",
                        enabled=progress)
  for layer in layers:
    top = tops[layer]
    chosen = select_maps(top, _maps_for(maps, layer), max_maps)
    layer_dir = os.path.join(out_dir, f"layer{layer:02d}")
    os.makedirs(layer_dir, exist_ok=True)
    pairs = [(int(m), r, int(top.indices[m, r]), float(top.values[m, r]))
             for m in chosen for r in range(k) if top.indices[m, r] >= 0]
    clips = {i: common.load_clip(source, i, min_samples, clip_samples)
             for i in sorted({p[2] for p in pairs})}
    sonifs = _sonify_grouped(params, arch, layer, pairs, clips, batch_size)
    layer_index: Dict[str, Any] = {}
    rows = []
    for m in chosen:
      entries = []
      for (mm, r, ci, value), sonif in zip(pairs, sonifs):
        if mm != m:
          continue
        stem = f"map{m:04d}_r{r}"
        in_wav = os.path.join(layer_dir, stem + "_input.wav")
        son_wav = os.path.join(layer_dir, stem + "_sonif.wav")
        audio_io.write_wav(in_wav, clips[ci], SAMPLE_RATE)
        audio_io.write_wav(son_wav, sonif, SAMPLE_RATE)
        fig = None
        if pair_figures:
          from sonify_jax import plotting  # pylint: disable=g-import-not-at-top
          fig = os.path.join(layer_dir, stem + ".png")
          plotting.save_pair_figure(
              fig, clips[ci], sonif, SAMPLE_RATE,
              title=f"{model_name} layer {layer} map {m} rank {r + 1}")
        entries.append({
            "rank": r, "clip_index": ci,
            "clip_id": str(source[ci].get("id", ci)),
            "activation": value, "dead": bool(value <= 0.0),
            "input_wav": os.path.relpath(in_wav, out_dir),
            "sonification_wav": os.path.relpath(son_wav, out_dir),
            "figure": os.path.relpath(fig, out_dir) if fig else None})
      layer_index[str(int(m))] = entries
      if len(rows) < figure_maps:
        rows.append((f"map {m}", [(clips[ci], s) for (mm, r, ci, _), s
                                  in zip(pairs, sonifs)
                                  if mm == m and r < figure_clips]))
      bar.update(1)
    index["layers"][str(layer)] = layer_index
    if figure_maps > 0 and rows:
      from sonify_jax.analysis import figures  # pylint: disable=g-import-not-at-top
      path = os.path.join(out_dir, f"figure_layer{layer:02d}.png")
      figures.topk_grid(path, rows, title=f"{model_name}: layer {layer}, "
                        f"top-{figure_clips} clips per map")
      index["figures"][str(layer)] = os.path.relpath(path, out_dir)
  bar.close()
  outputs.write_json(os.path.join(out_dir, "topk.json"), index)
  return index


def _maps_for(maps, layer):
  if isinstance(maps, dict):
    return maps.get(layer, maps.get(str(layer)))
  return maps


def _sonify_grouped(params, arch, layer, pairs, clips, batch_size):
  """Sonifies (map, clip) pairs, grouping clips of equal length."""
  out = [None] * len(pairs)
  by_length: Dict[int, list] = {}
  for p, (m, _, ci, _) in enumerate(pairs):
    by_length.setdefault(clips[ci].shape[0], []).append(p)
  for positions in by_length.values():
    wave = np.stack([clips[pairs[p][2]] for p in positions])
    maps = np.array([pairs[p][0] for p in positions])
    result = common.sonify_pairs(params, wave, maps, layer, arch, batch_size)
    for p, s in zip(positions, result):
      out[p] = s
  return out


