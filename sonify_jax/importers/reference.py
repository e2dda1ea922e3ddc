"""Independent references in PyTorch: Captum's attribution methods on the
torch model itself (tests and ``benchmarks/sonify_bench.py``; needs the
torch extra).

Sonifying map ``m`` of block ``L`` sends block L's output, with every map
but ``m`` zeroed, down the network (Algorithm 1). Captum computes gradients
of one scalar per example, so the model is wrapped to output
``0.5 * sum_t h_m(t)^2``, whose gradient with respect to ``h_m`` is ``h_m``
itself; Captum's rule then replaces each ``nn.ReLU``'s backward:

* ``deconvnet``: ``captum.attr.Deconvolution``;
* ``guided``: ``captum.attr.GuidedBackprop``;
* ``gradient``: ``captum.attr.Saliency(abs=False)``;
* ``input_x_gradient``: ``captum.attr.InputXGradient``.

The result is the unscaled sonification of the prepared input (the
network's input convention applied by the caller), one backward pass per
map, which is how Captum is used.
"""
from typing import Sequence

import numpy as np

METHODS = {"deconvnet": "Deconvolution", "guided": "GuidedBackprop",
           "gradient": "Saliency", "input_x_gradient": "InputXGradient"}


def map_energy_model(trunk, feature_map: int, layout: str):
  """``[B, T]`` -> ``[B]``: half the energy of map ``feature_map`` of
  ``trunk``'s output; ``layout`` ``'1d'`` feeds ``[B, 1, T]``, ``'2d'``
  ``[B, 1, T, 1]`` (CREPE's)."""
  import torch  # pylint: disable=g-import-not-at-top

  class MapEnergy(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.trunk = trunk

    def forward(self, x):
      x = x[:, None, :, None] if layout == "2d" else x[:, None, :]
      h = self.trunk(x)[:, feature_map]
      return 0.5 * (h ** 2).reshape(h.shape[0], -1).sum(dim=1)

  return MapEnergy().eval()


def captum_sonify(trunk, prepared: np.ndarray, maps: Sequence[int],
                  rule: str = "deconvnet", layout: str = "1d") -> np.ndarray:
  """``[clips, T]`` prepared inputs -> ``[clips, maps, T]`` unscaled
  sonifications by Captum's method for ``rule``, one map at a time."""
  import captum.attr  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  x = torch.from_numpy(np.ascontiguousarray(prepared, np.float32))
  out = []
  for m in maps:
    method = getattr(captum.attr, METHODS[rule])(
        map_energy_model(trunk, int(m), layout))
    x_in = x.clone().requires_grad_(True)
    kwargs = {"abs": False} if rule == "gradient" else {}
    out.append(method.attribute(x_in, **kwargs).detach().numpy())
  return np.stack(out, axis=1)
