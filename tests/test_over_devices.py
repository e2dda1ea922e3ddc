"""Analysis over every local device (8 virtual CPU devices here) gives what
one device gives: the row split itself, the (clip, map) pairs of every kind
of network, the atlas's top-k clips and files, and two studies' JSON.
Odd row counts, fewer rows than devices (devices left without rows) are
covered."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile

import helpers

from sonify_jax import deconvnet, over_devices
from sonify_jax.analysis.core import common
from sonify_jax.analysis.studies import atlas
from sonify_jax.analysis.studies import topk
from sonify_jax.data.sources import ArraySource
from sonify_jax.models import get_network
from sonify_jax.models import network as nl

ONE = jax.local_devices()[:1]
SAME_NET = nl.Network("same_net", (
    (nl.Conv("c1", 4, 9, padding="SAME"), nl.ReLU(), nl.MaxPool(3, 2, (1, 1))),
    (nl.Conv("c2", 5, 4, dilation=2), nl.ReLU(), nl.Affine("bn2")),
), sample_rate=16000, input_convention="standardize")


def test_eight_devices_here():
  assert len(jax.local_devices()) == 8


def _device_of_each_row(x):
  return jnp.full((x.shape[0],), jax.lax.axis_index(over_devices.AXIS))


@pytest.mark.parametrize("rows,devices", [(13, 8), (16, 8), (3, 3)])
def test_rows_are_split_in_order_over_the_devices(rows, devices):
  """Row i lands on device i // ceil(rows / devices); a call with 3 rows
  uses 3 devices, not 8 with 5 idle on padding."""
  assert over_devices.mesh_for(rows).size == devices
  got = np.asarray(over_devices.rows(_device_of_each_row, (),
                                     (jnp.zeros((rows, 2)),)))
  per = -(-rows // devices)
  np.testing.assert_array_equal(got, np.arange(rows) // per)


def _affine_rows(w, x, *, power):
  return (x @ w) ** power, x.sum(1)


def test_rows_equal_the_function_on_one_device():
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.standard_normal((4, 3)), jnp.float32)
  x = jnp.asarray(rng.standard_normal((11, 4)), jnp.float32)
  many = over_devices.rows(_affine_rows, (w,), (x,), power=2)
  with over_devices.only(ONE):
    one = over_devices.rows(_affine_rows, (w,), (x,), power=2)
  direct = _affine_rows(w, x, power=2)
  for a, b, c in zip(many, one, direct):
    assert a.shape == b.shape == c.shape
    np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6 * np.abs(c).max())
    np.testing.assert_array_equal(b, c)


def _group_sum_rows(group_values, group_of_row, scale):
  """Row r: its group's values times its scale, and the device it ran on."""
  return (group_values[group_of_row] * scale[:, None],
          jnp.full((scale.shape[0],), jax.lax.axis_index(over_devices.AXIS)))


