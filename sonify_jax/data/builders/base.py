"""The shared TFDS builder for audio clip datasets kept on local disk.

Every builder here reads a dataset in its official release layout from a
``manual_dir``, decodes each clip with ``sonify_jax.audio_io`` (any format,
mono, resampled to 8 kHz) and writes ``array_record`` shards that are read
back by random access through ``tfds.data_source`` -- no TensorFlow needed
to build or to read.

Features of every example:
  audio: int16 [time] -- 8 kHz mono PCM; float = int16 / 32767.
  label: int32 [] (single-label) -- index into metadata['class_names'].
  labels: int32 [num_positive] (multilabel) -- positive class indices.
  id: text -- the clip's id in the official files.

Class names, the label kind, every skipped clip and what the build was
made from (``source``: manual_dir, file count and bytes, options; see
provenance.py) live in ``info.metadata`` (written atomically with the
shards), so reading needs no source files. Clips that are missing, cannot
be decoded, are truncated (a WAV whose header promises more samples than
the file holds), hold NaN/Inf samples or are shorter than the trainable
networks' receptive field (``MIN_SAMPLES``) are skipped and listed with
their reason in ``<data_dir>/<name>/<version>/skipped_clips.tsv`` (and in
metadata['skipped']), never dropped silently; ``skip_summary`` counts them
by kind.

int16 storage halves the disk footprint of float32 (AudioSet at 8 kHz:
~2 M clips x 10 s -> ~320 GB instead of 640 GB) at a quantisation noise
floor of about -101 dBFS, far below any real recording's.
"""
import abc
import collections
import csv
import dataclasses
import functools
import logging
import os
import struct
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import grain
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import py_utils as tfds_py_utils

from sonify_jax import atomic_io, audio_io
from sonify_jax.data import batch_iterator
from sonify_jax.data.builders import provenance
from sonify_jax.errors import UserError
from sonify_jax.data.sources import check_index
from sonify_jax.data.sources import SAMPLE_RATE

AUDIO_EXTENSIONS = audio_io.AUDIO_EXTENSIONS
REPORT_NAME = "skipped_clips.tsv"
INT16_SCALE = 32767.0


# Skip reasons start with one of these (skip_summary counts by them).
NO_FILE = "no audio file found"
UNDECODABLE = "undecodable"
TRUNCATED = "truncated"
NO_SAMPLES = "no samples after resampling"
NON_FINITE = "non-finite samples (NaN/Inf)"
TOO_SHORT = "shorter than the receptive field"


@functools.lru_cache(maxsize=None)
def min_samples() -> int:
  """The fewest 8 kHz samples any trainable network takes (its receptive
  field through every block): a shorter clip gives no output at all."""
  # Imported here: the networks are not needed to read a built dataset.
  from sonify_jax.models.registry import TRAINABLE, get_network  # pylint: disable=g-import-not-at-top
  lengths = []
  for name in TRAINABLE:
    network = get_network(name)
    if network.sample_rate == SAMPLE_RATE:
      lengths.append(network.min_input_length(network.num_blocks))
  return min(lengths)


def wav_truncation(path: str) -> Optional[str]:
  """Why a RIFF/WAVE file is truncated (its data chunk's header promises
  more bytes than follow it), or None: not a WAV, a streamed WAV with an
  unknown size (0 or 0xFFFFFFFF), or complete."""
  try:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      head = f.read(12)
      if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or (
          head[8:12] != b"WAVE"):
        return None
      order = "<" if head[:4] == b"RIFF" else ">"
      block_align = 0
      offset = 12
      while offset + 8 <= size:
        f.seek(offset)
        chunk, length = struct.unpack(order + "4sI", f.read(8))
        if chunk == b"fmt " and length >= 14:
          fmt = f.read(14)
          block_align = struct.unpack(order + "H", fmt[12:14])[0]
        if chunk == b"data":
          if length in (0, 0xFFFFFFFF):
            return None
          held = size - offset - 8
          if held >= length:
            return None
          if block_align:
            return (f"{TRUNCATED}: the WAV header promises "
                    f"{length // block_align} frames, the file holds "
                    f"{held // block_align}")
          return (f"{TRUNCATED}: the WAV header promises {length} bytes of "
                  f"audio, the file holds {held}")
        offset += 8 + length + (length & 1)
  except (OSError, struct.error):
    return None
  return None


