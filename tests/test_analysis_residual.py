"""Residual study: zero sonification gives the baseline exactly, a
sonification equal to the clip gives constant scores (AP = prevalence), and
the classifier function matches a hand-written head."""
import json

import numpy as np
import pytest

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


def test_run_residual_end_to_end(model, tmp_path):
  enc, head = model
  out = residual.run_residual(enc, head, ARCH, _source(n=4), str(tmp_path),
                              layers=[1], batch_size=4, progress=False)
  saved = json.loads((tmp_path / "residual.json").read_text())
  assert saved["baseline"]["mAP"] == pytest.approx(out["baseline"]["mAP"])
  assert 0.0 <= saved["residual"]["1"]["mAP"] <= 1.0
  assert (tmp_path / "residual.png").stat().st_size > 0
