"""The controls every analysis claim is reported next to.

A study measures something of a trained model (the coherence of its most
active map's sonification, the accuracy lost when that sonification is
removed, ...). Two controls could refute the claim that training made it so:

* ``untrained``: the same measurement on the untrained init of the same run
  (the step-0 checkpoint the trainer always keeps; same architecture, same
  seed). What the architecture does anyway.
* ``random_map``: the trained model, but a feature map drawn uniformly among
  the maps that are *live* (non-zero max-over-time activation) on that clip
  at that layer, in place of the most active one. What any live map does.

``load_run`` gives a run's trained and untrained encoder params in one call;
``choose_maps`` picks the map per clip for a condition, seeded per (seed,
layer, clip index) so the choice does not depend on batching or on which
other layers are studied. Studies write per layer
``{"trained": x, "untrained": y, "random_map": z}`` (``per_layer`` in their
JSON), which ``analysis.aggregate`` combines over runs.
"""
import dataclasses
from typing import Any, Dict, Optional, Sequence

import numpy as np

from sonify_jax import paths
from sonify_jax.errors import UserError
from sonify_jax.models.network import Network

Params = Any

TRAINED, UNTRAINED, RANDOM_MAP = "trained", "untrained", "random_map"
CONDITIONS = (TRAINED, UNTRAINED, RANDOM_MAP)
# How figures and the gallery name the conditions.
LABELS = {TRAINED: "trained",
          UNTRAINED: "untrained init (step 0) [control]",
          RANDOM_MAP: "random live map [control]"}
DEFAULT_SEED = 0


@dataclasses.dataclass
class RunParams:
  """A run's encoder at the analysed step and at its untrained init.

  Attributes:
    trained: encoder params at ``step`` (by default the step the run
      selected on validation, else its latest: ``checkpoints.choose_step``).
    untrained: encoder params of the untrained init (None if unknown).
    arch: the architecture.
    step: the trained step loaded.
    untrained_source: how ``untrained`` was obtained.
    info: the run's run.json (config, num_classes, class_names, ...).
    head: classifier head params at ``step`` (None for encoder-only runs).
    choice: which step was loaded and why (a ``checkpoints.StepChoice``;
      None for params that came from no run).
    frame_head: a converted network's frame head params (CREPE's pitch
      classifier), else None.
  """
  trained: Params
  untrained: Optional[Params]
  arch: Network
  step: int = -1
  untrained_source: str = ""
  info: Optional[Dict[str, Any]] = None
  head: Optional[Params] = None
  choice: Any = None
  frame_head: Optional[Params] = None


