"""Studies over several processes give what one process gives (issue 31).

Each study below runs as 3 simulated processes (``helpers.as_processes``:
threads whose allgather is a barrier) on clips of several lengths, and as
one process; every process must return the single process's result (to
float32 rounding: a process batches other clips). What each process computed
is counted, so a study that ran everything everywhere fails too:

* time invariance: forwards and sonifications of the process's own clips;
* layer importance: the features of its own clips, in clip order after the
  exchange (a swapped order would pair features with other clips' labels);
* residual: its own clips' scores;
* dissect: its own probe clips' activations;
* top-k: its own clips streamed and their entries' files written (every
  entry's files exist, by whichever process owns the clip; only the chief
  writes the index);
* evolution: the top-k stream and the pairs of its own clips.

The real two-process runs (``jax.distributed``, the command line) are in
tests/test_multihost_atlas.py (``-m slow``).
"""
import json
import os

import helpers
import numpy as np
import pytest

from sonify_jax.analysis.core import common, shares
from sonify_jax.analysis.studies import dissect, evolution, layer_importance
from sonify_jax.analysis.studies import residual, time_invariance, topk
from sonify_jax.data.sources import ArraySource
from sonify_jax.models.registry import CNN12_TINY

ARCH = CNN12_TINY
PROCESSES = 3


@pytest.fixture(scope="module")
def params():
  return common.random_params(ARCH, seed=0)


def _source(lengths=(400, 400, 520, 400, 520, 400, 640)):
  rng = np.random.default_rng(0)
  audios = [0.3 * rng.standard_normal(t).astype(np.float32) for t in lengths]
  return ArraySource(audios, [i % 3 for i in range(len(audios))], 3)


def _reads(monkeypatch, source):
  """Records which clips each simulated process reads from ``source``."""
  import threading  # pylint: disable=g-import-not-at-top
  read = {}
  original = type(source).__getitem__

  def getitem(self, i):
    if self is source:
      process = int(threading.current_thread().name.rsplit("-", 1)[-1])
      read.setdefault(process, []).append(int(i))
    return original(self, i)
  monkeypatch.setattr(type(source), "__getitem__", getitem)
  return read


def _counting(monkeypatch, module, name):
  """Wraps ``module.name`` to record per thread how many rows it got."""
  import threading  # pylint: disable=g-import-not-at-top
  calls = {}
  original = getattr(module, name)

  def counted(params, audio, *args, **kwargs):
    key = threading.current_thread().name
    calls[key] = calls.get(key, 0) + len(audio)
    return original(params, audio, *args, **kwargs)
  monkeypatch.setattr(module, name, counted)
  return calls


def _assert_close(ours, ref):
  helpers.assert_json_close(json.loads(json.dumps(ours)),
                            json.loads(json.dumps(ref)), rel=1e-4, abs_=1e-6)


def test_time_invariance(monkeypatch, params):
  clips = np.stack([0.3 * np.random.default_rng(i).standard_normal(1200)
                    for i in range(5)]).astype(np.float32)

  def measure(share):
    return time_invariance.measure_time_invariance(
        params, ARCH, clips, 900, (2, 3), 300, seed=1, batch_size=2,
        share=share)
  ref_summary, ref_overlay = measure(shares.Share())
  calls = _counting(monkeypatch, common, "sonify_pairs")
  for summary, overlay in helpers.as_processes(monkeypatch, PROCESSES,
                                               measure):
    _assert_close(summary, ref_summary)
    np.testing.assert_allclose(overlay["2"]["s_a"], ref_overlay["2"]["s_a"],
                               rtol=1e-5, atol=1e-6)
  # 5 clips, 2 layers x 3 sonifications each: 2 + 2 + 1 clips a process.
  assert sorted(calls.values()) == [6, 12, 12]


