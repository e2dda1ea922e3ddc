"""Shared test helpers: strict JSON reading, a headless Chromium driver.

(Imported by test modules as ``helpers``: pytest puts ``tests/`` on the path.)
"""
import contextlib
import json
import os
import shutil
import tempfile

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
