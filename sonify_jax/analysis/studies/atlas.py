"""The atlas: every feature map of every layer, sonified on its top-k clips.

``run_atlas(params, arch, source, out_dir, layers, k)``:

1. one streaming pass over ``source`` keeps, per map of every chosen layer,
   the ``k`` clips of highest activation (``topk.stream_topk``: a running
   top-k, memory ``[maps, k]`` per layer, no pass per map); the result is
   saved (``topk_pass.json``) so a rerun does not stream again;
2. per layer, every (map, clip) pair of a live map is sonified, grouped by
   clip, in fixed-size batches of pairs that may mix clips
   (``deconvnet.sonify_clip_pairs``: each clip's forward trace is computed
   once for all the maps of the batch that chose it). Clips are zero-padded
   to a few lengths (two per octave) and each clip's own length goes along,
   which gives the unpadded result exactly (the padding rule of
   ``models.shapes``) while XLA compiles a handful of shapes instead of one
   per clip length;
3. WAVs and spectrogram PNGs are written atomically by a writer thread while
   the next batch computes; each layer ends with ``layerLL/layer.json``,
   written last, so a rerun skips finished layers; ``atlas.json`` merges them.

A map is dead when no clip of the source activates it (top-1 activation
<= 0); dead maps, and ranks whose activation is 0, are listed but not
sonified (their sonification is silence).

Layout of ``out_dir``::

  atlas.json                 the index (see ``run_atlas``)
  topk_pass.json             the streaming pass (resume point)
  clips/cNNNNNN.wav|.png     each chosen clip and its spectrogram, once
  layerLL/mMMMM_rR.wav|.png  map MMMM's sonification of its rank-R clip
  layerLL/layer.json         the layer's part of the index (done marker)
"""
import concurrent.futures
import hashlib
import json
import math
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax import atomic_io, audio_io, deconvnet, plotting
from sonify_jax.analysis.studies import activity
from sonify_jax.analysis.core import common, shares
from sonify_jax.analysis.pages import atlas_page
from sonify_jax.analysis.studies import topk
from sonify_jax.errors import UserError
from sonify_jax.models.network import Network

Params = Any

INDEX = atlas_page.INDEX  # the page reads what this study writes
TOPK_PASS = "topk_pass.json"
LAYER_DONE = "layer.json"
# Pairs and clips per sonify call, at most (fewer where memory says so).
MAX_PAIRS_PER_CALL = 64
MAX_CLIPS_PER_CALL = 8
# Files waiting for the writer thread before the compute waits for it.
MAX_PENDING_WRITES = 256


def fingerprint(params: Params, arch: Network, source, k: int,
                clip_samples: Optional[int], max_clips: Optional[int],
                rule: str = deconvnet.DEFAULT_RULE) -> str:
  """What an atlas depends on: the weights, the model, the data, k, the
  rule (the thesis' deconvnet keeps the fingerprints it always had)."""
  h = hashlib.sha256()
  leaves = jax.tree_util.tree_leaves_with_path(params)
  for path, leaf in sorted(leaves, key=lambda pl: jax.tree_util.keystr(pl[0])):
    h.update(jax.tree_util.keystr(path).encode())
    h.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
  h.update(json.dumps([arch.name, getattr(source, "name", "source"),
                       len(source), k, clip_samples, max_clips]).encode())
  if rule != deconvnet.DEFAULT_RULE:
    h.update(rule.encode())
  return h.hexdigest()[:16]


