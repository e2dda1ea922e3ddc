"""A plain folder of audio files as a ClipSource (the studies' ``--audio_dir``).

Any format ``audio_io`` decodes, any rate, any depth: every file with an
audio extension under the root (sorted walk; hidden folders skipped) is
decoded once, mixed to mono and resampled to the rate asked for (the
network's), and kept in memory. A clip's label is its first-level
sub-folder (class names sorted; files directly in the root are class
``.``), so a folder laid out for ``configs/folder.py`` reads the same way;
studies that need no labels ignore them. Files that do not decode, hold no
samples or non-finite ones are skipped with one warning line naming how many
and the first reason, as the dataset builds list them.

For a dataset too large to hold in memory, build it once with
``python -m sonify_jax.data.builders --dataset=folder`` instead.
"""
import os
from typing import List, Tuple


from sonify_jax import audio_io
from sonify_jax.data import sources
from sonify_jax.errors import UserError


def audio_files(root: str) -> List[str]:
  """Paths of the audio files under ``root``, relative to it, sorted."""
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    for name in sorted(filenames):
      if os.path.splitext(name)[1].lower() in audio_io.AUDIO_EXTENSIONS:
        found.append(os.path.relpath(os.path.join(dirpath, name), root))
  return found


class AudioFolderSource(sources.ArraySource):
  """Every audio file under ``root`` at ``sample_rate`` (see the module
  docstring).

  Attributes (besides ClipSource's): ``sample_rate``, ``root``, ``skipped``
  (``[(relative path, reason)]``).

  Raises:
    UserError: ``root`` is not a folder or holds no decodable audio.
  """

  def __init__(self, root: str, sample_rate: int, min_samples: int = 1):
    if not os.path.isdir(root):
      raise UserError(f"--audio_dir {root} is not a folder")
    files = audio_files(root)
    if not files:
      raise UserError(f"--audio_dir {root} holds no audio files "
                      f"({', '.join(audio_io.AUDIO_EXTENSIONS)})")
    audios, kept = [], []
    self.skipped: List[Tuple[str, str]] = []
    for rel in files:
      try:
        audio = audio_io.load_audio(os.path.join(root, rel), sample_rate)
      except audio_io.AudioReadError as error:
        self.skipped.append((rel, str(error)))
        continue
      if audio.shape[0] < min_samples:
        self.skipped.append((rel, f"{audio.shape[0]} samples, shorter than "
                             f"the {min_samples} the network needs"))
        continue
      audios.append(audio)
      kept.append(rel)
    if not audios:
      raise UserError(f"--audio_dir {root}: none of its {len(files)} audio "
                      f"files is usable ({self.skipped[0][1]})")
    if self.skipped:
      print(f"warning: --audio_dir {root}: skipped {len(self.skipped)} of "
            f"{len(files)} files (first: {self.skipped[0][0]}: "
            f"{self.skipped[0][1]})", flush=True)
    classes = sorted({_class_of(rel) for rel in kept})
    labels = [classes.index(_class_of(rel)) for rel in kept]
    super().__init__(audios, labels, len(classes), ids=kept,
                     class_names=classes,
                     name=f"audio_dir:{os.path.basename(os.path.abspath(root))}")
    self.sample_rate = int(sample_rate)
    self.root = os.path.abspath(root)


def _class_of(rel: str) -> str:
  parts = rel.split(os.sep)
  return parts[0] if len(parts) > 1 else "."
