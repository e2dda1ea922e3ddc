"""Every training config field and its domain, checked in one place.

``validate(config)`` checks each field of a training config (``configs/*.py``
with its ``--config.FIELD`` overrides) against ``FIELDS``, then the rules
between fields, and raises ``UserError`` naming the first bad field, its
value and what is allowed::

  config.augment.gain_p must be a number in [0, 1], got 1.5

It reads nothing and creates nothing: ``sonify_jax.main`` calls it before
JAX starts, any data is read or the workdir is made (the trainer's own
``validate_config`` adds the device-count rule later). A field of the config
missing from ``FIELDS`` is refused too: a config carries only fields that
the trainer reads, so a field nobody checks is a field nobody reads.

The domains are ``sonify_jax.domains``; each names values outside it
(``bad_values``), so the tests can try one for every field of every shipped
config.
"""
import os
import re
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

from sonify_jax.domains import (Bool, Choice, Domain, Float, Int, IntList,
                                Lazy, Optional_, Pair, Path, Probability,
                                Regex)
from sonify_jax.errors import UserError


class Split(Domain):
  """A split expression: names (with an optional TFDS slice) joined by '+';
  '' too when ``empty_ok``. The names are checked against the dataset in
  ``validate`` (``SPLITS``)."""

  def __init__(self, empty_ok: bool):
    self.empty_ok = empty_ok

  def error(self, value):
    if not isinstance(value, str):
      return "not a string"
    if not value:
      return None if self.empty_ok else "empty"
    if not all(_SPLIT_PART.match(p.strip()) for p in value.split("+")):
      return "malformed"
    return None

  def describe(self):
    return ("a split name such as 'train', 'validation' or 'train[:10%]'" +
            (", or '' for none" if self.empty_ok else ""))

  def bad_values(self):
    return [3, None, "train[", "a b"] + ([] if self.empty_ok else [""])


class SplitPercent(Domain):

  def __init__(self, required: bool = True):
    self.required = required

  def error(self, value):
    from sonify_jax.data.builders import folder  # pylint: disable=g-import-not-at-top
    try:
      folder.parse_split_percent(value)
    except UserError:
      return "malformed"
    return None

  def describe(self):
    return ("train/validation/test shares such as '80/10/10' (train > 0, "
            "none negative)")

  def bad_values(self):
    return ["80/20", "0/50/50", "a/b/c", 3]


_SPLIT_PART = re.compile(r"^[A-Za-z_]+(\[[^\[\]]*\])?$")


def _metric(value) -> bool:
  return value == "" or (value.startswith("eval/") and len(value) > 5)


def _trainable():
  from sonify_jax.models.registry import TRAINABLE  # pylint: disable=g-import-not-at-top
  return TRAINABLE


def _compute_dtypes():
  from sonify_jax.models.composite import COMPUTE_DTYPES  # pylint: disable=g-import-not-at-top
  return tuple(sorted(COMPUTE_DTYPES))


class Dataset(Domain):

  def error(self, value):
    from sonify_jax.data import catalog  # pylint: disable=g-import-not-at-top
    return None if catalog.is_known(value) else "unknown"

  def describe(self):
    from sonify_jax.data import catalog  # pylint: disable=g-import-not-at-top
    return (f"a dataset: one of {', '.join(catalog.NAMES)} or "
            f"'folder:<name>'")

  def bad_values(self):
    return ["bogus", "folder:", 3]


class Metric(Domain):

  def error(self, value):
    return None if isinstance(value, str) and _metric(value) else "bad"

  def describe(self):
    return "'' (no best checkpoint) or an 'eval/...' metric such as " \
        "'eval/accuracy'"

  def bad_values(self):
    return ["accuracy", "eval/", 3]


TASKS = ("simclr", "supervised")

