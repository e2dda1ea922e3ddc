"""1-D Winograd (Toom-Cook) correlation: a multichannel conv in fewer FLOPs.

A valid correlation ``y[t] = sum_j x[t + j] @ w[j]`` of an ``r``-tap kernel
computes ``m`` outputs from a tile of ``alpha = m + r - 1`` inputs. Winograd's
minimal filtering algorithm F(m, r) (Lavin & Gray 2016) does it with
``alpha`` channel matmuls per tile instead of ``m * r``::

    y_tile = A^T [ (G w) (.) (B^T x_tile) ]

where ``B^T x`` and ``A^T`` are cheap, channel-wise sums over the tile and
``G w`` is computed once per kernel. The matmuls, where all the FLOPs are,
shrink by ``m r / alpha``: 2x for F(4, 3), 2.5x for F(4, 5) (the two the
deconvnet uses).

Why hand-written: XLA's CPU convolution (Eigen) and the kept JAX libraries
have no Winograd path, and the deconvnet's dense transposed convs already
run at the machine's matmul rate, so fewer FLOPs is what is left to gain.

The transform matrices come from interpolation at the points ``0, 1, -1, 2,
-2, 1/2, -1/2, ...`` and infinity, derived in exact rational arithmetic. Each
row of ``B^T`` is scaled to small integers and the scale moved into ``G``
(the only matrix with awkward fractions, applied once to the kernel), so for
``alpha <= 8`` the float32 error stays within a few ``1e-6`` of the output's
scale (tested against float64 in tests/test_winograd.py).
"""
import fractions
import functools
import math
from typing import List, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

_POINTS = (0, 1, -1, 2, -2, fractions.Fraction(1, 2), fractions.Fraction(-1, 2),
           3, -3)


def _inverse(matrix):
  """Exact inverse of a square matrix of Fractions (Gauss-Jordan)."""
  n = len(matrix)
  rows = [list(row) + [fractions.Fraction(int(i == j)) for j in range(n)]
          for i, row in enumerate(matrix)]
  for col in range(n):
    pivot = next(r for r in range(col, n) if rows[r][col] != 0)
    rows[col], rows[pivot] = rows[pivot], rows[col]
    rows[col] = [v / rows[col][col] for v in rows[col]]
    for r in range(n):
      if r != col and rows[r][col] != 0:
        f = rows[r][col]
        rows[r] = [a - f * b for a, b in zip(rows[r], rows[col])]
  return [row[n:] for row in rows]


def _vandermonde(points, n):
  """Rows ``[1, p, ..., p^(n-1)]`` per point, then the point at infinity
  (the leading coefficient)."""
  rows = [[fractions.Fraction(p) ** i for i in range(n)] for p in points]
  rows.append([fractions.Fraction(0)] * (n - 1) + [fractions.Fraction(1)])
  return rows