def test_layer_importance_features(monkeypatch, params):
  source = _source()
  ref = layer_importance.extract_features(params, ARCH, source, 3,
                                          batch_size=2, progress=False)
  read = _reads(monkeypatch, source)
  out = helpers.as_processes(
      monkeypatch, PROCESSES, lambda share: layer_importance.extract_features(
          params, ARCH, source, 3, batch_size=2, progress=False, share=share))
  for feats, labels in out:
    np.testing.assert_allclose(feats, ref[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels, ref[1])
  assert read == {p: list(range(p, 7, PROCESSES)) for p in range(PROCESSES)}


def test_residual(monkeypatch, params):
  source = _source()
  rng = np.random.default_rng(0)
  head = {"logits": {
      "kernel": rng.standard_normal((ARCH.embed_dim, 3)).astype(np.float32),
      "bias": rng.standard_normal(3).astype(np.float32)}}
  score_fn = residual.make_classifier_fn(params, head, ARCH, False)
  sonify_fn = residual.most_active_sonify_fn(params, ARCH, 2)

  def evaluate(share):
    return residual.evaluate_residuals(
        score_fn, sonify_fn, source, (2, 4),
        ARCH.min_input_length(ARCH.num_blocks), batch_size=2,
        progress=False, share=share)
  ref = evaluate(shares.Share())
  read = _reads(monkeypatch, source)
  for result in helpers.as_processes(monkeypatch, PROCESSES, evaluate):
    _assert_close(result, ref)
    assert result["clips"] == 7
  assert read == {p: list(range(p, 7, PROCESSES)) for p in range(PROCESSES)}


def test_dissect_activations(monkeypatch, params):
  audio = 0.3 * np.random.default_rng(2).standard_normal(
      (7, 800)).astype(np.float32)
  ref = dissect.activations(params, ARCH, 3, audio, batch_size=2)
  rows = []
  original = dissect._outputs  # pylint: disable=protected-access

  def counted(p, a, **kw):
    rows.append(len(a))
    return original(p, a, **kw)
  monkeypatch.setattr(dissect, "_outputs", counted)
  for acts in helpers.as_processes(
      monkeypatch, PROCESSES,
      lambda share: dissect.activations(params, ARCH, 3, audio, 2, share)):
    np.testing.assert_allclose(acts, ref, rtol=1e-5, atol=1e-6)
  assert sum(rows) == 7       # each clip once, by its own process


def test_topk(monkeypatch, params, tmp_path):
  source = _source()

  def run(share, out):
    return topk.run_topk(params, ARCH, source, str(out), layers=(2, 4), k=2,
                         max_maps=3, batch_size=2, pair_figures=False,
                         figure_maps=2, progress=False,
                         untrained=common.random_params(ARCH, seed=1),
                         shared_clips=(1, 2), share=share)
  ref = run(shares.Share(), tmp_path / "one")
  out = tmp_path / "three"
  for index in helpers.as_processes(monkeypatch, PROCESSES,
                                    lambda share: run(share, out)):
    _assert_close(index, ref)
  assert json.load(open(out / "topk.json")) == json.loads(json.dumps(index))
  wavs = [e[key] for layer in ref["layers"].values() for entries in
          layer.values() for e in entries for key in ("input_wav",
                                                      "sonification_wav")]
  wavs += [e["sonification_wav"] for layer in ref["same_clip"].values()
           for e in layer]
  assert len(wavs) > 10
  for rel in wavs:
    assert os.path.exists(out / rel), rel
  for rel in ref["figures"].values():
    assert os.path.exists(out / rel), rel


def test_evolution(monkeypatch, tmp_path):
  source = _source()
  ckpts = [(s, common.random_params(ARCH, s)) for s in (0, 1, 2)]

  def run(share, out):
    return evolution.run_evolution(ckpts, ARCH, source, str(out),
                                   layers=[2, 3], maps_per_layer=3,
                                   batch_size=2, progress=False, share=share)
  ref = run(shares.Share(), tmp_path / "one")
  arrays = ref.pop("sonifications")
  out = tmp_path / "three"
  for result in helpers.as_processes(monkeypatch, PROCESSES,
                                     lambda share: run(share, out)):
    ours = result.pop("sonifications")
    _assert_close(result, ref)
    for layer, pairs in arrays.items():   # [pair][step] waveforms
      for got, want in zip(sum(ours[layer], []), sum(pairs, [])):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert json.load(open(out / "evolution.json")) == json.loads(
      json.dumps(ref))
