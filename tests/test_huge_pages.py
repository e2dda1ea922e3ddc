"""Entry points re-execute once with glibc's malloc on huge pages, where
that helps, and otherwise run as they are."""
import os
import subprocess
import sys

import pytest

from sonify_jax import huge_pages

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLIBC = (2, 36)


@pytest.mark.parametrize("thp,glibc", [
    ("always", GLIBC), ("never", GLIBC), (None, GLIBC),
    ("madvise", (2, 34)), ("madvise", None)])
def test_runs_as_is_where_the_tunable_cannot_help(thp, glibc):
  assert huge_pages.environment_with_huge_pages({}, thp, glibc) is None


def test_adds_the_tunable_and_keeps_the_rest():
  env = huge_pages.environment_with_huge_pages(
      {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
      "madvise", GLIBC)
  assert env == {"PATH": "/bin", "GLIBC_TUNABLES":
                 "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"}
  assert huge_pages.environment_with_huge_pages(
      {}, "madvise", GLIBC) == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}


@pytest.mark.parametrize("environ", [
    {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},  # already re-executed
    {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"},  # the user's own choice
    {"SONIFY_HUGE_PAGES": "0"}])                   # opted out
def test_never_twice_and_never_against_the_user(environ):
  assert huge_pages.environment_with_huge_pages(
      environ, "madvise", GLIBC) is None


def test_thp_mode_reads_the_bracketed_choice(tmp_path):
  path = tmp_path / "enabled"
  path.write_text("always [madvise] never\n")
  assert huge_pages.thp_mode(str(path)) == "madvise"
  assert huge_pages.thp_mode(str(tmp_path / "missing")) is None


def test_goes_on_as_is_when_the_reexecution_cannot_start(monkeypatch):
  calls = []

  def failing_execve(*args):
    calls.append(args)
    raise OSError("exec format error")

  monkeypatch.setattr(huge_pages.os, "execve", failing_execve)
  monkeypatch.setattr(huge_pages, "glibc_version", lambda: GLIBC)
  monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
  monkeypatch.delenv(huge_pages.OPT_OUT, raising=False)
  huge_pages.reexec_with_huge_pages(thp="madvise")  # returns, no raise
  assert len(calls) == 1
  assert calls[0][2]["GLIBC_TUNABLES"] == huge_pages.TUNABLE


_CHILD = """
import os, sys
from sonify_jax import huge_pages
print("start", os.getpid(), flush=True)
huge_pages.reexec_with_huge_pages(thp="madvise")
print("main", os.getpid(), os.environ.get("GLIBC_TUNABLES"), sys.argv[1:])
"""


@pytest.mark.skipif((huge_pages.glibc_version() or (0, 0)) <
                    huge_pages.MIN_GLIBC, reason="needs glibc >= 2.35")
def test_reexecutes_the_same_command_once_with_the_tunable():
  env = {k: v for k, v in os.environ.items()
         if k not in ("GLIBC_TUNABLES", huge_pages.OPT_OUT)}
  env["PYTHONPATH"] = REPO
  out = subprocess.run([sys.executable, "-c", _CHILD, "--flag", "x"],
                       env=env, capture_output=True, text=True, check=True,
                       timeout=120).stdout.split("\n")
  # The command ran twice in one process (execve keeps the pid), its
  # arguments kept, and the second run saw the tunable and went on.
  starts = [line.split()[1] for line in out if line.startswith("start")]
  mains = [line for line in out if line.startswith("main")]
  assert len(starts) == 2 and starts[0] == starts[1]
  assert mains == [f"main {starts[0]} glibc.malloc.hugetlb=1 "
                   "['--flag', 'x']"]