@functools.lru_cache(maxsize=None)
def transform_matrices(m: int, r: int
                       ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(A^T [m, alpha], G [alpha, r], B^T [alpha, alpha])`` of F(m, r).

  A correlation is the transpose of a linear convolution: if Toom-Cook
  multiplies polynomials as ``c = W^-1 [(V_a a) (.) (V_g g)]`` (``V``
  Vandermonde matrices at the points, ``W`` the full one), then
  ``y = V_a^T [(V_g g) (.) (W^-T x)]``: ``A^T = V_a^T``, ``G = V_g``,
  ``B^T = W^-T``, up to the row scaling described in the module docstring.
  float64 arrays.
  """
  alpha = m + r - 1
  if not 2 <= alpha <= len(_POINTS) + 1:
    raise ValueError(f"F({m}, {r}) needs {alpha} points; at most "
                     f"{len(_POINTS) + 1} are defined")
  points = _POINTS[:alpha - 1]
  w_inv = _inverse(_vandermonde(points, alpha))
  v_a, v_g = _vandermonde(points, m), _vandermonde(points, r)
  a_t = [[v_a[k][i] for k in range(alpha)] for i in range(m)]
  b_t, g = [], []
  for k in range(alpha):
    row = [w_inv[j][k] for j in range(alpha)]
    scale = functools.reduce(lambda a, b: a * b // math.gcd(a, b),
                             (v.denominator for v in row), 1)
    b_t.append([v * scale for v in row])
    g.append([v / scale for v in v_g[k]])
  def as_array(rows):  # read-only: the cache hands out the same arrays
    array = np.array([[float(v) for v in row] for row in rows])
    array.setflags(write=False)
    return array
  return as_array(a_t), as_array(g), as_array(b_t)


def transform_kernel(taps: jax.Array, m: int) -> jax.Array:
  """``G w`` over the taps axis: ``[r, ...] -> [alpha, ...]``.

  One fused elementwise pass whatever the layout of a tap; the correlation
  takes each tap as ``[Cout, C]`` (output-major), the layout a conv kernel
  ``[k, Cin, C]`` already has when it is run transposed, so the deconvnet's
  kernels need no transpose (with one, preparing layer 11's took 21 ms per
  call; without, 2.8 ms).
  """
  _, g, _ = transform_matrices(m, taps.shape[0])
  return jnp.stack([_weighted_sum(row, list(taps)) for row in g])


def _weighted_sum(weights, terms):
  """``sum_i weights[i] * terms[i]``, skipping zero weights and multiplying
  only by weights other than +-1 (``B^T``'s small integers, ``A^T``'s
  integers and powers of two)."""
  out = None
  for w, term in zip(weights, terms):
    if w == 0:
      continue
    term = term if w == 1 else -term if w == -1 else float(w) * term
    out = term if out is None else out + term
  return out


def _tile_inputs(x: jax.Array, m: int, r: int) -> List[jax.Array]:
  """Input sample ``a`` of every tile of F(m, r), for ``a < alpha``.

  Args:
    x: ``[B, L, C]``, zero-padded to ``tiles * m + r - 1`` samples.
  Returns:
    ``alpha`` arrays ``[B, tiles, C]``: ``x[:, t * m + a]``.
  """
  tiles = (x.shape[1] - r + 1) // m
  return [x[:, a:a + (tiles - 1) * m + 1:m] for a in range(m + r - 1)]


def _correlate_tiles(inputs: Sequence[jax.Array], kernel_hat: jax.Array,
                    m: int, r: int) -> jax.Array:
  """F(m, r) on tiles given by their inputs (see :func:`_tile_inputs`).

  Args:
    inputs: ``alpha`` arrays ``[B, tiles, C]``.
    kernel_hat: ``[alpha, Cout, C]``, :func:`transform_kernel` of the
      output-major taps.
    m, r: outputs per tile and taps.
  Returns:
    ``[B, tiles * m, Cout]``.
  """
  alpha = m + r - 1
  a_t, _, b_t = transform_matrices(m, r)
  batch, tiles, channels = inputs[0].shape
  v = jnp.stack([_weighted_sum(b_t[p], inputs) for p in range(alpha)])
  # One matmul per point over all tiles of all rows: [alpha, B*tiles, C].
  products = jnp.einsum("ptc,pdc->ptd",
                        v.reshape(alpha, batch * tiles, channels), kernel_hat)
  y = jnp.stack([_weighted_sum(a_t[i], products) for i in range(m)],
                axis=1)  # [B*tiles, m, Cout]
  return y.reshape(batch, tiles * m, -1)


def correlate_transformed(x: jax.Array, kernel_hat: jax.Array, m: int,
                          r: int) -> jax.Array:
  """:func:`correlate` with the kernel already transformed.

  Args:
    x: ``[B, L, C]``.
    kernel_hat: ``[alpha, Cout, C]``, :func:`transform_kernel` of the taps
      in output-major layout ``[r, Cout, C]`` (computed once when many
      signals share a kernel).
    m, r: outputs per tile and taps of F(m, r).
  Returns:
    ``[B, L - r + 1, Cout]``.
  """
  n_out = x.shape[1] - r + 1
  tiles = -(-n_out // m)
  x = jnp.pad(x, ((0, 0), (0, tiles * m + r - 1 - x.shape[1]), (0, 0)))
  return _correlate_tiles(_tile_inputs(x, m, r), kernel_hat, m, r)[:, :n_out]


def correlate(x: jax.Array, taps: jax.Array, m: int) -> jax.Array:
  """Valid correlation by Winograd F(m, r).

  Args:
    x: ``[B, L, C]``.
    taps: ``[r, C, Cout]``; output ``t`` is ``sum_j x[t + j] @ taps[j]``.
    m: outputs per tile.
  Returns:
    ``[B, L - r + 1, Cout]``, equal to ``lax.conv_general_dilated`` with a
    VALID window to float32 rounding.
  """
  output_major = jnp.swapaxes(taps, 1, 2)
  return correlate_transformed(x, transform_kernel(output_major, m), m,
                               taps.shape[0])
