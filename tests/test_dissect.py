"""Dissection (``--study=dissect``) against planted answers.

* Convs planted as Hann-windowed cosines at 300, 700 and 1500 Hz: each map's
  tone tuning curve peaks at the probe f0 nearest its frequency, and each is
  a detector labelled with that frequency (a tone or noise band on it, or a
  complex with a harmonic on it); a map holding the rectified waveform's
  peak over a click's mask is labelled a click detector: clicks are the
  probes' sharpest peaks at equal RMS.
* The probe set: every concept sounds in its repeats at the same RMS, and a
  concept's time mask is where it sounds.
* CREPE tiny's head, read by its tuning (which harmonic complex each bin
  scores highest): the preferred f0 rises with the bin (Spearman >= 0.99)
  and sits within 25 cents of f_b (median); its untrained init does not.
* Recorded probes (``--probe=DIR``, notes.tsv as make_pitched_audio.py
  writes it): one note played two ways is one concept at its
  equal-tempered f0, a sub-folder without f0s is a concept of its own, and
  each planted map's note tuning curve peaks at the note nearest its
  frequency.
* The two methods agree where the answer is planted: each tuned conv
  (labelled by dissection with a tone's f0 or a noise band) is visualised
  (explain_layer) within a semitone of it or inside the band (pyin); paired
  with another map's visualization, none agrees.
* The command writes strict JSON and the figure, reads no data, and
  equals the API (with --probe) on the run it loads; a --probe that is not
  a folder is one error line before anything is
  written.
"""
import json
import os

import jax
import numpy as np
import pytest

import cli_harness
from sonify_jax import audio_io
from sonify_jax.analysis.core import common, controls, probes
from sonify_jax.analysis.studies import dissect
from sonify_jax.models.network import Conv, MaxPool, Network, ReLU

RATE = 8000
TAPS = 128
PLANTED_HZ = (300.0, 700.0, 1500.0)


