"""VoxCeleb1 speaker identification (1,251 speakers), at 8 kHz.

Expected under ``manual_dir``: ``iden_split.txt`` (lines ``<1|2|3>
idXXXXX/<video>/<n>.wav``; 1 = train, 2 = validation, 3 = test) and the
audio under ``wav/`` (or the release's ``vox1_dev_wav/wav`` and
``vox1_test_wav/wav``). Speaker idNNNNN has class NNNNN - 10001.
"""
import os

from sonify_jax.data.builders import base

_LAYOUT = __doc__

NUM_SPEAKERS = 1251
FIRST_SPEAKER = 10001
SPEAKERS = tuple(f"id{FIRST_SPEAKER + i}" for i in range(NUM_SPEAKERS))
_SPLITS = {"1": "train", "2": "validation", "3": "test"}
_AUDIO_ROOTS = ("wav", "vox1_dev_wav/wav", "vox1_test_wav/wav")


def speaker_index(speaker: str) -> int:
  if not (speaker.startswith("id") and speaker[2:].isdigit()):
    raise ValueError(f"bad VoxCeleb1 speaker id {speaker!r}")
  label = int(speaker[2:]) - FIRST_SPEAKER
  if not 0 <= label < NUM_SPEAKERS:
    raise ValueError(f"speaker {speaker} is outside id10001..id11251")
  return label


class Voxceleb18khz(base.AudioClipBuilder):
  """VoxCeleb1 identification, 8 kHz mono, single-label over speakers."""

  name = "voxceleb1_8khz"
  HOMEPAGE = "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox1.html"
  MANUAL_DOWNLOAD_INSTRUCTIONS = _LAYOUT

  def list_clips(self, manual_dir):
    path = os.path.join(manual_dir, "iden_split.txt")
    if not os.path.isfile(path):
      raise FileNotFoundError(f"expected official split file {path}")
    roots = [os.path.join(manual_dir, r) for r in _AUDIO_ROOTS
             if os.path.isdir(os.path.join(manual_dir, r))]
    if not roots:
      raise FileNotFoundError(f"no audio folder ({', '.join(_AUDIO_ROOTS)}) "
                              f"in {manual_dir}")
    splits = {"train": [], "validation": [], "test": []}
    with open(path, encoding="utf-8") as f:
      for line_no, line in enumerate(f, 1):
        if not line.strip():
          continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in _SPLITS:
          raise ValueError(f"{path}:{line_no}: expected '<1|2|3> path', "
                           f"got {line.strip()!r}")
        rel = parts[1].replace("\\", "/")
        label = speaker_index(rel.split("/")[0])
        found = next((os.path.join(r, rel) for r in roots
                      if os.path.isfile(os.path.join(r, rel))), None)
        splits[_SPLITS[parts[0]]].append(base.ClipItem(
            os.path.splitext(rel)[0], found, label))
    return splits, SPEAKERS, {}
