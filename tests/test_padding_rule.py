"""One sonification whatever path produced it.

The padding rule (``sonify_jax.models.shapes``): a clip zero-padded to a
common length gives the unpadded clip's result on its own samples and zero
after them; the network's own padding stays the network's. Every path that
sonifies (the batched pairs of padded clips the atlas runs, the pairs every
study runs, the atlas and top-k files) is compared here with
``deconvnet.sonify`` of the unpadded clip alone, for every rule, on CNN12,
CREPE tiny, and small networks with 'same', explicit, strided and dilated
padding, padded max-pools, affine layers and every input convention.
"""
import os

import jax.numpy as jnp
import numpy as np
import pytest
import soundfile

from sonify_jax import deconvnet
from sonify_jax.analysis.core import common
from sonify_jax.analysis.studies import atlas
from sonify_jax.analysis.studies import topk
from sonify_jax.data.sources import ArraySource
from sonify_jax.models import get_network
from sonify_jax.models import network as nl

# 'same' stride-1 (odd span), explicit pads, a stride-3 conv, dilation,
# a padded overlapping pool, an affine layer before a pool (negative pool
# inputs: the pool's -inf padding matters), and a separate Pad layer.
SAME_NET = nl.Network("same_net", (
    (nl.Conv("c1", 4, 9, padding="SAME"), nl.ReLU(), nl.Affine("bn1"),
     nl.MaxPool(3, 2, (1, 1))),
    (nl.Pad((2, 3)), nl.Conv("c2", 5, 4, dilation=2), nl.ReLU(),
     nl.MaxPool(2, 2)),
    (nl.Conv("c3", 6, 5, stride=3, padding=(3, 1)), nl.ReLU(),
     nl.Affine("bn3")),
), sample_rate=16000, input_convention="standardize")

STRIDED_NET = nl.Network("strided_net", (
    (nl.Conv("c1", 3, 16, stride=4, padding=(6, 6)), nl.ReLU(),
     nl.MaxPool(2, 2)),
    (nl.Conv("c2", 4, 6, dilation=3, padding=(7, 8)), nl.ReLU(),
     nl.Affine("bn2"), nl.MaxPool(2, 2, (0, 1))),
), sample_rate=8000, input_convention="none")

# FCN-F0's shape: 'valid' convs, a pool before an affine layer, a conv head
# whose window standardises each sample ('standardize_window', reflected at
# each clip's own end).
WINDOW_NET = nl.Network("window_net", (
    (nl.Conv("c1", 4, 16), nl.ReLU(), nl.MaxPool(2, 2), nl.Affine("bn1")),
    (nl.Conv("c2", 5, 8), nl.ReLU(), nl.Affine("bn2")),
), sample_rate=8000, input_convention="standardize_window",
                        head=nl.ConvHead("classifier", 6, 4, block=2))

NETS = {
    "cnn12_tiny": (get_network("cnn12_tiny"), 6, (2000, 1709, 1350)),
    "crepe_tiny": (get_network("crepe_tiny"), 4, (1024, 777, 600)),
    "same_net": (SAME_NET, 3, (300, 251, 97)),
    "strided_net": (STRIDED_NET, 2, (400, 333, 151)),
    "window_net": (WINDOW_NET, 2, (300, 233, 61)),
}
RULES = deconvnet.RULES
# The default suite keeps every rule on the generic chain's two networks of
# their own padding (CREPE tiny, SAME_NET) and one rule on each of the
# others; the rest run with -m slow.
FAST = {("crepe_tiny", r) for r in RULES} | {("same_net", r) for r in RULES} | {
    ("cnn12_tiny", "deconvnet"), ("cnn12_tiny", "guided"),
    ("strided_net", "gradient"), ("window_net", "guided")}


def _cases():
  return [pytest.param(name, rule, marks=() if (name, rule) in FAST
                       else pytest.mark.slow)
          for name in sorted(NETS) for rule in RULES]


def _params(arch):
  params = common.random_params(arch, 7)
  # Affine shifts that are not zero: the padded positions past a clip then
  # hold a non-zero value unless the rule blanks them.
  for name, leaf in params.items():
    if "scale" in leaf:
      rng = np.random.default_rng(len(name))
      leaf["bias"] = rng.standard_normal(leaf["bias"].shape).astype(
          np.float32)
  return params


def _clips(lengths, seed=0):
  rng = np.random.default_rng(seed)
  # A DC offset, so that a mean or std over the padded clip differs.
  return [(0.3 + 0.5 * rng.standard_normal(n)).astype(np.float32)
          for n in lengths]


def _every_map(params, clip, layer, arch, rule):
  """``sonify`` of every map of ``layer`` on ``clip`` alone: ``[maps, T]``."""
  every = np.arange(arch.channels[layer - 1])
  return np.asarray(deconvnet.sonify(params, clip[None], layer, every, arch,
                                     rule=rule))[0]


def _live(params, clip, layer, arch, sonified, count=2):
  """The ``count`` most active maps whose sonification is not silent (a
  map can rank high only through an affine shift and sonify to nothing)."""
  acts = np.asarray(deconvnet.feature_map_activations(
      params, clip[None], layer, arch))[0]
  live = [m for m in np.argsort(-acts)
          if np.abs(sonified[m]).max() > 0.1 * np.abs(clip).max()]
  assert len(live) >= count
  return live[:count]


