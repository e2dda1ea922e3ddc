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
  out_dir/layerLL/mapMMMM_rR_untrained.wav  control: same map, same clip,
                                          the run's untrained init
  out_dir/layerLL/mapMMMM_rR_random_map.wav control: a random live map of
                                          the trained model on the clip
  out_dir/layerLL/mapMMMM_rR.png          input | sonification | controls
  out_dir/figure_layerLL.png              Figure A.1 layout for the layer

With ``shared_clips``, the same given clips are also sonified through each
layer's most active map (``layerLL/clipCCCCCC_top*``), so two models can be
compared on the same clip.

Clip lengths follow ``analysis.core.common`` (equal-length runs, optional
fixed crop; clips shorter than the deepest layer's receptive field
zero-padded).
"""
import os
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from sonify_jax import atomic_io, audio_io, deconvnet
from sonify_jax.analysis import studies
from sonify_jax.analysis.core import common, shares
from sonify_jax.analysis.core import controls
from sonify_jax.models.network import Network

Params = Any


def stream_topk(params: Params, arch: Network, source,
                layers: Optional[Sequence[int]] = None, k: int = 5,
                batch_size: int = 16, clip_samples: Optional[int] = None,
                max_clips: Optional[int] = None, progress: bool = True,
                share: shares.Share = shares.Share()
                ) -> Dict[int, common.RunningTopK]:
  """Streams ``source`` once; returns ``{layer: RunningTopK}``.

  ``RunningTopK.values[m, r]`` is the activation of the rank-``r`` clip of
  map ``m`` and ``.indices[m, r]`` its index in ``source`` (-1 if fewer than
  ``k`` clips were seen). With several processes each streams its
  ``share`` of the clips and every process gets the global top-k.
  """
  layers = common.check_layers(layers, arch)
  min_samples = arch.min_input_length(max(layers))
  tops = {l: common.RunningTopK(arch.channels[l - 1], k) for l in layers}
  total = len(source) if max_clips is None else min(len(source), max_clips)
  bar = common.Progress("topk: activations", share.clips_of(total),
                        enabled=progress)
  for batch in common.iter_clip_batches(source, batch_size, min_samples,
                                        clip_samples, max_clips,
                                        owns=share.owns):
    acts = common.layer_activations(params, batch["audio"], layers, arch)
    valid = batch["valid"]
    for layer, a in zip(layers, acts):
      tops[layer].update(np.asarray(a)[valid], batch["index"][valid])
    bar.update(int(valid.sum()))
  bar.close()
  seen = shares.gather(bar.done, share)
  if sum(seen) == 0:
    raise ValueError("the source holds no clips")
  return {l: shares.merge_topk(top, share) for l, top in tops.items()}


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


def run_topk(params: Params, arch: Network, source, out_dir: str,
             layers: Optional[Sequence[int]] = None, k: int = 5,
             maps: Optional[Union[Sequence[int], Dict[int, Sequence[int]]]]
             = None, max_maps: Optional[int] = None, batch_size: int = 16,
             clip_samples: Optional[int] = None,
             max_clips: Optional[int] = None, figure_clips: int = 3,
             figure_maps: int = 16, pair_figures: bool = True,
             model_name: str = "model", progress: bool = True,
             untrained: Optional[Params] = None,
             shared_clips: Sequence[int] = (),
             seed: int = controls.DEFAULT_SEED,
             rule: str = deconvnet.DEFAULT_RULE,
             share: Optional[shares.Share] = None) -> Dict[str, Any]:
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
    pair_figures: write one input|sonification|controls PNG per (map, rank).
    model_name: recorded in the index (the gallery's column title).
    untrained: the run's untrained init: its sonification of the same map
      on the same clip is the ``untrained`` control.
    shared_clips: source indices sonified through this model's most active
      map at every layer (``same_clip``): two models run with the same
      list can be compared on the same clip, layer and activation rank.
    seed: of the random-live-map control.
    share: this process's share of the clips (default the running
      process's): it streams its clips, sonifies and writes the entries of
      its clips (WAVs, pair figures); the chief writes the layer figures
      and the index. Every process returns the index.
  Returns:
    the index written to ``out_dir/topk.json``: ``{'model', 'source',
    'sample_rate', 'k', 'layers': {str(layer): {str(map): [entry, ...]}}}``,
    one entry per rank: ``{'rank', 'clip_index', 'clip_id', 'activation',
    'dead', 'input_wav', 'sonification_wav', 'figure', 'controls':
    {condition: {'map', 'sonification_wav', 'dead', 'coherence'}},
    'coherence'}`` (paths relative to ``out_dir``; 'figure' None without
    pair figures), ``'figures': {str(layer): path}``, ``'same_clip':
    {str(layer): [entry, ...]}`` and ``'per_layer': {str(layer): {condition:
    mean top-5 coherence of the reported sonifications with their clips}}``.
  """
  layers = common.check_layers(layers, arch)
  min_samples = arch.min_input_length(max(layers))
  os.makedirs(out_dir, exist_ok=True)
  share = share or shares.Share.of_process()
  tops = stream_topk(params, arch, source, layers, k, batch_size,
                     clip_samples, max_clips, progress, share)
  run = controls.RunParams(params, untrained, arch)
  index: Dict[str, Any] = {
      "model": model_name, "arch": arch.name,
      "source": getattr(source, "name", "source"),
      "sample_rate": arch.sample_rate, "k": k, "seed": seed, "rule": rule,
      "metric": "top5_coherence", "layers": {}, "figures": {},
      "same_clip": {}, "per_layer": {}}
  todo = sum(len(select_maps(tops[l], _maps_for(maps, l), max_maps))
             for l in layers)
  bar = common.Progress("topk: sonify + write", todo, unit="maps",
                        enabled=progress)
  shared_clips = [int(i) for i in shared_clips]
  for layer in layers:
    top = tops[layer]
    chosen = select_maps(top, _maps_for(maps, layer), max_maps)
    layer_dir = os.path.join(out_dir, f"layer{layer:02d}")
    os.makedirs(layer_dir, exist_ok=True)
    pairs = [(int(m), r, int(top.indices[m, r]), float(top.values[m, r]))
             for m in chosen for r in range(k) if top.indices[m, r] >= 0]
    clips = {i: common.load_clip(source, i, min_samples, clip_samples)
             for i in sorted({p[2] for p in pairs} | set(shared_clips))}
    views = _sonify_with_controls(run, layer, pairs, clips, batch_size, seed,
                                  rule, share)
    writer = _EntryWriter(out_dir, layer_dir, source, clips, model_name,
                          layer, pair_figures, arch.sample_rate)
    written = _write_owned(writer, [
        (f"map{m:04d}_r{r}", m, r, ci, value, view)
        for (m, r, ci, value), view in zip(pairs, views)], share)
    layer_index: Dict[str, Any] = {}
    rows = []
    scores: Dict[str, list] = {}
    for m in chosen:
      entries = []
      for (mm, _, _, _), entry in zip(pairs, written):
        if mm != m:
          continue
        for condition, score in _scores(entry).items():
          scores.setdefault(condition, []).append(score)
        entries.append(entry)
      layer_index[str(int(m))] = entries
      if len(rows) < figure_maps:
        rows.append((f"map {m}", [(clips[ci], v[controls.TRAINED][1])
                                  for (mm, r, ci, _), v in zip(pairs, views)
                                  if mm == m and r < figure_clips]))
      bar.update(1)
    index["layers"][str(layer)] = layer_index
    index["per_layer"][str(layer)] = {c: float(np.mean(v))
                                      for c, v in scores.items()}
    if shared_clips:
      index["same_clip"][str(layer)] = _same_clip_entries(
          run, layer, shared_clips, clips, batch_size, seed, writer, rule,
          share)
    if figure_maps > 0 and rows:
      from sonify_jax.analysis.figures import panels  # pylint: disable=g-import-not-at-top
      path = os.path.join(out_dir, f"figure_layer{layer:02d}.png")
      if share.chief:
        panels.topk_grid(path, rows, arch.sample_rate,
                         title=f"{model_name}: layer {layer}, "
                         f"top-{figure_clips} clips per map")
      index["figures"][str(layer)] = os.path.relpath(path, out_dir)
  bar.close()
  if share.chief:
    atomic_io.write_json(os.path.join(out_dir, "topk.json"), index)
  return index


