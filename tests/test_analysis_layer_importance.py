"""Layer importance: truncation reads only blocks 1..L, the probe solves a
separable problem, fine-tuning runs and stays within blocks 1..L."""
import json

import helpers
import numpy as np
import pytest

from sonify_jax.analysis.core import common
from sonify_jax.analysis.studies import layer_importance as li
from sonify_jax.data.sources import ArraySource
from sonify_jax.models.registry import CNN12_TINY

ARCH = CNN12_TINY


def _source(n=8, length=300, seed=0):
  rng = np.random.default_rng(seed)
  # Two classes told apart by pitch, so a shallow encoder can separate them.
  t = np.arange(length) / 8000.0
  audios, labels = [], []
  for i in range(n):
    f = 300.0 if i % 2 else 2000.0
    audios.append((0.5 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6))
                   + 0.01 * rng.standard_normal(length)).astype(np.float32))
    labels.append(i % 2)
  return ArraySource(audios, labels, 2)


def _perturbed(params, block):
  out = dict(params)
  out[block] = {k: v + 1.0 for k, v in params[block].items()}
  return out


def test_features_use_only_blocks_up_to_l():
  params = common.random_params(ARCH, 0)
  source = _source(n=3)
  feats, labels = li.extract_features(params, ARCH, source, 2, batch_size=4,
                                      progress=False)
  assert feats.shape == (3, ARCH.channels[1])
  np.testing.assert_array_equal(labels, [0, 1, 0])
  # Changing block 3 (and everything above) changes nothing ...
  other = _perturbed(_perturbed(params, "block3"), "block11")
  same, _ = li.extract_features(other, ARCH, source, 2, batch_size=4,
                                progress=False)
  np.testing.assert_array_equal(feats, same)
  # ... while changing block 2 does (the check can fail).
  changed, _ = li.extract_features(_perturbed(params, "block2"), ARCH,
                                   source, 2, batch_size=4, progress=False)
  assert not np.allclose(feats, changed)
  assert set(li.truncate(params, 2, ARCH)) == {"block1", "block2"}


def test_linear_probe_separates_separable_blobs():
  rng = np.random.default_rng(1)
  x = np.concatenate([rng.normal(-2, 1, (40, 5)), rng.normal(2, 1, (40, 5))])
  x[:, 0] = np.concatenate([np.full(40, -3.0), np.full(40, 3.0)])
  y = np.repeat([0, 1], 40)
  probe = li.LinearProbe(2, multilabel=False, steps=200).fit(x, y)
  assert (probe.scores(x).argmax(1) == y).all()
  np.testing.assert_allclose(probe.scores(x).sum(1), 1.0, rtol=1e-5)


def test_run_layer_importance_both_modes(tmp_path, monkeypatch):
  drawn = helpers.record_figures(monkeypatch)
  params = common.random_params(ARCH, 2)
  source = _source()
  results = li.run_layer_importance(
      params, ARCH, source, source, str(tmp_path), layers=[1, 2],
      probe_steps=100, full_steps=3, batch_size=4, metric="accuracy",
      progress=False)
  saved = json.loads((tmp_path / "layer_importance.json").read_text())
  for mode in ("fconly", "full"):
    for layer in (1, 2):
      assert saved["results"][mode][str(layer)]["accuracy"] == pytest.approx(
          results[mode][layer]["accuracy"])
  # Pure tones of two pitches: the frozen block-1 features already separate
  # the training clips.
  assert results["fconly"][1]["accuracy"] == 1.0
  # The figure: one curve per mode over layers 1, 2 (the fconly one starts
  # at the planted 1.0), and the class prior, which on 4 + 4 clips of two
  # classes scores every clip alike and so is right on half of them.
  helpers.read_png(tmp_path / "layer_importance.png")
  (ax,) = drawn["layer_importance.png"]
  curves = [y for _, y in ax["lines"]]
  for mode in ("fconly", "full"):
    want = [results[mode][l]["accuracy"] for l in (1, 2)]
    assert any(np.allclose(y, want) for y in curves), mode
  assert ax["levels"] == [0.5]
  with pytest.raises(ValueError, match="mode"):
    li.run_layer_importance(params, ARCH, source, source, str(tmp_path),
                            layers=[1], modes=("bogus",), progress=False)


def test_grouped_split_keeps_every_recording_on_one_side():
  """Clip ids of 9 recordings, each saved as 1-3 files (``rec{g}.wav``,
  ``.flac``, ``.ogg``) in class folders: the split's two sides, mapped back
  to the recordings by the table the ids were made from, share none, cover
  every clip once, hold >= 2 recordings each and about the asked share of
  clips; the same call gives the same split, and 3 recordings are refused."""
  from sonify_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  ids, recording = [], []
  for g in range(9):
    for ext in (".wav", ".flac", ".ogg")[:1 + g % 3]:
      ids.append(f"{'ab'[g % 2]}/rec{g}{ext}")
      recording.append(g)
  train, test, record = li.grouped_split(ids, test_fraction=0.3, seed=0)
  assert sorted(train + test) == list(range(len(ids)))
  train_recs = {recording[i] for i in train}
  test_recs = {recording[i] for i in test}
  assert not train_recs & test_recs
  assert len(train_recs) >= 2 and len(test_recs) >= 2
  assert abs(len(test) - 0.3 * len(ids)) <= 3   # whole recordings of <= 3
  assert record["train_clips"] == [ids[i] for i in train]
  assert record["test_clips"] == [ids[i] for i in test]
  assert record["groups"] == {"train": len(train_recs),
                              "test": len(test_recs)}
  assert li.grouped_split(ids, 0.3, 0)[:2] == (train, test)
  with pytest.raises(UserError, match="3 source file"):
    li.grouped_split(["a.wav", "b.wav", "c.wav", "a.flac"])
