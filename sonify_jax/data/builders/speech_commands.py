"""Speech Commands v2 (35 words) in its release layout, at 8 kHz.

Expected under ``manual_dir``: one folder per word holding its WAVs,
``validation_list.txt`` and ``testing_list.txt`` (paths relative to
``manual_dir``). Clips in neither list are 'train'. ``_background_noise_``
(and any folder starting with '_') is not a word and is excluded.
"""
import os

from sonify_jax.data.builders import base

_LAYOUT = __doc__

WORDS = ("backward", "bed", "bird", "cat", "dog", "down", "eight", "five",
         "follow", "forward", "four", "go", "happy", "house", "learn", "left",
         "marvin", "nine", "no", "off", "on", "one", "right", "seven",
         "sheila", "six", "stop", "three", "tree", "two", "up", "visual",
         "wow", "yes", "zero")


def _read_list(path: str):
  with open(path, encoding="utf-8") as f:
    return [line.strip().replace("\\", "/") for line in f if line.strip()]


class SpeechCommands8khz(base.AudioClipBuilder):
  """Speech Commands v2, 8 kHz mono, single-label over its 35 words."""

  name = "speech_commands_8khz"
  HOMEPAGE = "https://arxiv.org/abs/1804.03209"
  MANUAL_DOWNLOAD_INSTRUCTIONS = _LAYOUT

  def list_clips(self, manual_dir):
    held_out = {}
    for split, filename in (("validation", "validation_list.txt"),
                            ("test", "testing_list.txt")):
      path = os.path.join(manual_dir, filename)
      if not os.path.isfile(path):
        raise FileNotFoundError(f"expected official split list {path}")
      for rel in _read_list(path):
        held_out[rel] = split
    index = {w: i for i, w in enumerate(WORDS)}
    splits = {"train": [], "validation": [], "test": []}
    listed = set()
    for word in sorted(os.listdir(manual_dir)):
      folder = os.path.join(manual_dir, word)
      if not os.path.isdir(folder) or word.startswith("_"):
        continue
      if word not in index:
        raise ValueError(f"folder {folder} is not one of the 35 Speech "
                         f"Commands v2 words")
      for filename in sorted(os.listdir(folder)):
        if not filename.lower().endswith(".wav"):
          continue
        rel = f"{word}/{filename}"
        listed.add(rel)
        splits[held_out.get(rel, "train")].append(base.ClipItem(
            rel[:-4], os.path.join(folder, filename), index[word]))
    # Listed in a split file but absent on disk: reported, not ignored.
    for rel, split in sorted(held_out.items()):
      if rel not in listed:
        word = rel.split("/")[0]
        if word not in index:
          raise ValueError(f"{rel} in the split lists: unknown word {word}")
        splits[split].append(base.ClipItem(rel[:-4], None, index[word]))
    return splits, WORDS, {}
