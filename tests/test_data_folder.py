"""The folder builder: your own labelled audio, one sub-folder per class.

Trees are made of real audio (the shipped embedded keyword clips) written as
WAV, FLAC, Ogg Vorbis and MP3, with a speaker prefix in every file name that
spans all classes, so a split that ignores the speaker would leak it.
"""
import collections
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
from sonify_jax.data.builders import folder  # pylint: disable=g-import-not-at-top

from test_configs import load as load_config  # pylint: disable=g-import-not-at-top

SR = 8000
CLASSES = ("go", "stop", "yes")  # written unsorted below; read back sorted
SPEAKERS = ("anna", "ben", "carl", "dora")
FORMATS = (("wav", "WAV", SR), ("flac", "FLAC", 16000), ("ogg", "OGG", SR),
           ("mp3", "MP3", 16000))
SPEAKER_REGEX = r"^([^_]+)_"


@pytest.fixture(scope="module")
def clips():
  """Real 8 kHz keyword clips, [time] float32 (reused across the tree)."""
  rows = [r for r in embedded.read_manifest() if r["group"] == "keywords"]
  return [audio_io.load_audio(os.path.join(embedded.EMBEDDED_DIR, r["file"]))
          for r in rows[:12]]


def _write(path, audio_8k, fmt, sample_rate):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  audio = audio_io.resample(audio_8k, SR, sample_rate)
  subtype = {"WAV": "PCM_16", "FLAC": "PCM_16"}.get(fmt)
  soundfile.write(path, audio, sample_rate, format=fmt, subtype=subtype)


def make_tree(root, clips):
  """2 clips per (class, speaker) in rotating formats, plus a corrupt file,
  a non-audio file and a '_background_noise_' folder (not a class).

  Returns:
    {id: (class name, speaker, the 8 kHz clip written, lossless?)}.
  """
  expected = {}
  k = 0
  for cls in reversed(CLASSES):
    for speaker in SPEAKERS:
      for take in range(2):
        ext, fmt, sr = FORMATS[k % len(FORMATS)]
        rel = f"{cls}/{speaker}_{take}.{ext}"
        audio = clips[k % len(clips)]
        _write(os.path.join(root, rel), audio, fmt, sr)
        expected[rel] = (cls, speaker, audio, ext in ("wav", "flac"))
        k += 1
  with open(os.path.join(root, "yes", "eve_0.wav"), "wb") as f:
    f.write(b"RIFF\x00\x00\x00\x00WAVEthis is not audio" * 3)
  with open(os.path.join(root, "go", "notes.txt"), "w") as f:
    f.write("not audio: ignored")
  _write(os.path.join(root, "_background_noise_", "hum.wav"), clips[0],
         "WAV", SR)
  return expected


def _read_all(name, data_dir):
  """{split: {id: example}} through the catalog."""
  out = {}
  for split in ("train", "validation", "test"):
    source = catalog.get_source(name, split, data_dir)
    out[split] = {source[i]["id"]: source[i] for i in range(len(source))}
  return out


@pytest.fixture(scope="module")
def grouped(tmp_path_factory, clips):
  """The tree built with the speaker regex, split 50/25/25."""
  tmp = tmp_path_factory.mktemp("folder")
  root = str(tmp / "my_words")
  expected = make_tree(root, clips)
  data_dir = str(tmp / "tfds")
  builders.build("folder", root, data_dir, group_regex=SPEAKER_REGEX,
                 split_percent="50/25/25")
  return root, data_dir, expected


