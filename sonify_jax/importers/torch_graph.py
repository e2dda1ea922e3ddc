"""What a torch module's ``forward`` computes, read with ``torch.fx``.

``trace`` turns the module into an fx ``GraphModule`` (the nodes its
``forward`` runs, nested containers flattened into the modules they call);
``chain`` checks that the graph is one chain from the input to the output
(no branch, residual sum or concatenation) and returns its nodes in the
order ``forward`` runs them; ``Recorder`` runs the graph on a probe and
keeps each node's output shape and the values of the nodes asked for (the
blocks' ends, for the conversion's self-check); ``where`` names a node as
an error message does: its place in the graph, what it calls and the line
of ``forward`` that called it.

Nodes that only read a shape (``x.shape[0]``, ``x.size(1)``) lie off the
chain: they may feed a reshape, nothing else, since anything else they
feed would depend on the input's length.
"""
import operator
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from sonify_jax import cli
from sonify_jax.errors import UserError

Shape = Tuple[int, ...]
RESHAPE_METHODS = frozenset({"view", "reshape", "unsqueeze", "squeeze",
                             "flatten", "contiguous"})
_SHAPE_METHODS = frozenset({"size", "dim"})


def trace(module, concrete_args: Optional[Dict[str, Any]] = None) -> Any:
  """``module`` as a ``torch.fx.GraphModule`` (stack traces recorded so an
  error can name the line of ``forward``; ``concrete_args`` fixes optional
  arguments such as torchcrepe's ``embed=False``); UserError when fx cannot
  trace it (e.g. control flow on the input's values)."""
  import torch  # pylint: disable=g-import-not-at-top
  tracer = torch.fx.Tracer()
  tracer.record_stack_traces = True
  try:
    graph = tracer.trace(module, concrete_args)
  except Exception as error:  # pylint: disable=broad-except
    # The user's forward: why it cannot be read is their input's, one line.
    raise UserError(
        f"cannot read what {type(module).__name__}.forward computes: "
        f"torch.fx cannot trace it ({type(error).__name__}: "
        f"{cli.one_line(error)[:300]}); write forward as one chain of the "
        "supported layers without Python control flow on the input"
    ) from None
  return torch.fx.GraphModule(module, graph)


def target_name(node, graph_module) -> str:
  """What a node calls, as a user wrote it (``torch.sigmoid``,
  ``F.relu``, ``.view()``, ``features.3 (LSTM)``)."""
  import torch  # pylint: disable=g-import-not-at-top
  if node.op == "call_module":
    kind = type(graph_module.get_submodule(node.target)).__name__
    return f"{node.target} ({kind})"
  if node.op == "call_method":
    return f".{node.target}()"
  if node.op == "get_attr":
    return f"self.{node.target}"
  if node.op != "call_function":
    return str(node.target)
  target = node.target
  name = getattr(target, "__name__", repr(target))
  for prefix, namespace in (("torch", torch), ("F", torch.nn.functional),
                            ("operator", operator)):
    if getattr(namespace, name, None) is target:
      return f"{prefix}.{name}"
  return f"{getattr(target, '__module__', None) or '?'}.{name}"


def _source_line(node) -> str:
  """``file.py:23: x = torch.sigmoid(x)``: the innermost frame of the
  node's stack trace outside torch itself, or ''."""
  import torch  # pylint: disable=g-import-not-at-top
  torch_dir = os.path.dirname(torch.__file__)
  lines = (node.stack_trace or "").splitlines()
  found = ""
  for i, line in enumerate(lines):
    text = line.strip()
    if not text.startswith('File "'):
      continue
    path, _, rest = text[len('File "'):].partition('", line ')
    if path.startswith(torch_dir):
      continue
    number = rest.split(",")[0]
    code = lines[i + 1].strip() if i + 1 < len(lines) else ""
    found = f"{os.path.basename(path)}:{number}: {code}"
  return found


def where(node, graph_module) -> str:
  """``node 7 `torch.sigmoid` in forward (net.py:23: ...)``."""
  index = list(graph_module.graph.nodes).index(node)
  line = _source_line(node)
  name = f"`{target_name(node, graph_module)}`"
  if node.op == "call_module":   # `features.3` (LSTM)
    name = name.replace(" (", "` (").rstrip("`")
  return (f"node {index} {name} in forward" + (f" ({line})" if line else
                                                ""))


def is_shape_node(node) -> bool:
  """A node that reads a size, not the signal (``x.shape[0]``)."""
  if node.op == "call_method" and node.target in _SHAPE_METHODS:
    return True
  if node.op != "call_function":
    return False
  if node.target is getattr and node.args[1:2] in (("shape",), ("ndim",)):
    return True
  inputs = node.all_input_nodes
  return (node.target in (operator.getitem, operator.mul, operator.floordiv,
                          operator.add, operator.sub, operator.neg)
          and bool(inputs) and all(is_shape_node(n) for n in inputs))


