"""Shared machinery of the analysis studies: streaming, running top-k, pairs.

Every study takes encoder params (the params tree of any ``Network``), that
``Network`` and a ``ClipSource``; nothing here depends on a trainer or a
checkpoint format.

Clip lengths. Studies stream a source in its own order and batch *runs of
consecutive clips of equal length* (``iter_clip_batches``): a batch is cut
when it is full or when the next clip has another length, so memory is
bounded by ``batch_size`` clips and no clip is cropped or padded (beyond the
receptive-field rule below). The batch axis is padded to ``batch_size`` by
repeating the last clip (rows marked invalid), so XLA compiles once per
distinct clip length, not once per batch. Optionally ``clip_samples`` crops
every clip to its first ``clip_samples`` samples and zero-pads shorter ones,
giving a single compiled shape.

Clips shorter than the receptive field of the deepest layer studied are
zero-padded at the end up to it (a one-frame output); the padded clip is the
one every study sees, sonifies and writes.
"""
import functools
import sys
import time
from typing import (Any, Callable, Dict, Iterator, List, Optional, Sequence,
                    Tuple)

import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax import deconvnet, over_devices
from sonify_jax.models import framing
from sonify_jax.models.network import Network

Params = Any


class Progress:
  """Prints ``label: done/total (rate/s, ETA)`` to stderr at most every
  ``every`` s.

  Studies are long on CPU; this shows they move without a dependency on a
  progress-bar package.
  """

  def __init__(self, label: str, total: Optional[int] = None,
               unit: str = "clips", every: float = 5.0, enabled: bool = True):
    self.label, self.total, self.unit, self.every = label, total, unit, every
    self.enabled = enabled
    self.done = 0
    self.start = time.perf_counter()
    self._last = self.start
    self._printed = None   # the count last printed: each state prints once

  def update(self, n: int) -> None:
    self.done += n
    now = time.perf_counter()
    if self.enabled and now - self._last >= self.every:
      self._last = now
      self._print(now)

  def close(self) -> float:
    """Prints the final line (unless already shown); returns the elapsed
    seconds."""
    now = time.perf_counter()
    if self.enabled and self._printed != self.done:
      self._print(now)
    return now - self.start

  def _print(self, now: float) -> None:
    elapsed = max(now - self.start, 1e-9)
    total = f"/{self.total}" if self.total is not None else ""
    rate = self.done / elapsed
    eta = ""
    if self.total is not None and 0 < self.done < self.total:
      eta = f", ETA {(self.total - self.done) / rate:.0f} s"
    print(f"[{self.label}] {self.done}{total} {self.unit} "
          f"({rate:.1f} {self.unit}/s, {elapsed:.0f} s{eta})",
          file=sys.stderr, flush=True)
    self._printed = self.done


def spread_layers(arch: Network, count: int = 4) -> Tuple[int, ...]:
  """``count`` blocks spread evenly from block 2 to the last (CNN12:
  2, 5, 8, 11), the default layers of studies that show a few."""
  last = arch.num_blocks
  first = min(2, last)
  if count <= 1 or last == first:
    return (last,)
  return tuple(sorted({last - int(round(i * (last - first) / (count - 1)))
                       for i in range(count)}))


def check_layers(layers: Optional[Sequence[int]], arch: Network
                 ) -> Tuple[int, ...]:
  """``None`` -> all blocks; else validated, sorted, de-duplicated ints."""
  if layers is None:
    return tuple(range(1, arch.num_blocks + 1))
  layers = tuple(sorted(set(int(l) for l in layers)))
  if not layers:
    raise ValueError("no layers requested")
  for layer in layers:
    arch.check_block(layer)
  return layers