def test_labels_audio_and_skips(grouped):
  root, data_dir, expected = grouped
  got = _read_all("folder:my_words", data_dir)
  source = catalog.get_source("folder:my_words", "train", data_dir)
  assert source.class_names == sorted(CLASSES) and not source.multilabel
  ids = [i for split in got.values() for i in split]
  assert sorted(ids) == sorted(expected)  # every clip once; no _bg, no txt
  for split in got.values():
    for clip_id, ex in split.items():
      cls, _, ref, lossless = expected[clip_id]
      assert source.class_names[int(ex["label"])] == cls == clip_id.split(
          "/")[0]
      audio = ex["audio"]
      assert audio.dtype == np.float32 and np.all(np.isfinite(audio))
      if lossless:  # the same waveform back at 8 kHz
        n = min(audio.size, ref.size)
        assert abs(audio.size - ref.size) <= 2
        err = np.linalg.norm(audio[:n] - ref[:n]) / np.linalg.norm(ref[:n])
        assert err < 0.1, (clip_id, err)  # soxr round trip near 4 kHz
      else:  # Vorbis / MP3: as long, up to the codec's padding (< 0.1 s)
        assert abs(audio.size - ref.size) < 0.1 * SR, (clip_id, audio.size)
  report = base.read_skip_report(
      builders.get_builder("folder:my_words", data_dir).data_dir)
  assert [r["id"] for r in report] == ["yes/eve_0.wav"]
  assert report[0]["reason"].startswith("undecodable")


def test_grouped_split_keeps_each_speaker_on_one_side(grouped, tmp_path):
  root, data_dir, expected = grouped
  got = _read_all("folder:my_words", data_dir)
  sides = collections.defaultdict(set)
  for split, examples in got.items():
    assert examples, f"{split} is empty"
    for clip_id in examples:
      sides[expected[clip_id][1]].add(split)
  assert all(len(s) == 1 for s in sides.values()), dict(sides)
  # The same files split without the regex do leak speakers across splits:
  # the grouping above is what kept them apart.
  builders.build("folder:no_groups", root, str(tmp_path),
                 split_percent="50/25/25")
  leaky = collections.defaultdict(set)
  for split, examples in _read_all("folder:no_groups", str(tmp_path)).items():
    for clip_id in examples:
      leaky[expected[clip_id][1]].add(split)
  assert any(len(s) > 1 for s in leaky.values())


def test_assign_groups_shares_and_determinism():
  sizes = {f"g{i}": 1 + i % 3 for i in range(200)}
  a = folder.assign_groups(sizes, (0.8, 0.1, 0.1), seed=3)
  assert a == folder.assign_groups(sizes, (0.8, 0.1, 0.1), seed=3)
  assert a != folder.assign_groups(sizes, (0.8, 0.1, 0.1), seed=4)
  total = sum(sizes.values())
  for split, share in zip(folder.SPLITS, (0.8, 0.1, 0.1)):
    files = sum(sizes[g] for g, s in a.items() if s == split)
    assert abs(files - share * total) <= 3, (split, files)
  none_test = folder.assign_groups(sizes, (0.9, 0.1, 0.0), seed=0)
  assert "test" not in set(none_test.values())
  assert folder.group_key(None, "x_1.wav", "c/x_1.wav") == "f:c/x_1.wav"


def test_list_files_are_honoured(tmp_path, clips):
  root = str(tmp_path / "listed")
  expected = make_tree(root, clips)

  def pick(cls, ext):
    return next(i for i in sorted(expected)
                if i.startswith(cls + "/") and i.endswith(ext))

  val = {pick("go", ".wav"), pick("stop", ".flac")}
  test = {pick("yes", ".ogg"), pick("go", ".mp3")}
  with open(os.path.join(root, "validation_list.txt"), "w") as f:
    # Windows separators are accepted too.
    f.write(pick("go", ".wav") + "\n" + pick("stop", ".flac").replace(
        "/", "\\") + "\nyes/gone_0.wav\n")
  with open(os.path.join(root, "testing_list.txt"), "w") as f:
    f.write("\n".join(sorted(test)) + "\n")
  data_dir = str(tmp_path / "tfds")
  # A group regex is ignored when lists exist.
  builders.build("folder", root, data_dir, group_regex=SPEAKER_REGEX)
  got = _read_all("folder", data_dir)  # the only folder dataset there
  assert set(got["validation"]) == val
  assert set(got["test"]) == test
  assert set(got["train"]) == set(expected) - val - test
  report = base.read_skip_report(
      builders.get_builder("folder:listed", data_dir).data_dir)
  assert {(r["split"], r["id"]) for r in report} == {
      ("validation", "yes/gone_0.wav"), ("train", "yes/eve_0.wav")}
  assert len(catalog.get_source("folder:listed", "val", data_dir)) == 2