def _planted():
  """Three tuned convs, and the rectified waveform's running maximum over
  4 ms (an identity tap, ReLU, a stride-1 max-pool): a click's peak held
  over its mask, well above any tone's at the same RMS."""
  t = np.arange(TAPS) / RATE
  kernels = [np.hanning(TAPS) * np.cos(2 * np.pi * f * t) for f in PLANTED_HZ]
  identity = np.zeros(TAPS)
  identity[TAPS // 2] = 1.0
  kernel = np.stack(kernels + [identity], axis=1)[:, None, :]
  hold = 2 * int(probes.CLICK_HALF_WIDTH_S * RATE) + 1
  net = Network("planted", ((Conv("c1", 4, TAPS), ReLU(),
                             MaxPool(hold, 1)),), RATE)
  params = {"c1": {"kernel": kernel.astype(np.float32),
                   "bias": np.zeros(4, np.float32)}}
  return net, params


def test_probe_concepts_sound_where_their_masks_say():
  probe = probes.generate(RATE, 0.5, draw=1)
  counts = np.bincount(probe.concept, minlength=len(probe.concepts))
  assert np.all(counts == probes.REPEATS)
  for audio, present in zip(probe.audio, probe.present):
    assert np.sqrt(np.mean(audio[present] ** 2)) == pytest.approx(
        probes.RMS, rel=1e-4)
    assert np.abs(audio[~present]).max() < 1e-3 * probes.RMS * 10


@pytest.fixture(scope="module")
def planted_result(tmp_path_factory):
  net, params = _planted()
  run = controls.RunParams(params, common.random_params(net, 1), net)
  out = str(tmp_path_factory.mktemp("dissect"))
  return dissect.run_dissect(run, out, draws=2), out


def test_planted_tones_and_clicks_are_labelled(planted_result):
  result, out = planted_result
  maps = result["layers"]["1"]["trained"]["maps"]
  grid = np.array(result["f0_grid"])
  for m, hz in enumerate(PLANTED_HZ):
    curve = np.array(maps[m]["tone_curve"])
    nearest = grid[np.argmin(np.abs(np.log(grid / hz)))]
    assert grid[curve.argmax()] == nearest, (hz, maps[m]["label"])
    # labelled with its frequency: a tone or band within a grid step, or a
    # complex with a harmonic on it
    kind, value = maps[m]["label"].split()[:2]
    value = float(value)
    near = abs(np.log(value / hz)) < np.log(grid[1] / grid[0])
    if kind == "complex":
      near = any(abs(np.log(k * value / hz)) < 0.1 for k in range(1, 20))
    assert maps[m]["detector"] and kind in ("tone", "complex", "noise") and (
        near), (hz, maps[m]["label"])
  assert maps[3]["label"] == "click" and maps[3]["detector"], maps[3]
  with open(os.path.join(out, "dissect.json")) as f:
    json.load(f, parse_constant=lambda c: pytest.fail(f"non-strict {c}"))
  assert os.path.getsize(os.path.join(out, result["figure"])) > 1000


NOTES = {57: 220.0, 65: 349.23, 77: 698.46, 86: 1174.66}


def _probe_folder(root):
  """Each note as two 'instruments' (two envelopes, f0 a few cents off in
  notes.tsv), and a hiss/ sub-folder of noise with no f0."""
  t = np.arange(int(0.8 * RATE)) / RATE
  rows = ["file\tinstrument\tmidi_note\tf0_hz"]
  for name, env in (("pluck", np.exp(-4 * t)), ("flute", np.minimum(
      1, t / 0.05))):
    os.makedirs(os.path.join(root, name))
    for midi, hz in NOTES.items():
      wave = np.zeros(len(t) + RATE // 10)   # 0.1 s of silence first
      wave[RATE // 10:] = 0.3 * env * np.sin(2 * np.pi * hz * t)
      rel = f"{name}/{name}_{midi}.wav"
      audio_io.write_wav(os.path.join(root, rel), wave, RATE)
      rows.append(f"{rel}\t{name}\t{midi}\t{hz * 2 ** (3 / 1200):.3f}")
  os.makedirs(os.path.join(root, "hiss"))
  audio_io.write_wav(os.path.join(root, "hiss", "hiss.wav"), 0.1 * np.random.default_rng(0).standard_normal(RATE), RATE)
  with open(os.path.join(root, probes.NOTES_FILE), "w") as f:
    f.write("\n".join(rows) + "\n")
  return str(root)


def test_recorded_probes_label_notes_by_their_f0(tmp_path):
  folder = _probe_folder(tmp_path / "probe")
  recorded = probes.from_folder(folder, RATE, 0.5)
  notes = recorded.of_kind("note")
  assert [recorded.concepts[k][1] for k in notes] == pytest.approx(
      sorted(NOTES.values()), abs=0.01)
  assert np.all(np.bincount(recorded.concept)[notes] == 2)
  assert recorded.kinds() == probes.KINDS + ("hiss", "note")
  lead = int(probes.ONSET_LEAD_S * RATE)
  for audio, present, k in zip(recorded.audio, recorded.present,
                               recorded.concept):
    # each clip starts just before its onset: silence there, sound after
    if k in notes:
      assert not present[:lead - RATE // 200].any() and present[lead + RATE // 100:RATE // 10].all()
    assert np.sqrt(np.mean(audio[present] ** 2)) == pytest.approx(
        probes.RMS, rel=1e-4)
  net, params = _planted()
  run = controls.RunParams(params, common.random_params(net, 1), net)
  result = dissect.run_dissect(run, str(tmp_path / "out"), draws=1,
                               probe_dir=folder)
  maps = result["layers"]["1"]["trained"]["maps"]
  grid = np.array(result["note_grid"])
  for m, hz in enumerate(PLANTED_HZ):
    nearest = grid[np.argmin(np.abs(np.log(grid / hz)))]
    assert grid[np.argmax(maps[m]["note_curve"])] == nearest, hz
  assert set(result["layers"]["1"]["trained"]["detectors"]) == set(
      probes.KINDS + ("hiss", "note"))


def test_dissection_and_visualization_agree_on_planted_tones(tmp_path):
  from sonify_jax.analysis.core import explain  # pylint: disable=g-import-not-at-top
  net, params = _planted()
  result = explain.explain_layer(params, common.random_params(net, 1), net,
                                 1, str(tmp_path), steps=32)
  trained = result["agreement"]["trained"]
  assert trained["labelled"] == len(PLANTED_HZ), result["maps"]
  assert trained["agreeing_maps"] == list(range(len(PLANTED_HZ)))
  for m, hz in enumerate(PLANTED_HZ):
    assert abs(np.log2(result["maps"][m]["trained"]["visualization_f0"]
                       / hz)) < 1 / 12
  probe = probes.generate(RATE, dissect.SECONDS, draw=0)
  labels = dissect.dissect_maps(dissect.activations(
      params, net, 1, probe.audio), dissect.position_centres(
          net, 1, probe.audio.shape[1]), probe)
  f0s = np.array([m["trained"]["visualization_f0"] or np.nan
                  for m in result["maps"]])
  assert explain.f0_agreement(labels, probe, f0s)["agree"] == 3
  shuffled = explain.f0_agreement(labels, probe, np.roll(f0s[:3], 1))
  assert shuffled["labelled"] == 3 and shuffled["agree"] == 0


@pytest.mark.slow   # ~15 s; the planted tuned convs above are the fast path
def test_crepe_head_bins_prefer_their_own_f0(zoo):
  from sonify_jax.importers import run_dir  # pylint: disable=g-import-not-at-top
  from sonify_jax.models import encoder, pitch_track  # pylint: disable=g-import-not-at-top
  imported = zoo.imported("crepe-tiny")
  net = imported.net
  hz = pitch_track.bin_hz(net)
  f0s = np.geomspace(50, 1000, 4 * 12 * 4 + 1)   # quarter semitones
  inside = (hz > 55) & (hz < 950)
  trained = dissect.bin_agreement(dissect.head_tuning(
      {**imported.params, **imported.head_params}, net, f0s), hz, inside)
  assert trained["spearman"] >= 0.99 and trained["median_cents"] < 25, (
      trained)
  untrained = {**jax.tree.map(np.asarray, encoder.init_params(net, 0)),
               **run_dir._random_head(imported, 0)}  # pylint: disable=protected-access
  control = dissect.bin_agreement(dissect.head_tuning(untrained, net, f0s),
                                  hz, inside)
  assert control["spearman"] < 0.5 and control["median_cents"] > 100, control


@pytest.fixture(scope="module")
def workers():
  with cli_harness.worker_pool() as get:
    yield get


def test_command_reads_no_data(workers, tmp_path):
  from sonify_jax.importers import Imported, run_dir  # pylint: disable=g-import-not-at-top
  from sonify_jax.models import encoder, registry  # pylint: disable=g-import-not-at-top
  net = registry.get_network("cnn12_tiny")
  run = run_dir.write(Imported(net, jax.tree.map(
      np.asarray, encoder.init_params(net, 2)), None, {"source": "t"}),
                      str(tmp_path / "run"))
  out = str(tmp_path / "out")
  folder = _probe_folder(tmp_path / "probe")
  result = workers("sonify_jax.analysis.run").run(
      "--study=dissect", f"--checkpoint={run}", "--layers=2",
      f"--probe={folder}", f"--workdir={out}")
  assert result.code == 0, result.stderr[-2000:]
  assert "layer 2:" in result.stdout
  data = json.load(open(os.path.join(out, "dissect.json")))
  assert set(data["layers"]) == {"2"}
  assert len(data["layers"]["2"]["trained"]["maps"]) == net.channels[1]
  # the command is the API on the run it loads
  api = json.loads(json.dumps(dissect.run_dissect(
      controls.load_run(run), str(tmp_path / "api"), layers=[2],
      probe_dir=folder)))
  assert data["layers"] == api["layers"]
  assert data["concepts"] == api["concepts"] and "note 698 Hz" in api[
      "concepts"]
  bad = workers("sonify_jax.analysis.run").run(
      "--study=dissect", f"--checkpoint={run}", "--max_clips=3",
      f"--workdir={tmp_path / 'bad'}")
  cli_harness.assert_one_error(bad, "--max_clips")
  missing = workers("sonify_jax.analysis.run").run(
      "--study=dissect", f"--checkpoint={run}",
      f"--probe={tmp_path / 'nowhere'}", f"--workdir={tmp_path / 'bad'}")
  cli_harness.assert_one_error(missing, "--probe")
  assert not os.path.exists(tmp_path / "bad")
