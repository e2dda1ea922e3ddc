"""The embedded default dataset: spoken keywords and sound events at 8 kHz.

The files ship in ``sonify_jax/data/embedded/`` (made by
``scripts/make_embedded_data.py``; see the README there for licences). The
manifest (``manifest.csv``: id, file, group, label, split, num_samples,
source, variant) is the single source of truth for labels and splits.

Class indices: within a group, labels in sorted order; the merged source
('embedded') numbers the keyword classes first, then the event classes.

Splits: the manifest has 'train' and 'test'. For model selection, 20 % of
each class's manifest-train clips are held out as 'validation', whole groups
at a time so that no voice (keywords: the espeak-ng accent+variant) or source
sound file (events) is on both sides: groups are taken in the order of the
SHA-256 of their key until each class reaches its share (deterministic, no
RNG). 'train' is the rest, and 'train_all' = 'train' + 'validation' (the
manifest's train, for label-free uses such as SimCLR or a linear probe).
"""
import collections
import csv
import hashlib
import os
import threading
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from sonify_jax import audio_io
from sonify_jax.data.sources import Example, check_index
from sonify_jax.data.sources import SAMPLE_RATE

EMBEDDED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "embedded")
MANIFEST = "manifest.csv"
SPLITS = ("train", "validation", "test", "train_all")
VALIDATION_FRACTION = 0.2
# Source name -> manifest groups it covers, in class-numbering order.
GROUPS = {
    "embedded_keywords": ("keywords",),
    "embedded_events": ("events",),
    "embedded": ("keywords", "events"),
}
_REQUIRED_COLUMNS = ("id", "file", "group", "label", "split")

# Decoded clips, keyed by absolute path: every source over the same files
# shares one copy (the whole set is ~4 MB of float32 per split).
_AUDIO_CACHE: Dict[str, np.ndarray] = {}
_CACHE_LOCK = threading.Lock()


def read_manifest(root: str = EMBEDDED_DIR) -> List[Dict[str, str]]:
  """Rows of ``root/manifest.csv`` as dicts, in file order."""
  path = os.path.join(root, MANIFEST)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"embedded dataset manifest not found: {path} (regenerate it with "
        f"scripts/make_embedded_data.py --out_dir={root})")
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  if not rows:
    raise ValueError(f"{path} lists no clips")
  missing = [c for c in _REQUIRED_COLUMNS if c not in rows[0]]
  if missing:
    raise ValueError(f"{path} lacks columns {missing}")
  return rows


def class_names_for(rows: Sequence[Dict[str, str]],
                    groups: Sequence[str]) -> Tuple[str, ...]:
  """Class names of ``groups``: each group's labels sorted, groups in order."""
  names = []
  for group in groups:
    names.extend(sorted({r["label"] for r in rows if r["group"] == group}))
  return tuple(names)


def holdout_group(row: Dict[str, str]) -> str:
  """The key that keeps related clips on one side of the validation split:
  the voice of a synthesised keyword, the source sound file of an event."""
  if row["source"] == "espeak-ng":
    return "voice:" + row["variant"].split()[0]
  return "source:" + row["source"]


def _hash(key: str) -> str:
  return hashlib.sha256(key.encode("utf-8")).hexdigest()


def validation_ids(rows: Sequence[Dict[str, str]],
                   fraction: float = VALIDATION_FRACTION) -> frozenset:
  """Ids of the manifest-train clips held out for validation.

  Whole groups (:func:`holdout_group`) are taken in SHA-256 order of their
  key, a group only while one of its classes is below ``round(fraction *
  its train clips)``.
  """
  train = [r for r in rows if r["split"] == "train"]
  per_class = collections.Counter((r["group"], r["label"]) for r in train)
  target = {c: int(round(fraction * n)) for c, n in per_class.items()}
  members = collections.defaultdict(list)
  for r in train:
    members[holdout_group(r)].append(r)
  taken = collections.Counter()
  held = set()
  for key in sorted(members, key=_hash):
    group_rows = members[key]
    if any(taken[(r["group"], r["label"])] < target[(r["group"], r["label"])]
           for r in group_rows):
      for r in group_rows:
        taken[(r["group"], r["label"])] += 1
        held.add(r["id"])
  return frozenset(held)


def split_rows(rows: Sequence[Dict[str, str]],
               split: str) -> List[Dict[str, str]]:
  """The manifest rows of ``split`` (one of ``SPLITS``), in file order."""
  if split == "test":
    return [r for r in rows if r["split"] == "test"]
  train = [r for r in rows if r["split"] == "train"]
  if split == "train_all":
    return train
  held = validation_ids(rows)
  return [r for r in train if (r["id"] in held) == (split == "validation")]


def _load_cached(path: str) -> np.ndarray:
  with _CACHE_LOCK:
    audio = _AUDIO_CACHE.get(path)
  if audio is None:
    audio = audio_io.load_audio(path, SAMPLE_RATE)
    if not np.all(np.isfinite(audio)):
      raise audio_io.AudioReadError(f"{path} holds non-finite samples")
    audio.setflags(write=False)  # shared by every caller: keep it intact
    with _CACHE_LOCK:
      _AUDIO_CACHE[path] = audio
  return audio


class EmbeddedSource:
  """A ClipSource over one split of the shipped files.

  Args:
    name: 'embedded_keywords', 'embedded_events' or 'embedded'.
    split: 'train', 'validation', 'test' or 'train_all' (module doc).
    root: directory holding manifest.csv and the WAVs (default: shipped).

  Clips are decoded on first access and then kept in memory.
  """

  def __init__(self, name: str, split: str, root: Optional[str] = None):
    if name not in GROUPS:
      raise ValueError(f"unknown embedded source {name!r}; "
                       f"known: {sorted(GROUPS)}")
    if split not in SPLITS:
      raise ValueError(f"unknown split {split!r} for {name}; "
                       f"known: {list(SPLITS)}")
    self.root = os.path.abspath(root or EMBEDDED_DIR)
    rows = read_manifest(self.root)
    groups = GROUPS[name]
    self.name = name
    self.split = split
    self.multilabel = False
    self.class_names = class_names_for(rows, groups)
    self.num_classes = len(self.class_names)
    index = {c: i for i, c in enumerate(self.class_names)}
    self._rows = [r for r in split_rows(rows, split) if r["group"] in groups]
    if not self._rows:
      raise ValueError(f"no clips for {name}/{split} in {self.root}")
    self._labels = np.array([index[r["label"]] for r in self._rows],
                            np.int32)

  def __len__(self) -> int:
    return len(self._rows)

  @property
  def labels(self) -> np.ndarray:
    """int32 [num_clips] class indices, without decoding audio."""
    return self._labels.copy()

  @property
  def ids(self) -> List[str]:
    return [r["id"] for r in self._rows]

  def __getitem__(self, index: int) -> Example:
    index = check_index(index, len(self), f"{self.name}/{self.split}")
    row = self._rows[index]
    audio = _load_cached(os.path.join(self.root, row["file"]))
    return {"audio": audio, "label": np.asarray(self._labels[index], np.int32),
            "id": row["id"]}

  def __repr__(self) -> str:
    return (f"EmbeddedSource({self.name!r}, {self.split!r}: {len(self)} "
            f"clips, {self.num_classes} classes)")
