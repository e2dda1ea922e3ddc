"""Logging set-up for every entry point, in one place.

By default a command shows this project's own log lines, every library's
warnings and errors, and the progress bar; the INFO chatter of libraries
(orbax writes several lines per checkpoint, tfds, jax, absl) is hidden.
``--verbosity=1`` (absl's flag; ``-v 1``) shows everything.

``quiet_message(*prefixes)`` hides known-false library messages while a
block runs (orbax warns "Given directory is read only" and that read_only
"sets" create/save_interval_steps whenever a checkpoint is opened for reading,
which is what read-only means, not a problem).
"""
import contextlib
import logging as py_logging
import os
from typing import Iterator

from absl import flags
from absl import logging

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_DIR = os.path.dirname(_PACKAGE_DIR)
# This project's code: its log lines are for the user at any verbosity.
_OWN_DIRS = tuple(os.path.join(d, "") for d in (
    _PACKAGE_DIR, os.path.join(_REPO_DIR, "launch"),
    os.path.join(_REPO_DIR, "benchmarks"), os.path.join(_REPO_DIR, "scripts"),
    os.path.join(_REPO_DIR, "configs")))


def is_own(record: py_logging.LogRecord) -> bool:
  """Whether a log record comes from this project's code."""
  return os.path.abspath(record.pathname).startswith(_OWN_DIRS)


class LibraryInfoFilter(py_logging.Filter):
  """Passes warnings and errors, and INFO/DEBUG only from this project."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or is_own(record)


_FILTER = LibraryInfoFilter()


def setup() -> None:
  """Call at the start of an entry point's ``main`` (after flag parsing)."""
  handler = logging.get_absl_handler()
  verbose = flags.FLAGS.is_parsed() and flags.FLAGS.verbosity >= 1
  if verbose:
    handler.removeFilter(_FILTER)
  elif _FILTER not in handler.filters:
    handler.addFilter(_FILTER)


class _DropPrefix(py_logging.Filter):

  def __init__(self, prefixes):
    super().__init__()
    self.prefixes = tuple(prefixes)

  def filter(self, record: py_logging.LogRecord) -> bool:
    return not str(record.msg).startswith(self.prefixes)


@contextlib.contextmanager
def quiet_message(*prefixes: str) -> Iterator[None]:
  """Drops log records whose message starts with one of ``prefixes`` in the
  block."""
  drop = _DropPrefix(prefixes)
  logger = logging.get_absl_logger()
  logger.addFilter(drop)
  try:
    yield
  finally:
    logger.removeFilter(drop)