def is_reshape(node) -> bool:
  """A node that may only move axes of size 1 (checked on the probe's
  shapes by ``canonical``); an index counts when it only adds or takes
  axes (``x[:, None]``, ``x[..., 0]``), never one that selects or crops."""
  import torch  # pylint: disable=g-import-not-at-top
  if node.op == "call_method":
    return node.target in RESHAPE_METHODS
  if node.op != "call_function":
    return False
  if node.target in (torch.reshape, torch.unsqueeze, torch.squeeze,
                     torch.flatten):
    return True
  if node.target is operator.getitem and not is_shape_node(node):
    index = node.args[1]
    index = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or i == slice(None) or
               (isinstance(i, int) and not isinstance(i, bool) and i in (0,
                                                                          -1))
               for i in index)
  return False


def canonical(shape: Optional[Shape]) -> Optional[Shape]:
  """``[B, C, T]`` of a signal laid out as ``[B, T]`` (mono),
  ``[B, C, T]`` or ``[B, C, T, 1]``; None for any other layout."""
  if shape is None:
    return None
  if len(shape) == 2:
    return (shape[0], 1, shape[1])
  if len(shape) == 3:
    return tuple(shape)
  if len(shape) == 4 and shape[3] == 1:
    return tuple(shape[:3])
  return None


def _data_users(node) -> List[Any]:
  return [u for u in node.users if not is_shape_node(u)]


def chain(graph_module) -> List[Any]:
  """The nodes between the input and the output, in ``forward``'s order;
  UserError where the graph is not one chain (two inputs, a branch, a
  node combining two signals, a tuple returned)."""
  nodes = list(graph_module.graph.nodes)
  inputs = [n for n in nodes if n.op == "placeholder"]
  if len(inputs) != 1:
    raise UserError(f"forward takes {len(inputs)} inputs "
                    f"({', '.join(str(n.target) for n in inputs)}); only a "
                    "module of one waveform input converts")
  for node in nodes:
    if is_shape_node(node):
      for user in node.users:
        if not (is_shape_node(user) or is_reshape(user)):
          raise UserError(
              f"{where(user, graph_module)} depends on the input's size "
              f"(through {where(node, graph_module)}); only reshapes may")
  out, current = [], inputs[0]
  while True:
    users = _data_users(current)
    if len(users) != 1:
      what = ", ".join(where(u, graph_module) for u in users) or "nothing"
      raise UserError(
          f"the signal after {where(current, graph_module)} goes to "
          f"{len(users)} nodes ({what}); only a single chain of layers "
          "converts (no branches or residual connections)")
    user = users[0]
    if user.op == "output":
      if user.args[0] is not current:
        raise UserError(f"forward returns {type(user.args[0]).__name__} "
                        "holding the signal; it must return the one "
                        "tensor the last layer computes")
      return out
    signals = [n for n in user.all_input_nodes if not is_shape_node(n)]
    if signals != [current]:
      raise UserError(
          f"{where(user, graph_module)} combines {len(signals)} inputs "
          f"({', '.join(str(n) for n in signals)}); only a single chain of "
          "layers converts")
    out.append(user)
    current = user


def recorder_class():
  """An fx ``Interpreter`` that keeps every node's output shape and the
  values of the nodes in ``keep`` (a class made on first use: torch is
  optional)."""
  import torch  # pylint: disable=g-import-not-at-top

  class Recorder(torch.fx.Interpreter):
    """Runs the graph node by node, as ``forward`` does."""

    def __init__(self, graph_module, keep: Iterable[Any] = ()):
      super().__init__(graph_module)
      self.keep = set(keep)
      self.shapes: Dict[Any, Shape] = {}
      self.kept: Dict[Any, Any] = {}

    def run_node(self, n):
      result = super().run_node(n)
      if isinstance(result, torch.Tensor):
        self.shapes[n] = tuple(result.shape)
        if n in self.keep:
          self.kept[n] = result.detach().clone()
      return result

  return Recorder


def run(graph_module, probe, keep: Sequence[Any] = ()):
  """``(recorder, output)`` of the graph on ``probe`` (no gradients)."""
  import torch  # pylint: disable=g-import-not-at-top
  recorder = recorder_class()(graph_module, keep)
  with torch.no_grad():
    output = recorder.run(probe)
  return recorder, output


def as_btc(value) -> "np.ndarray":
  """A torch block output in any signal layout (``canonical``) -> numpy
  ``[B, T, C]``, the converted network's layout."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  value = value.detach().cpu().float().numpy()
  return np.transpose(value.reshape(canonical(value.shape)), (0, 2, 1))
