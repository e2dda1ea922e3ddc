"""Experiment config files (``configs/*.py``) loaded by their path.

ml_collections' ``config_flags`` imports a config file by path, not as part
of a package, so the config files cannot ``import`` their shared module
``configs/common.py``; they load it with :func:`sibling`. Kept in the
package (not in configs/) because it is what reaches configs/common.py.
"""
import importlib.util
import os
import types


def load_module(path: str, name: str = "") -> types.ModuleType:
  """Imports the Python file at ``path`` as a fresh module (not cached in
  ``sys.modules``: each load runs the file again, as config_flags does)."""
  name = name or "sonify_configs_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def sibling(config_file: str, filename: str = "common.py"
            ) -> types.ModuleType:
  """The module ``filename`` next to ``config_file`` (pass ``__file__``)."""
  return load_module(os.path.join(
      os.path.dirname(os.path.abspath(config_file)), filename))
