"""FSD50K (200 labels) in its official release layout, at 8 kHz.

Expected under ``manual_dir``:

  FSD50K.dev_audio/<fname>.wav
  FSD50K.eval_audio/<fname>.wav
  FSD50K.ground_truth/vocabulary.csv   index,label,mid (no header)
  FSD50K.ground_truth/dev.csv          fname,labels,mids,split (train|val)
  FSD50K.ground_truth/eval.csv         fname,labels,mids

Splits: 'train' and 'validation' (dev.csv's split column), 'test' (eval).
"""
import os

from sonify_jax.data.builders import base

_LAYOUT = __doc__

NUM_CLASSES = 200
_GT = "FSD50K.ground_truth"


def read_vocabulary(path: str):
  """(mids, label names) in index order from vocabulary.csv."""
  rows = [r for r in base.read_csv_rows(path) if r]
  entries = sorted((int(r[0]), r[1].strip(), r[2].strip()) for r in rows)
  if [e[0] for e in entries] != list(range(len(entries))):
    raise ValueError(f"{path}: indices are not 0..{len(entries) - 1}")
  return [e[2] for e in entries], [e[1] for e in entries]


def _read_ground_truth(path: str, audio_dir: str, index, split_column: bool):
  """Yields (dev split or None, ClipItem) per row of dev.csv / eval.csv."""
  rows = base.read_csv_rows(path)
  header = [c.strip() for c in rows[0]]
  want = ["fname", "labels", "mids"] + (["split"] if split_column else [])
  if header[:len(want)] != want:
    raise ValueError(f"{path}: expected header {','.join(want)}, "
                     f"got {','.join(header)}")
  for row in rows[1:]:
    if not row:
      continue
    fname = row[0].strip()
    try:
      label = tuple(sorted({index[m.strip()] for m in row[2].split(",")
                            if m.strip()}))
    except KeyError as error:
      raise ValueError(f"{path}: mid {error} of clip {fname} is not in "
                       f"vocabulary.csv") from error
    item = base.ClipItem(fname, os.path.join(audio_dir, fname + ".wav"),
                         label)
    yield (row[3].strip() if split_column else None), item


class Fsd50k8khz(base.AudioClipBuilder):
  """FSD50K clips, 8 kHz mono, multi-label over its 200-class vocabulary."""

  name = "fsd50k_8khz"
  MULTILABEL = True
  HOMEPAGE = "https://zenodo.org/record/4060432"
  MANUAL_DOWNLOAD_INSTRUCTIONS = _LAYOUT

  def list_clips(self, manual_dir):
    gt = base.require_dir(os.path.join(manual_dir, _GT))
    mids, names = read_vocabulary(os.path.join(gt, "vocabulary.csv"))
    index = {m: i for i, m in enumerate(mids)}
    dev_dir = os.path.join(manual_dir, "FSD50K.dev_audio")
    eval_dir = os.path.join(manual_dir, "FSD50K.eval_audio")
    splits = {"train": [], "validation": [], "test": []}
    for dev_split, item in _read_ground_truth(
        os.path.join(gt, "dev.csv"), dev_dir, index, split_column=True):
      if dev_split not in ("train", "val"):
        raise ValueError(f"dev.csv: split {dev_split!r} of {item.key} is "
                         f"neither train nor val")
      splits["train" if dev_split == "train" else "validation"].append(item)
    for _, item in _read_ground_truth(
        os.path.join(gt, "eval.csv"), eval_dir, index, split_column=False):
      splits["test"].append(item)
    return splits, names, {"class_ids": mids}