@pytest.mark.parametrize("groups,rows", [(8, 13), (3, 13), (5, 3), (1, 9)])
def test_grouped_rows_give_each_device_only_its_groups(groups, rows):
  """Rows that read groups (pairs that read clips): each device receives
  the groups of its block of rows only (at most ceil(rows / devices) + 1
  distinct, not all of them), and the outputs equal the function on one
  device in row order."""
  rng = np.random.default_rng(rows * groups)
  values = jnp.asarray(rng.standard_normal((groups, 6)), jnp.float32)
  group_of_row = rng.integers(0, groups, rows)
  scale = jnp.asarray(rng.standard_normal(rows), jnp.float32)
  devices = over_devices.mesh_for(rows).size
  row_take, group_take, local, inverse = over_devices.group_layout(
      group_of_row, devices)
  per, width = -(-rows // devices), len(group_take) // devices
  for d in range(devices):
    block = row_take[d * per:(d + 1) * per]
    mine = group_take[d * width:(d + 1) * width]
    # Every row of the block finds its own group at its local position.
    np.testing.assert_array_equal(mine[local[d * per:(d + 1) * per]],
                                  group_of_row[block])
    assert len(set(mine.tolist())) <= min(groups, per)
  np.testing.assert_array_equal(row_take[inverse], np.arange(rows))
  out, device = over_devices.grouped_rows(_group_sum_rows, (), (values,),
                                          group_of_row, (scale,))
  expected = np.asarray(values)[group_of_row] * np.asarray(scale)[:, None]
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-6)
  # Rows of one group sit on consecutive devices (ordered by group).
  order = np.argsort(group_of_row, kind="stable")
  assert np.all(np.diff(np.asarray(device)[order]) >= 0)
  assert len(set(np.asarray(device).tolist())) == -(-rows // per)


NETS = {"cnn12_tiny": (get_network("cnn12_tiny"), 4, (1400, 1201, 900)),
        "crepe_tiny": (get_network("crepe_tiny"), 3, (1300, 1024, 800)),
        "same_net": (SAME_NET, 2, (300, 251, 97))}


# CNN12's kernels, the generic chain, the framed chain, 13 pairs on 8
# devices; 3 pairs (5 devices without pairs) on the generic chain, the rest
# -m slow.
@pytest.mark.parametrize("name,pairs", [
    ("cnn12_tiny", 13), ("crepe_tiny", 13), ("same_net", 13), ("same_net", 3),
    pytest.param("cnn12_tiny", 3, marks=pytest.mark.slow),
    pytest.param("crepe_tiny", 3, marks=pytest.mark.slow)])
def test_clip_pairs_on_every_device_equal_one_device(name, pairs):
  arch, layer, lengths = NETS[name]
  params = common.random_params(arch, 5)
  rng = np.random.default_rng(pairs)
  x = np.zeros((3, max(lengths)), np.float32)
  for s, n in enumerate(lengths):
    x[s, :n] = rng.standard_normal(n)
  slots = jnp.asarray(rng.integers(0, 3, pairs), jnp.int32)
  maps = jnp.asarray(rng.integers(0, arch.channels[layer - 1], pairs),
                     jnp.int32)
  valid = jnp.asarray(lengths, jnp.int32)
  for rule in ("deconvnet", "gradient"):
    many = np.asarray(deconvnet.sonify_clip_pairs(
        params, jnp.asarray(x), valid, slots, maps, layer, arch, rule=rule))
    one = np.asarray(deconvnet.sonify_clip_pairs(
        params, jnp.asarray(x), valid, slots, maps, layer, arch, rule=rule,
        devices=ONE))
    assert many.shape == (pairs, x.shape[1])
    np.testing.assert_allclose(many, one, atol=1e-5 * np.abs(one).max())
    # And the studies' pairs (each pair its own clip, split with it).
    own = common.sonify_pairs(params, x[np.asarray(slots)], np.asarray(maps),
                              layer, arch, batch_size=pairs, rule=rule)
    with over_devices.only(ONE):
      own_one = common.sonify_pairs(params, x[np.asarray(slots)],
                                    np.asarray(maps), layer, arch,
                                    batch_size=pairs, rule=rule)
    np.testing.assert_allclose(own, own_one, atol=1e-5 * np.abs(own_one).max())


def _source():
  rng = np.random.default_rng(1)
  lengths = (1600, 1600, 2100, 1600, 2100, 1200, 1600)
  return ArraySource([0.5 * rng.standard_normal(n).astype(np.float32)
                      for n in lengths], [0] * len(lengths), 1)


def _wavs(folder):
  out = {}
  for root, _, files in os.walk(folder):
    for f in files:
      if f.endswith(".wav"):
        out[os.path.relpath(os.path.join(root, f), folder)] = soundfile.read(
            os.path.join(root, f))[0]
  return out


def _without_times(index):
  """The index less what differs run to run (seconds, the folder)."""
  text = json.dumps(index, sort_keys=True)
  return json.loads(text, object_hook=lambda d: {
      k: v for k, v in d.items() if "seconds" not in k and k != "out_dir"})


# ~50 s each on 2 cores: -m slow; test_clip_pairs_on_every_device_equal_one_device
# is the fast path of what they share (the pairs the atlas sonifies).
@pytest.mark.parametrize("name", [
    pytest.param("cnn12_tiny", marks=pytest.mark.slow),
    pytest.param("crepe_tiny", marks=pytest.mark.slow)])
def test_atlas_and_topk_on_every_device_equal_one_device(name, tmp_path):
  arch = NETS[name][0]
  layers = (2, 4) if name == "cnn12_tiny" else (1, 3)
  params = common.random_params(arch, 3)
  source = _source()
  runs = {}
  for label, devices in (("many", None), ("one", ONE)):
    folder = str(tmp_path / label)
    with over_devices.only(devices or jax.local_devices()):
      index = atlas.run_atlas(params, arch, source, folder + "_atlas",
                              layers=layers, k=3, batch_size=4,
                              model_name=name, progress=False)
      top = topk.run_topk(params, arch, source, folder + "_topk",
                          layers=layers, k=2, max_maps=3, batch_size=4,
                          figure_maps=0, pair_figures=False, progress=False)
    runs[label] = (index, top, _wavs(folder + "_atlas"),
                   _wavs(folder + "_topk"))
  many, one = runs["many"], runs["one"]
  # The same top clips, maps and files; activations and centroids to
  # float32 rounding (each device traces only its pairs' clips, in batches
  # of another shape than one device's).
  for got, want in ((many[0], one[0]), (many[1], one[1])):
    helpers.assert_json_close(_without_times(got), _without_times(want),
                              rel=1e-4, abs_=1e-3)
  for got, want in ((many[2], one[2]), (many[3], one[3])):
    assert got.keys() == want.keys() and got
    for path, audio in want.items():
      np.testing.assert_allclose(got[path], audio, atol=2.5 / 32767,
                                 err_msg=path)
