"""Coherence study: known coherence values, the study against a direct
computation, batching invariance, t-intervals."""
import helpers
import numpy as np
import pytest
import scipy.signal
import scipy.stats

from sonify_jax import deconvnet
from sonify_jax.analysis.studies import coherence
from sonify_jax.analysis.core import common
from sonify_jax.data.sources import ArraySource
from sonify_jax.models.registry import CNN12_TINY

ARCH = CNN12_TINY
LAYERS = (1, 3)


def test_signal_with_itself_is_one_and_with_independent_noise_near_zero():
  rng = np.random.default_rng(0)
  x = rng.standard_normal(40000)
  assert coherence.top_coherence(x, x) == pytest.approx(1.0, abs=1e-9)
  assert coherence.top_coherence(x, 3.0 * x) == pytest.approx(1.0, abs=1e-9)
  # Independent white noise: each bin's estimate is ~Beta(1, K-1) with K≈311
  # averaged segments, so even the largest of 129 bins stays far below 0.1.
  assert coherence.top_coherence(x, rng.standard_normal(40000)) < 0.1


def test_linear_filter_plus_noise_matches_theory():
  # y = g * x + n, x and n white (variances 1 and s2):
  # C(f) = |G(f)|^2 / (|G(f)|^2 + s2).
  rng = np.random.default_rng(1)
  x = rng.standard_normal(200000)
  h = scipy.signal.firwin(31, 1000, fs=8000)
  s2 = 0.05
  # Zero-phase (forward-backward) filtering: no delay to bias Welch's
  # estimate, and the effective gain is |H|^2.
  y = scipy.signal.filtfilt(h, 1.0, x) + np.sqrt(s2) * rng.standard_normal(
      x.size)
  _, response = scipy.signal.freqz(h, worN=129, fs=8000)
  gain2 = np.abs(response) ** 4
  theory = gain2 / (gain2 + s2)
  want = np.sort(theory)[-5:].mean()
  assert coherence.top_coherence(x, y) == pytest.approx(want, abs=0.01)
  # Batched over a leading axis, same numbers.
  both = coherence.top_coherence(np.stack([x, x]), np.stack([y, x]))
  np.testing.assert_allclose(both, [coherence.top_coherence(x, y), 1.0])


def test_silent_signal_scores_zero():
  x = np.random.default_rng(2).standard_normal(1000)
  assert coherence.top_coherence(x, np.zeros_like(x)) == 0.0


def test_t_interval_matches_scipy():
  values = [0.31, 0.42, 0.37, 0.29]
  mean, half = common.t_interval(values)
  lo, hi = scipy.stats.t.interval(0.95, 3, loc=np.mean(values),
                                  scale=scipy.stats.sem(values))
  assert mean == pytest.approx((lo + hi) / 2)
  assert half == pytest.approx((hi - lo) / 2)
  assert np.isnan(common.t_interval([0.5])[1])


def test_stream_coherence_equals_direct_computation():
  params = common.random_params(ARCH, seed=3)
  rng = np.random.default_rng(3)
  audios = [0.3 * rng.standard_normal(300).astype(np.float32)
            for _ in range(5)]
  source = ArraySource(audios, [0] * 5, 1)
  batch = np.stack(audios)
  want = {}
  for layer in LAYERS:
    # Independent path: deconvnet's own activation + sonify per clip.
    maps = np.asarray(deconvnet.feature_map_activations(
        params, batch, layer, ARCH)).argmax(1)
    scores = []
    for clip, m in zip(audios, maps):
      s = np.asarray(deconvnet.sonify(params, clip[None], layer, [int(m)],
                                      ARCH))[0, 0]
      _, c = scipy.signal.coherence(clip, s, fs=8000, nperseg=256)
      scores.append(np.sort(c)[-5:].mean())
    want[layer] = np.mean(scores)
  for batch_size in (2, 5):
    got = coherence.stream_coherence(params, ARCH, source, LAYERS,
                                     batch_size=batch_size, progress=False)
    assert got["clips"] == 5 and got["clips_per_s"] > 0
    for layer in LAYERS:
      assert got["mean"][layer] == pytest.approx(want[layer], abs=1e-4)


def test_run_coherence_two_kinds_two_runs(tmp_path, monkeypatch):
  drawn = helpers.record_figures(monkeypatch)
  rng = np.random.default_rng(4)
  source = ArraySource([0.3 * rng.standard_normal(300).astype(np.float32)
                        for _ in range(3)], [0] * 3, 1)
  models = {"contrastive": [(common.random_params(ARCH, s), ARCH)
                            for s in (5, 6)],
            "supervised": [(common.random_params(ARCH, 7), ARCH)]}
  summary = coherence.run_coherence(models, source, str(tmp_path),
                                    layers=[1], batch_size=3, progress=False)
  runs = summary["contrastive"]["runs"]
  mean, half = common.t_interval([r[0] for r in runs])
  assert summary["contrastive"]["mean"][0] == pytest.approx(mean)
  assert summary["contrastive"]["ci_half_width"][0] == pytest.approx(half)
  assert np.isnan(summary["supervised"]["ci_half_width"][0])
  # The figure draws each kind's mean over its runs (checked above against
  # the t-interval of the runs), and the 95 % bars of the two-run kind.
  helpers.read_png(tmp_path / "coherence.png")
  (ax,) = drawn["coherence.png"]
  curves = [list(y) for _, y in ax["lines"]]
  for kind in ("contrastive", "supervised"):
    assert [pytest.approx(summary[kind]["mean"][0])] in curves
  assert [pytest.approx(mean + half)] in curves   # the error bar's cap
  assert (tmp_path / "coherence.json").exists()
