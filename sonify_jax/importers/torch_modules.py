"""PyTorch modules -> a network description and its params, checked.

``from_modules`` reads what the module *computes*, not what it holds:

1. ``torch.fx`` traces ``forward`` (``torch_graph.trace``): the graph of
   the calls it makes, nested ``Sequential`` blocks and submodules
   flattened into the layers they call, in ``forward``'s order (which need
   not be the order the modules were registered in). A ``forward`` fx cannot
   trace is refused, saying why.
2. The graph must be one chain from the one input to the returned tensor
   (``torch_graph.chain``): a branch, residual sum or concatenation is
   refused, naming the node.
3. Each node becomes layers (``torch_layers``): module calls and their
   functional forms (``F.relu``, ``F.max_pool1d``, ``F.pad``, ...), harmless
   reshapes; anything else (a sigmoid, an LSTM, a Linear, a grouped conv) is
   refused with the node's place in ``forward``, what it calls and its
   source line: the deconvnet's transposed chain is defined for these layers
   only, and a silently skipped layer would give a wrong result.
4. The first conv must read one channel: the network's input is a mono
   waveform.
5. The converted network and the module run on a seeded probe and every
   block's output must agree to float32 rounding (``self_check``), or the
   conversion is refused naming the block and the difference.

Inputs laid out as ``[B, T]``, ``[B, 1, T]`` or ``[B, 1, T, 1]`` (CREPE's
``Conv2d`` layout) are found by running the graph. A new block starts at
each conv (with the pads just before it), so block ``L`` is "conv L and what
follows it"; layers are named ``conv1, conv2, ...`` and ``bn1, ...`` in
``forward``'s order.

``params_from_state_dict`` maps a ``state_dict`` onto a description whose
layer names are the state-dict prefixes (``conv1.weight`` ->
``params['conv1']['kernel']``); with no module to run, that form is checked
only against the description's shapes.
"""
from typing import Any, Dict, Mapping, Tuple

import numpy as np

from sonify_jax import cli
from sonify_jax.errors import UserError
from sonify_jax.importers import require_torch, self_check, torch_graph
from sonify_jax.importers import torch_layers
# The weight conversions live with the layers that use them (torch_layers);
# named here too, as torchcrepe and callers read them from this module.
from sonify_jax.importers.torch_layers import (batch_norm_affine, conv_kernel,
                                               to_numpy)
from sonify_jax.models import network as network_lib

TORCH_BN_EPS = 1e-5
# Lengths the shape probe tries: long enough for most networks' receptive
# fields first, then for very deep ones.
_SHAPE_PROBE_LENGTHS = (4096, 65536)


def _as_module(modules, torch):
  """A module to trace: a module itself, or a list / ``ModuleList`` of
  modules run one after another."""
  if isinstance(modules, torch.nn.ModuleList) or isinstance(
      modules, (list, tuple)):
    for i, item in enumerate(modules):
      if not isinstance(item, torch.nn.Module):
        raise UserError(f"item {i} of the module list is a "
                        f"{type(item).__name__}, not a torch.nn.Module")
    return torch.nn.Sequential(*modules)
  if not isinstance(modules, torch.nn.Module):
    raise UserError(f"a {type(modules).__name__} is not a torch.nn.Module")
  if type(modules).__module__.startswith("torch.nn.modules") and not \
      isinstance(modules, torch.nn.Sequential):
    # One torch layer on its own: fx would trace into its functional form.
    return torch.nn.Sequential(modules)
  return modules


def _first_conv(chain, graph_module, torch):
  """The first conv the chain calls (None if none)."""
  for node in chain:
    if node.op == "call_module":
      module = graph_module.get_submodule(node.target)
      if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
        return node, module
  return None, None


def _check_mono(chain, graph_module, torch):
  """The network's input is one waveform: its first conv reads 1 channel
  (checked before the probe runs, which would fail less clearly)."""
  node, module = _first_conv(chain, graph_module, torch)
  if module is not None and module.in_channels != 1:
    raise UserError(
        f"{torch_graph.where(node, graph_module)} reads "
        f"{module.in_channels} input channels; only a mono waveform input "
        "(in_channels=1 at the first conv) converts")


def _probe_input(prepared: np.ndarray, rank: int, dtype, torch):
  """``[B, T]`` prepared clips as a ``rank``-D torch input."""
  x = torch.from_numpy(np.array(prepared, np.float32)).to(dtype)
  return {2: x, 3: x[:, None], 4: x[:, None, :, None]}[rank]


