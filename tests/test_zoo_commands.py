"""Every command the README shows runs on the zoo's networks (issue 30).

``scripts/zoo_commands.py`` on CREPE tiny and FCN-993 (converted from the
wheels the test extra installs) and a folder of generated harmonic tones:
convert, track, sonify, visualize (a block's maps and the head's bins),
every study, the gallery and aggregate all exit 0, and the outputs each
command promises are there. Minutes on 2 cores: ``-m slow``.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from sonify_jax import audio_io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.slow


def test_every_readme_command_on_crepe_and_fcn(zoo, tmp_path):
  names = ("crepe-tiny", "fcn-993")
  runs = {os.path.dirname(zoo.run_dir(n)) for n in names}
  assert len(runs) == 1
  audio = tmp_path / "tones"
  audio.mkdir()
  for f0 in (196.0, 262.0, 330.0, 440.0):
    t = np.arange(8000) / 16000
    wave = sum((0.4 / k) * np.sin(2 * np.pi * k * f0 * t) for k in (1, 2, 3))
    audio_io.write_wav(str(audio / f"tone{int(f0)}.wav"), wave, 16000)
  out = tmp_path / "out"
  proc = subprocess.run(
      [sys.executable, "scripts/zoo_commands.py", f"--runs={runs.pop()}",
       f"--audio_dir={audio}", f"--out={out}", f"--names={','.join(names)}"],
      cwd=REPO, capture_output=True, text=True, check=False, timeout=1800,
      env=dict(os.environ, PYTHONPATH=REPO))
  assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
  rows = [l for l in proc.stdout.splitlines() if l.startswith("| ")]
  assert len(rows) == 2 and all(r.endswith("| none |") for r in rows)
  for name in names:
    base = out / name
    for rel in ("f0.csv", "sonify", "visualize/visualize.json",
                "bins/visualize.json", "topk/topk.json",
                "residual/residual.json", "coherence/coherence.json",
                "sanity/sanity.json", "pitch/pitch.json",
                "dissect/dissect.json", "atlas/atlas.json",
                "gallery/index.html", "aggregate/aggregate_coherence.json"):
      assert (base / rel).exists(), f"{name}: {rel}"
