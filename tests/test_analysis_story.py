"""The demo story end to end in its quick form (a few training steps).

About 3 minutes on 2 CPU cores (two trainer compiles dominate), so it runs
only with SONIFY_SLOW_TESTS=1, outside the 2-minute budget of the suite.
"""
import json
import os

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("SONIFY_SLOW_TESTS") != "1",
    reason="slow (~3 min): set SONIFY_SLOW_TESTS=1 to run the demo story")


def test_quick_story(tmp_path, capsys):
  from sonify_jax.demo import story  # pylint: disable=g-import-not-at-top
  result = story.run_story(str(tmp_path), quick=True)
  assert os.path.isfile(result["gallery"])
  assert result["gallery"] in capsys.readouterr().out
  coh = json.loads((tmp_path / "coherence" / "coherence.json").read_text())
  assert set(coh["models"]) == {"contrastive", "supervised"}
  # Each model's coherence, computed another way: its first 6 clips as the
  # studies read them (1 s), each against deconvnet.sonify of the clip's
  # most active map (the public API), scored by scipy's coherence.
  import numpy as np  # pylint: disable=g-import-not-at-top
  import scipy.signal  # pylint: disable=g-import-not-at-top
  from sonify_jax import deconvnet  # pylint: disable=g-import-not-at-top
  from sonify_jax.analysis import run_data  # pylint: disable=g-import-not-at-top
  from sonify_jax.analysis.core import common, controls  # pylint: disable=g-import-not-at-top
  for name, run_dir in (("contrastive", "simclr"),
                        ("supervised", "supervised")):
    run = controls.load_run(str(tmp_path / run_dir))
    source, _ = run_data.study_source(
        controls.load_run(str(tmp_path / "supervised")).info)
    rate = run.arch.sample_rate
    clips = np.stack([common.load_clip(source, i, run.arch.min_input_length(
        11), rate) for i in range(min(6, len(source)))])
    for i, layer in enumerate((2, 11)):
      top = np.asarray(deconvnet.feature_map_activations(
          run.trained, clips, layer, run.arch)).argmax(axis=1)
      scores = []
      for x, m in zip(clips, top):
        s = np.asarray(deconvnet.sonify(run.trained, x[None], layer, [int(m)],
                                        run.arch))[0, 0]
        _, c = scipy.signal.coherence(x, s, nperseg=256)
        silent = not (np.any(x) and np.any(s))
        scores.append(0.0 if silent else np.sort(np.nan_to_num(c))[-5:].mean())
      assert coh["models"][name]["mean"][i] == pytest.approx(
          np.mean(scores), abs=1e-3), (name, layer)
  for name in ("contrastive", "supervised"):
    index = json.loads((tmp_path / f"topk_{name}" / "topk.json").read_text())
    assert set(index["layers"]) == {"2", "11"}
  page = (tmp_path / "gallery" / "atlas.html")
  assert page.is_file() and "atlas.html" in open(result["gallery"]).read()
  assert "What do its maps respond to?" in open(result["gallery"]).read()
  for name in ("contrastive", "supervised"):
    assert (tmp_path / f"dissect_{name}" / "dissect.json").is_file()
  for name in ("contrastive", "supervised"):
    index = json.loads((tmp_path / "gallery" / "atlas" / name /
                        "atlas.json").read_text())
    assert [l["layer"] for l in index["layers"]] == [2, 11]
  evo = json.loads((tmp_path / "evolution_contrastive" / "evolution.json"
                    ).read_text())
  assert evo["steps"][0] == 0 and len(evo["steps"]) >= 2
  for study in ("activity", "time_invariance"):
    result = json.loads((tmp_path / study / f"{study}.json").read_text())
    assert set(result["models"]) == {"contrastive", "supervised"}
