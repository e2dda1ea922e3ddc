"""One fx node of a torch ``forward`` -> the network layers it computes.

``Reader.read(chain)`` maps each node of the chain (``torch_graph.chain``)
onto :mod:`sonify_jax.models.network` layers, module calls and functional
calls alike:

* ``Conv1d`` / ``Conv2d`` with ``(k, 1)`` kernels -> ``Conv``;
* ``nn.ReLU``, ``F.relu``, ``torch.relu``, ``.relu()`` -> ``ReLU``;
* ``BatchNorm1d/2d`` in eval mode -> ``Affine``;
* ``MaxPool1d/2d``, ``F.max_pool1d/2d`` with ``(k, 1)`` windows ->
  ``MaxPool``;
* ``ZeroPad1d/2d``, ``ConstantPad1d/2d`` with 0, ``F.pad`` with zeros on
  the time axis -> ``Pad``;
* ``Dropout*`` in eval mode, ``F.dropout`` with ``training=False``,
  ``Identity`` -> ``Identity``;
* reshapes (``view``, ``reshape``, ``unsqueeze``, ``squeeze``, ``flatten``,
  ``contiguous``, an index of ``None`` / ``:`` / ``...`` / ``0``) -> nothing,
  where the probe's shapes show they only add or remove a width-1 axis or
  the channel axis of a mono signal (``torch_graph.canonical``).

Every other node is refused, naming it (``torch_graph.where``). Blocks: a
new block starts at each conv, with the pads just before it, so block ``L``
is "conv L and what follows it"; layers are named ``conv1, conv2, ...`` and
``bn1, ...`` in the order ``forward`` runs them.
"""
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from sonify_jax.errors import UserError
from sonify_jax.importers import torch_graph
from sonify_jax.models import network as network_lib

SUPPORTED = ("supported: Conv1d, Conv2d (k, 1), ReLU / F.relu, "
             "BatchNorm1d/2d (eval), MaxPool1d/2d / F.max_pool1d/2d (k, 1), "
             "ZeroPad / ConstantPad (0) / F.pad (zeros, time axis), Dropout "
             "/ F.dropout (eval), Identity, and reshapes that only add or "
             "remove a width-1 axis")


def to_numpy(tensor) -> np.ndarray:
  return np.asarray(tensor.detach().cpu().numpy(), np.float32)


def conv_kernel(weight) -> np.ndarray:
  """torch ``[C_out, C_in, k]`` or ``[C_out, C_in, k, 1]`` -> ``[k, C_in,
  C_out]``."""
  w = weight if isinstance(weight, np.ndarray) else to_numpy(weight)
  if w.ndim == 4:
    w = w[..., 0]
  return np.ascontiguousarray(np.transpose(w, (2, 1, 0)), np.float32)


def batch_norm_affine(weight, bias, mean, var, eps: float
                      ) -> Dict[str, np.ndarray]:
  """Eval-mode BatchNorm as ``{'scale', 'bias'}``."""
  mean = np.asarray(mean, np.float64)
  scale = 1.0 / np.sqrt(np.asarray(var, np.float64) + eps)
  if weight is not None:
    scale = scale * np.asarray(weight, np.float64)
  shift = -mean * scale
  if bias is not None:
    shift = shift + np.asarray(bias, np.float64)
  return {"scale": scale.astype(np.float32), "bias": shift.astype(np.float32)}


def time_value(value, what: str, two_d: bool) -> int:
  """The time component of an int or a ``(t,)`` / ``(t, 1)`` tuple (a
  2-D op's second axis is the unit width: size 1, or 0 for padding)."""
  if isinstance(value, int) and not isinstance(value, bool):
    return value
  value = tuple(value)
  if len(value) == 1:
    return int(value[0])
  if len(value) == 2 and two_d and value[1] in (1, 0):
    return int(value[0])
  raise UserError(f"{what}: only (k, 1) windows over a [B, C, T, 1] signal "
                  f"are supported, got {value}")


