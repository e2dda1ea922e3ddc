"""Residual study: zero sonification gives the baseline exactly, a
sonification equal to the clip gives constant scores (AP = prevalence), the
classifier function matches a hand-written head, and the study's residual
mAP equals one computed by the public API and sklearn."""
import json

import helpers
import numpy as np
import pytest

from sonify_jax import deconvnet
from sonify_jax.analysis.core import common
from sonify_jax.analysis.studies import residual
from sonify_jax.data.sources import ArraySource
from sonify_jax.models.registry import CNN12_TINY
from sonify_jax.models.encoder import Encoder

ARCH = CNN12_TINY
NUM_CLASSES = 3


@pytest.fixture(scope="module")
def model():
  enc = common.random_params(ARCH, seed=0)
  rng = np.random.default_rng(0)
  head = {"logits": {
      "kernel": rng.standard_normal((ARCH.embed_dim, NUM_CLASSES)
                                    ).astype(np.float32),
      "bias": rng.standard_normal(NUM_CLASSES).astype(np.float32)}}
  return enc, head


def _source(n=9, length=2400, multilabel=False):
  rng = np.random.default_rng(1)
  audios = [0.3 * rng.standard_normal(length).astype(np.float32)
            for _ in range(n)]
  if multilabel:
    labels = [(rng.random(NUM_CLASSES) < 0.5).astype(np.float32)
              for _ in range(n)]
    for l in labels:
      l[0] = 1.0  # every clip has a positive
  else:
    labels = [i % NUM_CLASSES for i in range(n)]
  return ArraySource(audios, labels, NUM_CLASSES, multilabel=multilabel)


def test_classifier_fn_matches_hand_written_head(model):
  enc, head = model
  audio = np.stack([_source()[i]["audio"] for i in range(4)])
  emb = np.asarray(Encoder(net=ARCH).apply({"params": enc}, audio))
  logits = emb @ head["logits"]["kernel"] + head["logits"]["bias"]
  softmax = np.exp(logits - logits.max(1, keepdims=True))
  softmax /= softmax.sum(1, keepdims=True)
  assert np.all(np.isfinite(logits))
  got = residual.make_classifier_fn(enc, head, ARCH, multilabel=False)(audio)
  np.testing.assert_allclose(got, softmax, rtol=1e-4, atol=1e-6)
  got = residual.make_classifier_fn(enc, head, ARCH, multilabel=True)(audio)
  np.testing.assert_allclose(got, 1 / (1 + np.exp(-logits)), rtol=1e-4,
                             atol=1e-6)


@pytest.mark.parametrize("multilabel", [False, True])
def test_zero_and_identity_sonifications(model, multilabel):
  enc, head = model
  source = _source(multilabel=multilabel)
  score_fn = residual.make_classifier_fn(enc, head, ARCH, multilabel)

  def fake_sonify(audio, layers, indices=None):
    # layer 1: nothing removed; layer 2: the whole clip removed.
    return {1: np.zeros_like(audio), 2: audio.copy()}

  result = residual.evaluate_residuals(score_fn, fake_sonify, source, (1, 2),
                                       min_samples=2400, batch_size=4,
                                       progress=False)
  assert result["clips"] == 9
  assert result["layers"][1] == result["baseline"]
  # Every residual is silence, so all clips tie: AP of a class = its
  # prevalence among the clips.
  labels = np.stack([np.asarray(source[i]["label"]) for i in range(9)])
  hot = labels if multilabel else np.eye(NUM_CLASSES)[labels]
  prevalence = hot.mean(0)[hot.sum(0) > 0].mean()
  assert result["layers"][2]["mAP"] == pytest.approx(prevalence)


def _mean_ap(scores, labels):
  """sklearn's average precision per class with a positive, averaged."""
  from sklearn.metrics import average_precision_score  # pylint: disable=g-import-not-at-top
  hot = np.eye(NUM_CLASSES)[labels]
  return np.mean([average_precision_score(hot[:, c], scores[:, c])
                  for c in range(NUM_CLASSES) if hot[:, c].any()])


def test_run_residual_end_to_end(model, tmp_path, monkeypatch):
  """The residual mAP equals one computed another way: each clip's most
  active layer-1 map by the public API (``feature_map_activations``,
  ``sonify``), subtracted, scored by the head checked above, and ranked by
  sklearn; the figure draws those numbers."""
  drawn = helpers.record_figures(monkeypatch)
  enc, head = model
  source = _source(n=4)
  out = residual.run_residual(enc, head, ARCH, source, str(tmp_path),
                              layers=[1], batch_size=4, progress=False)
  saved = json.loads((tmp_path / "residual.json").read_text())
  assert saved["baseline"]["mAP"] == pytest.approx(out["baseline"]["mAP"])
  audio = np.stack([source[i]["audio"] for i in range(4)])
  labels = np.array([source[i]["label"] for i in range(4)])
  top = np.asarray(deconvnet.feature_map_activations(enc, audio, 1, ARCH)
                   ).argmax(axis=1)
  sonified = np.stack([np.asarray(deconvnet.sonify(
      enc, audio[i:i + 1], 1, np.array([m]), ARCH))[0, 0]
                       for i, m in enumerate(top)])
  score_fn = residual.make_classifier_fn(enc, head, ARCH, multilabel=False)
  assert saved["baseline"]["mAP"] == pytest.approx(
      _mean_ap(score_fn(audio), labels), abs=1e-6)
  want = _mean_ap(score_fn(audio - sonified), labels)
  assert saved["residual"]["1"]["mAP"] == pytest.approx(want, abs=1e-6)
  helpers.read_png(tmp_path / "residual.png")
  (ax,) = drawn["residual.png"]
  drawn_values = [y[0] for _, y in ax["lines"]]
  assert any(v == pytest.approx(want, abs=1e-6) for v in drawn_values)
  assert ax["levels"] == [pytest.approx(saved["baseline"]["mAP"])]
