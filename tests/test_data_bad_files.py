"""A dataset folder's bad files are skipped with their reason, never kept.

Truncated WAVs (a header promising more samples than the file holds),
clips shorter than the networks' receptive field and NaN/Inf audio go to
``skipped_clips.tsv`` like undecodable files, and the build's summary line
counts each kind.
"""
import csv
import os
import struct

import numpy as np
import pytest
import soundfile

pytest.importorskip("tensorflow_datasets")
pytest.importorskip("array_record")

from cli_harness import CliWorker  # pylint: disable=g-import-not-at-top
from sonify_jax.data.builders import base  # pylint: disable=g-import-not-at-top
from sonify_jax.models.registry import TRAINABLE, get_network  # pylint: disable=g-import-not-at-top

SR = 8000


def _tone(seconds, freq=440.0):
  t = np.arange(int(round(seconds * SR))) / SR
  return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _wav(path, audio, subtype="PCM_16"):
  os.makedirs(os.path.dirname(str(path)), exist_ok=True)
  soundfile.write(str(path), audio, SR, subtype=subtype)
  return str(path)


def _truncated(path, keep_frames=14):
  """A 1 s 16-bit WAV cut after ``keep_frames`` frames (header intact)."""
  _wav(path, _tone(1.0))
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[:44 + 2 * keep_frames])
  return str(path)


def _nan(path):
  audio = _tone(1.0)
  audio[100:110] = np.nan
  return _wav(path, audio, "FLOAT")


def test_min_samples_is_the_networks_receptive_field():
  want = min(get_network(n).min_input_length(get_network(n).num_blocks)
             for n in TRAINABLE)
  assert base.min_samples() == want == 2370


def test_wav_truncation(tmp_path):
  reason = base.wav_truncation(_truncated(tmp_path / "cut.wav"))
  assert reason == (f"{base.TRUNCATED}: the WAV header promises 8000 "
                    f"frames, the file holds 14")
  assert base.wav_truncation(_wav(tmp_path / "whole.wav", _tone(1.0))) is None
  (tmp_path / "text.wav").write_text("not audio at all")
  assert base.wav_truncation(str(tmp_path / "text.wav")) is None
  # A streamed WAV leaves the data size unknown (0xFFFFFFFF): not truncated.
  data = bytearray(open(tmp_path / "whole.wav", "rb").read())
  data[40:44] = struct.pack("<I", 0xFFFFFFFF)
  (tmp_path / "stream.wav").write_bytes(bytes(data))
  assert base.wav_truncation(str(tmp_path / "stream.wav")) is None


def test_decode_clip_reasons(tmp_path):
  pcm, reason = base.decode_clip(_truncated(tmp_path / "cut.wav"))
  assert pcm is None and reason.startswith(base.TRUNCATED)
  pcm, reason = base.decode_clip(_wav(tmp_path / "short.wav", _tone(0.1)))
  assert pcm is None and reason == (
      f"{base.TOO_SHORT}: 800 samples at 8000 Hz, the networks need >= 2370")
  pcm, reason = base.decode_clip(_nan(tmp_path / "nan.wav"))
  assert pcm is None and reason == base.NON_FINITE
  # Exactly the receptive field is enough.
  pcm, reason = base.decode_clip(_wav(tmp_path / "edge.wav",
                                      _tone(2370 / SR)))
  assert reason == "" and pcm.shape == (2370,)
  # A segment cut from a long file is held to the same rule.
  pcm, reason = base.decode_clip(str(tmp_path / "edge.wav"), (0, 100))
  assert pcm is None and reason.startswith(base.TOO_SHORT)


def test_skip_summary_counts_by_kind():
  skipped = {"train": [["a", "a.wav", f"{base.TRUNCATED}: x"],
                       ["b", "b.wav", f"{base.TRUNCATED}: y"],
                       ["c", "c.wav", base.NON_FINITE]],
             "test": [["d", "", base.NO_FILE]], "validation": []}
  assert base.skip_summary(skipped) == (
      "4 (2 truncated, 1 no audio file found, 1 non-finite samples)")
  assert base.skip_summary({"train": []}) == "0"


def test_folder_build_skips_bad_files_and_counts_them(tmp_path):
  root = tmp_path / "sounds"
  for cls, freq in (("dog", 300.0), ("cat", 700.0)):
    for i in range(3):
      _wav(root / cls / f"{cls}{i}.wav", _tone(1.0, freq * (1 + i / 10)))
  _truncated(root / "dog" / "cut.wav")
  _wav(root / "cat" / "short.wav", _tone(0.1))
  _nan(root / "cat" / "nan.wav")
  (root / "dog" / "text.wav").write_text("hello, I am not audio\n" * 20)
  (root / "validation_list.txt").write_text("dog/dog0.wav\ncat/cat0.wav\n")
  (root / "testing_list.txt").write_text("dog/dog1.wav\ncat/cat1.wav\n")
  data_dir = tmp_path / "tfds"
  worker = CliWorker("sonify_jax.data.builders")
  try:
    result = worker.run("--dataset=folder", f"--manual_dir={root}",
                        f"--data_dir={data_dir}")
  finally:
    worker.close()
  assert result.code == 0, result.stderr[-3000:]
  summary = [l for l in result.stdout.splitlines()
             if l.startswith("skipped:")]
  assert len(summary) == 1, result.stdout
  assert summary[0].startswith(
      "skipped: 4 (1 non-finite samples, 1 shorter than the receptive "
      "field, 1 truncated, 1 undecodable); see "), summary[0]
  report_path = summary[0].split("; see ", 1)[1]
  assert os.path.basename(report_path) == base.REPORT_NAME
  with open(report_path, encoding="utf-8") as f:
    rows = {r["id"]: r for r in csv.DictReader(f, delimiter="\t")}
  assert set(rows) == {"dog/cut.wav", "cat/short.wav", "cat/nan.wav",
                       "dog/text.wav"}
  assert all(r["split"] == "train" for r in rows.values())
  assert rows["dog/cut.wav"]["reason"] == (
      "truncated: the WAV header promises 8000 frames, the file holds 14")
  assert rows["cat/short.wav"]["reason"].startswith(
      "shorter than the receptive field: 800 samples")
  assert rows["cat/nan.wav"]["reason"] == base.NON_FINITE
  assert rows["dog/text.wav"]["reason"].startswith("undecodable")
  from sonify_jax.data import catalog  # pylint: disable=g-import-not-at-top
  train = catalog.get_source("folder:sounds", "train", str(data_dir))
  assert len(train) == 2
  assert all(train[i]["audio"].size == SR for i in range(len(train)))
