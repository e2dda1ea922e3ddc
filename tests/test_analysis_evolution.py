"""Feature evolution: pairs chosen on the final checkpoint (brute force), the
same pairs sonified with each checkpoint's own params."""
import json
import os

import helpers
import numpy as np
import pytest

from sonify_jax import deconvnet, plotting
from sonify_jax.analysis.core import common
from sonify_jax.analysis.studies import evolution
from sonify_jax.data.sources import ArraySource
from sonify_jax.models.registry import CNN12_TINY

ARCH = CNN12_TINY


def _noise_clips(seed, count):
  """``count`` clips of noise and their one-class source."""
  rng = np.random.default_rng(seed)
  audios = [0.3 * rng.standard_normal(300).astype(np.float32)
            for _ in range(count)]
  return audios, ArraySource(audios, [0] * count, 1)


def _checkpoints(steps):
  """``[(step, params)]``, the params of step s drawn from seed s / 10."""
  return [(s, common.random_params(ARCH, s // 10)) for s in steps]


def test_evolution_tracks_final_models_pairs(tmp_path, monkeypatch):
  drawn = helpers.record_figures(monkeypatch)
  audios, source = _noise_clips(0, 5)
  ckpts = _checkpoints([20, 0, 10])  # out of order on purpose
  result = evolution.run_evolution(ckpts, ARCH, source, str(tmp_path),
                                   layers=[2], maps_per_layer=2,
                                   batch_size=4, progress=False)
  assert result["steps"] == [0, 10, 20]
  final = dict(ckpts)[20]
  acts = np.asarray(deconvnet.feature_map_activations(
      final, np.stack(audios), 2, ARCH))  # [clips, maps]
  strongest = np.sort(np.argsort(-acts.max(0), kind="stable")[:2])
  entries = result["layers"]["2"]
  assert [e["map"] for e in entries] == strongest.tolist()
  for r, e in enumerate(entries):
    assert e["clip_index"] == int(acts[:, e["map"]].argmax())
    clip = audios[e["clip_index"]]
    for j, step in enumerate([0, 10, 20]):
      want = np.asarray(deconvnet.sonify(dict(ckpts)[step], clip[None], 2,
                                         [e["map"]], ARCH))[0, 0]
      np.testing.assert_allclose(result["sonifications"][2][r][j], want,
                                 rtol=1e-4, atol=1e-6)
  saved = json.loads((tmp_path / "evolution.json").read_text())
  assert result["selected_step"] == saved["selected_step"] == 20
  assert set(saved["layers"]["2"][0]["wavs"]) == {"0", "10", "20"}
  # The figure: per pair, the input's spectrogram then one per step, each
  # the log-spectrogram of the sonification checked above against sonify().
  helpers.read_png(tmp_path / saved["figures"]["2"])
  panels = drawn[os.path.basename(saved["figures"]["2"])]
  assert len(panels) == len(entries) * 4
  for r, e in enumerate(entries):
    row = panels[4 * r:4 * r + 4]
    for j, wave in enumerate([audios[e["clip_index"]]] +
                             list(result["sonifications"][2][r])):
      _, _, db = plotting.log_spectrogram(np.asarray(wave), ARCH.sample_rate)
      np.testing.assert_allclose(np.ravel(row[j]["arrays"][0]), db.ravel(),
                                 atol=1e-3)
    assert not np.allclose(np.ravel(row[1]["arrays"][0]),
                           np.ravel(row[3]["arrays"][0]))  # steps differ
  with pytest.raises(ValueError, match="duplicate"):
    evolution.run_evolution([(1, final), (1, final)], ARCH, source,
                            str(tmp_path), layers=[2], progress=False)


def test_selected_step_picks_the_pairs(tmp_path):
  # The run's selected checkpoint (here step 10, not the largest) picks the
  # maps and clips; every step is still sonified on those pairs.
  audios, source = _noise_clips(1, 6)
  ckpts = _checkpoints([0, 10, 20])
  result = evolution.run_evolution(ckpts, ARCH, source, str(tmp_path),
                                   layers=[2], maps_per_layer=2,
                                   batch_size=4, progress=False,
                                   write_wavs=False, selected_step=10)
  assert result["selected_step"] == 10
  for step in (10, 20):
    acts = np.asarray(deconvnet.feature_map_activations(
        dict(ckpts)[step], np.stack(audios), 2, ARCH))
    picked = np.sort(np.argsort(-acts.max(0), kind="stable")[:2])
    if step == 10:
      assert [e["map"] for e in result["layers"]["2"]] == picked.tolist()
      assert [e["clip_index"] for e in result["layers"]["2"]] == [
          int(acts[:, m].argmax()) for m in picked]
    else:  # the largest step would have picked other maps (not vacuous)
      assert [e["map"] for e in result["layers"]["2"]] != picked.tolist()
  assert len(result["sonifications"][2][0]) == 3
  with pytest.raises(ValueError, match="selected step 5"):
    evolution.run_evolution(ckpts, ARCH, source, str(tmp_path), layers=[2],
                            progress=False, selected_step=5)


def test_dead_sonification_panels_are_labelled():
  from sonify_jax import plotting  # pylint: disable=g-import-not-at-top
  fig, axes = plotting.new_figure(1, 3, (6, 2))
  plotting.draw_spectrogram(axes[0, 0], np.zeros(800), 8000, title="step 0")
  plotting.draw_spectrogram(axes[0, 1], np.zeros(800), 8000, title="input",
                            zero_label=plotting.SILENT_LABEL)
  noise = np.random.default_rng(0).standard_normal(800)
  plotting.draw_spectrogram(axes[0, 2], noise, 8000, title="step 5")
  texts = [[t.get_text() for t in ax.texts] for ax in axes[0]]
  assert texts == [[plotting.DEAD_LABEL], [plotting.SILENT_LABEL], []]
  assert axes[0, 0].get_title() == f"step 0 [{plotting.DEAD_LABEL}]"
  assert axes[0, 2].get_title() == "step 5"
  # The dead panel is drawn at the floor, dark, not as a bright flat panel.
  image = axes[0, 0].collections[0]
  assert image.get_array().max() <= image.norm.vmin + 1e-9
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  plt.close(fig)