@dataclasses.dataclass(frozen=True)
class ClipItem:
  """One clip listed by the official metadata.

  Attributes:
    key: unique id (becomes the example's 'id' and TFDS key).
    path: audio file, or None when the listed clip has no file on disk.
    label: class index (single-label) or sorted positive indices.
  """
  key: str
  path: Optional[str]
  label: Union[int, Tuple[int, ...]]
  segment: Optional[Tuple[int, int]] = None


def decode_clip(path: Optional[str],
                segment: Optional[Tuple[int, int]] = None
                ) -> Tuple[Optional[np.ndarray], str]:
  """(int16 [time] 8 kHz audio, '') or (None, reason it was skipped).

  ``segment``: (start, stop) sample indices at 8 kHz to keep of the decoded
  file (a piece cut from a longer recording), or None for all of it.
  Module-level so that worker processes can run it.
  """
  if path is None:
    return None, NO_FILE
  truncated = wav_truncation(path)
  if truncated:
    return None, truncated
  try:
    audio = audio_io.load_audio(path, SAMPLE_RATE)
  except audio_io.AudioReadError as error:
    text = " ".join(str(error).split())
    if "NaN or Inf" in text:
      return None, NON_FINITE
    return None, f"{UNDECODABLE}: {text}"
  except Exception as error:  # pylint: disable=broad-except
    # Anything the decoders throw means "this file is unusable"; the reason
    # goes into the report.
    return None, f"{UNDECODABLE}: {type(error).__name__}: {error}".replace(
        "\t", " ").replace("\n", " ")
  if segment is not None:
    audio = audio[segment[0]:segment[1]]
  if audio.size == 0:
    return None, NO_SAMPLES
  if not np.all(np.isfinite(audio)):
    return None, NON_FINITE
  if audio.size < min_samples():
    return None, (f"{TOO_SHORT}: {audio.size} samples at {SAMPLE_RATE} Hz, "
                  f"the networks need >= {min_samples()}")
  pcm = np.round(np.clip(audio, -1.0, 1.0) * INT16_SCALE).astype(np.int16)
  return pcm, ""


def decode_item(item: ClipItem) -> Tuple[Optional[np.ndarray], str]:
  """``decode_clip`` of one listed clip (module-level for worker processes)."""
  return decode_clip(item.path, item.segment)


def index_audio_files(root: str) -> Dict[str, str]:
  """Maps file stem -> path for every audio file under ``root`` (sorted walk;
  the first of duplicate stems wins and later ones are logged)."""
  found = {}
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for filename in sorted(filenames):
      stem, ext = os.path.splitext(filename)
      if ext.lower() not in AUDIO_EXTENSIONS:
        continue
      path = os.path.join(dirpath, filename)
      if stem in found:
        logging.warning("duplicate audio stem %s: using %s, ignoring %s",
                        stem, found[stem], path)
        continue
      found[stem] = path
  return found