def _checked_audio(example: Dict[str, Any], index: int) -> np.ndarray:
  audio = np.asarray(example["audio"], np.float32)
  if audio.ndim != 1:
    raise ValueError(f"clip {index} ({example.get('id')!r}) must be [time], "
                     f"got shape {audio.shape}")
  if audio.size == 0:
    raise ValueError(f"clip {index} ({example.get('id')!r}) is empty")
  if not np.all(np.isfinite(audio)):
    raise ValueError(f"clip {index} ({example.get('id')!r}) contains NaN or "
                     "Inf samples")
  return audio


def fit_length(audio: np.ndarray, min_samples: int,
               clip_samples: Optional[int] = None) -> np.ndarray:
  """Applies the module's length policy to one clip (see module docstring)."""
  if clip_samples is not None:
    audio = audio[:clip_samples]
    target = max(clip_samples, min_samples)
  else:
    target = max(audio.shape[0], min_samples)
  if audio.shape[0] < target:
    audio = np.pad(audio, (0, target - audio.shape[0]))
  return audio


def load_clip(source, index: int, min_samples: int,
              clip_samples: Optional[int] = None) -> np.ndarray:
  """One clip of ``source`` exactly as the studies stream it."""
  return fit_length(_checked_audio(source[index], index), min_samples,
                    clip_samples)


