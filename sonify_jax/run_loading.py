"""The params of a run (trained or converted) at a chosen step, with its
network's head where a command needs it; one ``error:`` line for a run that
cannot serve. Library code shared by the commands (``track``,
``visualize``), kept apart from them so that importing it defines no flags.
"""
from typing import Any, Dict, Tuple

from sonify_jax import paths
from sonify_jax.errors import UserError


def network_of(checkpoint: str):
  """The network of the run at ``checkpoint``, from its run record."""
  from sonify_jax.models.registry import get_network  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  if not paths.as_path(checkpoint).is_dir():
    raise UserError(f"--checkpoint {checkpoint} is not a run folder")
  try:
    info = checkpoints.load_run_info(checkpoint)
  except FileNotFoundError as error:
    raise UserError(str(error).splitlines()[0]) from None
  return get_network(info.get("arch") or info["config"]["model"])


def load(checkpoint: str, step=None, with_head: bool = False
         ) -> Tuple[Dict[str, Any], Any, Any]:
  """``(params, network, step choice)`` of the run at ``checkpoint`` (its
  folder, checkpoints folder or one step folder); ``with_head``: the
  params include the network's head's, which it must have."""
  from sonify_jax.importers.run_dir import FRAME_HEAD  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  net = network_of(checkpoint)
  try:
    choice = checkpoints.choose_step(checkpoint, step)
  except FileNotFoundError as error:
    raise UserError(str(error).splitlines()[0]) from None
  if with_head and net.head is None:
    raise UserError(f"the network of {checkpoint} ({net.name}) has no head")
  run_dir = checkpoints.split_step_dir(checkpoint)[0]
  raw = checkpoints.load_state(run_dir, step=choice.step)
  try:
    params = dict(raw["params"]["encoder"])
  except (KeyError, TypeError):
    raise UserError(f"{checkpoint} step {choice.step} has no "
                    "params['encoder']") from None
  if with_head:
    head = raw["params"].get(FRAME_HEAD)
    if not head or net.head.name not in head:
      raise UserError(f"{checkpoint} step {choice.step} holds no params of "
                      f"its network's head {net.head.name!r}")
    params.update(head)
  return params, net, choice
