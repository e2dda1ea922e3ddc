"""A deterministic validation holdout of a built train split, by clip id.

The thesis selected AudioSet models on a 10 % random holdout of the train
clips. Here a clip is held out when the first 64 bits of the SHA-256 of its
id, read as a fraction of 2**64, fall below ``fraction``: the same clip is on
the same side whatever else was built, on every host, with no RNG or stored
list. The two sides are ``HoldoutSource(..., side='validation')`` and
``side='train'`` (the rest), views of one underlying source.

Finding which records are held out needs every record's id, and array_record
records are read whole; the indices are therefore cached beside the prepared
dataset (``holdout_<split>.json``, fingerprinted by its dataset_info.json), so
the scan runs once per build.
"""
import hashlib
import json
from typing import List, Optional, Sequence

from absl import logging

from sonify_jax import atomic_io
from sonify_jax import paths
from sonify_jax.data.sources import check_index

SIDES = ("train", "validation")


def holdout_fraction(clip_id: str) -> float:
  """A uniform number in [0, 1) fixed by the clip id."""
  digest = hashlib.sha256(str(clip_id).encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


def is_held_out(clip_id: str, fraction: float) -> bool:
  return holdout_fraction(clip_id) < fraction


def _fingerprint(dataset_dir: Optional[str]) -> Optional[str]:
  if not dataset_dir:
    return None
  path = paths.as_path(dataset_dir, "dataset_info.json")
  if not path.is_file():
    return None
  with path.open("rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def held_out_indices(source, fraction: float,
                     cache_path: Optional[str] = None,
                     fingerprint: Optional[str] = None) -> List[int]:
  """Indices of ``source``'s clips whose id is held out (cached if asked)."""
  key = {"fraction": fraction, "num_clips": len(source),
         "fingerprint": fingerprint}
  if cache_path and fingerprint and paths.as_path(cache_path).is_file():
    try:
      with paths.as_path(cache_path).open("r") as f:
        cached = json.load(f)
      if all(cached.get(k) == v for k, v in key.items()):
        return list(cached["indices"])
    except (OSError, ValueError, KeyError):
      pass
  logging.info("finding the %.0f %% validation holdout of %s (%d clips; "
               "read once, then cached)", 100 * fraction,
               getattr(source, "name", "?"), len(source))
  indices = [i for i in range(len(source))
             if is_held_out(_clip_id(source, i), fraction)]
  if cache_path and fingerprint:
    try:
      atomic_io.write_json(cache_path, dict(key, indices=indices))
    except OSError as e:  # a read-only dataset dir: recompute next time
      logging.warning("could not cache the holdout in %s: %s", cache_path, e)
  return indices


def _clip_id(source, index: int) -> str:
  ids = getattr(source, "ids", None)
  if ids is not None:
    return ids[index]
  return source[index]["id"]


class HoldoutSource:
  """One side of the id-hash holdout of ``source`` (a ClipSource).

  Args:
    source: the full train split.
    side: 'validation' (the held-out clips) or 'train' (the others).
    fraction: share of clips held out (thesis: 0.1).
    dataset_dir: the prepared dataset's directory, for the index cache.
  """

  def __init__(self, source, side: str, fraction: float = 0.1,
               dataset_dir: Optional[str] = None):
    if side not in SIDES:
      raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    if not 0.0 < fraction < 1.0:
      raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    self._source = source
    self.name = getattr(source, "name", "source")
    self.split = f"{side} ({fraction:.0%} holdout of "
    self.split += f"{getattr(source, 'split', 'train')} by clip-id hash)"
    self.num_classes = source.num_classes
    self.multilabel = source.multilabel
    self.class_names = source.class_names
    fingerprint = _fingerprint(dataset_dir)
    base_split = str(getattr(source, "split", "train"))
    safe = "".join(ch if ch.isalnum() else "_" for ch in base_split)
    cache = (paths.join(dataset_dir, f"holdout_{safe}.json")
             if dataset_dir else None)
    held = held_out_indices(source, fraction, cache, fingerprint)
    if side == "validation":
      self._indices: Sequence[int] = held
    else:
      held_set = set(held)
      self._indices = [i for i in range(len(source)) if i not in held_set]

  def __len__(self) -> int:
    return len(self._indices)

  def __getitem__(self, index: int):
    index = check_index(index, len(self), f"{self.name}/{self.split}")
    return self._source[self._indices[index]]

  def __repr__(self) -> str:
    return f"HoldoutSource({self.name!r}, {self.split!r}: {len(self)} clips)"
