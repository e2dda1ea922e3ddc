"""Runs an entry point's ``python -m MODULE ARGS`` in-process, many times.

One worker subprocess per entry point keeps the cases fast (JAX and the
libraries are imported once, compiled functions stay cached) and keeps each
module's absl flags away from the others' (several define ``--workdir``).
Inside the worker every case runs the module as ``__main__`` with
``runpy``, exactly as ``python -m`` does; ``cli.run`` resets the flags.

  worker = CliWorker("sonify_jax.sonify")
  result = worker.run("--audio", path, ...)   # .code .stdout .stderr
"""
import contextlib
import dataclasses
import io
import json
import os
import runpy
import subprocess
import sys
import threading
import traceback

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
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    self._proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), module], cwd=REPO,
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

  def run(self, *args: str) -> Result:
    self._proc.stdin.write(json.dumps([str(a) for a in args]) + "\n")
    self._proc.stdin.flush()
    timer = threading.Timer(self.timeout, self._proc.kill)
    timer.start()
    try:
      line = self._proc.stdout.readline()
    finally:
      timer.cancel()
    if not line:
      raise RuntimeError(f"{self.module} worker died (args {args})")
    reply = json.loads(line)
    return Result(reply["code"], reply["stdout"], reply["stderr"])

  def close(self):
    self._proc.stdin.close()
    try:
      self._proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
      self._proc.kill()


def _serve(module: str) -> None:
  # Replies go to the real stdout; anything written to fd 1 behind Python's
  # back (C++ logging) goes to stderr instead of into the protocol.
  replies = os.fdopen(os.dup(1), "w")
  os.dup2(2, 1)
  sys.path.insert(0, REPO)
  for line in sys.stdin:
    args = json.loads(line)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    sys.argv = [module, *args]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
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