def bucket_length(length: int) -> int:
  """``length`` rounded up to the grid of two lengths per octave
  (2^n and 1.5 * 2^n): at most 50 % padding, few compiled shapes."""
  if length <= 2:
    return length
  octave = 1 << (int(length - 1).bit_length() - 1)  # largest 2^n < length
  step = max(octave // 2, 1)
  return -(-length // step) * step


def batch_shape(arch: Network, layer: int, length: int,
                pairs_per_clip: float) -> Tuple[int, int]:
  """(pairs, clips) per sonify call for clips of ``length`` samples.

  Pairs: one memory-bounded chunk of maps (``deconvnet.maps_per_chunk``),
  at most :data:`MAX_PAIRS_PER_CALL`. Clips: enough to fill the pairs when a
  clip brings ``pairs_per_clip`` on average (each clip in a call is traced
  once, a batch is cut when it would need one more), within the memory
  bound of the traces.
  """
  pairs = max(1, min(MAX_PAIRS_PER_CALL, deconvnet.maps_per_chunk(
      arch, layer, length, MAX_PAIRS_PER_CALL)))
  clips = min(MAX_CLIPS_PER_CALL,
              max(2, math.ceil(2 * pairs / max(pairs_per_clip, 1.0))), pairs)
  memory = deconvnet.CHUNK_BYTES // deconvnet.trace_bytes(arch, layer, length)
  return pairs, max(1, min(clips, memory))


def _read_json(path: str) -> Optional[Dict[str, Any]]:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _topk_pass(params, arch, source, out_dir, layers, k, batch_size,
               clip_samples, max_clips, stamp, progress, share):
  """``{layer: (RunningTopK, min_samples)}`` for ``layers``, from
  ``topk_pass.json`` where it already holds them, else from one streaming
  pass (then saved). ``min_samples`` is the length short clips were padded
  to in that pass; the sonified clips are padded the same way. Every
  process streams its share of the layers any process lacks, and keeps
  the merged (global) top-k in its own file."""
  path = os.path.join(out_dir, TOPK_PASS + share.suffix())
  saved = _read_json(path)
  if saved is None or saved.get("fingerprint") != stamp:
    saved = {"fingerprint": stamp, "layers": {}}
  missing = sorted({l for lacking in shares.gather(
      [l for l in layers if str(l) not in saved["layers"]], share)
                    for l in lacking})
  if missing:
    start = time.perf_counter()
    tops = topk.stream_topk(params, arch, source, missing, k, batch_size,
                            clip_samples, max_clips, progress, share)
    saved["seconds"] = saved.get("seconds", 0.0) + time.perf_counter() - start
    saved["clips"] = (len(source) if max_clips is None
                      else min(len(source), max_clips))
    min_samples = arch.min_input_length(max(missing))  # as stream_topk pads
    for layer, top in tops.items():
      saved["layers"][str(layer)] = {"values": top.values,
                                     "indices": top.indices,
                                     "min_samples": min_samples}
    atomic_io.write_json(path, saved)
  result = {}
  for layer in layers:
    entry = saved["layers"][str(layer)]
    top = common.RunningTopK(arch.channels[layer - 1], k)
    top.values = np.array([[-np.inf if v is None else v for v in row]
                           for row in entry["values"]], np.float64)
    top.indices = np.asarray(entry["indices"], np.int64)
    result[layer] = (top, int(entry["min_samples"]))
  return result


class _Writer:
  """Writes WAV + spectrogram PNG + centroid in a thread, in order.

  Sonifications compute in XLA (which releases the GIL) while the previous
  batch's files are encoded and written here.
  """

  def __init__(self):
    self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    self._pending: List[concurrent.futures.Future] = []

  def submit(self, fn, *args) -> concurrent.futures.Future:
    if len(self._pending) >= MAX_PENDING_WRITES:
      self._pending[0].result()
    self._pending = [f for f in self._pending if not f.done()]
    future = self._pool.submit(fn, *args)
    self._pending.append(future)
    return future

  def wait(self) -> None:
    """Returns when every submitted write is on disk (raises its error)."""
    for future in self._pending:
      future.result()
    self._pending = []

  def close(self) -> None:
    self._pool.shutdown(wait=True)


def _write_audio_and_spectrogram(out_dir: str, stem: str, audio: np.ndarray,
                                 sample_rate: int) -> Dict[str, Any]:
  """``stem.wav`` + ``stem.png``; returns file names and spectral centroid."""
  wav, png = stem + ".wav", stem + ".png"
  audio_io.write_wav(os.path.join(out_dir, wav), audio, sample_rate)
  _, _, power = plotting.power_spectrogram(audio, sample_rate)
  plotting.save_spectrogram_png(os.path.join(out_dir, png),
                                plotting.to_db(power))
  centroid = float(activity.spectral_centroid_bandwidth(audio,
                                                        sample_rate)[0])
  return {"wav": wav, "png": png,
          "centroid_hz": None if math.isnan(centroid) else centroid}


def _clip_entry(out_dir, source, index, audio, writer, clips, written,
                sample_rate):
  """Lists clip ``index`` in ``clips``; writes its files once per atlas
  (``written``: clips written by this run; a previous run's are reused)."""
  stem = f"clips/c{index:06d}"
  clips[index] = {"id": str(source[index].get("id", index)),
                  "seconds": audio.shape[0] / sample_rate,
                  "wav": stem + ".wav", "png": stem + ".png"}
  if index in written:
    return
  written.add(index)
  if not (os.path.isfile(os.path.join(out_dir, stem + ".wav")) and
          os.path.isfile(os.path.join(out_dir, stem + ".png"))):
    writer.submit(_write_audio_and_spectrogram, out_dir, stem, audio,
                  sample_rate)


def _sonify_layer(params, arch, source, out_dir, layer, top, min_samples,
                  clip_samples, writer, clips, written, bar, rule, share
                  ) -> List[Dict[str, Any]]:
  """Sonifies a layer's live pairs of the clips in ``share``; returns its
  map entries (futures for the files resolved; other processes' pairs
  unfilled)."""
  k = top.values.shape[1]
  maps: List[Dict[str, Any]] = []
  pairs: List[Tuple[int, int, Dict[str, Any]]] = []  # (clip, map, rank entry)
  for m in range(top.values.shape[0]):
    ranks = []
    for r in range(k):
      ci = int(top.indices[m, r])
      if ci < 0:
        continue
      value = float(top.values[m, r])
      entry = {"rank": r, "clip": ci, "activation": value, "wav": None,
               "png": None, "centroid_hz": None}
      ranks.append(entry)
      if value > 0 and share.owns(ci):
        pairs.append((ci, m, entry))
    dead = not ranks or ranks[0]["activation"] <= 0
    maps.append({"map": m, "dead": dead, "top": ranks})

  # Clips by padded length, then by index; a clip's maps stay together.
  lengths = {}
  for ci in sorted({p[0] for p in pairs}):
    lengths[ci] = common.load_clip(source, ci, min_samples,
                                   clip_samples).shape[0]
  pairs.sort(key=lambda p: (bucket_length(lengths[p[0]]), p[0], p[1]))
  layer_dir = f"layer{layer:02d}"
  per_clip = len(pairs) / max(len(lengths), 1)
  futures = []
  start = 0
  audios: Dict[int, np.ndarray] = {}  # the clips of the current batch
  while start < len(pairs):
    padded = bucket_length(lengths[pairs[start][0]])
    pairs_per_call, clips_per_call = batch_shape(arch, layer, padded,
                                                 per_clip)
    batch = [pairs[start]]
    batch_clips = [pairs[start][0]]
    for pair in pairs[start + 1:]:
      if (len(batch) == pairs_per_call or
          bucket_length(lengths[pair[0]]) != padded):
        break
      if pair[0] != batch_clips[-1]:
        if len(batch_clips) == clips_per_call:
          break
        batch_clips.append(pair[0])
      batch.append(pair)
    start += len(batch)
    audios = {ci: audios[ci] if ci in audios else
              common.load_clip(source, ci, min_samples, clip_samples)
              for ci in batch_clips}
    # Fixed shapes: silent clips and repeated pairs fill the batch.
    x = np.zeros((clips_per_call, padded), np.float32)
    valid = np.zeros((clips_per_call,), np.int32)
    for slot, ci in enumerate(batch_clips):
      _clip_entry(out_dir, source, ci, audios[ci], writer, clips, written,
                  arch.sample_rate)
      x[slot, :lengths[ci]] = audios[ci]
      valid[slot] = lengths[ci]
    full = batch + [batch[-1]] * (pairs_per_call - len(batch))
    slots = np.array([batch_clips.index(p[0]) for p in full], np.int32)
    chosen = np.array([p[1] for p in full], np.int32)
    sonifs = np.asarray(deconvnet.sonify_clip_pairs(
        params, jnp.asarray(x), jnp.asarray(valid), jnp.asarray(slots),
        jnp.asarray(chosen), layer, arch, rule=rule))
    for (ci, m, entry), s in zip(batch, sonifs):
      stem = f"{layer_dir}/m{m:04d}_r{entry['rank']}"
      futures.append((entry, writer.submit(
          _write_audio_and_spectrogram, out_dir, stem, s[:lengths[ci]],
          arch.sample_rate)))
    bar.update(len(batch))
  for entry, future in futures:
    entry.update(future.result())
  return maps


def _merged(parts: List[Dict[str, Any]]) -> Dict[str, Any]:
  """One layer's part from every process's (each filled its own pairs):
  its clips, and its maps with each rank taken from the process that
  sonified it, then each map's median centroid and top activation."""
  clips: Dict[str, Any] = {}
  for part in parts:
    clips.update(part["clips"])
  maps = parts[0]["maps"]
  for m, entry in enumerate(maps):
    for r, rank in enumerate(entry["top"]):
      for part in parts[1:]:
        theirs = part["maps"][m]["top"][r]
        if theirs["wav"] is not None:
          rank.update(theirs)
  for entry in maps:
    cents = [r["centroid_hz"] for r in entry["top"]
             if r["centroid_hz"] is not None]
    entry["centroid_hz"] = float(np.median(cents)) if cents else None
    entry["activation"] = entry["top"][0]["activation"] if entry["top"] \
        else None
  return {"clips": clips, "maps": maps}


def run_atlas(params: Params, arch: Network, source, out_dir: str,
              layers: Optional[Sequence[int]] = None, k: int = 5,
              batch_size: int = 16, clip_samples: Optional[int] = None,
              max_clips: Optional[int] = None, model_name: str = "model",
              progress: bool = True, rule: str = deconvnet.DEFAULT_RULE,
              share: Optional[shares.Share] = None) -> Dict[str, Any]:
  """Builds (or completes) the atlas of ``layers`` in ``out_dir``.

  Run by every process of a multi-host job (``jax.distributed``), each
  streams and sonifies its ``share`` of the clips (default: this
  process's), keeps a per-process resume file of its part of each layer
  (``layerLL/part.pPPPofCCC.json``), and the chief (process 0) writes each
  layer's ``layer.json`` and the index; every process returns the index.

  Args:
    params, arch: encoder params and architecture.
    source: a ClipSource (the run's dataset split).
    out_dir: output folder; rerunning with the same model and data skips
      the layers already finished there.
    layers: 1-based blocks (default all).
    k: top clips per map.
    batch_size: clips per forward batch of the streaming pass.
    clip_samples: optional fixed clip length (crop / zero-pad).
    max_clips: only the first clips of the source.
    model_name: recorded in the index.
    rule: how ReLUs transpose (``deconvnet.RULES``).
  Returns:
    the index written to ``out_dir/atlas.json``: ``{'model', 'arch',
    'source', 'sample_rate', 'k', 'fingerprint', 'topk_pass': {'clips',
    'seconds'} (the streaming pass), 'clips': {str(index):
    {'id', 'seconds', 'wav', 'png'}}, 'layers': [{'layer', 'seconds',
    'pairs', 'maps': [{'map', 'dead', 'activation' (top-1), 'centroid_hz'
    (median over ranks), 'top': [{'rank', 'clip', 'activation', 'wav',
    'png', 'centroid_hz'}]}]}]}``; paths relative to ``out_dir``, None
    where nothing was sonified (dead map, zero activation).
  Raises:
    UserError: ``out_dir`` holds an atlas of another model or data.
  """
  share = share or shares.Share.of_process()
  layers = common.check_layers(layers, arch)
  if k < 1:
    raise UserError(f"k must be >= 1, got {k}")
  os.makedirs(out_dir, exist_ok=True)
  stamp = fingerprint(params, arch, source, k, clip_samples, max_clips, rule)
  previous = _read_json(os.path.join(out_dir, INDEX))
  clash = None
  if previous is not None and previous.get("fingerprint") != stamp:
    clash = (f"{out_dir} holds an atlas of another model, data or k "
             f"(fingerprint {previous.get('fingerprint')} != {stamp}); "
             "choose a new --workdir")
  # Every process stops, or none: the others would wait for it.
  clash = next((c for c in shares.gather(clash, share) if c), None)
  if clash:
    raise UserError(clash)
  done = []
  for layer in layers:
    part = _read_json(os.path.join(out_dir, f"layer{layer:02d}", LAYER_DONE))
    if part is not None and part.get("fingerprint") == stamp:
      done.append(layer)
  done = shares.gather(done, share)[0]   # the chief writes the markers
  todo = [l for l in layers if l not in done]
  if done:
    common.log(f"atlas: layers {sorted(done)} already done in {out_dir}; "
               f"to do: {todo or 'none'}")
  if todo:
    tops = _topk_pass(params, arch, source, out_dir, todo, k, batch_size,
                      clip_samples, max_clips, stamp, progress, share)
    total = sum(int(((t.values > 0) & share.owns(t.indices)).sum())
                for t, _ in tops.values())
    bar = common.Progress("atlas: sonify + write", total, unit="pairs",
                          enabled=progress)
    writer = _Writer()
    written = set()
    try:
      for layer in todo:
        own = _own_part(params, arch, source, out_dir, layer, tops[layer],
                        clip_samples, writer, written, bar, rule, stamp,
                        share)
        parts = shares.gather(own, share)
        if share.chief:
          part = {"fingerprint": stamp, "layer": layer,
                  "seconds": max(p["seconds"] for p in parts),
                  **_merged(parts)}
          part["pairs"] = sum(r["wav"] is not None for m in part["maps"]
                              for r in m["top"])
          atomic_io.write_json(  # every process's files are on disk
              os.path.join(out_dir, f"layer{layer:02d}", LAYER_DONE), part)
    finally:
      writer.close()
    bar.close()
  index = write_index(out_dir, model_name, arch, source, k, stamp, rule,
                      share) if share.chief else None
  return shares.gather(index, share)[0]


def _own_part(params, arch, source, out_dir, layer, top_and_length,
              clip_samples, writer, written, bar, rule, stamp, share
              ) -> Dict[str, Any]:
  """This process's part of a layer: its pairs sonified and on disk, or
  read back from its resume file (several processes) where a previous run
  finished it."""
  path = os.path.join(out_dir, f"layer{layer:02d}",
                      f"part{share.suffix()}.json")
  if share.count > 1:
    saved = _read_json(path)
    if saved is not None and saved.get("fingerprint") == stamp:
      return saved
  start = time.perf_counter()
  clips: Dict[int, Dict[str, Any]] = {}
  top, min_samples = top_and_length
  maps = _sonify_layer(params, arch, source, out_dir, layer, top, min_samples,
                       clip_samples, writer, clips, written, bar, rule, share)
  writer.wait()  # every file of the part is on disk ...
  own = {"fingerprint": stamp, "seconds": time.perf_counter() - start,
         "clips": clips, "maps": maps}
  if share.count > 1:  # ... before its resume marker
    atomic_io.write_json(path, own)
  return own


def write_index(out_dir: str, model_name: str, arch: Network, source,
                k: int, stamp: str, rule: str = deconvnet.DEFAULT_RULE,
                share: shares.Share = shares.Share()) -> Dict[str, Any]:
  """Merges every finished layer of ``out_dir`` into ``atlas.json``."""
  clips: Dict[str, Any] = {}
  layers = []
  for name in sorted(os.listdir(out_dir)):
    part = _read_json(os.path.join(out_dir, name, LAYER_DONE))
    if part is None or part.get("fingerprint") != stamp:
      continue
    clips.update(part.pop("clips"))
    part.pop("fingerprint")
    layers.append(part)
  layers.sort(key=lambda p: p["layer"])
  saved = _read_json(os.path.join(out_dir, TOPK_PASS + share.suffix())) or {}
  index = {"model": model_name, "arch": arch.name,
           "source": getattr(source, "name", "source"),
           "sample_rate": arch.sample_rate, "k": k, "rule": rule,
           "fingerprint": stamp,
           "topk_pass": {"clips": saved.get("clips"),
                         "seconds": saved.get("seconds")},
           "clips": clips, "layers": layers}
  atomic_io.write_json(os.path.join(out_dir, INDEX), index)
  return index


# ------------------------------------------------ python -m analysis.run


def _run_study(context) -> None:
  outs = {}
  share = shares.Share.of_process()
  for entry, (name, run) in zip(context.chosen, context.runs):
    out = context.out_dir(name)
    run_atlas(run.trained, run.arch, context.source, out,
              layers=context.layers, k=context.options.k, model_name=name,
              rule=context.options.rule, share=share, **context.common_kw())
    if not share.chief:   # the chief writes what follows
      continue
    if context.options.explain:
      _explain(run, out, context.layers)
    context.record(os.path.join(out, INDEX), [entry])
    context.say(f"atlas ({name}): {out}/{INDEX}")
    outs[name] = out
  if share.chief:
    atlas_page.write_atlas_page(context.workdir, outs)  # logs the page


def _explain(run, out: str, layers) -> None:
  """Each layer's explain.json (:mod:`sonify_jax.analysis.core.explain`)."""
  from sonify_jax.analysis.core import explain  # pylint: disable=g-import-not-at-top
  untrained = run.untrained
  if untrained is None:
    untrained = common.random_params(run.arch, 0)
  layers = common.check_layers(layers, run.arch)
  bar = common.Progress("atlas: explain", len(layers), unit="layers")
  for layer in layers:
    explain.explain_layer(run.trained, untrained, run.arch, layer,
                          os.path.join(out, f"layer{layer:02d}"))
    bar.update(1)
  bar.close()


def _study():
  # Imported here: the rest of this module is the sonification path.
  from sonify_jax.analysis import studies  # pylint: disable=g-import-not-at-top
  return studies.Study("atlas", studies.DATA_FLAGS | {"k", "rule", "explain"},
                       _run_study)


STUDY = _study()
