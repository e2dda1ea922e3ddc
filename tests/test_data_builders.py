"""TFDS builders: each built from a small tree in its official layout.

The trees are made from the shipped embedded WAVs (real audio), some
re-encoded at 16 / 44.1 kHz stereo or as FLAC to exercise conversion, one
corrupt file and one listed-but-missing clip per dataset to exercise the skip
report. Everything is read back through catalog.get_source.
"""
import csv
import hashlib
import os

import numpy as np
import pytest
import soundfile

from sonify_jax import audio_io
from sonify_jax.data import catalog
from sonify_jax.data import embedded
from sonify_jax.errors import UserError

pytest.importorskip("tensorflow_datasets")
pytest.importorskip("array_record")

from sonify_jax.data import builders  # pylint: disable=g-import-not-at-top
from sonify_jax.data.builders import base  # pylint: disable=g-import-not-at-top

SR = 8000


@pytest.fixture(scope="module")
def clips():
  """Eight real 8 kHz clips from the shipped dataset, [time] float32."""
  rows = embedded.read_manifest()
  picked = [r for r in rows if r["group"] == "keywords"][:4] + [
      r for r in rows if r["group"] == "events"][::40][:4]
  return [audio_io.load_audio(os.path.join(embedded.EMBEDDED_DIR, r["file"]))
          for r in picked]


def _write(path, audio_8k, sample_rate=SR, stereo=False, fmt=None):
  """Writes an 8 kHz clip re-encoded at ``sample_rate`` (optionally as 2
  channels, 0.2x and 1.0x the clip, whose mean is 0.6x the clip).

  Returns:
    (number of 8 kHz samples it should read back as, the 8 kHz mono
    waveform it should read back as).
  """
  os.makedirs(os.path.dirname(path), exist_ok=True)
  audio = audio_io.resample(audio_8k, SR, sample_rate)
  expected = audio_8k
  if stereo:
    audio = np.stack([0.2 * audio, audio], axis=1)
    expected = 0.6 * audio_8k
  soundfile.write(path, audio, sample_rate, subtype="PCM_16", format=fmt)
  return int(round(len(audio) * SR / sample_rate)), expected


def _corrupt(path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(b"RIFF\x00\x00\x00\x00WAVEthis is not audio" * 3)


def _check_source(source, expected, multilabel, num_classes):
  """expected: id -> (label index or set of indices, 8 kHz length, ref)."""
  assert source.multilabel == multilabel
  assert source.num_classes == num_classes == len(source.class_names)
  got = {}
  for i in range(len(source)):
    ex = source[i]
    got[ex["id"]] = ex
  assert set(got) == set(expected)
  for clip_id, (label, length, ref) in expected.items():
    ex = got[clip_id]
    audio = ex["audio"]
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) <= 1.0
    assert abs(audio.size - length) <= 2, (clip_id, audio.size, length)
    if ref is not None:  # resampled back to 8 kHz: the same waveform
      n = min(audio.size, ref.size)
      err = np.linalg.norm(audio[:n] - ref[:n]) / np.linalg.norm(ref[:n])
      assert err < 0.05, (clip_id, err)
    if multilabel:
      want = np.zeros(num_classes, np.float32)
      want[sorted(label)] = 1.0
      np.testing.assert_array_equal(ex["label"], want)
    else:
      assert ex["label"].dtype == np.int32 and ex["label"].shape == ()
      assert int(ex["label"]) == label


def _report(data_dir, name):
  builder = builders.get_builder(name, data_dir)
  return {(r["split"], r["id"]): r["reason"]
          for r in base.read_skip_report(builder.data_dir)}


