"""Speech Commands v2 in its release layout, at 8 kHz: two tasks.

Expected under ``manual_dir``: one folder per word holding its WAVs,
``validation_list.txt`` and ``testing_list.txt`` (paths relative to
``manual_dir``), and ``_background_noise_/`` (six long noise recordings).
Clips in neither list are 'train'. Only the 35 words of v2 are accepted: for
your own labelled folders use ``--dataset=folder`` (builders/folder.py).

Tasks:
  'speech_commands' (the thesis): 35 classes, one per word.
    ``_background_noise_`` is not a word and is excluded (and so is any other
    folder starting with '_').
  'speech_commands12' (the official 12-class task of Warden 2018): the ten
    words yes, no, up, down, left, right, on, off, stop, go; ``_unknown_`` =
    every other word (25 words, kept whole: about 60 % of the clips, so its
    majority baseline is high); ``_silence_`` = 1 s pieces cut, without
    overlap, from the ``_background_noise_`` recordings. The pieces of each
    recording are split by position: its first 80 % go to train, the next
    10 % to validation, the last 10 % to test, so no piece is in two splits
    and every split hears every noise. Validation and test are otherwise the
    release's lists (not the separately published balanced test archive).
"""
import logging
import os

import soundfile

from sonify_jax.data.builders import base
from sonify_jax.errors import UserError
from sonify_jax.data.sources import SAMPLE_RATE

_LAYOUT = __doc__

WORDS = ("backward", "bed", "bird", "cat", "dog", "down", "eight", "five",
         "follow", "forward", "four", "go", "happy", "house", "learn", "left",
         "marvin", "nine", "no", "off", "on", "one", "right", "seven",
         "sheila", "six", "stop", "three", "tree", "two", "up", "visual",
         "wow", "yes", "zero")
TASK12_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off",
                "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
TASK12_CLASSES = TASK12_WORDS + (UNKNOWN, SILENCE)
BACKGROUND = "_background_noise_"
SILENCE_SPLIT = (("train", 0.8), ("validation", 0.9), ("test", 1.0))


def _read_list(path: str):
  with open(path, encoding="utf-8") as f:
    return [line.strip().replace("\\", "/") for line in f if line.strip()]


def _not_a_word(what: str) -> UserError:
  return UserError(
      f"{what} is not one of the 35 Speech Commands v2 words; to train on "
      f"your own labelled folders use --dataset=folder (one sub-folder per "
      f"class, any names)")


def silence_pieces(path: str, rel: str):
  """ClipItems (label set by the caller) for the non-overlapping 1 s pieces
  of one background recording, each with its split; a file whose length
  cannot be read is one piece that decoding will report as skipped."""
  try:
    info = soundfile.info(path)
    length = int(info.frames * SAMPLE_RATE // info.samplerate)
  except Exception:  # pylint: disable=broad-except
    return [("train", rel[:-4], (0, SAMPLE_RATE))]
  count = length // SAMPLE_RATE
  pieces = []
  for i in range(count):
    split = next(s for s, upper in SILENCE_SPLIT if (i + 0.5) / count < upper)
    start = i * SAMPLE_RATE
    pieces.append((split, f"{rel[:-4]}@{i}s", (start, start + SAMPLE_RATE)))
  return pieces


class SpeechCommands8khz(base.AudioClipBuilder):
  """Speech Commands v2, 8 kHz mono, single-label over its 35 words."""

  name = "speech_commands_8khz"
  HOMEPAGE = "https://arxiv.org/abs/1804.03209"
  MANUAL_DOWNLOAD_INSTRUCTIONS = _LAYOUT
  CLASSES = WORDS

  def word_label(self, word: str) -> int:
    return self.CLASSES.index(word)

  def background(self, manual_dir: str, splits) -> str:
    """Handles ``_background_noise_``; returns what was done (logged)."""
    del manual_dir, splits
    return (f"{BACKGROUND} is not one of the 35 words: excluded (the "
            f"12-class task, --dataset=speech_commands12, cuts it into "
            f"{SILENCE})")

  def list_clips(self, manual_dir):
    held_out = {}
    for split, filename in (("validation", "validation_list.txt"),
                            ("test", "testing_list.txt")):
      path = os.path.join(manual_dir, filename)
      if not os.path.isfile(path):
        raise UserError(f"expected the official split list {path} of "
                        f"Speech Commands; for your own labelled folders "
                        f"use --dataset=folder")
      for rel in _read_list(path):
        held_out[rel] = split
    splits = {"train": [], "validation": [], "test": []}
    listed = set()
    for word in sorted(os.listdir(manual_dir)):
      folder = os.path.join(manual_dir, word)
      if not os.path.isdir(folder) or word.startswith("_"):
        continue
      if word not in WORDS:
        raise _not_a_word(f"folder {folder}")
      for filename in sorted(os.listdir(folder)):
        if not filename.lower().endswith(".wav"):
          continue
        rel = f"{word}/{filename}"
        listed.add(rel)
        splits[held_out.get(rel, "train")].append(base.ClipItem(
            rel[:-4], os.path.join(folder, filename), self.word_label(word)))
    # Listed in a split file but absent on disk: reported, not ignored.
    for rel, split in sorted(held_out.items()):
      if rel not in listed:
        word = rel.split("/")[0]
        if word not in WORDS:
          raise _not_a_word(f"{rel} in the split lists: {word}")
        splits[split].append(base.ClipItem(rel[:-4], None,
                                           self.word_label(word)))
    done = self.background(manual_dir, splits)
    logging.info("%s: %s", self.name, done)
    return splits, self.CLASSES, {"background_noise": done}


class SpeechCommands12Class8khz(SpeechCommands8khz):
  """Speech Commands v2, 8 kHz mono: the official 12-class task (10 words,
  _unknown_, _silence_ from the background noise)."""

  name = "speech_commands12_8khz"
  CLASSES = TASK12_CLASSES

  def word_label(self, word: str) -> int:
    return self.CLASSES.index(word if word in TASK12_WORDS else UNKNOWN)

  def background(self, manual_dir, splits):
    folder = os.path.join(manual_dir, BACKGROUND)
    if not os.path.isdir(folder):
      return f"no {BACKGROUND} folder: {SILENCE} has no clips"
    label = self.CLASSES.index(SILENCE)
    counts = {split: 0 for split in splits}
    files = sorted(f for f in os.listdir(folder)
                   if f.lower().endswith(".wav"))
    for filename in files:
      rel = f"{BACKGROUND}/{filename}"
      for split, key, segment in silence_pieces(
          os.path.join(folder, filename), rel):
        splits[split].append(base.ClipItem(
            key, os.path.join(folder, filename), label, segment))
        counts[split] += 1
    return (f"{BACKGROUND}: {len(files)} recordings cut into 1 s "
            f"{SILENCE} pieces, split by position 80/10/10: " + ", ".join(
                f"{split} {n}" for split, n in counts.items()))
