"""Listening to training in TensorBoard: a fixed set of sonifications.

At the start of a run a *listening set* of (clip, layer, map) triples is
chosen once and saved to ``workdir/listen_set.json``; at every evaluation (and
at the end) the trainer sonifies exactly those triples with the current
encoder and writes each as an 8 kHz audio summary plus an image of the input's
and the sonification's log-spectrograms (``plotting.draw_spectrogram``), so
the same maps can be compared across steps in TensorBoard's Audio and Images
tabs.

The choice (documented here, made by :func:`choose`):
- clips: the first ``config.listen_clips`` clips of the evaluation source
  (the training source for SimCLR runs that have no evaluation source) that
  are at least one receptive field long, each cropped to its first
  ``config.listen_seconds`` (all to a common length);
- layers: ``config.listen_layers``, or by default a middle block and the last
  block of the encoder;
- maps: for each clip and layer, its ``config.listen_maps`` most active maps
  (max over time, ``deconvnet.feature_map_activations``) under the run's
  *starting* encoder (the random init, or the ``init_from`` encoder).
Because the starting encoder is what chooses, and the choice is saved and
reloaded when a run resumes, the triples never change during a run, and the
summaries at different steps are comparable.
"""
import dataclasses
import json
from typing import Any, List, Sequence

from absl import logging
import numpy as np

from sonify_jax import atomic_io
from sonify_jax import deconvnet
from sonify_jax import paths
from sonify_jax import plotting
from sonify_jax.data.sources import SAMPLE_RATE
from sonify_jax.models.registry import get_network

LISTEN_SET_FILE = "listen_set.json"


@dataclasses.dataclass(frozen=True)
class ListenSet:
  """The fixed (clip, layer, map) triples of a run.

  Attributes:
    indices: the chosen clips' indices in their source.
    clip_ids: their ids.
    clips: ``[clips, time]`` float32 waveforms (cropped, common length).
    layers: 1-based blocks.
    maps: ``maps[c][l]`` = map indices for clip ``c`` at ``layers[l]``.
  """
  indices: Sequence[int]
  clip_ids: Sequence[str]
  clips: np.ndarray
  layers: Sequence[int]
  maps: Sequence[Sequence[Sequence[int]]]

  def triples(self):
    for c, clip_id in enumerate(self.clip_ids):
      for l, layer in enumerate(self.layers):
        for m in self.maps[c][l]:
          yield c, clip_id, layer, int(m)