def _write_owned(writer: "_EntryWriter", items, share: shares.Share):
  """``writer.write(*item)`` of every item, each process writing the items
  of its own clips; every process gets every entry, in order."""
  mine = [[i, writer.write(*item)] for i, item in enumerate(items)
          if share.owns(item[3])]
  entries = [None] * len(items)
  for part in shares.gather(mine, share):
    for i, entry in part:
      entries[i] = entry
  return entries


def _scores(entry: Dict[str, Any]) -> Dict[str, float]:
  out = {controls.TRAINED: entry["coherence"]}
  for condition, view in entry["controls"].items():
    out[condition] = view["coherence"]
  return out


def _sonify_with_controls(run: controls.RunParams, layer: int, pairs,
                          clips, batch_size: int, seed: int, rule: str,
                          share: shares.Share):
  """Per (map, rank, clip, activation) pair: ``{condition: (map,
  sonification)}`` -- the map itself (trained), the same map of the
  untrained init, and a random live map of the trained model on that
  clip."""
  trained = [(m, ci) for m, _, ci, _ in pairs]
  views = [{controls.TRAINED: (m, s)} for (m, _), s in zip(
      trained, _sonify_grouped(run.trained, run.arch, layer, trained, clips,
                               batch_size, rule, share))]
  if run.untrained is not None:
    for view, (m, _), s in zip(views, trained, _sonify_grouped(
        run.untrained, run.arch, layer, trained, clips, batch_size, rule,
        share)):
      view[controls.UNTRAINED] = (m, s)
  random = _random_live(run, layer, [ci for _, ci in trained], clips, seed)
  for view, pair, s in zip(views, random, _sonify_grouped(
      run.trained, run.arch, layer, random, clips, batch_size, rule, share)):
    view[controls.RANDOM_MAP] = (pair[0], s)
  return views


