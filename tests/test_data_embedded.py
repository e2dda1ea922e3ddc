"""The shipped embedded dataset and its sources, checked against the files."""
import collections
import importlib.util
import os
import shutil

import numpy as np
import pytest
import soundfile

from sonify_jax.data import catalog
from sonify_jax.data import embedded

ROOT = embedded.EMBEDDED_DIR
KEYWORDS = {"yes", "no", "up", "down", "left", "right", "on", "off", "stop",
            "go"}


@pytest.fixture(scope="module")
def rows():
  return embedded.read_manifest()


def test_manifest_matches_files(rows):
  ids = [r["id"] for r in rows]
  assert len(ids) == len(set(ids))
  total = 0
  for r in rows:
    path = os.path.join(ROOT, r["file"])
    info = soundfile.info(path)  # the WAV header, read independently
    assert (info.samplerate, info.channels, info.subtype) == (
        8000, 1, "PCM_16"), r["file"]
    assert info.frames == int(r["num_samples"])
    assert r["split"] in ("train", "test")
    total += os.path.getsize(path)
  for extra in ("manifest.csv", "README.md", "generator.json"):
    total += os.path.getsize(os.path.join(ROOT, extra))
  assert total <= 8 * 2**20


def test_classes_counts_and_lengths(rows):
  by_group = collections.defaultdict(collections.Counter)
  for r in rows:
    by_group[r["group"]][(r["label"], r["split"])] += 1
    seconds = int(r["num_samples"]) / 8000
    if r["group"] == "keywords":
      assert seconds == 1.0
    else:
      assert 1.0 <= seconds <= 4.0
  assert {k for k, _ in by_group["keywords"]} == KEYWORDS
  events = {k for k, _ in by_group["events"]}
  assert 5 <= len(events) <= 8
  for group in ("keywords", "events"):
    for label in {k for k, _ in by_group[group]}:
      train = by_group[group][(label, "train")]
      test = by_group[group][(label, "test")]
      assert train + test >= 20 and test >= 4 and train >= 3 * test


def test_keyword_voices_do_not_cross_splits(rows):
  voices = collections.defaultdict(set)
  for r in rows:
    if r["group"] == "keywords":
      voices[r["split"]].add(r["variant"].split()[0])  # "accent+variant"
  assert voices["train"] and voices["test"]
  assert not voices["train"] & voices["test"]


@pytest.mark.parametrize("name", ["embedded_keywords", "embedded_events",
                                  "embedded"])
@pytest.mark.parametrize("split", ["train_all", "test"])
def test_sources_match_manifest(rows, name, split):
  source = catalog.get_source(name, split)
  groups = {"embedded_keywords": ["keywords"], "embedded_events": ["events"],
            "embedded": ["keywords", "events"]}[name]
  manifest_split = {"train_all": "train"}.get(split, split)
  want = [r for r in rows
          if r["group"] in groups and r["split"] == manifest_split]
  assert len(source) == len(want)
  assert not source.multilabel
  assert source.num_classes == len(source.class_names)
  expected_names = []
  for g in groups:
    expected_names += sorted({r["label"] for r in rows if r["group"] == g})
  assert list(source.class_names) == expected_names
  for i, r in enumerate(want):
    ex = source[i]
    assert ex["id"] == r["id"]
    assert ex["label"].dtype == np.int32 and ex["label"].shape == ()
    assert source.class_names[int(ex["label"])] == r["label"]
    audio = ex["audio"]
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert audio.size == int(r["num_samples"])
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) <= 1.0
    assert np.std(audio) > 1e-3  # not silent


def test_audio_equals_wav_samples_and_is_cached():
  source = catalog.get_source("embedded_events", "test")
  ex = source[0]
  pcm, sr = soundfile.read(os.path.join(ROOT, "events", ex["id"].split("_")[1],
                                        ex["id"] + ".wav"), dtype="int16")
  assert sr == 8000
  # soundfile (behind audio_io) scales int16 by 1/32768.
  np.testing.assert_allclose(ex["audio"], pcm / 32768.0, atol=1e-7)
  assert source[0]["audio"] is ex["audio"]  # decoded once
  assert not ex["audio"].flags.writeable  # shared: callers cannot corrupt it
  assert source[-1]["id"] == source[len(source) - 1]["id"]