# field (dotted for nested ConfigDicts) -> its domain.
FIELDS: Dict[str, Domain] = {
    "task": Choice(TASKS),
    "seed": Int(0),
    "model": Lazy(lambda: Choice(_trainable())),
    "dropout": Float(0.0, 1.0, high_open=True),
    "dataset": Dataset(),
    "data_dir": Path(meaning="'' = the catalog's default"),
    "train_split": Split(empty_ok=False),
    "eval_split": Split(empty_ok=True),
    "test_split": Split(empty_ok=True),
    "crop_seconds": Float(0.0, low_open=True),
    "num_crops": Int(1, 2),
    "disjoint_crops": Bool(),
    "batch_size": Int(1),
    "num_epochs": Float(0.0),
    "total_steps": Int(1, also=(-1,), meaning="-1: from num_epochs"),
    "warmup_epochs": Float(0.0),
    "warmup_steps": Int(0, also=(-1,), meaning="-1: from warmup_epochs"),
    "learning_rate": Float(0.0, low_open=True),
    "weight_decay": Float(0.0),
    "decoupled_weight_decay": Bool(),
    "clip_norm": Float(0.0, meaning="0 = off"),
    "compute_dtype": Lazy(lambda: Choice(_compute_dtypes())),
    "temperature": Float(0.0, low_open=True),
    "proj_hidden": Int(1),
    "proj_out": Int(1),
    "mixup_alpha": Float(0.0, meaning="0 = off"),
    "init": Choice(("scratch", "contrastive", "supervised", "")),
    "init_from": Path(meaning="a run's workdir or checkpoint folder"),
    "init_step": Int(0, also=(-1,), meaning="-1: its latest checkpoint"),
    "freeze_encoder": Bool(),
    "augment.gain_db": Pair(),
    "augment.gain_p": Probability(),
    "augment.noise_range": Pair(low=0.0),
    "augment.noise_p": Probability(),
    "augment.max_time_masks": Int(0),
    "augment.max_mask_seconds": Float(0.0),
    "augment.mix_snr_db": Pair(),
    "augment.mix_p": Probability(),
    "augment.use_gain": Bool(),
    "augment.use_noise": Bool(),
    "augment.use_masks": Bool(),
    "augment.use_mix": Bool(),
    "eval_every_steps": Int(0, meaning="0: only at the end"),
    "eval_batch_size": Int(1),
    "eval_max_seconds": Float(0.0, meaning="0: whole clips"),
    "checkpoint_every_steps": Int(1),
    "keep_last": Int(1),
    "keep_steps": IntList(0),
    "best_metric": Metric(),
    "best_mode": Choice(("max", "min")),
    "stop_on_collapse": Bool(),
    "health_patience": Int(1),
    "log_every_steps": Int(1),
    "progress": Bool(),
    "step_delay_s": Float(0.0),
    "listen_clips": Int(0, meaning="0 = off"),
    "listen_seconds": Float(0.0, low_open=True),
    "listen_layers": IntList(1, meaning="block numbers; () = a middle and "
                             "the last block"),
    "listen_maps": Int(1),
    "listen_every_steps": Int(0, meaning="0: at each evaluation"),
    # configs/folder.py: the folder the dataset is built from on first use.
    "build_from": Optional_(Path(meaning="the dataset's root folder")),
    "build_options.group_regex": Optional_(Regex()),
    "build_options.split_percent": Optional_(SplitPercent()),
    "build_options.split_seed": Optional_(Int(0)),
}

# Split names each dataset knows (catalog's names and aliases).
_BUILT_SPLITS = ("train", "validation", "test", "val")
SPLITS = {
    "embedded": ("train", "validation", "test", "train_all"),
    "audioset": ("balanced_train", "unbalanced_train", "eval", "evaluation",
                 "test", "train_all", "train", "validation"),
    "fsd50k": ("train", "validation", "test", "val", "eval"),
    "speech_commands": _BUILT_SPLITS,
    "speech_commands12": _BUILT_SPLITS,
    "voxceleb1": _BUILT_SPLITS,
    "folder": _BUILT_SPLITS,
}


def fields(config: Mapping[str, Any], prefix: str = ""
           ) -> Iterator[Tuple[str, Any]]:
  """(dotted name, value) of every leaf field of ``config``."""
  for key in sorted(config.keys()):
    value = config[key]
    name = f"{prefix}{key}"
    if hasattr(value, "keys") and callable(value.keys):
      if name not in FIELDS:  # a nested config: its fields are the leaves
        yield from fields(value, name + ".")
        continue
    yield name, value


def _show(value) -> str:
  return repr(tuple(value) if isinstance(value, list) else value)


def _fail(name: str, value, allowed: str, why: str = "") -> None:
  raise UserError(f"config.{name} must be {allowed}, got {_show(value)}"
                  + (f" ({why})" if why else ""))


