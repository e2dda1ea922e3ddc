"""Run entry points with glibc's malloc on transparent huge pages.

XLA:CPU allocates an executable's temporaries afresh on every call, and
glibc serves blocks that large with ``mmap``, so every call faults its whole
working set in, one 4 KiB page at a time. For ``sonify()`` on a 10 s clip
that is ~100 MB and ~27,000 page faults a call, ~10 % of a layer-5 call on
2 cores. glibc 2.35+ can ask for transparent huge pages for its allocations
(the tunable ``glibc.malloc.hugetlb=1``): 2 MiB pages, 16x fewer faults,
and ``sonify()`` 8-11 % faster at layers 5 and 9 (``benchmarks/sonify_bench.py``).
The kernel honours that request when its THP mode is ``madvise``; in mode
``always`` every large allocation already gets huge pages, in ``never`` none
can.

Why hand-written: a glibc tunable is read only when the process starts, and
neither XLA nor JAX exposes its CPU allocator, so the one way in from Python
is to re-execute the command once with the tunable set
(:func:`reexec_with_huge_pages`, called by :func:`sonify_jax.cli.run` for
every entry point). Set ``SONIFY_HUGE_PAGES=0`` to opt out; in a notebook,
start the kernel with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` instead.
"""
import os
import re
import sys
from typing import Mapping, Optional, Tuple

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT = "SONIFY_HUGE_PAGES"
THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"
# The first glibc with the glibc.malloc.hugetlb tunable.
MIN_GLIBC = (2, 35)


def thp_mode(path: str = THP_ENABLED) -> Optional[str]:
  """The kernel's THP mode (``always``, ``madvise`` or ``never``), or None
  where there is no such setting (not Linux, or THP not built in)."""
  try:
    with open(path) as f:
      chosen = re.search(r"\[(\w+)\]", f.read())
  except OSError:
    return None
  return chosen.group(1) if chosen else None


def glibc_version() -> Optional[Tuple[int, int]]:
  """``(major, minor)`` of the C library if it is glibc, else None."""
  try:
    name = os.confstr("CS_GNU_LIBC_VERSION") or ""
  except (AttributeError, ValueError, OSError):
    return None
  found = re.fullmatch(r"glibc (\d+)\.(\d+).*", name)
  return (int(found.group(1)), int(found.group(2))) if found else None


def environment_with_huge_pages(environ: Mapping[str, str],
                                thp: Optional[str],
                                glibc: Optional[Tuple[int, int]]
                                ) -> Optional[dict]:
  """The environment to re-execute with, or None to run as is.

  None unless THP is in ``madvise`` mode, the C library is glibc >= 2.35,
  the user has not opted out (``SONIFY_HUGE_PAGES=0``) and
  ``GLIBC_TUNABLES`` does not already set ``glibc.malloc.hugetlb`` (which
  also stops a second re-execution). Other tunables are kept.
  """
  if thp != "madvise" or glibc is None or glibc < MIN_GLIBC:
    return None
  if environ.get(OPT_OUT, "1") == "0":
    return None
  tunables = environ.get("GLIBC_TUNABLES", "")
  if "glibc.malloc.hugetlb" in tunables:
    return None
  env = dict(environ)
  env["GLIBC_TUNABLES"] = f"{tunables}:{TUNABLE}" if tunables else TUNABLE
  return env


def reexec_with_huge_pages(thp: Optional[str] = None) -> None:
  """Re-execute this command with :data:`TUNABLE` where it helps (see
  :func:`environment_with_huge_pages`); else, or if the re-execution cannot
  start, return. ``thp`` overrides the kernel's mode (tests)."""
  env = environment_with_huge_pages(
      os.environ, thp_mode() if thp is None else thp, glibc_version())
  if env is None or not getattr(sys, "orig_argv", None):
    return
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, [sys.executable] + sys.orig_argv[1:], env)
  except OSError:
    return  # an optimisation only: go on in this process as it is
