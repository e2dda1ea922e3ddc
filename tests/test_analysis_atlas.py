"""The atlas study against independent facts: brute-force top-k per map,
sonify() of each (map, clip) pair, strict JSON, resumability."""
import os

import numpy as np
import pytest
import soundfile

import helpers

from sonify_jax import deconvnet
from sonify_jax.analysis.studies import activity
from sonify_jax.analysis.studies import atlas
from sonify_jax.analysis.core import common
from sonify_jax.analysis.studies import topk
from sonify_jax.data.sources import ArraySource
from sonify_jax.errors import UserError
from sonify_jax.models.registry import CNN12_TINY

ARCH = CNN12_TINY
LAYERS = (2, 9)


@pytest.fixture(scope="module")
def params():
  p = common.random_params(ARCH, 3)
  # Map 1 of layer 2 never fires: a dead map.
  p["block2"]["bias"] = p["block2"]["bias"].copy()
  p["block2"]["bias"][1] = -1e4
  return p


@pytest.fixture(scope="module")
def source():
  rng = np.random.default_rng(0)
  # Two lengths (two padded shapes); one clip shorter than layer 9's
  # receptive field (padded up to it by the study).
  lengths = (1600, 1600, 2100, 1600, 2100, 1200, 1600)
  return ArraySource([0.5 * rng.standard_normal(n).astype(np.float32)
                      for n in lengths], [0] * len(lengths), 1)


@pytest.fixture(scope="module")
def built(params, source, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("atlas"))
  index = atlas.run_atlas(params, ARCH, source, out, layers=LAYERS, k=3,
                          batch_size=4, model_name="tiny", progress=False)
  return out, index


def test_index_is_strict_json_and_complete(built):
  out, index = built
  assert helpers.strict_load(os.path.join(out, atlas.INDEX)) == index
  assert [l["layer"] for l in index["layers"]] == list(LAYERS)
  for part in index["layers"]:
    assert len(part["maps"]) == ARCH.channels[part["layer"] - 1]
    for m in part["maps"]:
      assert len(m["top"]) == 3
      for r in m["top"]:
        if r["wav"] is None:
          continue
        assert os.path.isfile(os.path.join(out, r["wav"]))
        assert os.path.isfile(os.path.join(out, r["png"]))
        assert 0 < r["centroid_hz"] < 4000
  for clip in index["clips"].values():
    assert os.path.isfile(os.path.join(out, clip["wav"]))
    assert os.path.isfile(os.path.join(out, clip["png"]))


def test_top_clips_are_the_brute_force_top_k(built, params, source):
  _, index = built
  min_samples = ARCH.min_input_length(max(LAYERS))
  for part in index["layers"]:
    layer = part["layer"]
    acts = np.stack([np.asarray(deconvnet.feature_map_activations(
        params, common.load_clip(source, i, min_samples)[None], layer,
        ARCH))[0] for i in range(len(source))])  # [clips, maps]
    for m in part["maps"]:
      column = acts[:, m["map"]]
      want = np.lexsort((np.arange(len(column)), -column))[:3]
      assert [r["clip"] for r in m["top"]] == want.tolist()
      np.testing.assert_allclose([r["activation"] for r in m["top"]],
                                 column[want], rtol=1e-5, atol=1e-7)


def test_dead_map_is_listed_not_sonified(built):
  _, index = built
  layer2 = index["layers"][0]
  dead = [m for m in layer2["maps"] if m["dead"]]
  assert [m["map"] for m in dead] == [1]
  assert all(r["wav"] is None and r["activation"] == 0 for r in dead[0]["top"])
  assert dead[0]["centroid_hz"] is None
  assert sum(not m["dead"] for m in layer2["maps"]) == 3


def test_each_sonification_is_sonify_of_its_clip(built, params, source):
  out, index = built
  min_samples = ARCH.min_input_length(max(LAYERS))
  checked = 0
  for part in index["layers"]:
    for m in part["maps"][:4]:
      for r in m["top"]:
        if r["wav"] is None:
          continue
        clip = common.load_clip(source, r["clip"], min_samples)
        want = np.asarray(deconvnet.sonify(params, clip[None], part["layer"],
                                           [m["map"]], ARCH))[0, 0]
        got, sr = soundfile.read(os.path.join(out, r["wav"]),
                                 dtype="float32")
        assert sr == 8000 and got.shape == want.shape
        np.testing.assert_allclose(got, np.clip(want, -1, 1), atol=2e-4)
        assert r["centroid_hz"] == pytest.approx(
            activity.spectral_centroid_bandwidth(want, 8000)[0], rel=1e-2)
        checked += 1
  assert checked >= 8


def test_rerun_skips_finished_layers(built, params, source, monkeypatch):
  out, index = built
  sonified = []
  real = deconvnet.sonify_clip_pairs

  def counting(*args, **kwargs):
    sonified.append(args[5])
    return real(*args, **kwargs)

  def no_stream(*args, **kwargs):
    raise AssertionError("streamed the data again")

  monkeypatch.setattr(deconvnet, "sonify_clip_pairs", counting)
  monkeypatch.setattr(topk, "stream_topk", no_stream)
  again = atlas.run_atlas(params, ARCH, source, out, layers=LAYERS, k=3,
                          batch_size=4, model_name="tiny", progress=False)
  assert not sonified and again == index
  # An interrupted layer (no done marker) is redone, from the saved pass.
  os.unlink(os.path.join(out, "layer09", atlas.LAYER_DONE))
  os.unlink(os.path.join(out, atlas.INDEX))
  again = atlas.run_atlas(params, ARCH, source, out, layers=LAYERS, k=3,
                          batch_size=4, model_name="tiny", progress=False)
  assert sonified and set(sonified) == {9}

  def strip(i):  # timings differ between runs
    return [{k: v for k, v in l.items() if k != "seconds"}
            for l in i["layers"]]
  assert strip(again) == strip(index)


def test_another_model_in_the_same_folder_is_refused(built, source):
  out, _ = built
  with pytest.raises(UserError, match="another model"):
    atlas.run_atlas(common.random_params(ARCH, 4), ARCH, source, out,
                    layers=LAYERS, k=3, progress=False)


def test_bucket_lengths_are_few_and_bounded():
  lengths = np.arange(300, 40000, 7)
  buckets = np.array([atlas.bucket_length(int(n)) for n in lengths])
  assert np.all(buckets >= lengths) and np.all(buckets <= 1.5 * lengths)
  assert len(set(buckets.tolist())) <= 2 * 8  # two per octave