def check_field(name: str, value) -> None:
  """Raises UserError unless ``value`` lies in field ``name``'s domain."""
  domain = FIELDS.get(name)
  if domain is None:
    close = _closest(name)
    raise UserError(f"config.{name} is not a field the trainer reads"
                    + (f"; did you mean config.{close}?" if close else ""))
  if domain.error(value) is not None:
    _fail(name, value, domain.describe())


def _closest(name: str) -> Optional[str]:
  import difflib  # pylint: disable=g-import-not-at-top
  match = difflib.get_close_matches(name, list(FIELDS), n=1, cutoff=0.6)
  return match[0] if match else None


def is_complete(config: Mapping[str, Any]) -> bool:
  """Whether ``config`` has every required field (a training config)."""
  names = {n for n, _ in fields(config)}
  return all(n in names for n, d in FIELDS.items() if d.required)


def validate(config: Mapping[str, Any], check_paths: bool = True) -> None:
  """Raises UserError for the first field of ``config`` outside its domain
  (``FIELDS``), a missing field, or a broken rule between fields; with
  ``check_paths``, also for a local ``init_from`` / ``build_from`` that does
  not exist (looked at, not read)."""
  seen = {}
  for name, value in fields(config):
    check_field(name, value)
    seen[name] = value
  for name, domain in FIELDS.items():
    if domain.required and name not in seen:
      raise UserError(f"config.{name} is missing (the config must set it: "
                      f"{domain.describe()})")
  _check_rules(seen)
  if check_paths:
    _check_paths(seen)


def _check_rules(c: Dict[str, Any]) -> None:
  """The rules between fields (each field is already in its domain)."""
  from sonify_jax.models.registry import get_network  # pylint: disable=g-import-not-at-top
  task = c["task"]
  kind = c["dataset"].partition(":")[0]
  if c["dataset"].startswith("embedded"):
    kind = "embedded"
  for name in ("train_split", "eval_split", "test_split"):
    value = c[name]
    for part in filter(None, (p.strip() for p in value.split("+"))):
      base = part.split("[", 1)[0]
      if base not in SPLITS.get(kind, (base,)):
        _fail(name, value, f"a split of {c['dataset']}: one of "
              f"{', '.join(SPLITS[kind])}")
  if c["total_steps"] < 0 and c["num_epochs"] <= 0:
    _fail("num_epochs", c["num_epochs"], "> 0 when config.total_steps is "
          "-1 (the run would have 0 steps)")
  network = get_network(c["model"])
  crop = int(round(c["crop_seconds"] * network.sample_rate))
  field = network.min_input_length(network.num_blocks)
  if crop < field:
    _fail("crop_seconds", c["crop_seconds"],
          f">= {field / network.sample_rate:g} s ({field} samples: "
          f"{c['model']}'s receptive field)", f"{crop} samples")
  bad_layers = [l for l in c["listen_layers"] if l > network.num_blocks]
  if bad_layers:
    _fail("listen_layers", c["listen_layers"],
          f"block numbers in 1..{network.num_blocks} ({c['model']})")
  if task == "simclr":
    if c["num_crops"] != 2:
      _fail("num_crops", c["num_crops"], "2 for SimCLR (two views per clip)")
    if c["init_from"] or c["freeze_encoder"]:
      raise UserError("config.init_from / config.freeze_encoder are for "
                      "supervised runs, not SimCLR (config.task='simclr')")
  else:
    if c["num_crops"] != 1:
      _fail("num_crops", c["num_crops"], "1 for supervised training")
    if c["init"] not in ("scratch", "") and not c["init_from"]:
      raise UserError(
          f"config.init={c['init']!r} needs the source run: pass "
          "--config.init_from=WORKDIR (a workdir or checkpoint directory)")
    if c["test_split"] and c["test_split"] == c["eval_split"]:
      raise UserError(
          f"config.eval_split == config.test_split == {c['test_split']!r}: "
          "models are selected on a validation split and tested once on "
          "another")


def _check_paths(c: Dict[str, Any]) -> None:
  init_from = c["init_from"]
  if init_from and "://" not in init_from and not os.path.exists(
      os.path.expanduser(init_from)):
    raise UserError(f"config.init_from={init_from!r} does not exist (a "
                    f"run's workdir or checkpoint folder)")
  build_from = c.get("build_from")
  if build_from and not os.path.isdir(os.path.expanduser(build_from)):
    raise UserError(f"config.build_from={build_from!r} is not a folder (the "
                    f"dataset's root folder, configs/folder.py path=)")
