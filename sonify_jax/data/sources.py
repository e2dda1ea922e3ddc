"""Random-access clip sources: the one interface every dataset presents.

A source yields examples ``{'audio': float32 [time] (mono, finite, at
:data:`SAMPLE_RATE` for the datasets, at ``source.sample_rate`` where a
source has its own),
'label': int32 scalar (single-label) or float32 [num_classes] multi-hot
(multilabel), 'id': str}``. The input pipeline, trainers and analyses only
ever see this interface.
"""
from typing import Dict, Optional, Protocol, Sequence, Union

import numpy as np

from sonify_jax.models.registry import CNN12_SAMPLE_RATE

# The rate every dataset is built and stored at: the thesis networks' (the
# CNN12 description's), so a training batch feeds them as it is.
SAMPLE_RATE = CNN12_SAMPLE_RATE

Example = Dict[str, Union[np.ndarray, str]]


class ClipSource(Protocol):
  name: str
  num_classes: int
  multilabel: bool
  class_names: Sequence[str]

  def __len__(self) -> int:
    ...

  def __getitem__(self, index: int) -> Example:
    ...


def check_index(index, length: int, what: str = "") -> int:
  """A valid ``__getitem__`` index as a non-negative int (negative indices
  count from the end); TypeError/IndexError otherwise."""
  if isinstance(index, (bool, np.bool_)) or not isinstance(
      index, (int, np.integer)):
    raise TypeError(f"index must be an int, got {index!r}")
  if not -length <= index < length:
    suffix = f" of {what}" if what else ""
    raise IndexError(f"index {index} out of range for {length} clips{suffix}")
  return int(index) % length


class ArraySource:
  """A ClipSource over in-memory clips (tests, residual studies, notebooks).

  Args:
    audios: list of float [time] arrays (lengths may differ).
    labels: list of int class indices, or of multi-hot vectors.
    num_classes: number of classes.
    multilabel: whether labels are multi-hot.
    ids: optional clip ids (default ``clip{i}``).
  """

  def __init__(self, audios: Sequence[np.ndarray], labels: Sequence,
               num_classes: int, multilabel: bool = False,
               ids: Optional[Sequence[str]] = None,
               class_names: Optional[Sequence[str]] = None,
               name: str = "arrays"):
    if len(audios) != len(labels):
      raise ValueError(f"{len(audios)} clips but {len(labels)} labels")
    self.name = name
    self.num_classes = int(num_classes)
    self.multilabel = bool(multilabel)
    self.class_names = list(class_names or
                            [str(i) for i in range(self.num_classes)])
    self._audios = [np.asarray(a, np.float32) for a in audios]
    for i, a in enumerate(self._audios):
      if a.ndim != 1:
        raise ValueError(f"clip {i} must be [time], got shape {a.shape}")
    self._labels = list(labels)
    self._ids = list(ids) if ids is not None else [
        f"clip{i}" for i in range(len(audios))]

  def __len__(self) -> int:
    return len(self._audios)

  def __getitem__(self, index: int) -> Example:
    index = check_index(index, len(self), self.name)
    label = self._labels[index]
    label = (np.asarray(label, np.float32) if self.multilabel
             else np.asarray(label, np.int32))
    return {"audio": self._audios[index], "label": label,
            "id": self._ids[index]}


class Resampled:
  """``source`` with every clip resampled from ``source_rate`` to
  ``sample_rate`` (a dataset stored at 8 kHz fed to a 16 kHz network)."""

  def __init__(self, source, sample_rate: int,
               source_rate: int = SAMPLE_RATE):
    self._source = source
    self.sample_rate, self.source_rate = int(sample_rate), int(source_rate)
    self.name = f"{source.name}@{self.sample_rate}Hz"
    self.num_classes = source.num_classes
    self.multilabel = source.multilabel
    self.class_names = source.class_names

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> Example:
    from sonify_jax import audio_io  # pylint: disable=g-import-not-at-top
    example = dict(self._source[index])
    example["audio"] = audio_io.resample(example["audio"], self.source_rate,
                                         self.sample_rate)
    return example


def rate_of(source) -> int:
  """The sample rate of a source's clips."""
  return int(getattr(source, "sample_rate", SAMPLE_RATE))


def at_rate(source, sample_rate: int):
  """``source`` as it is when its clips are at ``sample_rate``, else
  :class:`Resampled`."""
  rate = rate_of(source)
  return source if rate == sample_rate else Resampled(source, sample_rate,
                                                      rate)
