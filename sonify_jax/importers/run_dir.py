"""A converted network as a run directory, read like a trained run.

Layout of ``DIR`` (built beside it under a temporary name and renamed in
when complete, so a failed conversion leaves the old ``DIR`` or nothing)::

  DIR/network.json                  the description (models/network.py)
  DIR/provenance.json               where the weights came from (file,
                                    sha256, package and torch versions)
  DIR/checkpoints/run.json          {'arch': description, 'config': {...},
                                     'converted_from': provenance}
  DIR/checkpoints/0/                a seeded random init of the same network
                                    (the untrained control of every study)
  DIR/checkpoints/1/                the converted weights
  DIR/checkpoints/<step>/checksums.json

Both steps hold ``{'params': {'encoder': ..., 'frame_head': ...}, 'step'}``
in orbax's format with the checksums of a trained run; having no best
metric, a run reads its latest step, the converted one. After conversion
nothing needs torch.
"""
import os
from typing import Any, Dict

import jax
import numpy as np

from sonify_jax import atomic_io
from sonify_jax.importers import Imported
from sonify_jax.models import encoder

CONVERTED_STEP = 1
INIT_STEP = 0
FRAME_HEAD = "frame_head"   # params key of a network's frame head


def _random_head(imported: Imported, seed: int) -> Dict[str, Any]:
  """A LeCun-normal init of the head (zero bias), same shapes (fan-in:
  every axis of the kernel but the last)."""
  rng = np.random.default_rng(seed)
  out = {}
  for name, p in imported.head_params.items():
    kernel = p["kernel"]
    out[name] = {"kernel": (rng.standard_normal(kernel.shape)
                            / np.sqrt(np.prod(kernel.shape[:-1]))
                            ).astype(np.float32),
                 "bias": np.zeros_like(p["bias"])}
  return out


def write(imported: Imported, out_dir: str, seed: int = 0) -> str:
  """Writes ``imported`` as a run directory (see the module docstring);
  returns ``out_dir``."""
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  net = imported.net
  random_init = jax.tree.map(np.asarray, encoder.init_params(net, seed))
  states = {INIT_STEP: {"encoder": random_init},
            CONVERTED_STEP: {"encoder": imported.params}}
  if imported.head_params:
    states[INIT_STEP][FRAME_HEAD] = _random_head(imported, seed)
    states[CONVERTED_STEP][FRAME_HEAD] = imported.head_params
  config = {"model": net.name, "seed": seed, "dataset": None,
            "converted": True, "best_metric": ""}
  with atomic_io.atomic_dir(out_dir) as tmp:
    atomic_io.write_json(os.path.join(tmp, "network.json"), net.to_dict())
    atomic_io.write_json(os.path.join(tmp, "provenance.json"),
                         imported.provenance)
    checkpointer = checkpoints.Checkpointer(tmp, keep_last=2)
    try:
      for step, params in states.items():
        params = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
        checkpointer.save(step, {"params": params,
                                 "step": np.asarray(step, np.int32)})
    finally:
      checkpointer.close()
    checkpoints.save_run_info(tmp, config, arch=net.to_dict(),
                              converted_from=imported.provenance,
                              num_classes=0)
  return out_dir
