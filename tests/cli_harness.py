"""Runs an entry point's ``python -m MODULE ARGS`` in-process, many times.

One worker subprocess per entry point keeps the cases fast (JAX and the
libraries are imported once, compiled functions stay cached) and keeps each
module's absl flags away from the others' (several define ``--workdir``).
Inside the worker every case runs the module's code as ``__main__``, as
``python -m`` does, in a new module object each time (kept alive: absl tells
a re-run module from a second definition by the module's ``id``, which a
freed module could hand to the next one); ``cli.run`` resets the flags.

  worker = CliWorker("sonify_jax.sonify")
  result = worker.run("--audio", path, ...)   # .code .stdout .stderr

A script runs by its path (``CliWorker("benchmarks/sonify_bench.py")``),
with its folder on ``sys.path`` as ``python SCRIPT`` has it.
``worker.flag_cases()`` runs ``--helpshort`` and reports, from the flags
the command then has, a bad command-line value for every flag with a
``sonify_jax.flag_check`` domain, and the repo's flags that have none.
"""
import contextlib
import dataclasses
import importlib.util
import io
import json
import os
import subprocess
import sys
import threading
import traceback
import types

from sonify_jax import huge_pages

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class Result:
  code: object
  stdout: str
  stderr: str

  def error_lines(self):
    return [l for l in self.stderr.splitlines() if l.startswith("error:")]


class CliWorker:
  """A subprocess that runs one entry-point module per request."""

  def __init__(self, module: str, timeout: float = 600.0):
    self.module = module
    self.timeout = timeout
    # The worker starts with the tunable an entry point would re-execute
    # itself to get (sonify_jax.huge_pages): re-executing would replace the
    # worker, with the request it is serving, by a fresh one.
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    env = huge_pages.environment_with_huge_pages(
        env, huge_pages.thp_mode(), huge_pages.glibc_version()) or env
    self._proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), module], cwd=REPO,
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

  def run(self, *args: str) -> Result:
    reply = self._request([str(a) for a in args])
    return Result(reply["code"], reply["stdout"], reply["stderr"])

  def _request(self, request) -> dict:
    self._proc.stdin.write(json.dumps(request) + "\n")
    self._proc.stdin.flush()
    timer = threading.Timer(self.timeout, self._proc.kill)
    timer.start()
    try:
      line = self._proc.stdout.readline()
    finally:
      timer.cancel()
    if not line:
      raise RuntimeError(f"{self.module} worker died (request {request})")
    return json.loads(line)

  def flag_cases(self) -> dict:
    """{"cases": [[flag, [args...]], ...], "unchecked": [flag, ...]}."""
    return self._request({"flag_cases": True})

  def close(self):
    self._proc.stdin.close()
    try:
      self._proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
      self._proc.kill()


@contextlib.contextmanager
def worker_pool():
  """``get(module)``: that module's worker, started on first use; every
  worker is closed on exit."""
  started = {}

  def get(module: str) -> CliWorker:
    if module not in started:
      started[module] = CliWorker(module)
    return started[module]
  try:
    yield get
  finally:
    for worker in started.values():
      worker.close()


_RUN_MODULES = []  # every run's __main__ module, never freed (see above)


def _run_as_main(module: str) -> None:
  if module.endswith(".py"):  # a script, as `python SCRIPT` runs it
    path = os.path.join(REPO, module)
    if os.path.dirname(path) not in sys.path:
      sys.path.insert(0, os.path.dirname(path))
    spec = importlib.util.spec_from_file_location("__main__", path)
  else:
    spec = importlib.util.find_spec(module)
  if spec.submodule_search_locations is not None:  # a package: its __main__
    spec = importlib.util.find_spec(f"{module}.__main__")
  main = types.ModuleType("__main__")
  main.__file__, main.__spec__, main.__loader__ = (spec.origin, spec,
                                                   spec.loader)
  main.__package__ = spec.parent
  _RUN_MODULES.append(main)
  saved = sys.modules["__main__"]
  sys.modules["__main__"] = main
  sys.argv[0] = spec.origin
  try:
    exec(spec.loader.get_code(spec.name), main.__dict__)  # pylint: disable=exec-used
  finally:
    sys.modules["__main__"] = saved