def read_csv_rows(path: str, **kwargs) -> List[List[str]]:
  """Rows of a CSV file; a clear error if the official file is missing."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"expected official metadata file {path}")
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.reader(f, **kwargs))


def require_dir(path: str) -> str:
  if not os.path.isdir(path):
    raise FileNotFoundError(f"expected directory {path}")
  return path


class AudioClipBuilder(tfds.core.GeneratorBasedBuilder,
                       skip_registration=True):
  """Base: subclasses list clips and classes; this decodes and writes.

  Args:
    manual_dir: the dataset's root in its official layout (to build).
    num_workers: decoding processes (1 decodes in this process).
    **kwargs: tfds DatasetBuilder kwargs (data_dir, version, ...);
      file_format defaults to 'array_record'.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "8 kHz mono int16, array_record."}
  MULTILABEL = False
  HOMEPAGE = ""
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Pass manual_dir= the dataset's root folder in its official layout.")

  def __init__(self, *, manual_dir: Optional[str] = None,
               num_workers: int = 1, **kwargs):
    kwargs.setdefault("file_format", "array_record")
    self._source_dir = manual_dir
    self._num_workers = max(1, int(num_workers))
    super().__init__(**kwargs)

  @tfds_py_utils.classproperty
  @classmethod
  def code_path(cls):
    """None: these builders download nothing, so have no checksums file.

    TFDS's default resolves the module through ``importlib_resources``,
    which etils[epath] would bring but TFDS does not require; without it
    the default fails for any builder defined inside a package.
    """
    return None

  # -- subclass interface ---------------------------------------------------

  @abc.abstractmethod
  def list_clips(self, manual_dir: str
                 ) -> Tuple[Dict[str, List[ClipItem]], Sequence[str], dict]:
    """Reads the official metadata.

    Returns:
      (split name -> clips in a fixed order, class names, extra metadata).
    """

  def build_options(self) -> dict:
    """Options besides manual_dir that change what is built (recorded with
    the build, compared on a rebuild); none by default."""
    return {}

  # -- tfds -----------------------------------------------------------------

  def _info(self) -> tfds.core.DatasetInfo:
    label = (tfds.features.Sequence(np.int32) if self.MULTILABEL
             else tfds.features.Scalar(np.int32))
    return tfds.core.DatasetInfo(
        builder=self,
        description=(self.__doc__ or "").strip(),
        features=tfds.features.FeaturesDict({
            "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16),
            "labels" if self.MULTILABEL else "label": label,
            "id": tfds.features.Text(),
        }),
        homepage=self.HOMEPAGE or None,
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    manual_dir = dl_manager.manual_dir
    require_dir(manual_dir)
    split_items, class_names, extra = self.list_clips(manual_dir)
    for split in [s for s, items in split_items.items() if not items]:
      # TFDS cannot write an empty split; leave it out, loudly.
      logging.warning("%s: split %s lists no clips; not built", self.name,
                      split)
      del split_items[split]
    if not split_items:
      raise ValueError(f"{self.name}: {manual_dir} lists no clips at all")
    metadata = self.info.metadata
    metadata.update(extra)
    metadata["class_names"] = list(class_names)
    metadata["num_classes"] = len(class_names)
    metadata["multilabel"] = self.MULTILABEL
    metadata["sample_rate"] = SAMPLE_RATE
    # What this build was made from (builders.build refuses to reuse it for
    # another manual_dir; see provenance.py).
    metadata["source"] = provenance.source_record(manual_dir,
                                                  self.build_options())
    metadata["skipped"] = {split: [] for split in split_items}
    return {split: self._generate_examples(split, items)
            for split, items in split_items.items()}

  def _decoded(self, items: Sequence[ClipItem]
               ) -> Iterator[Tuple[ClipItem, Optional[np.ndarray], str]]:
    if self._num_workers == 1 or len(items) < 2:
      for item in items:
        yield (item,) + decode_item(item)
      return
    # grain's worker processes (spawned, not forked: the parent may hold
    # JAX/XLA threads) decode every num_workers-th clip; grain hands them
    # back in order and keeps each worker at most a window of clips ahead of
    # the writer (all of AudioSet decoded at once would not fit in memory).
    batch_iterator.enable_grain_worker_processes()
    decoded = iter(grain.MapDataset.source(list(items)).map(
        decode_item).to_iter_dataset(
            grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
        ).mp_prefetch(grain.MultiprocessingOptions(
            num_workers=self._num_workers, per_worker_buffer_size=64)))
    try:
      for item, result in zip(items, decoded):
        yield (item,) + tuple(result)
    finally:
      decoded.close()

  def _generate_examples(self, split: str, items: Sequence[ClipItem]):
    skipped = self.info.metadata["skipped"][split]
    label_key = "labels" if self.MULTILABEL else "label"
    kept = 0
    for item, pcm, reason in self._decoded(items):
      if pcm is None:
        logging.warning("%s/%s: skipping %s (%s): %s", self.name, split,
                        item.key, item.path, reason)
        skipped.append([item.key, item.path or "", reason])
        continue
      label = (np.asarray(item.label, np.int32).reshape(-1)
               if self.MULTILABEL else np.int32(item.label))
      kept += 1
      yield item.key, {"audio": pcm, label_key: label, "id": item.key}
    if not kept:  # TFDS would fail with "No examples were yielded"
      key, path, reason = skipped[0]
      raise UserError(f"{self.name}: every one of the {len(skipped)} clips "
                      f"of split {split} was skipped (first: {path or key}: "
                      f"{reason})")

  def download_and_prepare(self, *, download_config=None, **kwargs):
    """Builds from ``manual_dir`` (download_config's, else the
    constructor's) unless already prepared, and writes the skip report."""
    if download_config is None:
      download_config = tfds.download.DownloadConfig()
    if not download_config.manual_dir and self._source_dir:
      download_config = dataclasses.replace(download_config,
                                            manual_dir=self._source_dir)
    prepared = os.path.isfile(os.path.join(self.data_dir,
                                           "dataset_info.json"))
    if not download_config.manual_dir and not prepared:
      raise ValueError(f"{self.name}: no manual_dir given; pass the "
                       f"dataset's root folder in its official layout")
    super().download_and_prepare(download_config=download_config, **kwargs)
    write_skip_report(self.data_dir, self.info.metadata.get("skipped", {}))


def write_skip_report(dataset_dir: str, skipped: Dict[str, list]) -> str:
  """Writes ``dataset_dir/skipped_clips.tsv`` atomically; returns its path."""
  path = os.path.join(dataset_dir, REPORT_NAME)
  lines = ["split\tid\tpath\treason\n"]
  for split in sorted(skipped):
    for key, clip_path, reason in skipped[split]:
      lines.append(f"{split}\t{key}\t{clip_path}\t{reason}\n")
  atomic_io.write_text(path, "".join(lines))
  total = sum(len(v) for v in skipped.values())
  if total:
    logging.warning("%d clips skipped; listed in %s", total, path)
  return path


def skip_summary(skipped: Dict[str, list]) -> str:
  """'5 (2 truncated, 1 shorter than the receptive field, ...)': the
  skipped clips of ``metadata['skipped']`` counted by kind."""
  kinds = collections.Counter()
  for rows in skipped.values():
    for _, _, reason in rows:
      kinds[reason.split(":", 1)[0].split(" (", 1)[0]] += 1
  total = sum(kinds.values())
  if not total:
    return "0"
  return f"{total} (" + ", ".join(f"{n} {kind}" for kind, n in sorted(
      kinds.items(), key=lambda kv: (-kv[1], kv[0]))) + ")"


def read_skip_report(dataset_dir: str) -> List[Dict[str, str]]:
  """Rows of a dataset's skipped_clips.tsv (split, id, path, reason)."""
  with open(os.path.join(dataset_dir, REPORT_NAME), encoding="utf-8") as f:
    return list(csv.DictReader(f, delimiter="\t"))


class BuiltSource:
  """A ClipSource over one split of a prepared builder (random access).

  Args:
    builder: a prepared AudioClipBuilder (e.g. ``Cls(data_dir=...)``).
    split: a TFDS split expression ('train', 'eval', 'a+b', 'train[:10%]').
    name: the source's name (default: the builder's).

  Examples are ``{'audio': float32 [time] in [-1, 1], 'label': int32 []
  or float32 [num_classes] multi-hot, 'id': str}``.
  """

  def __init__(self, builder: AudioClipBuilder, split: str,
               name: Optional[str] = None):
    metadata = builder.info.metadata
    self.name = name or builder.name
    self.split = split
    self.class_names = list(metadata["class_names"])
    self.num_classes = int(metadata["num_classes"])
    self.multilabel = bool(metadata["multilabel"])
    self._data = builder.as_data_source(split=split)

  def __len__(self) -> int:
    return len(self._data)

  def __getitem__(self, index: int):
    index = check_index(index, len(self), f"{self.name}/{self.split}")
    example = self._data[index]
    audio = np.asarray(example["audio"], np.int16).astype(
        np.float32) / INT16_SCALE
    if self.multilabel:
      label = np.zeros(self.num_classes, np.float32)
      label[np.asarray(example["labels"], np.int64)] = 1.0
    else:
      label = np.asarray(example["label"], np.int32)
    clip_id = example["id"]
    if isinstance(clip_id, bytes):
      clip_id = clip_id.decode("utf-8")
    return {"audio": audio, "label": label, "id": clip_id}

  def __repr__(self) -> str:
    return (f"BuiltSource({self.name!r}, {self.split!r}: {len(self)} clips, "
            f"{self.num_classes} classes)")
