"""PyTorch modules -> a network description and its params.

Supported, in any order (``nn.Sequential``, ``nn.ModuleList`` or a list):

* ``Conv1d``, and ``Conv2d`` with ``(k, 1)`` kernels, strides and dilations
  over a ``[B, C, T, 1]`` signal (CREPE's layout); zero padding (explicit,
  or ``'same'``/``'valid'``), ``groups=1``, with or without bias;
* ``ReLU``;
* ``BatchNorm1d`` / ``BatchNorm2d`` in eval mode: its running statistics
  become a per-channel affine layer, ``scale = gamma / sqrt(var + eps)``,
  ``bias = beta - mean * scale``;
* ``MaxPool1d`` / ``MaxPool2d`` with ``(k, 1)`` windows, ``ceil_mode`` off,
  no dilation;
* ``ZeroPad1d`` / ``ZeroPad2d`` (time padding only) and
  ``ConstantPad1d/2d`` with value 0;
* ``Dropout`` (any), ``Identity``: nothing at inference.

Anything else (an LSTM, a Linear in the trunk, a grouped conv, a sigmoid, a
module with its own ``forward``) is refused with a ``UserError`` naming the
module's type and position: the deconvnet's transposed chain is defined for
these layers only, and a silently skipped layer would give a wrong result.
A new block starts at each conv (with the pads just before it), so block
``L`` is "conv L and what follows it".

``params_from_state_dict`` maps a ``state_dict`` onto a description whose
layer names are the state-dict prefixes (``conv1.weight`` ->
``params['conv1']['kernel']``), for networks built in code that is not a
Sequential (torchcrepe's ``Crepe`` calls ``F.pad``/``F.relu`` in its own
``forward``).
"""
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from sonify_jax.errors import UserError
from sonify_jax.models import network as network_lib

TORCH_BN_EPS = 1e-5


def _numpy(tensor) -> np.ndarray:
  return np.asarray(tensor.detach().cpu().numpy(), np.float32)


def conv_kernel(weight) -> np.ndarray:
  """torch ``[C_out, C_in, k]`` or ``[C_out, C_in, k, 1]`` -> ``[k, C_in,
  C_out]``."""
  w = weight if isinstance(weight, np.ndarray) else _numpy(weight)
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


def _time(value, what: str, position: int, kind: str) -> int:
  """The time component of an int or ``(t, 1)``/``(t,)`` tuple."""
  if isinstance(value, int):
    return value
  value = tuple(value)
  if len(value) == 1:
    return int(value[0])
  if len(value) == 2 and value[1] in (1, 0) and kind == "2d":
    return int(value[0])
  raise UserError(f"module {position} ({what}): only (k, 1) windows over a "
                  f"[B, C, T, 1] signal are supported, got {value}")


def _pad_pair(module, position: int) -> Tuple[int, int]:
  name = type(module).__name__
  padding = tuple(module.padding) if not isinstance(module.padding, int) \
      else (module.padding, module.padding)
  if name.endswith("1d"):
    return int(padding[0]), int(padding[1])
  # 2-D pads are (left, right, top, bottom): left/right pad the unit width.
  if padding[0] or padding[1]:
    raise UserError(f"module {position} ({name}): pads the width "
                    f"{padding[:2]}; only time padding (top, bottom) of a "
                    "[B, C, T, 1] signal is supported")
  return int(padding[2]), int(padding[3])


