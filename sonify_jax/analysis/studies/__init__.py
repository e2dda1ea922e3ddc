"""The studies, one module each, found by name.

Every module ``sonify_jax.analysis.studies.<name>`` (a name without a leading
``_``) is one study: pure functions of a run's parameters and its clips that
write one JSON (and figure), and at its end a ``STUDY`` (a :class:`Study`):
the flags of ``python -m sonify_jax.analysis.run`` it reads, the checks of
their values it needs before anything is loaded, and the call that runs it on
what ``analysis.run`` loaded (a :class:`Context`). ``get(name)`` imports the
module and returns its ``STUDY``, the way big_vision's
``evaluators/common.from_config`` finds an evaluator, so ``analysis/run.py``
only dispatches and a new study touches one file.

This package's ``__init__`` imports nothing heavy: ``names()`` lists the
studies without importing them (``--help`` stays fast).
"""
import dataclasses
import importlib
import os
import pkgutil
import types
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple

from sonify_jax.errors import UserError

# Flags every study takes (analysis.run checks them itself).
COMMON_FLAGS = frozenset({"study", "workdir", "checkpoint"})
# Flags of every study that reads runs and clips: which step, which data,
# which layers, how clips are batched and cropped.
DATA_FLAGS = frozenset({"step", "dataset", "split", "audio_dir", "data_dir",
                        "layers", "batch_size", "clip_seconds",
                        "max_clips"})


@dataclasses.dataclass(frozen=True)
class Study:
  """One study as ``analysis.run`` sees it.

  Attributes:
    name: ``--study=NAME`` (the module's name).
    flags: the flags of ``analysis.run`` it reads besides ``COMMON_FLAGS``;
      a flag the user sets that is not here is refused before anything is
      read. ``Context.options`` holds exactly these (and the common ones).
    run: ``run(context)``: the study on the loaded runs and data; prints
      with ``context.say``.
    check: ``check(options)``: raises ``UserError`` for option values (or
      combinations) the study cannot use; runs before any checkpoint or data
      is read. None: the flags' domains say everything.
    reads_runs: False for a study of earlier study outputs (the gallery:
      ``--checkpoint`` names top-k folders, nothing is loaded).
    labelled: the study scores the run's classifier on the data's labels
      (the data's classes must match its head).
    max_runs: how many ``--checkpoint`` runs it studies (None: any).
    reads_data: False for a study that makes its own clips (dissection's
      probes): no data source is loaded.
  """
  name: str
  flags: FrozenSet[str]
  run: Callable[["Context"], Any]
  check: Optional[Callable[[types.SimpleNamespace], None]] = None
  reads_runs: bool = True
  labelled: bool = False
  max_runs: Optional[int] = None
  reads_data: bool = True


@dataclasses.dataclass
class Context:
  """What ``analysis.run`` hands a study's ``run``.

  Attributes:
    options: the study's flags (``Study.flags`` and ``COMMON_FLAGS``) as
      attributes (``options.k``); reading another flag is an
      ``AttributeError``.
    checkpoints: ``[(name, path)]`` as given by ``--checkpoint``.
    workdir: the local output folder.
    say: prints a line (naming paths where the user will find them).
    runs: ``[(name, controls.RunParams)]`` in ``--checkpoint`` order.
    chosen: ``[(name, path, checkpoints.StepChoice)]``, the same order.
    source: the clips studied (at the networks' rate), or None.
    layers: the blocks asked for (None: all).
    clip_samples: ``--clip_seconds`` in samples, or None.
    data: ``data(run, split=None, what='eval', labelled=False)``: another
      source of the same data flags (the probe's train split).
    record: ``record(json_path, entries)``: adds which checkpoint step each
      run read to a study's JSON.
  """
  options: types.SimpleNamespace
  checkpoints: List[Tuple[str, str]]
  workdir: str
  say: Callable[[str], None]
  runs: List[Tuple[str, Any]] = dataclasses.field(default_factory=list)
  chosen: List[Tuple[str, str, Any]] = dataclasses.field(default_factory=list)
  source: Any = None
  layers: Optional[List[int]] = None
  clip_samples: Optional[int] = None
  data: Optional[Callable[..., Any]] = None
  record: Optional[Callable[[str, Any], None]] = None

  def common_kw(self) -> Dict[str, Any]:
    """The batching keywords most studies take."""
    return dict(batch_size=self.options.batch_size,
                clip_samples=self.clip_samples,
                max_clips=self.options.max_clips)

  def out_dir(self, name: str) -> str:
    """A run's output folder: the workdir itself for one run, else a
    sub-folder named after the run."""
    return (self.workdir if len(self.runs) == 1
            else os.path.join(self.workdir, name))


def names() -> Tuple[str, ...]:
  """Every study's name, sorted (the modules of this package)."""
  return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)
                      if not m.name.startswith("_")))


def get(name: str) -> Study:
  """The ``STUDY`` of ``sonify_jax.analysis.studies.<name>``.

  Raises:
    UserError: no such study.
  """
  if name not in names():
    raise UserError(f"--study={name}: no such study; choose from "
                    f"{', '.join(names())}")
  module = importlib.import_module(f"{__name__}.{name}")
  study = getattr(module, "STUDY", None)
  if not isinstance(study, Study) or study.name != name:
    raise TypeError(f"{module.__name__} defines no STUDY named {name!r}")
  return study
