"""Atlas browser page: a synthetic full-size CNN12 atlas (6,016 maps, 30,080
sonifications) pointing at a handful of real files, checked statically and
in a real headless Chromium (selenium + Debian's chromium/chromium-driver):
it renders only what is on screen, filters by layer / live-dead /
activation / centroid as the index says, loads more rows on scroll, plays
its audio and logs no error."""
import json
import os
import re
import time

import numpy as np
import pytest
import soundfile

import helpers

from sonify_jax import atomic_io, audio_io, plotting
from sonify_jax.analysis.studies import atlas
from sonify_jax.analysis.pages import atlas_page
from sonify_jax.models.registry import CNN12

K = 5
PAGE_ROWS = 40  # rows the page renders per step (atlas_page._JS PAGE)


def _synthetic_atlas(out):
  """atlas.json of CNN12's shape with seeded random activations/centroids;
  every entry points at one of 3 real WAV/PNG pairs."""
  rng = np.random.default_rng(0)
  stems = []
  for i, n in enumerate((8000, 12000, 16000)):
    audio = 0.3 * np.sin(2 * np.pi * (300 + 500 * i) * np.arange(n) / 8000)
    stem = f"files/f{i}"
    audio_io.write_wav(os.path.join(out, stem + ".wav"), audio)
    plotting.save_spectrogram_png(
        os.path.join(out, stem + ".png"),
        plotting.to_db(plotting.power_spectrogram(audio, 8000)[2]))
    stems.append((stem, n / 8000))
  clips = {str(c): {"id": f"clip {c}", "seconds": stems[c % 3][1],
                    "wav": stems[c % 3][0] + ".wav",
                    "png": stems[c % 3][0] + ".png"} for c in range(80)}
  layers = []
  for layer, width in enumerate(CNN12.channels, start=1):
    maps = []
    for m in range(width):
      dead = bool(rng.random() < 0.05)
      acts = np.sort(rng.exponential(1.0, K))[::-1] * (not dead)
      cents = rng.uniform(50, 3900, K)
      top = []
      for r in range(K):
        stem = stems[(m + r) % 3][0]
        top.append({"rank": r, "clip": int(rng.integers(80)),
                    "activation": float(acts[r]),
                    "wav": None if dead else stem + ".wav",
                    "png": None if dead else stem + ".png",
                    "centroid_hz": None if dead else float(cents[r])})
      maps.append({"map": m, "dead": dead, "activation": float(acts[0]),
                   "centroid_hz": None if dead else float(np.median(cents)),
                   "top": top})
    layers.append({"layer": layer, "seconds": 0.0, "pairs": 0, "maps": maps})
  index = {"model": "synthetic", "arch": "cnn12", "source": "synthetic",
           "sample_rate": 8000, "k": K, "fingerprint": "0", "clips": clips,
           "layers": layers}
  atomic_io.write_json(os.path.join(out, atlas.INDEX), index)
  return index


@pytest.fixture(scope="module")
def site(tmp_path_factory):
  root = tmp_path_factory.mktemp("atlas_page")
  atlas_dir = str(root / "site" / "atlas model")  # a space to escape
  index = _synthetic_atlas(atlas_dir)
  page = atlas_page.write_atlas_page(str(root / "site"),
                                     {"big & <model>": atlas_dir})
  return page, index


def _maps(index):
  return [(l["layer"], m) for l in index["layers"] for m in l["maps"]]


