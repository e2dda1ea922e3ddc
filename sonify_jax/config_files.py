"""Experiment config files (``configs/*.py``): loading them, by their path.

A config file defines ``get_config(arg=None) -> ml_collections.ConfigDict``
(``arg`` is the text after ':' in ``--config=configs/X.py:arg``). The files
are imported by path (ml_collections' ``config_flags``, notebooks, the
launchers), not as a package, so they reach their shared helpers
(``configs/common.py``, in the ``configs`` package) through this module:

  from sonify_jax.config_files import common

:func:`load_config` loads ``path[:arg]`` and turns every way a config file
can fail (missing, a syntax error, raising on import, no ``get_config``,
``get_config`` raising or returning something other than a ConfigDict) into
one ``UserError`` naming the file; :func:`define_config_flag` is
``config_flags.DEFINE_config_file`` with that loader, so that
``--config=BAD`` is one ``error:`` line (``sonify_jax.cli``), not a
traceback.
"""
import importlib.util
import os
import sys
import types
from typing import Optional, Tuple

from absl import flags
import ml_collections
from ml_collections.config_flags import config_flags

from sonify_jax.errors import UserError

# configs/ of this checkout (an editable install or a clone).
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "configs")
_PACKAGE = "configs"
# Flags defined through define_config_flag belong to the module calling it
# (as with config_flags itself): absl tells a re-run entry point from a
# second definition by that module.
flags.disclaim_key_flags()


def load_module(path: str, name: str = "") -> types.ModuleType:
  """Imports the Python file at ``path`` as a fresh module (not cached in
  ``sys.modules``: each load runs the file again, as config_flags does)."""
  name = name or "sonify_configs_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _configs_package() -> types.ModuleType:
  """The ``configs`` package of this checkout, imported once (under the
  name ``configs`` unless another package of that name is imported)."""
  init = os.path.join(CONFIG_DIR, "__init__.py")
  for name in (_PACKAGE, "sonify_jax_configs"):
    module = sys.modules.get(name)
    if module is None:
      spec = importlib.util.spec_from_file_location(
          name, init, submodule_search_locations=[CONFIG_DIR])
      module = importlib.util.module_from_spec(spec)
      sys.modules[name] = module
      try:
        spec.loader.exec_module(module)
      except BaseException:
        del sys.modules[name]
        raise
      return module
    if os.path.realpath(getattr(module, "__file__", "") or "") == (
        os.path.realpath(init)):
      return module
  raise ImportError(f"cannot import {CONFIG_DIR} as a package")


def __getattr__(name: str):
  # ``from sonify_jax.config_files import common``: configs/common.py as
  # a module of the configs package (PEP 562: loaded on first use).
  if name == "common":
    package = _configs_package()
    return importlib.import_module(f"{package.__name__}.common")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def split_spec(spec: str) -> Tuple[str, Optional[str]]:
  """'path.py:arg' -> ('path.py', 'arg'); ('path.py', None) without ':'."""
  path, sep, arg = str(spec).partition(":")
  return path, (arg if sep else None)


def _first_line(error: BaseException) -> str:
  text = " ".join(str(error).split())
  return f"{type(error).__name__}: {text}" if text else type(error).__name__


def load_config_module(path: str) -> types.ModuleType:
  """The config file's module, with its ``get_config``.

  Raises:
    UserError: a missing or unreadable file, a syntax error, an exception
      while importing it, or no ``get_config`` function.
  """
  if not path:
    raise UserError("the config file path is empty (--config=configs/X.py)")
  if not os.path.exists(path):
    raise UserError(f"cannot load config file {path}: No such file or "
                    f"directory")
  if not os.path.isfile(path):
    raise UserError(f"cannot load config file {path}: not a file")
  try:
    module = load_module(path)
  except SyntaxError as error:
    raise UserError(f"config file {path} has a syntax error at line "
                    f"{error.lineno}: {error.msg}") from None
  except Exception as error:  # pylint: disable=broad-except
    raise UserError(f"config file {path} raised {_first_line(error)} while "
                    f"importing it") from None
  if not callable(getattr(module, "get_config", None)):
    raise UserError(f"config file {path} defines no get_config() function "
                    f"(a config file defines get_config(arg=None) returning "
                    f"an ml_collections.ConfigDict)")
  return module


def load_config(spec: str) -> ml_collections.ConfigDict:
  """``get_config(arg)`` of ``spec`` = 'path.py[:arg]' (unlocked).

  Raises:
    UserError: the file cannot be loaded (see ``load_config_module``), or
      ``get_config`` raises or returns no ConfigDict.
  """
  path, arg = split_spec(spec)
  module = load_config_module(path)
  shown = path if arg is None else f"{path}:{arg}"
  try:
    config = module.get_config() if arg is None else module.get_config(arg)
  except UserError:
    raise
  except (ValueError, TypeError) as error:
    # The configs' own argument checks: their message is the answer.
    raise UserError(f"config {shown}: {' '.join(str(error).split())}"
                    ) from None
  except Exception as error:  # pylint: disable=broad-except
    raise UserError(f"config {shown}: get_config raised "
                    f"{_first_line(error)}") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise UserError(f"config {shown}: get_config returned "
                    f"{type(config).__name__}, not an ml_collections."
                    f"ConfigDict" + (" (a missing return?)" if config is None
                                     else ""))
  return config


class _ConfigFileParser(config_flags.ConfigFileFlagParser):
  """config_flags' parser with :func:`load_config`'s one-line errors."""

  def parse(self, path):
    config = load_config(path)
    if self._lock_config:
      config.lock()
    return config


def define_config_flag(name: str, help_string: str, default=None,
                       lock_config: bool = True, **kwargs):
  """``config_flags.DEFINE_config_file`` loading through ``load_config``
  (same ``--NAME.FIELD=VALUE`` overrides); returns the flag holder."""
  holder = config_flags.DEFINE_config_file(
      name, default, help_string, lock_config=lock_config, **kwargs)
  flag_values = kwargs.get("flag_values") or flags.FLAGS
  flag_values[name].parser = _ConfigFileParser(name=name,
                                               lock_config=lock_config)
  return holder
