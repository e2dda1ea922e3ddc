r"""Your own labelled audio: one sub-folder per class, at 8 kHz.

Layout under ``manual_dir`` (the dataset's root)::

  <class>/<any name>.<wav|flac|ogg|mp3|...>   (deeper sub-folders are fine)
  validation_list.txt, testing_list.txt       (optional)

Classes are the sub-folder names, sorted (stored in
``info.metadata['class_names']``). Folders starting with '.' or '_' (e.g.
Speech Commands' ``_background_noise_``) are not classes and are left out;
files that are not audio by extension are ignored; files that do not decode
are skipped and listed in ``skipped_clips.tsv``.

Splits ('train', 'validation', 'test'):
  * If ``validation_list.txt`` or ``testing_list.txt`` exists, they are used
    as in Speech Commands: one path per line, relative to the root (e.g.
    ``dog/rec3_0.wav``); every other file is 'train'.
  * Otherwise a seeded split (``split_percent``, default 80/10/10) of
    *groups*: ``group_regex`` is searched in each file's path relative to its
    class folder (its file name in a flat layout); the first capture group
    (or the whole match) is the group key, e.g. ``'^([^_]+)_'`` for a
    speaker prefix or a recording's name for pieces cut from one recording.
    Files sharing a key (in any class) land in one split, so a speaker or
    recording heard in training is never in validation or test. A file that
    does not match is its own group. Groups are shuffled with ``split_seed``
    and each goes to the split furthest below its share of files, so the
    shares come out close even with a few large groups.

Several folder datasets live side by side in one TFDS data_dir: each is a
config of the 'folder_8khz' builder named after its root folder (or
``name=``), stored in ``<data_dir>/folder_8khz/<name>/<version>/`` and read
by ``catalog.get_source('folder:<name>', split, data_dir)`` ('folder' alone
when the data_dir holds exactly one).
"""
import logging
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow_datasets as tfds

from sonify_jax.data.builders import base
from sonify_jax.errors import UserError

_LAYOUT = __doc__
BUILDER_DIR = "folder_8khz"
LIST_FILES = (("validation", "validation_list.txt"),
              ("test", "testing_list.txt"))
SPLITS = ("train", "validation", "test")
DEFAULT_SPLIT_PERCENT = "80/10/10"


def dataset_name(text: str) -> str:
  """A folder or user-given name as a TFDS config name (lowercase
  [a-z0-9_])."""
  name = re.sub(r"[^a-z0-9_]+", "_", os.path.basename(
      os.path.normpath(text)).lower()).strip("_")
  if not name:
    raise UserError(f"cannot make a dataset name of {text!r}; pass "
                    f"--name=<letters, digits, _>")
  return name


def parse_split_percent(text) -> Tuple[float, float, float]:
  """'80/10/10' (or fractions '0.8/0.1/0.1', or a 3-sequence) -> fractions
  of (train, validation, test) summing to 1."""
  try:
    parts = text.split("/") if isinstance(text, str) else list(text)
    values = [float(p) for p in parts]
    if not all(np.isfinite(values)):
      values = []
  except (TypeError, ValueError):
    values = []
  total = sum(values)
  if len(values) != 3 or min(values) < 0 or values[0] <= 0 or total <= 0:
    raise UserError(f"split_percent={text!r}: expected train/validation/test "
                    f"shares such as 80/10/10 (train > 0, none negative)")
  return tuple(v / total for v in values)


def group_key(regex: Optional[re.Pattern], rel_in_class: str,
              rel_path: str) -> str:
  """The file's group: the regex's first capture (or match) in its path
  within the class folder; the file's own path when there is no match."""
  if regex is not None:
    match = regex.search(rel_in_class)
    if match:
      return "g:" + (match.group(1) if regex.groups else match.group(0))
  return "f:" + rel_path


def assign_groups(group_sizes: Dict[str, int],
                  fractions: Sequence[float], seed: int) -> Dict[str, str]:
  """Group key -> split. Groups are visited in a seeded shuffle of their
  sorted keys; each goes to the split whose file count lies furthest below
  its target share (ties: train, validation, test)."""
  keys = sorted(group_sizes)
  order = np.random.default_rng(seed).permutation(len(keys))
  total = sum(group_sizes.values())
  counts = [0, 0, 0]
  out = {}
  for i in order:
    key = keys[i]
    deficits = [fractions[s] * total - counts[s] if fractions[s] > 0
                else -np.inf for s in range(3)]
    s = int(np.argmax(deficits))
    out[key] = SPLITS[s]
    counts[s] += group_sizes[key]
  return out


def _audio_files(folder: str) -> List[str]:
  """Paths of audio files under ``folder`` relative to it (sorted walk)."""
  found = []
  for dirpath, dirnames, filenames in os.walk(folder):
    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    for filename in sorted(filenames):
      if os.path.splitext(filename)[1].lower() in base.AUDIO_EXTENSIONS:
        found.append(os.path.relpath(os.path.join(dirpath, filename),
                                     folder).replace(os.sep, "/"))
  return found


def _read_list(path: str) -> List[str]:
  with open(path, encoding="utf-8") as f:
    return [os.path.normpath(line.strip().replace("\\", "/")).replace(
        os.sep, "/") for line in f if line.strip()]