def from_modules(modules: Sequence[Any], name: str, sample_rate: int,
                 input_convention: str = "none"
                 ) -> Tuple[network_lib.Network, Dict[str, Any]]:
  """``(description, params)`` of a list of torch modules (see the module
  docstring); raises UserError for an unsupported module."""
  import torch  # pylint: disable=g-import-not-at-top
  modules = list(modules.children()) if isinstance(
      modules, torch.nn.Module) else list(modules)
  blocks: List[List[Any]] = []
  pending: List[Any] = []   # pads waiting for the conv they precede
  params: Dict[str, Any] = {}
  count = {"conv": 0, "bn": 0}

  def add(layer):
    if not blocks:
      blocks.append([])
    blocks[-1].append(layer)

  for position, module in enumerate(modules):
    kind = type(module).__name__
    if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
      d = "2d" if isinstance(module, torch.nn.Conv2d) else "1d"
      if module.groups != 1 or module.padding_mode != "zeros":
        raise UserError(f"module {position} ({kind}): only groups=1 and "
                        "zero padding are supported")
      if isinstance(module.padding, str):
        padding = module.padding
      else:
        p = _time(module.padding, kind, position, d)
        padding = (p, p)
        if d == "2d" and tuple(module.padding)[1] != 0:
          raise UserError(f"module {position} ({kind}): pads the width")
      count["conv"] += 1
      layer_name = f"conv{count['conv']}"
      layer = network_lib.Conv(
          layer_name, int(module.out_channels),
          _time(module.kernel_size, kind, position, d),
          stride=_time(module.stride, kind, position, d),
          dilation=_time(module.dilation, kind, position, d),
          padding=padding, use_bias=module.bias is not None)
      params[layer_name] = {"kernel": conv_kernel(module.weight)}
      if module.bias is not None:
        params[layer_name]["bias"] = _numpy(module.bias)
      blocks.append(pending + [layer])
      pending = []
      continue
    if pending:
      raise UserError(f"module {position} ({kind}): a pad must precede a "
                      "conv")
    if isinstance(module, torch.nn.ReLU):
      add(network_lib.ReLU())
    elif isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
      if module.training or not module.track_running_stats:
        raise UserError(f"module {position} ({kind}): BatchNorm must be in "
                        "eval mode with running statistics (call .eval())")
      count["bn"] += 1
      layer_name = f"bn{count['bn']}"
      add(network_lib.Affine(layer_name))
      params[layer_name] = batch_norm_affine(
          None if module.weight is None else _numpy(module.weight),
          None if module.bias is None else _numpy(module.bias),
          _numpy(module.running_mean), _numpy(module.running_var),
          float(module.eps))
    elif isinstance(module, (torch.nn.MaxPool1d, torch.nn.MaxPool2d)):
      d = "2d" if isinstance(module, torch.nn.MaxPool2d) else "1d"
      stride = module.stride if module.stride is not None else \
          module.kernel_size
      if module.ceil_mode or _time(module.dilation, kind, position, d) != 1 \
          or module.return_indices:
        raise UserError(f"module {position} ({kind}): ceil_mode, dilation "
                        "and return_indices are not supported")
      p = _time(module.padding, kind, position, d)
      add(network_lib.MaxPool(_time(module.kernel_size, kind, position, d),
                              _time(stride, kind, position, d), (p, p)))
    elif isinstance(module, (torch.nn.ZeroPad1d, torch.nn.ZeroPad2d,
                             torch.nn.ConstantPad1d, torch.nn.ConstantPad2d)):
      if float(getattr(module, "value", 0.0)) != 0.0:
        raise UserError(f"module {position} ({kind}): only zero padding is "
                        "supported")
      pending.append(network_lib.Pad(_pad_pair(module, position)))
    elif isinstance(module, (torch.nn.Dropout, torch.nn.Dropout1d,
                             torch.nn.Dropout2d, torch.nn.Identity)):
      add(network_lib.Identity("dropout" if "Dropout" in kind
                               else "identity"))
    else:
      raise UserError(
          f"module {position} is a {kind}, which the deconvnet does not "
          "support; supported: Conv1d, Conv2d (k, 1), ReLU, BatchNorm1d/2d "
          "(eval), MaxPool1d/2d (k, 1), ZeroPad/ConstantPad (0), Dropout, "
          "Identity")
  if pending:
    raise UserError("the modules end in a pad with no conv after it")
  if not blocks:
    raise UserError("no modules to convert")
  net = network_lib.Network(name, tuple(tuple(b) for b in blocks),
                            sample_rate, input_convention=input_convention)
  return net, params


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
    return value if isinstance(value, np.ndarray) else _numpy(value)

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