def _command_line_texts(value) -> list:
  """Ways to write ``value`` on a command line (none for None/objects)."""
  if isinstance(value, (list, tuple)):
    return [",".join(str(v) for v in value)]
  if isinstance(value, bool) or not isinstance(value, (int, float, str)):
    return []
  return [str(value)]


def _flag_cases(module: str) -> dict:
  """See ``CliWorker.flag_cases``."""
  import copy  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from sonify_jax import flag_check  # pylint: disable=g-import-not-at-top
  with contextlib.redirect_stdout(io.StringIO()), \
      contextlib.redirect_stderr(io.StringIO()):
    sys.argv = [module, "--helpshort"]
    try:
      _run_as_main(module)
    except SystemExit:
      pass
  table = flag_check.registered()
  cases, unchecked = [], []
  for name, defining in sorted(
      (n, flags.FLAGS.find_module_defining_flag(n)) for n in flags.FLAGS):
    if name != flags.FLAGS[name].name:
      continue  # a short name
    if name not in table:
      if defining and (defining.startswith(("sonify_jax", "launch",
                                            "benchmarks", "__main__")) or
                       defining.startswith(REPO)):
        unchecked.append(name)
      continue
    domain = table[name]
    if domain is None:
      continue
    flag = flags.FLAGS[name]
    multi = isinstance(flag, flags.MultiFlag)
    for bad in domain.bad_values():
      texts = ([[str(v) for v in bad]] if multi and isinstance(bad, list)
               else [[t] for t in _command_line_texts(bad)])
      for items in texts:
        probe = copy.deepcopy(flag)
        try:
          probe.parse(items if multi else items[0])
          if domain.error(probe.value) is None:
            continue  # fine on a command line (e.g. "1" for an integer)
        except Exception:  # pylint: disable=broad-except
          pass  # absl refuses it while parsing: a bad case too
        cases.append([name, [f"--{name}={t}" for t in items]])
  return {"cases": cases, "unchecked": unchecked}


def _serve(module: str) -> None:
  # Replies go to the real stdout; anything written to fd 1 behind Python's
  # back (C++ logging) goes to stderr instead of into the protocol.
  replies = os.fdopen(os.dup(1), "w")
  os.dup2(2, 1)
  sys.path.insert(0, REPO)
  for line in sys.stdin:
    args = json.loads(line)
    if isinstance(args, dict):  # flag_cases
      replies.write(json.dumps(_flag_cases(module)) + "\n")
      replies.flush()
      continue
    out, err = io.StringIO(), io.StringIO()
    code = 0
    sys.argv = [module, *args]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      try:
        _run_as_main(module)
      except SystemExit as exit_:
        code = exit_.code
      except BaseException:  # pylint: disable=broad-except
        traceback.print_exc()
        code = "uncaught exception"
    code = 0 if code is None else code
    replies.write(json.dumps({"code": code, "stdout": out.getvalue(),
                              "stderr": err.getvalue()}) + "\n")
    replies.flush()


if __name__ == "__main__":
  _serve(sys.argv[1])


def assert_one_error(result, *words) -> str:
  """An expected failure as every command ends one: exit 2, no traceback,
  and one ``error:`` line, the first thing on stderr, holding ``words``."""
  assert result.code == 2, (result.code, result.stderr[-3000:])
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  errors = [l for l in lines if l.startswith("error:")]
  assert len(errors) == 1 and lines[0] == errors[0], result.stderr[-3000:]
  for word in words:
    assert word in errors[0], errors[0]
  return errors[0]