def test_data_is_strict_json_with_every_map_and_existing_files(site):
  page, index = site
  site_dir = os.path.dirname(page)
  text = open(os.path.join(site_dir, "atlas_data.js")).read()
  prefix = "window.ATLAS_DATA = "
  assert text.startswith(prefix) and text.rstrip().endswith(";")

  def bad(value):
    raise ValueError(value)
  data = json.loads(text[len(prefix):].rstrip().rstrip(";"),
                    parse_constant=bad)
  (model,) = data["models"]
  assert len(model["rows"]) == sum(CNN12.channels) == 6016
  assert sum(len(r[5]) for r in model["rows"]) == 6016 * K
  from urllib.parse import unquote  # pylint: disable=g-import-not-at-top
  paths = {model["base"] + t[2] for r in model["rows"] for t in r[5] if t[2]}
  paths |= {model["base"] + c[2] for c in model["clips"].values()}
  for p in paths:
    assert os.path.isfile(os.path.join(site_dir, unquote(p))), p
  html_text = open(page).read()
  assert "big &amp; &lt;model&gt;" in html_text and "<model>" not in html_text
  assert not re.search(r"(?:src|href)=\"(?:https?:)?//", html_text)
  assert len(html_text) < 20000  # the rows are data, not HTML


@helpers.needs_chromium
def test_page_in_headless_chromium(site):
  with helpers.headless_chromium("--window-size=1200,900") as driver:
    _check_page(driver, site)


def _check_page(driver, site):
  page, index = site
  site_dir = os.path.dirname(page)
  js = driver.execute_script

  def wait_for(condition, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
      value = js(condition)
      if value:
        return value
      time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")

  def shown():
    return [tuple(x) for x in js("""
        return Array.from(document.querySelectorAll('#maps .map'))
        .map(function(e){ return [Number(e.dataset.layer),
                                  Number(e.dataset.map)]; });""")]

  def count():
    return js("return document.getElementById('count').textContent;")

  def set_filter(**values):
    for key, value in values.items():
      js("document.getElementById(arguments[0]).value = arguments[1];",
         key, str(value))
    start = time.perf_counter()
    js("window.atlasFilter();")
    return time.perf_counter() - start

  maps = _maps(index)
  start = time.perf_counter()
  driver.get("file://" + os.path.abspath(page))
  wait_for("return document.querySelectorAll('#maps .map').length > 0",
           "the first rows")
  loaded = time.perf_counter() - start
  assert count() == "6016 of 6016 maps"
  assert len(shown()) == PAGE_ROWS  # lazy: not 6,016 rows
  # Nothing is fetched before it is played: every player is preload=none.
  assert js("""return Array.from(document.querySelectorAll('audio'))
      .every(function(a){ return a.getAttribute('preload') === 'none'
                                 && a.readyState === 0; });""")

  timings = {}
  timings["layer 11"] = set_filter(**{"f-layer": 11})
  want = [(l, m["map"]) for l, m in maps if l == 11]
  assert count() == f"{len(want)} of 6016 maps"
  assert shown() == want[:PAGE_ROWS]
  timings["dead"] = set_filter(**{"f-layer": "all", "f-status": "dead"})
  want = [(l, m["map"]) for l, m in maps if m["dead"]]
  assert count() == f"{len(want)} of 6016 maps" and 0 < len(want) < 6016
  assert shown() == want[:PAGE_ROWS]
  timings["activation"] = set_filter(
      **{"f-status": "live", "f-act": 3.5})
  want = [(l, m["map"]) for l, m in maps
          if not m["dead"] and m["activation"] >= 3.5]
  assert count() == f"{len(want)} of 6016 maps" and len(want) > PAGE_ROWS
  assert shown() == want[:PAGE_ROWS]
  timings["centroid"] = set_filter(
      **{"f-act": "", "f-cmin": 1000, "f-cmax": 1200, "f-layer": 9})
  want = [(l, m["map"]) for l, m in maps if l == 9 and not m["dead"]
          and 1000 <= m["centroid_hz"] <= 1200]
  assert count() == f"{len(want)} of 6016 maps" and want
  assert shown() == want[:PAGE_ROWS]
  set_filter(**{"f-cmin": "", "f-cmax": "", "f-layer": "all",
                "f-status": "all", "f-sort": "activation"})
  acts = [index["layers"][l - 1]["maps"][m]["activation"]
          for l, m in shown()]
  assert acts == sorted(acts, reverse=True)
  assert acts[0] == max(m["activation"] for _, m in maps)

  # Scrolling to the end appends the next rows (IntersectionObserver).
  js("window.scrollTo(0, document.body.scrollHeight);")
  wait_for(f"return document.querySelectorAll('#maps .map').length >= "
           f"{2 * PAGE_ROWS}", "more rows on scroll")

  # The first row's players and spectrograms load from disk.
  js("window.scrollTo(0, 0);")
  js("""document.querySelectorAll('#maps .map')[0]
        .querySelectorAll('audio').forEach(function(a){ a.load(); });""")
  state = wait_for("""
      var row = document.querySelectorAll('#maps .map')[0];
      var a = Array.from(row.querySelectorAll('audio'));
      var i = Array.from(row.querySelectorAll('img'));
      if (!a.every(function(x){ return x.readyState >= 1; }) ||
          !i.every(function(x){ return x.complete; })) { return null; }
      return {audio: a.map(function(x){ return [x.getAttribute('src'),
                                                x.duration]; }),
              images: i.map(function(x){ return x.naturalWidth; })};""",
                   "the first row's media")
  assert len(state["audio"]) == 2 * K and len(state["images"]) == 2 * K
  from urllib.parse import unquote  # pylint: disable=g-import-not-at-top
  for src, duration in state["audio"]:
    info = soundfile.info(os.path.join(site_dir, unquote(src)))
    assert duration == pytest.approx(info.frames / info.samplerate,
                                     abs=2e-3)
  assert all(w > 0 for w in state["images"])
  errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
  assert not errors, errors
  print(f"atlas page: first rows after {loaded:.2f} s; filters " +
        ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items()))


