"""The Colab notebook runs end to end on CPU (nbclient, a real kernel), trains
the demo model for a few steps, and plays the sonifications of the trained
encoder's strongest maps."""
import base64
import io
import os
import re

import numpy as np
import pytest

from sonify_jax import deconvnet
from sonify_jax.data import catalog
from sonify_jax.models import get_network
from sonify_jax.train import checkpoints

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "sonify_colab.ipynb")


def _outputs(nb, mime):
  for cell in nb.cells:
    for out in cell.get("outputs", []):
      data = out.get("data", {})
      if mime in data:
        yield data[mime]


def _wav(html):
  import soundfile  # pylint: disable=g-import-not-at-top
  encoded = re.search(r"base64,([A-Za-z0-9+/=]+)", html).group(1)
  audio, rate = soundfile.read(io.BytesIO(base64.b64decode(encoded)),
                               dtype="float32")
  return audio, rate


# ~30 s on 2 cores: the notebook's cells call the API the fast tests check
# (train, sonify, the sonify command); this proves the notebook file runs.
@pytest.mark.slow
def test_colab_notebook_runs_and_plays_the_sonifications(tmp_path,
                                                         monkeypatch):
  workdir = str(tmp_path / "run")
  monkeypatch.setenv("SONIFY_NB_STEPS", "2")
  monkeypatch.setenv("SONIFY_NB_SMOKE", "1")
  monkeypatch.setenv("SONIFY_NB_WORKDIR", workdir)
  # One CPU device in the kernel (as in Colab): compiles far faster than the
  # 8 virtual devices conftest.py gives this process.
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
  monkeypatch.setenv("PYTHONPATH",
                     REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}
                          ).execute()

  # It trained here, and the encoder it listened to is that run's.
  assert checkpoints.available_steps(workdir)[-1] == 2
  params, arch_name = checkpoints.load_encoder(workdir)
  arch = get_network(arch_name)
  clip = catalog.get_source("embedded", "validation")[0]["audio"][:16000]
  x = np.pad(clip, (0, 16000 - len(clip)))[None].astype(np.float32)
  layer, num_maps = 6, 3
  strength = np.asarray(deconvnet.feature_map_activations(params, x, layer,
                                                          arch))[0]
  maps = np.argsort(-strength)[:num_maps]
  want = np.asarray(deconvnet.sonify(params, x, layer, maps, arch))[0]

  players = [h for h in _outputs(nb, "text/html") if "<audio" in h]
  assert len(players) == 1 + num_maps
  heard = [_wav(h) for h in players]
  assert all(rate == 8000 for _, rate in heard)
  # IPython.display.Audio normalises each clip to full scale (16-bit).
  for (audio, _), expected in zip(heard, [x[0], *want]):
    expected = expected / np.abs(expected).max()
    np.testing.assert_allclose(audio, expected, atol=2.0 / 32768)
  assert list(_outputs(nb, "image/png")), "no spectrogram figure"
