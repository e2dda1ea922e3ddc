"""A conversion checks itself before anything is written.

The converted network runs (``forward.block_outputs``, float32 at full
precision) on the same seeded probe as the torch model it came from, and
every block's output, and the frame head's where there is one, must equal
torch's to float32 rounding: at most ``TOLERANCE`` of that block's peak.
Otherwise the conversion is refused, naming the block and the largest
difference, because a network that silently computes something else would
be sonified and studied as if it were the user's.
"""
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sonify_jax.errors import UserError
from sonify_jax.models import forward
from sonify_jax.models import network as network_lib

# float32 rounding over a few hundred multiply-adds per output is ~1e-6 of
# the peak (CREPE full: 1.3e-7); a wrong layer is off by tens of percent.
TOLERANCE = 1e-4
PROBE_SEED = 0
PROBE_CLIPS = 2


def probe_length(net: network_lib.Network) -> int:
  """A few frames of the deepest block, plus an odd tail so that floor
  lengths and right-hand padding are exercised."""
  return 3 * net.min_input_length(net.num_blocks) + 7


def raw_probe(length: int) -> np.ndarray:
  """Seeded ``[PROBE_CLIPS, length]`` noise."""
  rng = np.random.default_rng(PROBE_SEED)
  return rng.standard_normal((PROBE_CLIPS, length)).astype(np.float32)


def probe(net: network_lib.Network, length: int) -> np.ndarray:
  """``raw_probe`` with the network's input convention applied (what the
  torch model is fed: a torch trunk does not standardise its input)."""
  return np.asarray(forward.prepare_input(net, jnp.asarray(
      raw_probe(length))))


def ours(net: network_lib.Network, params, prepared: np.ndarray):
  """The converted network's block outputs ``[B, T, C]`` (float32 math:
  an accelerator's default bfloat16 passes would hide nothing but blur)."""
  with jax.default_matmul_precision("float32"):
    return [np.asarray(h) for h in forward.block_outputs(
        params, jnp.asarray(prepared), net, prepared=True)]


def our_head(net: network_lib.Network, params, raw: np.ndarray
             ) -> np.ndarray:
  """The frame head's scores of ``raw`` frames (prepared as the network
  prepares each frame)."""
  with jax.default_matmul_precision("float32"):
    return np.asarray(forward.frame_head_scores(params, net,
                                                jnp.asarray(raw)))


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
  """Largest difference over the reference's peak (absolute when the
  reference is all zeros, e.g. a block no probe sample excites)."""
  peak = float(np.abs(want).max()) if want.size else 0.0
  diff = float(np.abs(got - want).max()) if want.size else 0.0
  return diff / peak if peak > 0 else diff


def compare(what: str, want: Sequence[np.ndarray],
            got: Sequence[np.ndarray], labels: Sequence[str],
            reference: str = "torch") -> None:
  """UserError at the first of ``labels`` (``'block 2'``, ``'the head'``)
  whose output differs from the reference (``reference`` names it) by more
  than TOLERANCE."""
  for label, w, g in zip(labels, want, got):
    if w.shape != g.shape:
      raise UserError(
          f"the conversion of {what} does not compute what {reference} "
          f"computes: {label} has shape {g.shape}, {reference}'s "
          f"{w.shape}; nothing was written")
    error = relative_error(g, w)
    if not error <= TOLERANCE:
      raise UserError(
          f"the conversion of {what} does not compute what {reference} "
          f"computes: {label}'s output differs from {reference}'s by "
          f"{error:.3g} of its peak (float32 rounding allows "
          f"{TOLERANCE:g}) on a seeded probe; nothing was written")