def default_layers(arch_name: str) -> List[int]:
  """A middle block and the last block."""
  n = get_network(arch_name).num_blocks
  return sorted({(n + 1) // 2, n})


def _read_clips(source, indices, count: int, min_samples: int,
                max_samples: int):
  """The first ``count`` usable clips among ``indices`` (index, id, audio)."""
  chosen, ids, audios = [], [], []
  for index in indices:
    if len(ids) == count:
      break
    try:
      example = source[index]
    except Exception as e:  # pylint: disable=broad-except
      # An unreadable clip is skipped here as the input pipeline skips it.
      logging.warning("listening set: clip %d unreadable (%s)", index, e)
      continue
    audio = np.asarray(example["audio"], np.float32)
    if len(audio) >= min_samples and np.all(np.isfinite(audio)):
      chosen.append(int(index))
      ids.append(str(example.get("id", index)))
      audios.append(audio[:max_samples])
  if not ids:
    return [], [], np.zeros((0, 0), np.float32)
  length = min(len(a) for a in audios)
  return chosen, ids, np.stack([a[:length] for a in audios])


def choose(encoder_params: Any, arch_name: str, source, *, num_clips: int,
           seconds: float, layers: Sequence[int], num_maps: int) -> ListenSet:
  """The listening set (see the module docstring for the rule)."""
  arch = get_network(arch_name)
  layers = [int(l) for l in (layers or default_layers(arch_name))]
  for layer in layers:
    arch.check_block(layer)
  min_samples = arch.min_input_length(max(layers))
  max_samples = max(min_samples, int(round(seconds * SAMPLE_RATE)))
  indices, ids, clips = _read_clips(source, range(len(source)), num_clips,
                                    min_samples, max_samples)
  maps = [[] for _ in ids]
  for layer in layers:
    if not ids:
      break
    strength = np.asarray(deconvnet.feature_map_activations(
        encoder_params, clips, layer, arch))
    # Stable sort: ties (e.g. dead maps) go to the lowest index.
    order = np.argsort(-strength, axis=1, kind="stable")[:, :num_maps]
    for c in range(len(ids)):
      maps[c].append([int(m) for m in order[c]])
  return ListenSet(indices, ids, clips, layers, maps)


def save(path: str, listen_set: ListenSet) -> None:
  """The set without its audio (re-read from the source by :func:`load`)."""
  atomic_io.write_json(path, {
      "indices": list(listen_set.indices),
      "clip_ids": list(listen_set.clip_ids),
      "length": int(listen_set.clips.shape[1]),
      "layers": list(listen_set.layers),
      "maps": listen_set.maps,
  })


def load(path: str, source) -> ListenSet:
  """A saved set, its clips read again from ``source``."""
  with paths.as_path(path).open("r") as f:
    raw = json.load(f)
  _, ids, clips = _read_clips(source, raw["indices"], len(raw["indices"]),
                              raw["length"], raw["length"])
  if list(ids) != list(raw["clip_ids"]):
    raise ValueError(f"{path} lists clips {raw['clip_ids']} but the source "
                     f"now gives {ids}: use a fresh --workdir")
  return ListenSet(raw["indices"], ids, clips, [int(l) for l in raw["layers"]],
                   raw["maps"])


def choose_or_load(workdir: str, encoder_params: Any, arch_name: str, source,
                   config) -> ListenSet:
  """The run's saved listening set, or a new one (saved) for a fresh run."""
  path = paths.join(workdir, LISTEN_SET_FILE)
  if paths.as_path(path).exists():
    return load(path, source)
  listen_set = choose(
      encoder_params, arch_name, source, num_clips=config.listen_clips,
      seconds=config.listen_seconds, layers=tuple(config.listen_layers),
      num_maps=config.listen_maps)
  save(path, listen_set)
  return listen_set


def tag(clip: int, layer: int, feature_map: int) -> str:
  """The summary tag of a triple (clip by its position in the set)."""
  return f"listen/clip{clip}/layer{layer}/map{feature_map}"


def sonifications(encoder_params: Any, arch_name: str, listen_set: ListenSet):
  """``{(clip, layer, map): waveform}`` of the set under ``encoder_params``
  (float32, one ``sonify`` call per layer)."""
  arch = get_network(arch_name)
  out = {}
  for l, layer in enumerate(listen_set.layers):
    wanted = sorted({int(m) for per_clip in listen_set.maps
                     for m in per_clip[l]})
    if not wanted:
      continue
    sound = np.asarray(deconvnet.sonify(encoder_params, listen_set.clips,
                                        layer, wanted, arch))
    for c, clip_maps in enumerate(listen_set.maps):
      for m in clip_maps[l]:
        out[(c, layer, int(m))] = sound[c, wanted.index(int(m))]
  return out


def write_summaries(writer, step: int, encoder_params: Any, arch_name: str,
                    listen_set: ListenSet) -> None:
  """Audio + spectrogram image of every triple at ``step`` (and the inputs'
  audio, so each sonification can be heard next to its input)."""
  if not writer.enabled or not listen_set.clip_ids:
    return
  sounds = sonifications(encoder_params, arch_name, listen_set)
  for c in range(len(listen_set.clip_ids)):
    writer.write_audio(step, f"listen/clip{c}/input", listen_set.clips[c])
  for c, clip_id, layer, m in listen_set.triples():
    name = tag(c, layer, m)
    sound = sounds[(c, layer, m)]
    writer.write_audio(step, name, sound)
    fig, axes = plotting.new_figure(1, 2, (8, 2.6))
    plotting.draw_spectrogram(axes[0, 0], listen_set.clips[c], SAMPLE_RATE,
                              title=f"input {clip_id}")
    plotting.draw_spectrogram(axes[0, 1], sound, SAMPLE_RATE,
                              title=f"layer {layer} map {m}, step {step}")
    fig.tight_layout()
    writer.write_figure(step, name, fig)
  writer.flush()