def test_speech_commands(tmp_path, clips):
  root = tmp_path / "sc"
  data_dir = str(tmp_path / "tfds")
  words = builders.speech_commands.WORDS
  yes, no = words.index("yes"), words.index("no")
  exp = {"train": {}, "validation": {}, "test": {}}
  n, ref = _write(str(root / "yes/aa_nohash_0.wav"), clips[0])
  exp["train"]["yes/aa_nohash_0"] = (yes, n, ref)
  n, ref = _write(str(root / "yes/bb_nohash_0.wav"), clips[1], 16000,
                  stereo=True)
  exp["validation"]["yes/bb_nohash_0"] = (yes, n, ref)
  n, ref = _write(str(root / "no/cc_nohash_0.wav"), clips[2], 44100)
  exp["test"]["no/cc_nohash_0"] = (no, n, ref)
  n, ref = _write(str(root / "no/dd_nohash_1.wav"), clips[3])
  exp["train"]["no/dd_nohash_1"] = (no, n, ref)
  _write(str(root / "_background_noise_/white_noise.wav"), clips[4])
  _corrupt(str(root / "no/ee_nohash_0.wav"))
  (root / "validation_list.txt").write_text(
      "yes/bb_nohash_0.wav\nyes/missing_nohash_0.wav\n")
  (root / "testing_list.txt").write_text("no/cc_nohash_0.wav\n")
  (root / "README.md").write_text("not a word folder, a file")

  builders.build("speech_commands", str(root), data_dir)
  for split, expected in exp.items():
    source = catalog.get_source("speech_commands", split, data_dir)
    _check_source(source, expected, False, 35)
  assert len(catalog.get_source("speech_commands", "val", data_dir)) == 1
  report = _report(data_dir, "speech_commands")
  assert set(report) == {("train", "no/ee_nohash_0"),
                         ("validation", "yes/missing_nohash_0")}
  assert report[("train", "no/ee_nohash_0")].startswith("undecodable")
  assert "no audio file" in report[("validation", "yes/missing_nohash_0")]


def test_voxceleb1(tmp_path, clips):
  root = tmp_path / "vox"
  data_dir = str(tmp_path / "tfds")
  exp = {"train": {}, "validation": {}, "test": {}}
  lines = []
  layout = [("1", "id10001/vidA/00001", 0, SR), ("1", "id10001/vidA/00002",
                                                0, 16000),
            ("2", "id10002/vidB/00001", 1, 44100),
            ("3", "id11251/vidC/00001", 1250, SR)]
  for k, (code, rel, label, sr) in enumerate(layout):
    n, ref = _write(str(root / "wav" / (rel + ".wav")), clips[k + 2], sr,
               stereo=(sr == 44100))
    exp[{"1": "train", "2": "validation", "3": "test"}[code]][rel] = (
        label, n, ref)
    lines.append(f"{code} {rel}.wav")
  _corrupt(str(root / "wav/id10003/vidD/00001.wav"))
  lines.append("3 id10003/vidD/00001.wav")
  (root / "iden_split.txt").write_text("\n".join(lines) + "\n")

  builders.build("voxceleb1", str(root), data_dir)
  for split, expected in exp.items():
    source = catalog.get_source("voxceleb1", split, data_dir)
    _check_source(source, expected, False, 1251)
    assert source.class_names[0] == "id10001"
    assert source.class_names[-1] == "id11251"
  assert list(_report(data_dir, "voxceleb1")) == [
      ("test", "id10003/vidD/00001")]


def test_voxceleb1_rejects_bad_speaker(tmp_path, clips):
  root = tmp_path / "vox"
  _write(str(root / "wav/id20000/v/00001.wav"), clips[0])
  (root / "iden_split.txt").write_text("1 id20000/v/00001.wav\n")
  with pytest.raises(ValueError, match="id20000"):
    builders.build("voxceleb1", str(root), str(tmp_path / "tfds"))


def _vocabulary(n, prefix):
  mids = [f"/m/{prefix}{i:03d}" for i in range(n)]
  names = [f"Class_{i}" for i in range(n)]
  return mids, names