def test_several_folder_datasets_in_one_data_dir(grouped, tmp_path, clips):
  _, data_dir, _ = grouped
  other = str(tmp_path / "Other Set")
  make_tree(other, clips)
  builders.build("folder", other, data_dir, group_regex=SPEAKER_REGEX)
  assert folder.prepared_names(data_dir) == ["my_words", "other_set"]
  assert len(catalog.get_source("folder:other_set", "train", data_dir)) > 0
  with pytest.raises(UserError, match="ambiguous.*my_words, other_set"):
    catalog.get_source("folder", "train", data_dir)
  with pytest.raises(FileNotFoundError, match="--dataset=folder --name=nope"):
    catalog.get_source("folder:nope", "train", data_dir)


@pytest.mark.parametrize("make,message", [
    (lambda r: os.makedirs(os.path.join(r, "only_one")), "at least 2"),
    (lambda r: [os.makedirs(os.path.join(r, d)) for d in ("a", "b")],
     "holds no audio"),
])
def test_bad_trees_are_clear_errors(tmp_path, make, message):
  root = str(tmp_path / "bad")
  os.makedirs(root)
  make(root)
  with pytest.raises(UserError, match=message):
    builders.build("folder", root, str(tmp_path / "tfds"))


@pytest.mark.parametrize("options,message", [
    ({"split_percent": "80/20"}, "split_percent"),
    ({"group_regex": "(["}, "not a regular expression"),
])
def test_bad_options_are_clear_errors(tmp_path, options, message):
  with pytest.raises(UserError, match=message):
    builders.get_builder("folder", str(tmp_path), str(tmp_path), **options)
  with pytest.raises(UserError, match="only apply to folder"):
    builders.get_builder("fsd50k", str(tmp_path), group_regex="x")


# ~1.5 min on 2 cores. Fast coverage of its parts: the folder builds and
# splits above, configs/folder.py in test_configs.py, the trainer's padded
# whole-clip evaluation in test_trainer.py.
@pytest.mark.slow
def test_tiny_training_run_through_configs_folder(grouped, tmp_path):
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import trainer  # pylint: disable=g-import-not-at-top
  root, data_dir, _ = grouped
  c = load_config("folder.py", f"path={root},data_dir={data_dir},"
                  f"group_regex={SPEAKER_REGEX},split_percent=50/25/25,"
                  f"model=cnn12_tiny,batch=8,crop=0.5,eval_every=2")
  assert c.dataset == "folder:my_words" and c.eval_split == "validation"
  c.total_steps = 2
  c.warmup_steps = 1
  c.progress = False
  c.mixup_alpha = 0.0
  c.eval_max_seconds = 0.5  # one padded eval shape: one compilation
  for name in ("gain", "noise", "masks", "mix"):
    c.augment[f"use_{name}"] = False
  workdir = str(tmp_path / "run")
  final = trainer.train_and_evaluate(c, workdir)
  validation = catalog.get_source("folder:my_words", "validation", data_dir)
  assert final["eval/num_clips"] == len(validation)
  # The accuracy is the final checkpoint's on the validation words, each
  # clip's first 0.5 s (eval_max_seconds) scored alone by the saved
  # classifier (the trainer pads them into batches and masks the padding).
  from sonify_jax.analysis.studies import residual  # pylint: disable=g-import-not-at-top
  from sonify_jax.models.registry import get_network  # pylint: disable=g-import-not-at-top
  saved = checkpoints.load_state(workdir)["params"]
  score = residual.make_classifier_fn(saved["encoder"], saved["head"],
                                      get_network("cnn12_tiny"), False)
  right = [int(np.argmax(score(validation[i]["audio"][None, :4000])[0]) ==
               int(validation[i]["label"])) for i in range(len(validation))]
  assert final["eval/accuracy"] == pytest.approx(np.mean(right))
  assert checkpoints.load_run_info(workdir)["class_names"] == sorted(CLASSES)