def iter_clip_batches(source, batch_size: int, min_samples: int = 1,
                      clip_samples: Optional[int] = None,
                      max_clips: Optional[int] = None,
                      owns: Optional[Callable[[int], bool]] = None
                      ) -> Iterator[Dict[str, Any]]:
  """Streams ``source`` in order as equal-length batches.

  Args:
    source: a ClipSource.
    batch_size: clips per batch (the memory bound).
    min_samples: clips shorter than this are zero-padded up to it.
    clip_samples: optional fixed length (crop / zero-pad) for every clip.
    max_clips: only the first ``max_clips`` clips of the source.
    owns: only the clips ``i`` with ``owns(i)`` (a process's share:
      ``shares.Share.owns``).
  Yields:
    ``{'audio': float32 [batch_size, T], 'valid': bool [batch_size],
    'index': int64 [batch_size] (source index; -1 on padding rows),
    'label': [batch_size] int or [batch_size, C] float, 'ids': list of str
    (valid rows only)}``.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  count = len(source) if max_clips is None else min(len(source), max_clips)
  pending: List[Tuple[int, np.ndarray, Any, str]] = []

  def flush():
    n = len(pending)
    pad = batch_size - n
    rows = pending + [pending[-1]] * pad
    audio = np.stack([r[1] for r in rows])
    labels = np.stack([np.asarray(r[2]) for r in rows])
    index = np.array([r[0] for r in pending] + [-1] * pad, np.int64)
    valid = np.arange(batch_size) < n
    return {"audio": audio, "valid": valid, "index": index, "label": labels,
            "ids": [r[3] for r in pending]}

  for i in range(count):
    if owns is not None and not owns(i):
      continue
    example = source[i]
    audio = fit_length(_checked_audio(example, i), min_samples, clip_samples)
    if pending and (len(pending) == batch_size or
                    pending[0][1].shape[0] != audio.shape[0]):
      yield flush()
      pending = []
    pending.append((i, audio, example["label"], str(example.get("id", i))))
  if pending:
    yield flush()


def layer_activations(params: Params, waveforms: jax.Array,
                      layers: Tuple[int, ...], arch: Network,
                      reduce: str = "max") -> Tuple[jax.Array, ...]:
  """Per-map activation strength of several layers from one forward pass,
  the clips split over every local device (:mod:`sonify_jax.over_devices`).

  Same definition as ``deconvnet.feature_map_activations`` (max, or mean,
  over time of the block output) but one trace serves every layer.

  Returns:
    a tuple with one ``[B, C_layer]`` array per entry of ``layers``.
  """
  if reduce not in ("max", "mean"):
    raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
  return over_devices.rows(_layer_activations, (params,), (waveforms,),
                           layers=tuple(layers), arch=arch, reduce=reduce)


@functools.partial(jax.jit, static_argnames=("layers", "arch", "reduce"))
def _layer_activations(params: Params, waveforms: jax.Array, *,
                       layers: Tuple[int, ...], arch: Network,
                       reduce: str) -> Tuple[jax.Array, ...]:
  outputs = framing.clip_block_outputs(params, waveforms, arch, max(layers))
  if reduce == "max":
    return tuple(outputs[l - 1].max(axis=1) for l in layers)
  return tuple(outputs[l - 1].mean(axis=1) for l in layers)


def sonify_pairs_unchecked(params: Params, waveforms: jax.Array,
                           maps: jax.Array, layer: int, arch: Network,
                           scale: bool = True,
                           rule: str = deconvnet.DEFAULT_RULE) -> jax.Array:
  """``[P, T]`` clips and ``[P]`` maps -> ``[P, T]``: map ``maps[p]`` of clip p.

  CNN12's fast kernels: the batched ``deconvnet.sonify`` of one clip and one
  map, vmapped over (clip, map) pairs; any other network or rule:
  ``deconvnet.sonify_clip_pairs`` (each clip traced once, maps in
  memory-bounded chunks). One call instead of clips x maps sonifications;
  the pairs and their clips split over every local device
  (:mod:`sonify_jax.over_devices`).
  """
  return over_devices.rows(_own_clip_pairs, (params,), (waveforms, maps),
                           layer=layer, arch=arch, scale=scale, rule=rule)


def _own_clip_pairs(params: Params, waveforms: jax.Array, maps: jax.Array, *,
                    layer: int, arch: Network, scale: bool, rule: str
                    ) -> jax.Array:
  """Pair ``p``: map ``maps[p]`` of clip ``p`` (row-wise, one device)."""
  if deconvnet.uses_cnn12_kernels(arch, rule):
    def one(x, m):
      return deconvnet.sonify_unchecked(params, x[None], layer, m[None],
                                        arch=arch, scale=scale)[0, 0]
    return jax.vmap(one)(waveforms, maps)
  # The clips are whole (not padded): nothing to blank, as in ``sonify``.
  return deconvnet.pairs_on_one_device(
      params, waveforms, None, jnp.arange(waveforms.shape[0]), maps,
      layer=layer, arch=arch, scale=scale, rule=rule)


def sonify_pairs(params: Params, waveforms: np.ndarray, maps: np.ndarray,
                 layer: int, arch: Network, batch_size: int = 16,
                 scale: bool = True, rule: str = deconvnet.DEFAULT_RULE
                 ) -> np.ndarray:
  """Validated, chunked :func:`sonify_pairs_unchecked`.

  Chunks are padded to ``batch_size`` pairs so one compiled shape serves all.

  Args:
    waveforms: ``[P, T]`` equal-length clips.
    maps: ``[P]`` map index per clip.
    rule: how ReLUs transpose (``deconvnet.RULES``).
  Returns:
    ``[P, T]`` float32 numpy sonifications.
  """
  waveforms = np.asarray(waveforms, np.float32)
  maps = np.asarray(maps)
  if waveforms.ndim != 2 or maps.shape != (waveforms.shape[0],):
    raise ValueError(f"need [P, T] clips and [P] maps, got {waveforms.shape} "
                     f"and {maps.shape}")
  deconvnet.validate_request(waveforms, layer, maps, arch)
  out = np.empty_like(waveforms)
  for start in range(0, waveforms.shape[0], batch_size):
    chunk = waveforms[start:start + batch_size]
    chunk_maps = maps[start:start + batch_size]
    n = chunk.shape[0]
    if n < batch_size:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - n, 0)])
      chunk_maps = np.concatenate(
          [chunk_maps, np.repeat(chunk_maps[-1:], batch_size - n)])
    result = sonify_pairs_unchecked(params, jnp.asarray(chunk),
                                    jnp.asarray(chunk_maps, jnp.int32),
                                    layer=layer, arch=arch, scale=scale,
                                    rule=rule)
    out[start:start + n] = np.asarray(result)[:n]
  return out


class RunningTopK:
  """Keeps, per feature map, the ``k`` clips with the largest activation.

  Memory is ``[num_maps, k]`` whatever the number of clips streamed. Ties
  are broken by the smaller clip index, so the result does not depend on how
  the stream was batched.
  """

  def __init__(self, num_maps: int, k: int):
    if k < 1:
      raise ValueError(f"k must be >= 1, got {k}")
    self.k = k
    self.values = np.full((num_maps, k), -np.inf, np.float64)
    self.indices = np.full((num_maps, k), -1, np.int64)

  def update(self, activations: np.ndarray, indices: np.ndarray) -> None:
    """Args: activations ``[B, num_maps]``; indices ``[B]`` clip indices."""
    activations = np.asarray(activations, np.float64)
    indices = np.asarray(indices, np.int64)
    if activations.ndim != 2 or activations.shape[1] != self.values.shape[0]:
      raise ValueError(f"activations must be [B, {self.values.shape[0]}], got "
                       f"{activations.shape}")
    self.merge(activations.T, np.broadcast_to(indices, activations.T.shape))

  def merge(self, values: np.ndarray, indices: np.ndarray) -> None:
    """Adds candidates per map: ``values``, ``indices`` ``[num_maps, J]``
    (another top-k's tables: index -1 is an empty slot)."""
    values = np.concatenate([self.values, np.asarray(values, np.float64)],
                            axis=1)
    idx = np.concatenate([self.indices, np.asarray(indices, np.int64)],
                         axis=1)
    # Empty slots (index -1) sort last; then larger value, then smaller index.
    empty = idx < 0
    order = np.lexsort((np.where(empty, np.iinfo(np.int64).max, idx),
                        -np.where(empty, -np.inf, values), empty), axis=1)
    order = order[:, :self.k]
    self.values = np.take_along_axis(values, order, 1)
    self.indices = np.take_along_axis(idx, order, 1)


def t_interval(values: Sequence[float], confidence: float = 0.95
               ) -> Tuple[float, float]:
  """Mean and half-width of the Student-t confidence interval of the mean.

  With a single value the half-width is NaN (no spread to estimate).
  """
  from scipy import stats  # pylint: disable=g-import-not-at-top
  values = np.asarray(values, np.float64)
  n = values.size
  if n == 0:
    return float("nan"), float("nan")
  mean = float(values.mean())
  if n < 2:
    return mean, float("nan")
  sem = values.std(ddof=1) / np.sqrt(n)
  return mean, float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sem)


def log(msg: str) -> None:
  """A progress line for the person running the command (printed once; not
  also sent to absl, which prints INFO on stderr too)."""
  print(msg, file=sys.stderr, flush=True)


def random_params(arch: Network, seed: int = 0) -> Params:
  """Seeded random encoder params (LeCun-normal kernels, zero biases, unit
  affine scales).

  Same tree as ``Encoder(arch).init`` (shapes from ``jax.eval_shape``) but
  filled with numpy, so tests and smoke runs skip compiling an init.
  """
  from sonify_jax.models.encoder import Encoder  # pylint: disable=g-import-not-at-top
  shapes = jax.eval_shape(
      Encoder(net=arch).init, jax.random.PRNGKey(0),
      jax.ShapeDtypeStruct((1, arch.min_input_length(arch.num_blocks)),
                           jnp.float32))["params"]
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    if path[-1].key == "bias":
      return np.zeros(leaf.shape, np.float32)
    if path[-1].key == "scale":
      return np.ones(leaf.shape, np.float32)
    fan_in = int(np.prod(leaf.shape[:-1]))
    return (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)
            ).astype(np.float32)
  return jax.tree_util.tree_map_with_path(fill, shapes)

