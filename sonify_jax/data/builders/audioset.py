"""AudioSet (527 labels) from a local folder of downloaded clips, at 8 kHz.

Official layout expected under ``manual_dir``:

  class_labels_indices.csv       index,mid,display_name
  balanced_train_segments.csv    YTID, start_seconds, end_seconds, "mids"
  unbalanced_train_segments.csv  (any of the three segment files may be
  eval_segments.csv               absent; its split is then not built)
  <any folders>/<clip audio>     the downloaded clips, any audio format

A clip is found by its file name (without extension), tried in order:
``YTID``, ``Y<YTID>``, ``<YTID>_<start as in the CSV>``,
``<YTID>_<int start>``, ``<YTID>_<start in ms>``. Listed segments with no
file (AudioSet videos disappear from YouTube) are reported as skipped.
"""
import logging
import os
from typing import Dict, List

from sonify_jax.data.builders import base

_LAYOUT = __doc__

SEGMENT_FILES = {
    "balanced_train": "balanced_train_segments.csv",
    "unbalanced_train": "unbalanced_train_segments.csv",
    "eval": "eval_segments.csv",
}
LABELS_FILE = "class_labels_indices.csv"
NUM_CLASSES = 527


def read_label_indices(path: str):
  """(mids, display names) in index order from class_labels_indices.csv."""
  rows = base.read_csv_rows(path)
  if not rows or [c.strip() for c in rows[0][:3]] != [
      "index", "mid", "display_name"]:
    raise ValueError(f"{path}: expected header index,mid,display_name")
  entries = sorted((int(r[0]), r[1].strip(), r[2].strip())
                   for r in rows[1:] if r)
  if [e[0] for e in entries] != list(range(len(entries))):
    raise ValueError(f"{path}: indices are not 0..{len(entries) - 1}")
  if len(entries) != NUM_CLASSES:
    logging.warning("%s lists %d classes, not AudioSet's %d", path,
                    len(entries), NUM_CLASSES)
  return [e[1] for e in entries], [e[2] for e in entries]


def clip_file_candidates(ytid: str, start: str) -> List[str]:
  """File stems a downloaded segment may have (see the module doc)."""
  seconds = float(start)
  return [ytid, "Y" + ytid, f"{ytid}_{start}", f"{ytid}_{int(seconds)}",
          f"{ytid}_{int(round(seconds * 1000))}"]


class Audioset8khz(base.AudioClipBuilder):
  """AudioSet segments, 8 kHz mono, multi-label over 527 ontology classes."""

  name = "audioset_8khz"
  MULTILABEL = True
  HOMEPAGE = "https://research.google.com/audioset/"
  MANUAL_DOWNLOAD_INSTRUCTIONS = _LAYOUT

  def list_clips(self, manual_dir):
    mids, names = read_label_indices(os.path.join(manual_dir, LABELS_FILE))
    index = {m: i for i, m in enumerate(mids)}
    files = base.index_audio_files(manual_dir)
    splits: Dict[str, List[base.ClipItem]] = {}
    for split, filename in SEGMENT_FILES.items():
      path = os.path.join(manual_dir, filename)
      if not os.path.isfile(path):
        logging.warning("%s absent: split %s not built", path, split)
        continue
      items = []
      seen = set()
      for row in base.read_csv_rows(path, skipinitialspace=True):
        if not row or row[0].startswith("#"):
          continue
        if len(row) < 4:
          raise ValueError(f"{path}: malformed row {row}")
        ytid, start, positives = row[0].strip(), row[1].strip(), row[3]
        if ytid in seen:
          continue  # keys must be unique; AudioSet lists a YTID once
        seen.add(ytid)
        try:
          label = tuple(sorted({index[m.strip()]
                                for m in positives.split(",") if m.strip()}))
        except KeyError as error:
          raise ValueError(f"{path}: label {error} of {ytid} is not in "
                           f"{LABELS_FILE}") from error
        found = next((files[s] for s in clip_file_candidates(ytid, start)
                      if s in files), None)
        items.append(base.ClipItem(ytid, found, label))
      splits[split] = items
    if not splits:
      raise FileNotFoundError(
          f"none of {sorted(SEGMENT_FILES.values())} in {manual_dir}")
    return splits, names, {"class_ids": mids}