def _sonify(params, clip, layer, m, arch, rule):
  return np.asarray(deconvnet.sonify(params, clip[None], layer, [m], arch,
                                     rule=rule))[0, 0]


@pytest.mark.parametrize("name,rule", _cases())
def test_pairs_of_padded_clips_equal_sonify_of_each_clip(name, rule):
  """The atlas's batched path: clips of three lengths padded into one
  batch, pairs mixing them."""
  arch, layer, lengths = NETS[name]
  params = _params(arch)
  clips = _clips(lengths, seed=len(name))
  padded = max(lengths) + 64
  x = np.zeros((len(clips), padded), np.float32)
  for s, c in enumerate(clips):
    x[s, :c.shape[0]] = c
  slots = np.array([2, 0, 1, 1, 2, 0], np.int32)
  every = [_every_map(params, c, layer, arch, rule) for c in clips]
  strongest = [_live(params, c, layer, arch, e)
               for c, e in zip(clips, every)]
  maps = np.array([strongest[s][p % 2] for p, s in enumerate(slots)],
                  np.int32)
  got = np.asarray(deconvnet.sonify_clip_pairs(
      params, jnp.asarray(x), jnp.asarray(lengths, jnp.int32),
      jnp.asarray(slots), jnp.asarray(maps), layer, arch, rule=rule))
  for p, (s, m) in enumerate(zip(slots, maps)):
    n = lengths[s]
    want = every[s][m]
    peak = np.abs(clips[s]).max()
    np.testing.assert_allclose(got[p, :n], want, rtol=0, atol=2e-5 * peak)
    assert np.all(got[p, n:] == 0)


@pytest.mark.parametrize("name,rule", _cases())
def test_study_pairs_equal_sonify(name, rule):
  """The pairs every study sonifies (``common.sonify_pairs``): whole clips
  of one length, the frames that read the network's own padding kept."""
  arch, layer, lengths = NETS[name]
  params = _params(arch)
  clips = np.stack(_clips((lengths[0],) * 3, seed=3))
  every = [_every_map(params, c, layer, arch, rule) for c in clips]
  maps = np.array([_live(params, c, layer, arch, e, 1)[0]
                   for c, e in zip(clips, every)])
  got = common.sonify_pairs(params, clips, maps, layer, arch, batch_size=2,
                            rule=rule)
  for e, c, m, g in zip(every, clips, maps, got):
    want = e[m]
    np.testing.assert_allclose(g, want, rtol=0,
                               atol=2e-5 * np.abs(c).max())


# CREPE tiny ~35 s: -m slow (its pairs are checked fast above).
@pytest.mark.parametrize("name", [
    pytest.param("crepe_tiny", marks=pytest.mark.slow), "same_net"])
def test_atlas_and_topk_files_are_sonify_of_their_clips(name, tmp_path):
  """The atlas pads clips of different lengths into buckets; top-k streams
  equal-length batches. What each writes for (clip, layer, map, rule) is
  ``sonify`` of that clip alone (to 16-bit WAV rounding)."""
  arch, layer, lengths = NETS[name]
  params = _params(arch)
  clips = _clips(lengths + (lengths[1] + 5,), seed=11)
  clips = [0.9 * c / np.abs(c).max() for c in clips]  # WAV range
  source = ArraySource(clips, [0] * len(clips), 1)
  rule = "guided"
  index = atlas.run_atlas(params, arch, source, str(tmp_path / "atlas"),
                          layers=(layer,), k=2, batch_size=3,
                          model_name=name, progress=False, rule=rule)
  checked = 0
  for m in index["layers"][0]["maps"][:6]:
    for r in m["top"]:
      if r["wav"] is None:
        continue
      want = _sonify(params, clips[r["clip"]], layer, m["map"], arch, rule)
      got, _ = soundfile.read(str(tmp_path / "atlas" / r["wav"]),
                              dtype="float32")
      np.testing.assert_allclose(got, np.clip(want, -1, 1), atol=2e-4)
      checked += 1
  assert checked >= 4
  result = topk.run_topk(params, arch, source, str(tmp_path / "topk"),
                         layers=(layer,), k=1, max_maps=3, batch_size=2,
                         figure_maps=0, pair_figures=False, model_name=name,
                         progress=False, rule=rule)
  wavs = [os.path.join(root, f) for root, _, files in
          os.walk(tmp_path / "topk") for f in files if f.endswith(".wav")]
  assert wavs, result
  checked = 0
  for entry in _topk_entries(result):
    want = _sonify(params, clips[entry["clip"]], layer, entry["map"], arch,
                   rule)
    got, _ = soundfile.read(str(tmp_path / "topk" / entry["wav"]),
                            dtype="float32")
    np.testing.assert_allclose(got, np.clip(want, -1, 1), atol=2e-4)
    checked += 1
  assert checked >= 2


def _topk_entries(result):
  """(clip, map, wav) of each trained sonification top-k wrote."""
  return [{"clip": e["clip_index"], "map": e["map"],
           "wav": e["sonification_wav"]}
          for maps in result["layers"].values()
          for entries in maps.values() for e in entries if not e["dead"]]