class Folder8khz(base.AudioClipBuilder):
  """Your own labelled audio (one sub-folder per class), 8 kHz mono,
  single-label over the sorted folder names."""

  name = BUILDER_DIR
  MANUAL_DOWNLOAD_INSTRUCTIONS = _LAYOUT

  def __init__(self, *, dataset: Optional[str] = None,
               manual_dir: Optional[str] = None, group_regex: str = "",
               split_percent=DEFAULT_SPLIT_PERCENT, split_seed: int = 0,
               **kwargs):
    """Args: ``dataset``: its name (default: the root folder's name);
    ``group_regex``, ``split_percent``, ``split_seed``: the seeded split
    (see the module doc); the rest as ``AudioClipBuilder``."""
    if not dataset and not manual_dir:
      raise UserError("a folder dataset needs a name or its manual_dir")
    name = dataset_name(dataset or manual_dir)
    try:
      self._group_regex = re.compile(group_regex) if group_regex else None
    except re.error as error:
      raise UserError(f"group_regex={group_regex!r} is not a regular "
                      f"expression: {error}") from None
    self._options = {"group_regex": group_regex,
                     "split_percent": list(parse_split_percent(split_percent)),
                     "split_seed": int(split_seed)}
    kwargs["config"] = tfds.core.BuilderConfig(
        name=name, description=f"folder dataset {name}")
    super().__init__(manual_dir=manual_dir, **kwargs)

  def _create_builder_config(self, builder_config, version):
    """Each user dataset is its own config, not a predefined one (TFDS
    would accept it too, with a warning per construction)."""
    del version
    return builder_config

  def build_options(self):
    return dict(self._options)

  def list_clips(self, manual_dir):
    classes = sorted(
        d for d in os.listdir(manual_dir)
        if os.path.isdir(os.path.join(manual_dir, d))
        and not d.startswith((".", "_")))
    left_out = sorted(
        d for d in os.listdir(manual_dir)
        if os.path.isdir(os.path.join(manual_dir, d))
        and d.startswith("_"))
    if left_out:
      logging.info("%s: folders starting with '_' are not classes: %s",
                   self.name, ", ".join(left_out))
    if len(classes) < 2:
      raise UserError(f"{manual_dir} has {len(classes)} class folders; a "
                      f"folder dataset needs at least 2 (one sub-folder per "
                      f"class)")
    files = {}  # path relative to root -> (class index, path in class)
    for label, cls in enumerate(classes):
      rels = _audio_files(os.path.join(manual_dir, cls))
      if not rels:
        raise UserError(f"class folder {os.path.join(manual_dir, cls)} "
                        f"holds no audio files ({', '.join(base.AUDIO_EXTENSIONS)})")
      for rel in rels:
        files[f"{cls}/{rel}"] = (label, rel)
    lists = [(split, os.path.join(manual_dir, f)) for split, f in LIST_FILES
             if os.path.isfile(os.path.join(manual_dir, f))]
    if lists:
      splits, how = self._listed_splits(manual_dir, files, classes, lists)
    else:
      splits, how = self._grouped_splits(manual_dir, files)
    logging.info("%s: %s", self.name, how)
    for split, items in splits.items():
      missing = sorted(set(classes) - {classes[i.label] for i in items})
      if items and missing:
        logging.warning("%s: split %s has no clips of %s", self.name, split,
                        ", ".join(missing))
    return splits, classes, {"split_method": how}

  def _item(self, manual_dir, rel, label):
    # The id keeps the extension: a.wav and a.flac may both exist.
    return base.ClipItem(rel, os.path.join(manual_dir, rel), label)

  def _listed_splits(self, manual_dir, files, classes, lists):
    held_out = {}
    for split, path in lists:
      for rel in _read_list(path):
        if rel in held_out and held_out[rel] != split:
          raise UserError(f"{rel} is in two split lists")
        held_out[rel] = split
    splits = {split: [] for split in SPLITS}
    for rel, (label, _) in files.items():
      splits[held_out.get(rel, "train")].append(
          self._item(manual_dir, rel, label))
    for rel, split in sorted(held_out.items()):
      if rel in files:
        continue
      cls = rel.split("/")[0]
      if cls not in classes:
        raise UserError(f"{rel} in {split} list: {cls!r} is not a class "
                        f"folder of {manual_dir}")
      # Listed but absent: reported in skipped_clips.tsv, not ignored.
      splits[split].append(base.ClipItem(rel, None, classes.index(cls)))
    return splits, ("splits from " + " and ".join(
        os.path.basename(p) for _, p in lists) + "; other files are train")

  def _grouped_splits(self, manual_dir, files):
    keys = {rel: group_key(self._group_regex, in_class, rel)
            for rel, (_, in_class) in files.items()}
    sizes = {}
    for key in keys.values():
      sizes[key] = sizes.get(key, 0) + 1
    fractions = self._options["split_percent"]
    assignment = assign_groups(sizes, fractions, self._options["split_seed"])
    splits = {split: [] for split in SPLITS}
    for rel, (label, _) in files.items():
      splits[assignment[keys[rel]]].append(self._item(manual_dir, rel, label))
    matched = sum(1 for k in keys.values() if k.startswith("g:"))
    return splits, (
        f"seeded split {'/'.join(f'{100 * f:g}' for f in fractions)} "
        f"(seed {self._options['split_seed']}) of {len(sizes)} groups; "
        f"group_regex {self._options['group_regex']!r} matched {matched} of "
        f"{len(files)} files")


def prepared_names(data_dir: str) -> List[str]:
  """Names of the folder datasets prepared in ``data_dir``."""
  root = os.path.join(data_dir, BUILDER_DIR)
  if not os.path.isdir(root):
    return []
  names = []
  for name in sorted(os.listdir(root)):
    folder = os.path.join(root, name)
    if os.path.isdir(folder) and any(
        os.path.isfile(os.path.join(folder, v, "dataset_info.json"))
        for v in os.listdir(folder)):
      names.append(name)
  return names