def time_padding(pad, rank: int, what: str) -> Tuple[int, int]:
  """F.pad's flat ``pad`` (pairs from the last axis backwards) on a
  ``rank``-D signal -> its (left, right) on the time axis; any other axis
  padded is refused."""
  pad = [int(p) for p in pad]
  if len(pad) % 2:
    raise UserError(f"{what}: pad {tuple(pad)} has an odd length")
  time_axis = 1 if rank == 2 else 2
  out = (0, 0)
  for j in range(len(pad) // 2):
    pair = (pad[2 * j], pad[2 * j + 1])
    if rank - 1 - j == time_axis:
      out = pair
    elif pair != (0, 0):
      raise UserError(f"{what}: pads axis {rank - 1 - j} of a {rank}-D "
                      f"signal by {pair}; only the time axis may be padded")
  if min(out) < 0:
    raise UserError(f"{what}: negative padding {out} crops; only zero "
                    "padding converts")
  return out


class Reader:
  """Reads a chain of fx nodes into blocks of layers and their params."""

  def __init__(self, graph_module,
               shapes: Optional[Dict[Any, Tuple[int, ...]]] = None):
    import torch  # pylint: disable=g-import-not-at-top
    self.torch = torch
    self.gm = graph_module
    self.shapes = shapes or {}   # set once the probe has run
    self.params: Dict[str, Any] = {}
    self.count = {"conv": 0, "bn": 0}

  def where(self, node) -> str:
    return torch_graph.where(node, self.gm)

  def _input_rank(self, node, ranks=(2, 3, 4)) -> int:
    """The rank of the signal ``node`` reads; refused unless it is a
    signal layout (``torch_graph.canonical``) of one of ``ranks``."""
    source = [n for n in node.all_input_nodes
              if not torch_graph.is_shape_node(n)][0]
    shape = self.shapes.get(source)
    if torch_graph.canonical(shape) is None or len(shape) not in ranks:
      raise UserError(
          f"{self.where(node)} reads a signal of shape {shape}; it must be "
          f"laid out as {' or '.join(_LAYOUTS[r] for r in ranks)}")
    return len(shape)

  # --- what a node is (no shapes needed) ----------------------------------

  _MODULE_KINDS = (("conv", ("Conv1d", "Conv2d")), ("relu", ("ReLU",)),
                   ("batch_norm", ("BatchNorm1d", "BatchNorm2d")),
                   ("max_pool", ("MaxPool1d", "MaxPool2d")),
                   ("pad", ("ZeroPad1d", "ZeroPad2d", "ConstantPad1d",
                            "ConstantPad2d")),
                   ("dropout", ("Dropout", "Dropout1d", "Dropout2d")),
                   ("identity", ("Identity",)))

  def kind(self, node) -> Tuple[str, Any]:
    """``(kind, detail)`` of a chain node (the module, or the function's
    normalised keyword arguments); UserError for one no layer represents.
    Run over every node before anything else, so that an unsupported call
    is named before the graph's shape or the probe is looked at."""
    if node.op == "call_module":
      module = self.gm.get_submodule(node.target)
      for kind, names in self._MODULE_KINDS:
        if isinstance(module, tuple(getattr(self.torch.nn, n)
                                    for n in names)):
          return kind, module
      raise UserError(f"{self.where(node)} is a {type(module).__name__}, "
                      f"which the deconvnet does not support; {SUPPORTED}")
    if torch_graph.is_reshape(node):
      return "reshape", None
    found = self._function_kind(node) if node.op in (
        "call_function", "call_method") else None
    if found is None:
      raise UserError(f"{self.where(node)} is not a layer the deconvnet "
                      f"can transpose; {SUPPORTED}")
    return found

  def _function_kind(self, node) -> Optional[Tuple[str, Any]]:
    torch, F = self.torch, self.torch.nn.functional
    if node.op == "call_method":
      return ("relu", None) if node.target in ("relu", "relu_") else None
    if node.target in (F.relu, F.relu_, torch.relu, torch.relu_):
      return "relu", None
    kinds = {F.max_pool1d: "max_pool1d", F.max_pool2d: "max_pool2d",
             F.pad: "f_pad", F.dropout: "f_dropout",
             F.dropout1d: "f_dropout", F.dropout2d: "f_dropout"}
    kind = next((k for t, k in kinds.items() if node.target is t), None)
    if kind is None:
      return None
    # fx's own reading of the call's arguments, defaults filled in.
    args = node.normalized_arguments(self.gm,
                                     normalize_to_only_use_kwargs=True)
    return (kind, args.kwargs) if args is not None else None

  # --- the layers of one node -------------------------------------------------

  def layers(self, node) -> Tuple[str, List[Any]]:
    """``(kind, layers)``: kind 'conv', 'pad', 'identity', 'reshape' or
    another layer's; UserError where a supported call is used in a way no
    layer represents (a grouped conv, a pad of the channel axis, ...)."""
    kind, detail = self.kind(node)
    what = self.where(node)
    if kind == "reshape":
      self._check_reshape(node)
      return kind, []
    if kind == "relu":
      return kind, [network_lib.ReLU()]
    if kind == "f_dropout":
      if detail.get("training", True):
        raise UserError(f"{what} drops at inference (training=True); pass "
                        "training=self.training and convert the module in "
                        "eval mode")
      return "identity", [network_lib.Identity("dropout")]
    if kind in ("max_pool1d", "max_pool2d"):
      two_d = kind == "max_pool2d"
      self._input_rank(node, (4,) if two_d else (3,))
      return "max_pool", [self._max_pool(detail, two_d, what)]
    if kind == "f_pad":
      return "pad", [self._pad(detail, node)]
    return self._module(node, kind, detail)

  def _check_reshape(self, node):
    before = self.shapes.get([n for n in node.all_input_nodes
                              if not torch_graph.is_shape_node(n)][0])
    after = self.shapes.get(node)
    same = torch_graph.canonical(before)
    if same is None or same != torch_graph.canonical(after):
      raise UserError(
          f"{self.where(node)} turns a signal of shape {before} into "
          f"{after}; only reshapes that add or remove a width-1 axis (or "
          "the channel axis of a mono input) convert")

  def _pad(self, kwargs, node) -> network_lib.Pad:
    what = self.where(node)
    value = kwargs.get("value")
    if kwargs.get("mode", "constant") != "constant" or value not in (
        None, 0, 0.0):
      raise UserError(f"{what}: only zero padding converts (mode "
                      f"{kwargs.get('mode')!r}, value {value!r})")
    rank = self._input_rank(node)
    return network_lib.Pad(time_padding(kwargs["pad"], rank, what))

  def _max_pool(self, kw, two_d: bool, what: str) -> network_lib.MaxPool:
    stride = kw.get("stride")
    stride = kw["kernel_size"] if stride is None or stride == [] else stride
    if kw.get("ceil_mode") or kw.get("return_indices") or time_value(
        kw.get("dilation", 1), what, two_d) != 1:
      raise UserError(f"{what}: ceil_mode, dilation and return_indices are "
                      "not supported")
    pad = time_value(kw.get("padding", 0), what, two_d)
    return network_lib.MaxPool(time_value(kw["kernel_size"], what, two_d),
                               time_value(stride, what, two_d), (pad, pad))

  # --- module calls -----------------------------------------------------------

  def _module(self, node, kind: str, module) -> Tuple[str, List[Any]]:
    what = self.where(node)
    two_d = type(module).__name__.endswith("2d")
    if kind == "conv":
      self._input_rank(node, (4,) if two_d else (3,))
      return kind, [self._conv(module, what)]
    if kind == "relu":
      return kind, [network_lib.ReLU()]
    if kind == "batch_norm":
      self._input_rank(node, (4,) if two_d else (3,))
      return kind, [self._batch_norm(module, what)]
    if kind == "max_pool":
      self._input_rank(node, (4,) if two_d else (3,))
      kw = {k: getattr(module, k) for k in (
          "kernel_size", "stride", "padding", "dilation", "ceil_mode",
          "return_indices")}
      return kind, [self._max_pool(kw, two_d, what)]
    if kind == "pad":
      if float(getattr(module, "value", 0.0)) != 0.0:
        raise UserError(f"{what}: only zero padding is supported")
      rank = self._input_rank(node)
      return kind, [network_lib.Pad(time_padding(module.padding, rank,
                                                 what))]
    if kind == "dropout" and module.training:
      raise UserError(f"{what}: Dropout in training mode drops at "
                      "inference (call .eval())")
    return "identity", [network_lib.Identity(
        "dropout" if kind == "dropout" else "identity")]

  def _conv(self, module, what: str) -> network_lib.Conv:
    two_d = isinstance(module, self.torch.nn.Conv2d)
    if module.groups != 1 or module.padding_mode != "zeros":
      raise UserError(f"{what}: only groups=1 and zero padding are "
                      "supported")
    if isinstance(module.padding, str):
      padding = module.padding
    else:
      if two_d and tuple(module.padding)[1] != 0:
        raise UserError(f"{what}: pads the width")
      p = time_value(module.padding, what, two_d)
      padding = (p, p)
    self.count["conv"] += 1
    name = f"conv{self.count['conv']}"
    layer = network_lib.Conv(
        name, int(module.out_channels),
        time_value(module.kernel_size, what, two_d),
        stride=time_value(module.stride, what, two_d),
        dilation=time_value(module.dilation, what, two_d),
        padding=padding, use_bias=module.bias is not None)
    self.params[name] = {"kernel": conv_kernel(module.weight)}
    if module.bias is not None:
      self.params[name]["bias"] = to_numpy(module.bias)
    return layer

  def _batch_norm(self, module, what: str) -> network_lib.Affine:
    if module.training or not module.track_running_stats:
      raise UserError(f"{what}: BatchNorm must be in eval mode with running "
                      "statistics (call .eval())")
    self.count["bn"] += 1
    name = f"bn{self.count['bn']}"
    numpy = to_numpy
    self.params[name] = batch_norm_affine(
        None if module.weight is None else numpy(module.weight),
        None if module.bias is None else numpy(module.bias),
        numpy(module.running_mean), numpy(module.running_var),
        float(module.eps))
    return network_lib.Affine(name)

  # --- the chain -------------------------------------------------------------

  def read(self, chain) -> Tuple[Tuple[Tuple[Any, ...], ...], List[Any]]:
    """``(blocks, ends)``: the layers of each block and, per block, the
    node whose output is the block's (what the self-check compares)."""
    blocks: List[List[Any]] = []
    ends: List[Any] = []
    pending: List[Any] = []   # pads waiting for the conv they precede
    pad_node = None
    for node in chain:
      kind, layers = self.layers(node)
      if kind == "conv":
        blocks.append(pending + layers)
        ends.append(node)
        pending, pad_node = [], None
      elif kind == "pad":
        pending += layers
        pad_node = pad_node or node
      elif kind == "reshape":
        if blocks and not pending:
          ends[-1] = node
      elif pending:   # a pad belongs to the conv it precedes (one block)
        raise UserError(f"{self.where(pad_node)}: a pad must be followed by "
                        f"a conv, not {self.where(node)}")
      elif not blocks:
        if kind != "identity":   # identities before the first conv: nothing
          raise UserError(f"{self.where(node)} comes before the first conv; "
                          "block 1 must start with a conv (pads may "
                          "precede it)")
      else:
        blocks[-1] += layers
        ends[-1] = node
    if pending:
      raise UserError(f"{self.where(pad_node)}: the chain ends in a pad "
                      "with no conv after it")
    if not blocks:
      raise UserError("forward calls no conv: nothing to convert")
    return tuple(tuple(b) for b in blocks), ends


_LAYOUTS = {2: "[B, T] (mono)", 3: "[B, C, T]", 4: "[B, C, T, 1]"}