def _activations(params, arch, layer, clip_indices, clips):
  """``{clip index: [C] max-over-time activations at layer}``."""
  out = {}
  by_length: Dict[int, list] = {}
  for ci in sorted(set(clip_indices)):
    by_length.setdefault(clips[ci].shape[0], []).append(ci)
  for group in by_length.values():
    (acts,) = common.layer_activations(
        params, np.stack([clips[ci] for ci in group]), (layer,), arch)
    out.update(zip(group, np.asarray(acts)))
  return out


def _random_live(run, layer, clip_indices, clips, seed):
  acts = _activations(run.trained, run.arch, layer, clip_indices, clips)
  return [(int(controls.random_live_maps(acts[ci][None], [ci], layer,
                                         seed)[0]), ci)
          for ci in clip_indices]


def _same_clip_entries(run, layer, shared_clips, clips, batch_size, seed,
                       writer, rule, share):
  """Each shared clip through this model's most active map at ``layer``."""
  acts = _activations(run.trained, run.arch, layer, shared_clips, clips)
  pairs = [(int(np.argmax(acts[ci])), 0, ci, float(np.max(acts[ci])))
           for ci in shared_clips]
  views = _sonify_with_controls(run, layer, pairs, clips, batch_size, seed,
                                rule, share)
  return _write_owned(writer, [
      (f"clip{ci:06d}_top", m, 0, ci, value, view)
      for (m, _, ci, value), view in zip(pairs, views)], share)


