"""``--study=atlas --explain``: each map's visualization, survival under
re-initialisation and dissection, beside its top clips (issue 29 item 3).

The atlas study and the API compute the same things: the layer's
``explain.json`` holds, per map, the WAV of ``visualize()`` with the same key
and settings, the similarity of the trained and untrained visualizations by
``visualize.compare``, and the labels ``dissect.dissect_maps`` gives on the
same probes. The page shows each map's explain box (visualization, label,
survival, tuning curve) in headless Chromium.
"""
import json
import os

import helpers
import jax
import numpy as np
import pytest
import soundfile

import cli_harness
from sonify_jax.analysis.core import explain, probes
from sonify_jax.analysis.studies import dissect
from sonify_jax.importers import Imported, run_dir
from sonify_jax.models import encoder, registry
from sonify_jax.visualize import Settings, compare, visualize

# ~20 s on 2 cores (an atlas with --explain through the command); the API
# pieces it composes (visualize, compare, dissect_maps) are tested fast.
pytestmark = pytest.mark.slow

LAYERS = (2,)


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
  root = tmp_path_factory.mktemp("explain")
  net = registry.get_network("cnn12_tiny")
  params = jax.tree.map(np.asarray, encoder.init_params(net, 5))
  run = run_dir.write(Imported(net, params, None, {"source": "t"}),
                      str(root / "run"))
  audio = root / "audio"
  audio.mkdir()
  t = np.arange(4000) / net.sample_rate
  for i, f in enumerate((220.0, 440.0, 1000.0)):
    soundfile.write(str(audio / f"tone{i}.wav"),
                    (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32),
                    net.sample_rate)
  out = str(root / "atlas")
  with cli_harness.worker_pool() as get:
    result = get("sonify_jax.analysis.run").run(
        "--study=atlas", f"--checkpoint={run}", f"--audio_dir={audio}",
        "--layers=" + ",".join(map(str, LAYERS)), "--k=2", "--explain",
        f"--workdir={out}")
  assert result.code == 0, result.stderr[-3000:]
  untrained = jax.tree.map(np.asarray, encoder.init_params(net, 0))
  return out, net, params, untrained


def test_explain_equals_the_api(atlas):
  out, net, params, untrained = atlas
  for layer in LAYERS:
    with open(os.path.join(out, f"layer{layer:02d}", explain.EXPLAIN)) as f:
      got = json.load(f)
    maps = list(range(net.channels[layer - 1]))
    settings = Settings(steps=explain.STEPS)
    key = jax.random.PRNGKey(0)
    ours = visualize(params, net, layer, maps, key, seconds=explain.SECONDS,
                     settings=settings)
    theirs = visualize(untrained, net, layer, maps, key,
                       seconds=explain.SECONDS, settings=settings)
    survives = compare.similarities(ours.waveforms, theirs.waveforms,
                                    net.sample_rate)
    probe = probes.generate(net.sample_rate, dissect.SECONDS, draw=0)
    labels = dissect.dissect_maps(
        dissect.activations(params, net, layer, probe.audio),
        dissect.position_centres(net, layer, probe.audio.shape[1]), probe)
    assert [e["map"] for e in got["maps"]] == maps
    for e in got["maps"]:
      m = e["map"]
      wav, rate = soundfile.read(os.path.join(out, f"layer{layer:02d}",
                                              e["wav"]))
      assert rate == net.sample_rate
      np.testing.assert_allclose(wav, ours.waveforms[m], atol=2 / 32768)
      assert e["survives"]["max_abs_xcorr"] == pytest.approx(
          survives["max_abs_xcorr"][m], abs=1e-6)
      assert e["trained"]["label"] == dissect.label_of(
          probe, int(labels["best"][m]))
      assert e["trained"]["detector"] == bool(labels["detector"][m])


@helpers.needs_chromium
def test_page_shows_each_maps_explanation(atlas):
  out, net, _, _ = atlas
  page = os.path.join(out, "atlas.html")
  with helpers.headless_chromium("--window-size=1200,900") as driver:
    driver.get("file://" + page)
    import time  # pylint: disable=g-import-not-at-top
    deadline = time.time() + 60
    while time.time() < deadline and not driver.execute_script(
        "return document.querySelectorAll('#maps .map').length"):
      time.sleep(0.05)
    boxes = driver.execute_script("""
        return Array.from(document.querySelectorAll('#maps .map')).map(
          function(m){ var e = m.querySelector('.explain');
            return e ? [e.textContent, !!e.querySelector('audio'),
                        !!e.querySelector('svg polyline')] : null; });""")
  want = sum(net.channels[l - 1] for l in LAYERS)
  assert len(boxes) == want
  for text, has_audio, has_curve in boxes:
    assert "visualization" in text and "survives re-init" in text
    assert has_audio and has_curve