def test_fsd50k(tmp_path, clips):
  root = tmp_path / "FSD50K"
  data_dir = str(tmp_path / "tfds")
  mids, names = _vocabulary(200, "f")
  gt = root / "FSD50K.ground_truth"
  gt.mkdir(parents=True)
  with open(gt / "vocabulary.csv", "w", newline="") as f:
    csv.writer(f).writerows([[i, names[i], mids[i]] for i in range(200)])
  exp = {"train": {}, "validation": {}, "test": {}}
  dev = [("101", {0, 5}, "train", SR), ("102", {199}, "train", 44100),
         ("103", {3, 4, 7}, "val", 16000)]
  evl = [("201", {1}, SR), ("202", {2, 150}, 16000)]
  with open(gt / "dev.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["fname", "labels", "mids", "split"])
    for k, (fname, labels, split, sr) in enumerate(dev):
      n, ref = _write(str(root / "FSD50K.dev_audio" / f"{fname}.wav"), clips[k],
                 sr, stereo=sr != SR)
      exp["train" if split == "train" else "validation"][fname] = (
          labels, n, ref)
      w.writerow([fname, ",".join(names[i] for i in sorted(labels)),
                  ",".join(mids[i] for i in sorted(labels)), split])
  with open(gt / "eval.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["fname", "labels", "mids"])
    for k, (fname, labels, sr) in enumerate(evl):
      n, ref = _write(str(root / "FSD50K.eval_audio" / f"{fname}.wav"),
                 clips[k + 4], sr)
      exp["test"][fname] = (labels, n, ref)
      w.writerow([fname, ",".join(names[i] for i in sorted(labels)),
                  ",".join(mids[i] for i in sorted(labels))])
    w.writerow(["203", names[9], mids[9]])
  _corrupt(str(root / "FSD50K.eval_audio/203.wav"))

  builders.build("fsd50k", str(root), data_dir)
  for split, expected in exp.items():
    source = catalog.get_source("fsd50k", split, data_dir)
    _check_source(source, expected, True, 200)
    assert source.class_names == names
  assert len(catalog.get_source("fsd50k", "eval", data_dir)) == 2
  assert len(catalog.get_source("fsd50k", "train[:50%]", data_dir)) == 1
  with pytest.raises(ValueError, match="unknown split"):
    catalog.get_source("fsd50k", "training", data_dir)
  assert list(_report(data_dir, "fsd50k")) == [("test", "203")]


def test_audioset(tmp_path, clips):
  root = tmp_path / "audioset"
  data_dir = str(tmp_path / "tfds")
  mids, names = _vocabulary(527, "a")
  root.mkdir()
  with open(root / "class_labels_indices.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["index", "mid", "display_name"])
    w.writerows([[i, mids[i], names[i]] for i in range(527)])

  def segments(path, rows):
    with open(path, "w") as f:
      f.write("# Segments csv created Sun Mar  5 10:54:31 2017\n")
      f.write("# num_ytids=3, num_segs=3, num_unique_labels=527\n")
      f.write("# YTID, start_seconds, end_seconds, positive_labels\n")
      for ytid, start, labels in rows:
        f.write(f'{ytid}, {start}, {float(start) + 10:.3f}, '
                f'"{",".join(mids[i] for i in sorted(labels))}"\n')

  exp = {"balanced_train": {}, "eval": {}}
  # Three download naming conventions, three rates, a FLAC.
  n, ref = _write(str(root / "audio/bal/Y--abcDEF_01.wav"), clips[0], 44100,
             stereo=True)
  exp["balanced_train"]["--abcDEF_01"] = ({0, 526}, n, ref)
  n, ref = _write(str(root / "audio/bal/xyzXYZ-0002_30.flac"), clips[1], 16000,
             fmt="FLAC")
  exp["balanced_train"]["xyzXYZ-0002"] = ({7}, n, ref)
  n, ref = _write(str(root / "audio/eval/evalclip0003.wav"), clips[5])
  exp["eval"]["evalclip0003"] = ({1, 2, 3}, n, ref)
  _corrupt(str(root / "audio/eval/Ybroken00004.wav"))
  segments(root / "balanced_train_segments.csv",
           [("--abcDEF_01", "0.000", {0, 526}), ("xyzXYZ-0002", "30.000",
                                                 {7}),
            ("goneFromYT05", "10.000", {9})])
  segments(root / "eval_segments.csv",
           [("evalclip0003", "20.000", {1, 2, 3}),
            ("broken00004", "0.000", {4})])

  builders.build("audioset", str(root), data_dir)
  for split, expected in exp.items():
    source = catalog.get_source("audioset", split, data_dir)
    _check_source(source, expected, True, 527)
  # Only balanced_train was built: 'train_all' is it, 'test' is 'eval';
  # 'validation' holds the clips whose id's SHA-256 (first 8 bytes as a
  # fraction of 2**64) is below 0.1, 'train' the others.
  train_ids = set(exp["balanced_train"])
  held = {i for i in train_ids if int(hashlib.sha256(
      i.encode()).hexdigest()[:16], 16) < 0.1 * 2**64}
  assert len(catalog.get_source("audioset", "train_all", data_dir)) == 2
  for split, want in (("validation", held), ("train", train_ids - held)):
    source = catalog.get_source("audioset", split, data_dir)
    assert {source[i]["id"] for i in range(len(source))} == want
  assert len(catalog.get_source("audioset", "test", data_dir)) == 1
  assert len(catalog.get_source("audioset", "balanced_train+eval",
                                data_dir)) == 3
  report = _report(data_dir, "audioset")
  assert set(report) == {("balanced_train", "goneFromYT05"),
                         ("eval", "broken00004")}
  with pytest.raises(ValueError, match="unbalanced_train"):
    catalog.get_source("audioset", "unbalanced_train", data_dir)


def test_get_source_errors(tmp_path):
  with pytest.raises(ValueError, match="unknown dataset"):
    catalog.get_source("imagenet", "train")
  with pytest.raises(ValueError, match="data_dir"):
    catalog.get_source("fsd50k", "train")
  with pytest.raises(FileNotFoundError, match="does not exist"):
    catalog.get_source("fsd50k", "train", str(tmp_path / "nope"))
  with pytest.raises(FileNotFoundError, match="not prepared"):
    catalog.get_source("voxceleb1", "train", str(tmp_path))


def test_missing_metadata_is_a_clear_error(tmp_path):
  # data_dir beside manual_dir: a data_dir inside it is refused on its own.
  source = tmp_path / "source"
  (source / "FSD50K.ground_truth").mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match="vocabulary.csv"):
    builders.build("fsd50k", str(source), str(tmp_path / "tfds"))
  with pytest.raises(UserError, match="testing_list.*--dataset=folder"):
    (source / "validation_list.txt").write_text("")
    builders.build("speech_commands", str(source), str(tmp_path / "t2"))


def test_decode_clip_rejects_nan(tmp_path):
  path = str(tmp_path / "nan.wav")
  audio = np.zeros(800, np.float32)
  audio[100] = np.nan
  soundfile.write(path, audio, SR, subtype="FLOAT")
  pcm, reason = base.decode_clip(path)
  # audio_io refuses it itself; decode_clip checks again for other decoders.
  assert pcm is None and ("non-finite" in reason or "NaN" in reason)
  pcm, reason = base.decode_clip(str(tmp_path / "absent.wav"))
  assert pcm is None and "no such audio file" in reason


def test_parallel_decoding_gives_the_same_dataset(tmp_path, clips):
  """num_workers=2 (spawned processes) writes what one process writes."""
  root = tmp_path / "sc"
  for k in range(4):
    _write(str(root / f"yes/k{k}_nohash_0.wav"), clips[k], 16000)
  _corrupt(str(root / "yes/zz_nohash_0.wav"))
  (root / "validation_list.txt").write_text("yes/k0_nohash_0.wav\n")
  (root / "testing_list.txt").write_text("yes/k1_nohash_0.wav\n")
  got = []
  for workers in (1, 2):
    data_dir = str(tmp_path / f"tfds{workers}")
    builders.build("speech_commands", str(root), data_dir,
                   num_workers=workers)
    source = catalog.get_source("speech_commands", "train", data_dir)
    got.append({source[i]["id"]: source[i]["audio"]
                for i in range(len(source))})
    assert [r["id"] for r in base.read_skip_report(
        builders.get_builder("speech_commands", data_dir).data_dir)] == [
            "yes/zz_nohash_0"]
  assert sorted(got[0]) == sorted(got[1]) == ["yes/k2_nohash_0",
                                              "yes/k3_nohash_0"]
  for key in got[0]:
    np.testing.assert_array_equal(got[0][key], got[1][key])


def test_speech_commands_12_class_task(tmp_path, clips):
  """10 words keep their class, other words are _unknown_, and the
  background recordings become 1 s _silence_ pieces split by position."""
  root = tmp_path / "sc"
  data_dir = str(tmp_path / "tfds")
  classes = builders.speech_commands.TASK12_CLASSES
  _write(str(root / "yes/aa_nohash_0.wav"), clips[0])
  _write(str(root / "go/bb_nohash_0.wav"), clips[1])
  _write(str(root / "marvin/cc_nohash_0.wav"), clips[2])  # not one of the 10
  _write(str(root / "cat/dd_nohash_0.wav"), clips[3])
  noise = np.concatenate(clips + clips)[:int(10.4 * SR)]
  assert noise.size == int(10.4 * SR)  # the clips are long enough
  _write(str(root / "_background_noise_/hum.wav"), noise)
  (root / "validation_list.txt").write_text("cat/dd_nohash_0.wav\n")
  (root / "testing_list.txt").write_text("go/bb_nohash_0.wav\n")

  builders.build("speech_commands12", str(root), data_dir)
  got = {}
  for split in ("train", "validation", "test"):
    source = catalog.get_source("speech_commands12", split, data_dir)
    assert source.class_names == list(classes) and source.num_classes == 12
    got[split] = {source[i]["id"]: source[i] for i in range(len(source))}
  label = {s: {k: classes[int(ex["label"])] for k, ex in got[s].items()}
           for s in got}
  pieces = [f"_background_noise_/hum@{i}s" for i in range(10)]
  assert label["train"] == {"yes/aa_nohash_0": "yes",
                            "marvin/cc_nohash_0": "_unknown_",
                            **{p: "_silence_" for p in pieces[:8]}}
  assert label["validation"] == {"cat/dd_nohash_0": "_unknown_",
                                 pieces[8]: "_silence_"}
  assert label["test"] == {"go/bb_nohash_0": "go", pieces[9]: "_silence_"}
  for split, i in [("train", 3), ("validation", 8), ("test", 9)]:
    audio = got[split][pieces[i]]["audio"]
    np.testing.assert_allclose(audio, noise[i * SR:(i + 1) * SR], atol=1e-4)
  metadata = builders.get_builder("speech_commands12", data_dir).info.metadata
  assert "1 recordings cut into 1 s _silence_" in metadata["background_noise"]

  # The 35-word task of the same folder leaves the noise out, and says so.
  builders.build("speech_commands", str(root), data_dir)
  metadata = builders.get_builder("speech_commands", data_dir).info.metadata
  assert "excluded" in metadata["background_noise"]
  assert sum(len(catalog.get_source("speech_commands", s, data_dir))
             for s in ("train", "validation", "test")) == 4


def test_speech_commands_points_other_folders_to_the_folder_builder(
    tmp_path, clips):
  root = tmp_path / "mine"
  _write(str(root / "doorbell/a.wav"), clips[0])
  (root / "validation_list.txt").write_text("")
  (root / "testing_list.txt").write_text("")
  for name in ("speech_commands", "speech_commands12"):
    with pytest.raises(UserError, match="doorbell.*--dataset=folder"):
      builders.build(name, str(root), str(tmp_path / "tfds"))
