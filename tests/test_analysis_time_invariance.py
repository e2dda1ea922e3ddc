"""Time-invariance study: the alignment on planted shifts, and the property
it measures -- exact for shifts that are multiples of the pooling stride,
not for others -- on a random-init CNN12."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sonify_jax.analysis.core import controls
from sonify_jax.analysis.studies import time_invariance as ti
from sonify_jax.data.sources import ArraySource
from sonify_jax.errors import UserError
from sonify_jax.models.registry import CNN12_TINY
from sonify_jax.models.encoder import Encoder
import helpers

ARCH = CNN12_TINY
LAYERS = (1, 4, 9)
LENGTH, MAX_SHIFT = 4000, 700


def _he_init(seed):
  return Encoder(net=ARCH).init(jax.random.PRNGKey(seed),
                               jnp.zeros((1, 2370)))["params"]


def _source(n=3, seed=0):
  rng = np.random.default_rng(seed)
  return ArraySource([0.3 * rng.standard_normal(LENGTH + MAX_SHIFT
                                                ).astype(np.float32)
                      for _ in range(n)], [0] * n, 1)


def test_alignment_on_a_planted_shift():
  s = np.random.default_rng(0).standard_normal(1300)
  k = 137
  s_a, s_b = s[:1000], s[k:k + 1000]
  assert ti.aligned_error(s_a, s_b, k, margin=20) == 0.0
  # Off by one sample, white noise is uncorrelated with itself: error ~sqrt 2.
  assert ti.aligned_error(s_a, s_b, k + 1, margin=20) > 1.0
  assert ti.best_lag(s_a, s_b, max_lag=300) == k
  # Magnitudes ignore a one-sample misalignment, not another signal.
  assert ti.aligned_spectral_error(s_a, s_b, k, margin=20) == 0.0
  assert ti.aligned_spectral_error(s_a, s_b, k + 1, margin=20) < 0.1
  other = np.random.default_rng(1).standard_normal(1000)
  assert ti.aligned_spectral_error(s_a, other, k, margin=20) > 0.4
  # Nothing to compare: NaN, not 0.
  assert np.isnan(ti.aligned_error(np.zeros(1000), s_b, k, margin=20))
  assert np.isnan(ti.aligned_error(s_a, s_b, k, margin=500))


def test_shifts_are_a_multiple_and_a_non_multiple():
  rng = np.random.default_rng(0)
  for stride in (2, 16, 256):
    for _ in range(20):
      mult, other = ti.pick_shifts(stride, 700, rng)
      assert mult % stride == 0 and 0 < mult <= 700
      assert other % stride != 0 and 0 < other <= 700
  with pytest.raises(ValueError):
    ti.pick_shifts(256, 100, rng)


def test_exact_for_multiples_of_the_stride_not_for_others():
  clips = ti.load_clips(_source(), None, LENGTH + MAX_SHIFT)
  summary, _ = ti.measure_time_invariance(_he_init(0), ARCH, clips, LENGTH,
                                          LAYERS, MAX_SHIFT, seed=3)
  for layer in LAYERS:
    e = summary[str(layer)]
    assert e["stride"] == 2 ** min(layer, 8)
    assert e["multiple"]["k"] % e["stride"] == 0
    assert e["non_multiple"]["k"] % e["stride"] != 0
    assert e["multiple"]["relative_error"]["clips"] == 3
    assert e["multiple"]["relative_error"]["max"] < 1e-5
    assert e["non_multiple"]["relative_error"]["median"] > 1e-2
    assert e["multiple"]["lag_found_equals_k"] == 1.0


def test_cli_glue_writes_strict_json_figure_and_statement(tmp_path, capsys,
                                                         monkeypatch):
  drawn = helpers.record_figures(monkeypatch)
  run = controls.RunParams(_he_init(0), _he_init(1), ARCH)
  result = ti.run_on_runs([("m", run)], _source(n=2), str(tmp_path),
                         layers=(2, 7), clip_samples=LENGTH)
  loaded = helpers.strict_load(os.path.join(tmp_path, "time_invariance.json"))
  # The figure's overlays show the property: on the interior (edge margins
  # excluded) the sonification of x and that of x shifted by a multiple of
  # the stride, shifted back, are one curve; by another shift, two.
  helpers.read_png(os.path.join(tmp_path, "time_invariance.png"))
  axes = drawn["time_invariance.png"]
  assert len(axes) == 2 * 3   # layers 2 and 7, then the error curves
  for row, layer in enumerate((2, 7)):
    margin = ti.edge_margin(ARCH, layer)
    for col, same in ((0, True), (1, False)):
      (_, a), (_, b) = axes[2 * row + col]["lines"][:2]
      a, b = a[margin:len(a) - margin], b[margin:len(b) - margin]
      error = np.abs(a - b).max() / np.abs(a).max()
      assert error < 1e-5 if same else error > 1e-2, (layer, col, error)
  for ax in axes[4:]:
    assert ax["levels"] == [pytest.approx(np.finfo(np.float32).eps)]
  assert loaded["max_shift"] == LENGTH // 4 and loaded["clips"] == 2
  for entry in loaded["models"]["m"].values():
    assert set(entry) == {"trained", "untrained"}
  assert "multiple" in result["statement"]
  assert "untrained" in result["statement"]
  assert result["statement"].replace("\n", " ") in result["caption"]
  assert result["statement"] in capsys.readouterr().out
  with pytest.raises(UserError, match="no interior"):
    ti.run_time_invariance({"m": {"trained": (_he_init(0), ARCH)}},
                           _source(n=1), str(tmp_path), layers=(11,),
                           length=4000, max_shift=700)