def _shapes(graph_module, chain, torch, dtype):
  """``(shapes, rank)``: every node's output shape on a probe, and the
  input rank (``[B, T]``, ``[B, 1, T]`` or ``[B, 1, T, 1]``) forward runs
  on; tried from the one its first conv implies, at growing lengths (the
  network's receptive field is not known before its layers are)."""
  _, conv = _first_conv(chain, graph_module, torch)
  first = 4 if isinstance(conv, torch.nn.Conv2d) else 3
  ranks = [first] + [r for r in (2, 3, 4) if r != first]
  failure = None
  for length in _SHAPE_PROBE_LENGTHS:
    noise = np.random.default_rng(0).standard_normal(
        (self_check.PROBE_CLIPS, length)).astype(np.float32)
    for rank in ranks:
      try:
        recorder, _ = torch_graph.run(
            graph_module, _probe_input(noise, rank, dtype, torch))
      except Exception as error:  # pylint: disable=broad-except
        # The user's forward failing on every layout is their input's.
        if rank == first:
          failure = (length, error)
        continue
      return recorder.shapes, rank
  length, error = failure
  layout = {3: "[2, 1, T]", 4: "[2, 1, T, 1]"}[first]
  raise UserError(
      f"forward fails on a {layout} probe of T={length} samples (and on the "
      f"other layouts): {type(error).__name__}: "
      f"{cli.one_line(error)[:300]}")


def verify(graph_module, ends, net: network_lib.Network, params,
           rank: int, dtype=None) -> None:
  """UserError unless the converted ``net`` computes every block's output
  as the traced module's node ``ends[b]`` does, on the seeded probe."""
  import torch  # pylint: disable=g-import-not-at-top
  prepared = self_check.probe(net, self_check.probe_length(net))
  try:
    recorder, _ = torch_graph.run(
        graph_module, _probe_input(prepared, rank, dtype or torch.float32,
                                   torch), keep=ends)
  except Exception as error:  # pylint: disable=broad-except
    # e.g. a forward that takes one input length only: the user's module.
    raise UserError(
        f"forward fails on the self-check's probe of {prepared.shape[1]} "
        f"samples: {type(error).__name__}: {cli.one_line(error)[:300]}"
    ) from None
  want = [torch_graph.as_btc(recorder.kept[e]) for e in ends]
  self_check.compare(net.name, want, self_check.ours(net, params, prepared),
                     [f"block {b}" for b in range(1, len(ends) + 1)])


def from_modules(modules: Any, name: str, sample_rate: int,
                 input_convention: str = "none"
                 ) -> Tuple[network_lib.Network, Dict[str, Any]]:
  """``(description, params)`` of what a torch module's ``forward``
  computes (see the module docstring), verified against the module on a
  probe; UserError for anything it cannot represent or reproduce."""
  torch = require_torch()
  module = _as_module(modules, torch)
  graph_module = torch_graph.trace(module)
  reader = torch_layers.Reader(graph_module)
  for node in graph_module.graph.nodes:   # every call named before the rest
    if node.op not in ("placeholder", "output") and not \
        torch_graph.is_shape_node(node):
      reader.kind(node)
  chain = torch_graph.chain(graph_module)
  _check_mono(chain, graph_module, torch)
  dtype = next((p.dtype for p in module.parameters()), torch.float32)
  shapes, rank = _shapes(graph_module, chain, torch, dtype)
  reader.shapes = shapes
  blocks, ends = reader.read(chain)
  net = network_lib.Network(name, blocks, sample_rate,
                            input_convention=input_convention)
  verify(graph_module, ends, net, reader.params, rank, dtype)
  return net, reader.params


def params_from_state_dict(net: network_lib.Network,
                           state_dict: Mapping[str, Any],
                           bn_eps: float = TORCH_BN_EPS) -> Dict[str, Any]:
  """Params of ``net`` from a torch ``state_dict`` whose keys are
  ``{layer name}.weight`` etc. (an affine layer reads BatchNorm's
  ``weight``, ``bias``, ``running_mean`` and ``running_var``).

  Raises:
    UserError: a key is missing or a shape does not fit the description.
  """
  from sonify_jax.models import encoder  # pylint: disable=g-import-not-at-top

  def get(key):
    if key not in state_dict:
      raise UserError(f"the state_dict has no {key!r} (keys: "
                      f"{sorted(state_dict)[:8]}...)")
    value = state_dict[key]
    return value if isinstance(value, np.ndarray) else to_numpy(value)

  params = {}
  for layer, channels in encoder.param_layers(net):
    if isinstance(layer, network_lib.Conv):
      kernel = conv_kernel(get(f"{layer.name}.weight"))
      want = (layer.kernel_size, channels, layer.features)
      if kernel.shape != want:
        raise UserError(f"{layer.name}.weight has shape {kernel.shape} as "
                        f"[k, C_in, C_out]; the description says {want}")
      params[layer.name] = {"kernel": kernel}
      if layer.use_bias:
        params[layer.name]["bias"] = get(f"{layer.name}.bias")
    else:
      params[layer.name] = batch_norm_affine(
          get(f"{layer.name}.weight"), get(f"{layer.name}.bias"),
          get(f"{layer.name}.running_mean"), get(f"{layer.name}.running_var"),
          bn_eps)
      if params[layer.name]["scale"].shape != (channels,):
        raise UserError(f"{layer.name} has {params[layer.name]['scale'].size}"
                        f" channels; the description says {channels}")
  return params
