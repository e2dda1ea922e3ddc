"""Static description of the CNN12 family: kernels, widths, pools, lengths."""
import dataclasses
from typing import Tuple

from sonify_jax.errors import UserError

SAMPLE_RATE = 8000

_CNN12_KERNELS = (7, 7, 5, 5, 5, 3, 3, 3, 3, 3, 3)
_CNN12_CHANNELS = (64, 64, 128, 128, 256, 256, 512, 512, 1024, 1024, 2048)
_NUM_POOLED_BLOCKS = 8


@dataclasses.dataclass(frozen=True)
class Architecture:
  """Kernel sizes and widths of the conv blocks (block numbers are 1-based)."""
  name: str
  kernels: Tuple[int, ...]
  channels: Tuple[int, ...]
  num_pooled_blocks: int = _NUM_POOLED_BLOCKS
  embed_dim: int = 512

  @property
  def num_blocks(self) -> int:
    return len(self.kernels)

  def check_block(self, block: int) -> None:
    if isinstance(block, bool) or not isinstance(block, int):
      raise UserError(f"block/layer must be an int, got {block!r}")
    if not 1 <= block <= self.num_blocks:
      raise UserError(
          f"layer {block} is outside 1..{self.num_blocks} for {self.name}")

  def is_pooled(self, block: int) -> bool:
    self.check_block(block)
    return block <= self.num_pooled_blocks

  def block_lengths(self, input_length: int, block: int) -> Tuple[int, int]:
    """(conv output length, block output length) of ``block``; may be <= 0."""
    self.check_block(block)
    length = input_length
    for b in range(1, block + 1):
      conv_length = length - self.kernels[b - 1] + 1
      length = conv_length // 2 if self.is_pooled(b) else conv_length
      if conv_length <= 0:
        return conv_length, min(length, 0)
    return conv_length, length

  def output_length(self, input_length: int, block: int) -> int:
    return self.block_lengths(input_length, block)[1]

  def min_input_length(self, block: int) -> int:
    """Shortest input whose ``block`` output has at least one sample.

    This is the receptive field of one output sample of ``block``.
    """
    self.check_block(block)
    length = 1
    for b in range(block, 0, -1):
      if self.is_pooled(b):
        length *= 2
      length += self.kernels[b - 1] - 1
    return length

  def total_stride(self, block: int) -> int:
    """Samples of input per output sample of ``block``."""
    return 2 ** min(block, self.num_pooled_blocks)


CNN12 = Architecture("cnn12", _CNN12_KERNELS, _CNN12_CHANNELS)
CNN12_X2 = Architecture("cnn12_x2", _CNN12_KERNELS,
                        tuple(2 * c for c in _CNN12_CHANNELS))

# Narrow variants with the same kernels, pools and receptive fields, for demos
# and tests on a CPU (not in the thesis).
CNN12_SMALL = Architecture("cnn12_small", _CNN12_KERNELS,
                           tuple(c // 8 for c in _CNN12_CHANNELS), embed_dim=128)
CNN12_TINY = Architecture("cnn12_tiny", _CNN12_KERNELS,
                          tuple(c // 16 for c in _CNN12_CHANNELS), embed_dim=64)

ARCHITECTURES = {a.name: a for a in (CNN12, CNN12_X2, CNN12_SMALL, CNN12_TINY)}


def get_architecture(name: str) -> Architecture:
  try:
    return ARCHITECTURES[name]
  except KeyError:
    raise ValueError(
        f"unknown model {name!r}; choose from {sorted(ARCHITECTURES)}") from None
