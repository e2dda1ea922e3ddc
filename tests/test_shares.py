"""shares.split_rows: each process computes its own rows, every process gets
them all in row order (issue 31).

The processes are threads here (``helpers.as_processes``).
The real two-process run is in tests/test_multihost_atlas.py (``-m slow``).
"""
import helpers
import numpy as np
import pytest

from sonify_jax.analysis.core import shares


@pytest.mark.parametrize("count", [2, 3, 5])
def test_every_process_gets_every_row_computing_only_its_own(monkeypatch,
                                                            count):
  # 9 rows of 4 clips (clip 3 has none): with 5 processes, process 3 and 4
  # own no row and still receive the whole result.
  owners = np.array([0, 0, 1, 2, 2, 2, 0, 1, 4])
  truth = np.stack([np.arange(3) + 10.0 * r + 1 / 3 for r in range(9)])
  computed = [[] for _ in range(count)]

  def body(share):
    def compute(rows):
      computed[share.index].extend(rows.tolist())
      return truth[rows]      # float64: must come back exactly
    return shares.split_rows(compute, owners, share)

  for result in helpers.as_processes(monkeypatch, count, body):
    np.testing.assert_array_equal(result, truth)
    assert result.dtype == np.float64
  for p in range(count):
    assert computed[p] == [r for r in range(9) if owners[r] % count == p]


def test_one_process_computes_every_row_in_one_call():
  calls = []

  def compute(rows):
    calls.append(rows.tolist())
    return rows[:, None] * np.ones((1, 2), np.float32)

  out = shares.split_rows(compute, np.array([3, 1, 1]), shares.Share())
  assert calls == [[0, 1, 2]]
  np.testing.assert_array_equal(out, [[0, 0], [1, 1], [2, 2]])
