"""The one wrapper every command-line entry point runs its ``main`` through.

  if __name__ == "__main__":
    cli.run(main)

``run`` is ``absl.app.run`` with one rule for failures: an expected failure
(``errors.UserError``, a bad flag or config override, ``app.UsageError``, a
missing/unwritable user path) prints ONE line ``error: <message>`` on stderr
and exits with status 2; anything else is a bug and keeps its traceback.
``--help``/``--helpfull`` print the usage on stdout and exit 0 (absl exits 1).

absl and ml_collections report bad flags in several shapes (a flags.Error
whose text embeds a traceback, a KeyError/AttributeError for an unknown
``--config.FIELD``, an OSError hidden in the config for a missing config
file); this module is the one place that turns them into one line, and names
the closest valid field of an unknown config override (difflib).

``run`` may be called repeatedly in one process (tests drive the entry points
in-process): it resets the parsed flags first. Called as a process's entry
(no ``argv``), it first re-executes the command once with glibc's malloc on
transparent huge pages where that helps (:mod:`sonify_jax.huge_pages`).
"""
import difflib
import sys
from typing import Callable, List, Optional, Sequence

from absl import app
from absl import flags
from ml_collections.config_flags import config_flags

from sonify_jax import huge_pages
from sonify_jax import logs
from sonify_jax.errors import UserError

EXIT_USER_ERROR = 2

# OS errors that, at an entry point, come from a path the user gave.
_USER_OS_ERRORS = (FileNotFoundError, FileExistsError, PermissionError,
                   IsADirectoryError, NotADirectoryError)


def one_line(text: str) -> str:
  """``text`` with its lines joined: an error is shown on one line."""
  return " ".join(line.strip() for line in str(text).splitlines()
                  if line.strip())


def fail(message: str) -> None:
  """Print ``error: <message>`` on stderr and exit with status 2."""
  sys.stdout.flush()
  print(f"error: {one_line(message)}", file=sys.stderr, flush=True)
  sys.exit(EXIT_USER_ERROR)


def _root_cause(error: BaseException) -> BaseException:
  while error.__cause__ is not None or error.__context__ is not None:
    error = error.__cause__ or error.__context__
  return error


def _os_error_message(error: OSError) -> str:
  if error.filename and error.strerror:
    return f"{error.strerror}: {error.filename}"
  return str(error)


def expected_message(error: BaseException) -> Optional[str]:
  """The one-line message of an expected failure; None for a bug."""
  if isinstance(error, (UserError, app.UsageError)):
    return one_line(str(error))
  if isinstance(error, flags.Error):
    text = str(error)
    root = _root_cause(error)
    if root is not error and isinstance(root, (ValueError, TypeError)):
      # ml_collections embeds the config file's traceback in the flag error;
      # the user needs the flag and what the config file said about it.
      flag_part = text.split(": ", 1)[0] if text.startswith("flag ") else ""
      text = f"{flag_part}: {root}" if flag_part else str(root)
    return one_line(text)
  if isinstance(error, _USER_OS_ERRORS):
    return one_line(_os_error_message(error))
  return None


def _config_flags():
  for name in list(flags.FLAGS):
    flag = flags.FLAGS[name]
    if name == flag.name and config_flags.is_config_flag(flag):
      yield flag


def _config_flag_values(argv: Sequence[str]):
  """(config flag, value given on the command line) of every config flag."""
  for flag in _config_flags():
    for i, arg in enumerate(argv):
      for prefix in (f"--{flag.name}=", f"-{flag.name}="):
        if arg.startswith(prefix):
          yield flag, arg[len(prefix):]
      if arg in (f"--{flag.name}", f"-{flag.name}") and i + 1 < len(argv):
        yield flag, argv[i + 1]


def unknown_config_field(argv: Sequence[str]) -> Optional[str]:
  """The message for a ``--config.FIELD=V`` naming no field of the config,
  with the closest valid field; None when every override names a field."""
  for flag, value in _config_flag_values(argv):
    name = flag.name
    try:
      config = flag.parser.parse(value)
      config.keys()
    except Exception:  # pylint: disable=broad-except
      continue  # the config file's own error is reported elsewhere
    for arg in argv:
      if not arg.lstrip("-").startswith(f"{name}."):
        continue
      path = arg.lstrip("-")[len(name) + 1:].split("=", 1)[0]
      node = config
      for depth, field in enumerate(path.split(".")):
        keys = list(node.keys()) if hasattr(node, "keys") else []
        if field in keys:
          node = node[field]
          continue
        where = ".".join(path.split(".")[:depth])
        closest = difflib.get_close_matches(field, keys, n=1, cutoff=0.0)
        hint = (f"; the closest valid field is "
                f"'{'.'.join(filter(None, [where, closest[0]]))}'"
                if closest else "")
        unknown = ".".join(path.split(".")[:depth + 1])
        return (f"unknown config field '{unknown}' in {arg}{hint}")
  return None


def _check_config_files_loaded() -> None:
  # ml_collections keeps a failed config file load as a value that raises
  # OSError on first use (inside main, as a traceback): report it now.
  for flag in _config_flags():
    value = flag.value
    if value is None:
      continue
    try:
      getattr(value, "keys", None)
    except OSError as error:
      lines = [l.strip() for l in str(error).splitlines() if l.strip()]
      fail(f"cannot load --{flag.name}={flag.config_filename or ''}: "
           f"{lines[-1]}")


def _forget_config_overrides() -> None:
  # ml_collections defines one flag per --config.FIELD override while it
  # parses; a second run in the same process would define them again.
  for flag in list(_config_flags()):
    for name in list(flags.FLAGS):
      if name.startswith(f"{flag.name}."):
        delattr(flags.FLAGS, name)


def _parse_flags(argv: List[str]) -> List[str]:
  _forget_config_overrides()
  try:
    remaining = flags.FLAGS(argv)
  except SystemExit as exit_:
    # absl's --help/--helpshort/--helpfull print the usage and exit 1, the
    # only exit during parsing; asking for help is not a failure.
    if exit_.code == 1:
      sys.exit(0)
    raise
  except flags.Error as error:
    fail(expected_message(error))
  except (AttributeError, KeyError):
    message = unknown_config_field(argv)
    if message is None:
      raise
    fail(message)
  _check_config_files_loaded()
  return remaining


def guarded(main: Callable[[List[str]], object]
            ) -> Callable[[List[str]], object]:
  """``main`` with expected failures turned into ``error:`` + exit 2."""
  def wrapper(argv):
    logs.setup()
    try:
      return main(argv)
    except Exception as error:  # pylint: disable=broad-except
      message = expected_message(error)
      if message is None:
        raise
      fail(message)
  wrapper.__name__ = getattr(main, "__name__", "main")
  wrapper.__doc__ = getattr(main, "__doc__", None)
  return wrapper


def run(main: Callable[[List[str]], object],
        argv: Optional[Sequence[str]] = None) -> None:
  """``absl.app.run(main)`` with the error rule above; never returns."""
  if argv is None:
    huge_pages.reexec_with_huge_pages()
  argv = list(sys.argv if argv is None else argv)
  # Always: a run that failed while parsing leaves the flags it had set
  # (absl marks them parsed only at the end).
  flags.FLAGS.unparse_flags()
  saved_argv = sys.argv
  sys.argv = argv  # ml_collections reads --config.FIELD overrides from here
  try:
    app.run(guarded(main), argv=argv, flags_parser=_parse_flags)
  finally:
    sys.argv = saved_argv