def test_gallery_of_atlases_shows_networks_side_by_side(tmp_path):
  """``--study=gallery`` over atlas folders of two networks (two rates):
  one page, a column per network whose live / all counts per layer are the
  atlas.json's; an atlas beside a top-k folder is refused."""
  import cli_harness  # pylint: disable=g-import-not-at-top
  first = _synthetic_atlas(str(tmp_path / "a"))
  second = _synthetic_atlas(str(tmp_path / "b"))
  second["sample_rate"], second["arch"] = 16000, "other_net"
  second["layers"] = second["layers"][:3]
  for m in second["layers"][1]["maps"][:7]:
    m["dead"] = True
  atomic_io.write_json(str(tmp_path / "b" / atlas.INDEX), second)
  (tmp_path / "topk").mkdir()
  with cli_harness.worker_pool() as get:
    worker = get("sonify_jax.analysis.run")
    result = worker.run("--study=gallery", f"--workdir={tmp_path / 'site'}",
                        f"--checkpoint=one={tmp_path / 'a'},"
                        f"two={tmp_path / 'b'}")
    mixed = worker.run("--study=gallery", f"--workdir={tmp_path / 'x'}",
                       f"--checkpoint=one={tmp_path / 'a'},"
                       f"two={tmp_path / 'topk'}")
  assert result.code == 0, result.stderr
  assert mixed.code == 2 and len(mixed.error_lines()) == 1
  assert not (tmp_path / "x" / "atlas.html").exists()
  text = open(tmp_path / "site" / "atlas.html").read()
  table = re.search(r'<table class="side">(.*?)</table>', text).group(1)
  assert "<td>8000 Hz</td><td>16000 Hz</td>" in table
  for layer in range(1, len(first["layers"]) + 1):
    cells = []
    for index in (first, second):
      if layer > len(index["layers"]):
        cells.append("<td>&ndash;</td>")
        continue
      maps = index["layers"][layer - 1]["maps"]
      live = sum(not m["dead"] for m in maps)
      cells.append(f"<td>{live} / {len(maps)}</td>")
    assert (f"<tr><th>layer {layer}: live / all maps</th>"
            + "".join(cells) + "</tr>") in table