class _EntryWriter:
  """Writes one (map, clip) entry: WAVs of the input, the sonification and
  its controls, the panels figure, and the index entry."""

  def __init__(self, out_dir, layer_dir, source, clips, model_name, layer,
               pair_figures, sample_rate):
    self.sample_rate = sample_rate
    self.out_dir, self.layer_dir, self.source = out_dir, layer_dir, source
    self.clips, self.model_name, self.layer = clips, model_name, layer
    self.pair_figures = pair_figures

  def _wav(self, name, audio):
    path = os.path.join(self.layer_dir, name)
    audio_io.write_wav(path, audio, self.sample_rate)
    return os.path.relpath(path, self.out_dir)

  def write(self, stem, m, r, ci, value, view):
    from sonify_jax.analysis.studies import coherence  # pylint: disable=g-import-not-at-top
    clip = self.clips[ci]
    sonif = view[controls.TRAINED][1]
    entry = {
        "rank": r, "map": int(m), "clip_index": int(ci),
        "clip_id": str(self.source[ci].get("id", ci)),
        "activation": value, "dead": bool(value <= 0.0),
        "input_wav": self._wav(stem + "_input.wav", clip),
        "sonification_wav": self._wav(stem + "_sonif.wav", sonif),
        "coherence": float(coherence.top_coherence(clip, sonif)),
        "controls": {}, "figure": None}
    panels = [("input", clip), (f"trained: map {m}", sonif)]
    for condition in (controls.UNTRAINED, controls.RANDOM_MAP):
      if condition not in view:
        continue
      cm, cs = view[condition]
      entry["controls"][condition] = {
          "map": int(cm), "dead": not bool(np.any(cs)),
          "sonification_wav": self._wav(f"{stem}_{condition}.wav", cs),
          "coherence": float(coherence.top_coherence(clip, cs))}
      panels.append((f"{controls.LABELS[condition]}: map {cm}", cs))
    if self.pair_figures:
      from sonify_jax import plotting  # pylint: disable=g-import-not-at-top
      fig = os.path.join(self.layer_dir, stem + ".png")
      plotting.save_panels_figure(
          fig, panels, self.sample_rate,
          title=f"{self.model_name} layer {self.layer}, clip "
          f"{entry['clip_id']}: map {m} (rank {r + 1}) vs its controls")
      entry["figure"] = os.path.relpath(fig, self.out_dir)
    return entry


def _maps_for(maps, layer):
  if isinstance(maps, dict):
    return maps.get(layer, maps.get(str(layer)))
  return maps


def _sonify_grouped(params, arch, layer, pairs, clips, batch_size, rule,
                    share):
  """Sonifies (map, clip index) pairs, grouping clips of equal length; each
  process sonifies the pairs of its own clips."""
  out = [None] * len(pairs)
  by_length: Dict[int, list] = {}
  for p, (_, ci) in enumerate(pairs):
    by_length.setdefault(clips[ci].shape[0], []).append(p)
  for positions in by_length.values():
    wave = np.stack([clips[pairs[p][1]] for p in positions])
    maps = np.array([pairs[p][0] for p in positions])
    result = shares.sonify_pairs(
        params, wave, maps, layer, arch, batch_size, share,
        owners=np.array([pairs[p][1] for p in positions]), rule=rule)
    for p, s in zip(positions, result):
      out[p] = s
  return out




# ------------------------------------------------ python -m analysis.run


def _run_study(context) -> None:
  o = context.options
  for entry, (name, run) in zip(context.chosen, context.runs):
    out = context.out_dir(name)
    run_topk(run.trained, run.arch, context.source, out,
             layers=context.layers, k=o.k, max_maps=o.max_maps,
             model_name=name, pair_figures=o.pair_figures,
             untrained=run.untrained, rule=o.rule, **context.common_kw())
    context.record(os.path.join(out, "topk.json"), [entry])
    context.say(f"topk ({name}): {out}/topk.json")


STUDY = studies.Study(
    "topk", studies.DATA_FLAGS | {"k", "max_maps", "rule", "pair_figures"},
    _run_study)
