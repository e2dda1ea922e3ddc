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
  for kind in coh["models"].values():
    assert all(0.0 <= m <= 1.0 for m in kind["mean"])
  for name in ("contrastive", "supervised"):
    index = json.loads((tmp_path / f"topk_{name}" / "topk.json").read_text())
    assert set(index["layers"]) == {"2", "11"}
  page = (tmp_path / "gallery" / "atlas.html")
  assert page.is_file() and "atlas.html" in open(result["gallery"]).read()
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