def _reinitialised_encoder(info: Dict[str, Any]) -> Params:
  """The random encoder init the trainer draws from ``config.seed``.

  Used where the run has no step-0 checkpoint (older runs), or where its
  step 0 is not untrained (``init_from``: step 0 holds another run's encoder).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import state as state_lib, trainer  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(info["config"])
  # A run saved before compute_dtype existed lacks it; the init does not
  # depend on it (params are float32 whatever the compute dtype).
  if "compute_dtype" not in config:
    config.compute_dtype = "float32"
  model = trainer.build_model(config, int(info.get("num_classes") or 0),
                              bool(info.get("multilabel", False)))
  init_key, _ = jax.random.split(jax.random.PRNGKey(config.seed))
  return state_lib.init_params(model, init_key)["encoder"]


def load_run(run_dir: str, step=None, with_head: bool = False) -> RunParams:
  """Trained and untrained encoder of a run.

  ``step``: None for the step the run selected on validation (its latest
  when it ranks none), ``checkpoints.LATEST``, or a step number.

  Raises:
    UserError: ``run_dir`` is not a run, or ``with_head`` and it has no
      classifier head.
  """
  from sonify_jax.models.registry import get_network  # pylint: disable=g-import-not-at-top
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  if not paths.as_path(run_dir).is_dir():
    raise UserError(f"run directory {run_dir} does not exist")
  try:
    info = checkpoints.load_run_info(run_dir)
    # A step folder (RUN/checkpoints/800) is that run at that step.
    choice = checkpoints.choose_step(run_dir, step)
    run_dir = checkpoints.split_step_dir(run_dir)[0]
    steps = checkpoints.available_steps(run_dir)
  except FileNotFoundError as e:
    raise UserError(str(e).splitlines()[0]) from None
  step = choice.step
  raw = checkpoints.load_state(run_dir, step=step)
  trained = raw["params"]["encoder"]
  head = raw["params"].get("head")
  if with_head and head is None:
    raise UserError(f"{run_dir} is not a classifier run (its checkpoint has "
                    "no classifier head)")
  arch = get_network(info.get("arch") or info["config"]["model"])
  if 0 in steps and not info["config"].get("init_from"):
    untrained, how = checkpoints.load_encoder(run_dir, 0)[0], "step-0 checkpoint"
  else:
    untrained = _reinitialised_encoder(info)
    how = "re-drawn from config.seed (no untrained step-0 checkpoint)"
  return RunParams(trained, untrained, arch, step, how, info, head, choice,
                   raw["params"].get("frame_head"))


def live_maps(activations: np.ndarray) -> np.ndarray:
  """``[B, C]`` max-over-time activations -> ``[B, C]`` bool: map is live."""
  return np.asarray(activations) > 0


def clip_rng(seed: int, layer: int, clip_index: int) -> np.random.Generator:
  """The generator of one (clip, layer) draw: independent of batching."""
  return np.random.default_rng([int(seed), int(layer), int(clip_index)])


def random_live_maps(activations: np.ndarray, clip_indices: Sequence[int],
                     layer: int, seed: int = DEFAULT_SEED) -> np.ndarray:
  """One map per clip, uniform among its live maps at ``layer``.

  A clip with no live map gets its most active (dead) map, so the caller
  sonifies silence, as for the trained condition.

  Args:
    activations: ``[B, C]`` max-over-time activations of the trained model.
    clip_indices: ``[B]`` source indices (the draw's seed; -1 marks padding
      rows, which get the most active map).
  Returns:
    ``[B]`` int map indices.
  """
  activations = np.asarray(activations)
  live = live_maps(activations)
  out = activations.argmax(axis=1)
  for row, clip in enumerate(clip_indices):
    candidates = np.flatnonzero(live[row])
    if candidates.size and clip >= 0:  # -1: a batch's padding row
      out[row] = clip_rng(seed, layer, clip).choice(candidates)
  return out


def choose_maps(condition: str, activations: np.ndarray,
                clip_indices: Sequence[int], layer: int,
                seed: int = DEFAULT_SEED) -> np.ndarray:
  """The map per clip a condition sonifies, from that condition's model's
  activations (``trained``/``untrained``: most active; ``random_map``: a
  random live one)."""
  if condition == RANDOM_MAP:
    return random_live_maps(activations, clip_indices, layer, seed)
  if condition in (TRAINED, UNTRAINED):
    return np.asarray(activations).argmax(axis=1)
  raise ValueError(f"unknown condition {condition!r}; known: {CONDITIONS}")


def condition_params(condition: str, run: RunParams) -> Optional[Params]:
  """The encoder a condition measures (``random_map`` uses the trained)."""
  return run.untrained if condition == UNTRAINED else run.trained


def as_run(model: Any) -> RunParams:
  """``RunParams`` from a ``RunParams`` or ``(params, arch[, untrained])``."""
  if isinstance(model, RunParams):
    return model
  params, arch, *rest = model
  return RunParams(params, rest[0] if rest else None, arch)


def conditions_of(run: RunParams) -> Sequence[str]:
  """The conditions measurable for ``run`` (no untrained without params)."""
  return tuple(c for c in CONDITIONS
               if c != UNTRAINED or run.untrained is not None)


def models_of(runs: Sequence[Any]) -> Dict[str, Dict[str, Any]]:
  """``[(name, run)]`` -> ``{name: {'trained': (params, arch),
  'untrained': (params, arch)}}`` (the activity and time-invariance studies'
  input; ``'untrained'`` only where the run has it). ``run`` is a
  ``RunParams`` or a ``(params, arch[, untrained])`` tuple."""
  models = {}
  for name, run in runs:
    run = as_run(run)
    variants = {TRAINED: (run.trained, run.arch)}
    if run.untrained is not None:
      variants[UNTRAINED] = (run.untrained, run.arch)
    models[name] = variants
  return models
