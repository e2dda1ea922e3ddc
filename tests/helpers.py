"""Shared test helpers: strict JSON reading, JSON compared to rounding, a
headless Chromium driver.

(Imported by test modules as ``helpers``: pytest puts ``tests/`` on the path.)
"""
import contextlib
import json
import os
import shutil
import tempfile
import threading
import time

import numpy as np

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

needs_chromium = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="chromium/chromium-driver not installed (apt-get install chromium "
    "chromium-driver); CI installs them")


def strict_load(path):
  """json.load that refuses NaN/Infinity (what strict parsers do)."""
  def refuse(name):
    raise ValueError(f"{path}: non-strict constant {name}")
  with open(path) as f:
    return json.load(f, parse_constant=refuse)


@contextlib.contextmanager
def headless_chromium(*extra_flags):
  """A selenium driver on Debian's headless chromium that keeps the
  browser console log; offline (no background networking)."""
  webdriver = pytest.importorskip("selenium.webdriver")
  from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  profile = tempfile.mkdtemp(prefix="test-chromium-")
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for flag in ("--headless", "--no-sandbox", "--disable-gpu",
               "--disable-quic", "--no-first-run",
               "--disable-background-networking",
               "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}",
               *extra_flags):
    options.add_argument(flag)
  options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  try:
    yield driver
  finally:
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def read_png(path, min_size=(100, 100)):
  """The PNG at ``path`` read back as ``[height, width, 3]`` uint8: it must
  decode as a PNG of at least ``min_size`` (width, height) pixels holding a
  drawing (many colours), not an empty or one-colour canvas."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as image:
    assert image.format == "PNG", f"{path}: {image.format}, not a PNG"
    rgb = np.asarray(image.convert("RGB"))
  height, width = rgb.shape[:2]
  assert width >= min_size[0] and height >= min_size[1], (
      f"{path}: {width}x{height} pixels")
  colours = len(np.unique(rgb.reshape(-1, 3), axis=0))
  assert colours > 16, f"{path}: {colours} colours: nothing drawn"
  return rgb


def record_figures(monkeypatch):
  """Records what every ``plotting.save_figure`` call drew, by file name:
  per axes, its title, its lines' ``(x, y)``, its horizontal lines' levels
  and its meshes' / images' arrays (the data, read off the figure itself)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from sonify_jax import plotting  # pylint: disable=g-import-not-at-top
  drawn = {}
  real = plotting.save_figure

  def save(fig, path):
    axes = []
    for ax in fig.axes:
      level = ax.get_yaxis_transform()   # axhline's: x across the axes
      lines = [l for l in ax.get_lines() if l.get_transform() != level]
      axes.append({
          "title": ax.get_title(),
          "lines": [(np.asarray(l.get_xdata(), float),
                     np.asarray(l.get_ydata(), float)) for l in lines],
          "levels": [float(l.get_ydata()[0]) for l in ax.get_lines()
                     if l.get_transform() == level],
          "arrays": [np.asarray(c.get_array()) for c in ax.collections
                     if c.get_array() is not None] +
                    [np.asarray(i.get_array()) for i in ax.images]})
    drawn[os.path.basename(path)] = axes
    return real(fig, path)
  monkeypatch.setattr(plotting, "save_figure", save)
  return drawn


def wait_together(procs, timeout_s):
  """Waits for processes started together (e.g. the processes of one
  jax.distributed job); polls, so that one that fails ends the wait at once
  instead of leaving its partners blocked in a collective until the timeout.
  Kills whatever is left on a failure, a timeout or an interrupt."""
  deadline = time.time() + timeout_s
  try:
    while time.time() < deadline:
      codes = [proc.poll() for proc in procs]
      if all(c is not None for c in codes) or any(c for c in codes):
        break
      time.sleep(0.2)
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()


def assert_json_close(a, b, rel, abs_, path=""):
  """``a`` and ``b`` (parsed JSON) have the same structure, strings and
  integers, and their numbers where either is a float agree to ``rel`` /
  ``abs_`` (pytest.approx); the path of the first difference is reported."""
  if isinstance(a, dict):
    assert isinstance(b, dict) and a.keys() == b.keys(), path
    for k in a:
      assert_json_close(a[k], b[k], rel, abs_, f"{path}/{k}")
  elif isinstance(a, list):
    assert isinstance(b, list) and len(a) == len(b), path
    for i, (x, y) in enumerate(zip(a, b)):
      assert_json_close(x, y, rel, abs_, f"{path}[{i}]")
  elif isinstance(a, float) or isinstance(b, float):
    assert a == pytest.approx(b, rel=rel, abs=abs_), path
  else:
    assert a == b, path


def as_processes(monkeypatch, count, body):
  """``body(share)`` in ``count`` threads, as the processes of one job.

  Their collective is a barrier: what each passes to ``process_allgather``
  is stacked in process order, as JAX's does. Returns each thread's result.
  """
  from sonify_jax.analysis.core import shares  # pylint: disable=g-import-not-at-top
  barrier = threading.Barrier(count)
  slots = [None] * count
  local = threading.local()

  def allgather(array):
    slots[local.index] = np.array(array)
    barrier.wait()
    stacked = np.stack(slots)
    barrier.wait()
    return stacked

  monkeypatch.setattr(shares, "_allgather", allgather)
  results, errors = [None] * count, []

  def run(index):
    local.index = index
    try:
      results[index] = body(shares.Share(index, count))
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)
      barrier.abort()

  threads = [threading.Thread(target=run, args=(i,), name=f"process-{i}")
             for i in range(count)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(600)
  assert not errors, errors
  return results
