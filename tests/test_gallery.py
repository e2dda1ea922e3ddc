"""Listening gallery: static offline checks, and a real headless Chromium
(selenium + Debian's chromium/chromium-driver; test-only dependency
``selenium``) that loads the page and checks audio, images and console."""
import os
import re
import time

import numpy as np
import pytest
import soundfile

import helpers
from sonify_jax.analysis.core import common
from sonify_jax.analysis.core import controls
from sonify_jax.analysis.studies import dissect
from sonify_jax.analysis.studies import evolution
from sonify_jax.analysis.pages import gallery
from sonify_jax.analysis.studies import topk
from sonify_jax.data.sources import ArraySource
from sonify_jax.models.registry import CNN12_TINY

ARCH = CNN12_TINY


@pytest.fixture(scope="module")
def page(tmp_path_factory):
  root = tmp_path_factory.mktemp("gallery")
  rng = np.random.default_rng(0)
  # Two clip lengths, so the audio durations differ between clips.
  source = ArraySource([0.3 * rng.standard_normal(n).astype(np.float32)
                        for n in (800, 800, 1200, 1200, 800)], [0] * 5, 1,
                       ids=[f"c {i}&x" for i in range(5)])  # needs escaping
  dirs = {}
  # The contrastive model has an untrained init (its control), the other
  # not: 4 and 3 sonification WAVs per shown clip.
  for name, seed, figures, untrained in (
      ("contrastive", 1, True, common.random_params(ARCH, 11)),
      ("supervised run", 2, False, None)):
    out = str(root / f"topk_{seed}")
    topk.run_topk(common.random_params(ARCH, seed), ARCH, source, out,
                  layers=[1, 2], k=2, max_maps=2, batch_size=4,
                  figure_maps=0, pair_figures=figures, model_name=name,
                  progress=False, untrained=untrained,
                  shared_clips=SHARED_CLIPS)
    dirs[name] = out
  evo = str(root / "evolution")
  evolution.run_evolution([(0, common.random_params(ARCH, 11)),
                           (5, common.random_params(ARCH, 1))], ARCH, source,
                          evo, layers=(1,), maps_per_layer=1, batch_size=4,
                          progress=False)
  figure = str(sorted((root / "topk_1").glob("layer01/*.png"))[0])
  dissected = str(root / "dissect")
  dissect.run_dissect(controls.RunParams(common.random_params(ARCH, 1),
                                         common.random_params(ARCH, 11),
                                         ARCH), dissected, layers=(1,),
                      draws=2, model_name="contrastive")
  path = gallery.write_gallery(str(root / "site"), dirs, max_ranks=2,
                               figures={"a study figure": figure},
                               evolution={"contrastive": evo},
                               dissect={"contrastive": dissected})
  return path


SHARED_CLIPS = (0, 3)
# Per model: 2 layers x (2 maps x 2 ranks + 2 shared clips) shown clips,
# each one image and input + sonification + controls; plus the study
# figure, the dissection figure, and the evolution figure with its input
# and 2 steps.
SHOWN = 2 * (2 * 2 + len(SHARED_CLIPS))
NUM_IMAGES = 2 * SHOWN + 1 + 1 + 1
NUM_WAVS = SHOWN * 4 + SHOWN * 3 + 3


def test_page_is_self_contained(page):
  text = open(page, encoding="utf-8").read()
  site = os.path.dirname(page)
  assert not re.search(r"(?:src|href)=\"(?:https?:)?//", text)
  assert "<script src" not in text and "stylesheet" not in text
  srcs = re.findall(r'src="([^"]+)"', text)
  assert len([s for s in srcs if s.endswith(".png")]) == NUM_IMAGES
  assert len([s for s in srcs if s.endswith(".wav")]) == NUM_WAVS
  # Every claim has its controls beside it, and the page says what to
  # compare; figures open full size.
  assert "untrained init (step 0) [control]" in text
  assert "random live map [control]" in text
  assert "What to compare." in text
  # the dissection's verdict beside its figure
  assert "What do its maps respond to?" in text
  assert re.search(r"layer 1: [\d.]+ of 4 maps detect a probe concept", text)
  assert text.count('target="_blank"') == NUM_IMAGES
  # Same-clip rows hold the same clip in every model's cell.
  for layer in (1, 2):
    section = text.split(f'id="layer{layer}"')[1].split("Strongest maps")[0]
    for ci in SHARED_CLIPS:
      assert section.count(f"clip c {ci}&amp;x ") == 2
  for s in srcs:
    assert os.path.isfile(os.path.join(site, s.replace("%20", " ")))
  assert "c 0&amp;x" in text or "c 1&amp;x" in text
  with pytest.raises(FileNotFoundError, match="topk.json"):
    gallery.write_gallery(os.path.join(site, "x"), {"a": site})


@helpers.needs_chromium
def test_page_in_headless_chromium(page):
  with helpers.headless_chromium(
      "--autoplay-policy=no-user-gesture-required") as driver:
    driver.get("file://" + os.path.abspath(page))
    deadline = time.time() + 30
    state = None
    while time.time() < deadline:
      state = driver.execute_script("""
        var a = Array.from(document.querySelectorAll('audio'));
        var i = Array.from(document.querySelectorAll('img'));
        a.forEach(function(x){ if (x.readyState < 1) { x.load(); } });
        return {audio: a.map(function(x){ return {
                  src: x.getAttribute('src'), ready: x.readyState,
                  duration: x.duration, error: x.error ? x.error.code : null,
                  network: x.networkState,
                  canplay: x.canPlayType('audio/wav')}; }),
                images: i.map(function(x){ return {
                  src: x.getAttribute('src'), complete: x.complete,
                  width: x.naturalWidth}; })};""")
      if (all(a["ready"] >= 1 for a in state["audio"]) and
          all(i["complete"] for i in state["images"])):
        break
      time.sleep(0.3)
    site = os.path.dirname(page)
    assert len(state["audio"]) == NUM_WAVS
    assert len(state["images"]) == NUM_IMAGES
    for a in state["audio"]:
      assert a["error"] is None and a["canplay"] != "", a
      assert a["ready"] >= 1, a  # HAVE_METADATA: the source is playable
      info = soundfile.info(os.path.join(site, a["src"].replace("%20", " ")))
      assert a["duration"] == pytest.approx(info.frames / info.samplerate,
                                            abs=2e-3), a
    for i in state["images"]:
      assert i["complete"] and i["width"] > 0, i
    # The layer selector works (the page's script ran without throwing).
    driver.execute_script("""var s = document.getElementById('layer-select');
      s.value = '2'; s.dispatchEvent(new Event('change'));""")
    hidden = driver.execute_script(
        "return document.querySelector('#layer1').classList.contains("
        "'hidden');")
    assert hidden
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