def test_validation_holdout_is_grouped_and_disjoint(rows):
  """'validation' and 'train' partition the manifest's train clips; no voice
  or source sound file is on both sides; every class is validated."""
  def key(r):  # independent restatement of the grouping rule
    return (r["variant"].split()[0] if r["group"] == "keywords"
            else r["source"])
  by_id = {r["id"]: r for r in rows}
  train = catalog.get_source("embedded", "train")
  val = catalog.get_source("embedded", "validation")
  train_all = catalog.get_source("embedded", "train_all")
  assert not set(train.ids) & set(val.ids)
  assert sorted(train.ids + val.ids) == sorted(train_all.ids)
  assert not ({key(by_id[i]) for i in train.ids} &
              {key(by_id[i]) for i in val.ids})
  counts = collections.Counter(val.labels.tolist())
  assert set(counts) == set(range(val.num_classes))
  assert 0.15 <= len(val) / len(train_all) <= 0.3
  # Deterministic and independent of the manifest's row order.
  assert embedded.validation_ids(rows[::-1]) == set(val.ids)


def test_merged_is_union_with_offset_labels():
  kw = catalog.get_source("embedded_keywords", "train")
  ev = catalog.get_source("embedded_events", "train")
  both = catalog.get_source("embedded", "train")
  assert len(both) == len(kw) + len(ev)
  assert both.num_classes == kw.num_classes + ev.num_classes
  np.testing.assert_array_equal(
      both.labels, np.concatenate([kw.labels, ev.labels + kw.num_classes]))


def test_bad_requests():
  source = catalog.get_source("embedded_keywords", "test")
  with pytest.raises(IndexError):
    source[len(source)]
  with pytest.raises(TypeError):
    source[1.5]
  with pytest.raises(ValueError, match="unknown split"):
    catalog.get_source("embedded", "dev")
  with pytest.raises(ValueError, match="unknown dataset"):
    catalog.get_source("embedded_music", "train")


def test_regenerated_copy_via_data_dir(tmp_path, rows):
  """A data_dir copy is read from there; a broken one fails clearly."""
  copy = tmp_path / "emb"
  keep = [r for r in rows if r["group"] == "events"][:3]
  os.makedirs(copy)
  with open(os.path.join(ROOT, "manifest.csv")) as f:
    header = f.readline()
  lines = [header] + [",".join(r[k] for k in header.strip().split(",")) + "\n"
                      for r in keep]
  (copy / "manifest.csv").write_text("".join(lines))
  for r in keep:
    os.makedirs(copy / os.path.dirname(r["file"]), exist_ok=True)
    shutil.copy(os.path.join(ROOT, r["file"]), copy / r["file"])
  split = keep[0]["split"]
  source = catalog.get_source("embedded_events", split + "_all" * (
      split == "train"), str(copy))
  assert len(source) == sum(r["split"] == split for r in keep)
  (copy / keep[0]["file"]).write_bytes(b"not a wav")
  with pytest.raises(IOError, match="cannot decode"):
    source[0]
  with pytest.raises(FileNotFoundError, match="manifest"):
    catalog.get_source("embedded", "train", str(tmp_path))


@pytest.mark.skipif(shutil.which("espeak-ng") is None,
                    reason="espeak-ng not installed")
def test_generator_is_deterministic():
  spec = importlib.util.spec_from_file_location(
      "make_embedded_data", os.path.join(os.path.dirname(__file__), "..",
                                         "scripts", "make_embedded_data.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)

  def first(n, seed):
    gen = module.make_keywords(np.random.default_rng(seed))
    return [next(gen) for _ in range(n)]

  a, b, c = first(2, 0), first(2, 0), first(2, 1)
  for x, y in zip(a, b):
    assert x[:4] == y[:4] and x[5:] == y[5:]
    np.testing.assert_array_equal(x[4], y[4])
  assert [x[6] for x in a] != [x[6] for x in c]  # the seed matters
