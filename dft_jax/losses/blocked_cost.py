"""A squared-Euclidean cost matrix for ott's log-domain Sinkhorn, built once per call and
reduced in blocks of rows that stay in cache (sinkhorn_fast.py's static-bank solver).

ott's `PointCloud` (no `batch_size`) writes the centred, scaled matrix (f + g - C) / eps to
memory before each log-sum-exp, because its max and its sum both read it; reduced over blocks
of rows that stay in cache, the same arithmetic reads C once per pass (timings: BENCHMARKS.md,
round 6). The cost is the losses' one squared distance (divergences.sq_dists), stored once.

Weighted log-sum-exps (the `vec` argument, used when ott differentiates the fixed point) and
everything else go through ott's `Geometry` on the stored matrix, so the solver, its
implicit differentiation and its outputs are ott's own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from ott.geometry import geometry

from dft_jax.losses.divergences import sq_dists

BLOCK_ENTRIES = 2**20  # entries of C per block (4 MB of float32): measured in BENCHMARKS.md


def _rows_per_block(cost_NxM) -> int:
  n, m = cost_NxM.shape
  return max(1, min(n, BLOCK_ENTRIES // m))


def _block_starts(n: int, rows: int):
  """Start of block b, clamped so that the last block ends at row n (it overlaps the one
  before when rows does not divide n)."""
  return lambda b: jnp.minimum(b * rows, n - rows)


def _finite(top):
  return jnp.where(jnp.isfinite(top), top, 0.0)


def lse_rows(pot_M, cost_NxM, eps):
  """eps * log sum_j exp((pot_j - C_ij) / eps) for every row i, a block of rows at a time."""
  n, m = cost_NxM.shape
  rows = _rows_per_block(cost_NxM)
  start = _block_starts(n, rows)

  def block(b, out_N):
    z = (pot_M[None, :] - jax.lax.dynamic_slice(cost_NxM, (start(b), 0), (rows, m))) / eps
    top = _finite(jax.lax.stop_gradient(jnp.max(z, axis=1)))  # the shift: the row's max
    lse = eps * (jnp.log(jnp.sum(jnp.exp(z - top[:, None]), axis=1)) + top)
    return jax.lax.dynamic_update_slice(out_N, lse, (start(b),))

  return jax.lax.fori_loop(0, -(-n // rows), block, jnp.zeros((n,), cost_NxM.dtype))


def lse_columns(pot_N, cost_NxM, eps):
  """eps * log sum_i exp((pot_i - C_ij) / eps) for every column j, reading C by blocks of rows
  (contiguous) with a running maximum and sum per column: no transposed copy of C."""
  n, m = cost_NxM.shape
  rows = _rows_per_block(cost_NxM)
  start = _block_starts(n, rows)

  def block(b, carry):
    top_M, total_M = carry
    i = start(b)
    z = (jax.lax.dynamic_slice(pot_N, (i,), (rows,))[:, None]
         - jax.lax.dynamic_slice(cost_NxM, (i, 0), (rows, m))) / eps
    fresh = (i + jnp.arange(rows)) >= b * rows  # rows the clamped last block has not seen
    z = jnp.where(fresh[:, None], z, -jnp.inf)
    # the running maximum stays -inf until a column has seen a finite entry, so that a block
    # of -inf (zero-weight rows) cannot pin the shift above the column's later entries
    new_top = jnp.maximum(top_M, jax.lax.stop_gradient(jnp.max(z, axis=0)))
    shift = _finite(new_top)
    rescale = jnp.where(jnp.isfinite(top_M), jnp.exp(top_M - shift), 0.0)
    return new_top, total_M * rescale + jnp.sum(jnp.exp(z - shift[None, :]), axis=0)

  init = (jnp.full((m,), -jnp.inf, cost_NxM.dtype), jnp.zeros((m,), cost_NxM.dtype))
  top, total = jax.lax.fori_loop(0, -(-n // rows), block, init)
  return eps * (jnp.log(total) + _finite(top))


@jax.tree_util.register_pytree_node_class
class BlockedCost(geometry.Geometry):
  """An ott `Geometry` on a stored cost matrix whose unweighted log-sum-exp passes (the
  Sinkhorn iterations and their marginal checks) run block by block."""

  @classmethod
  def prepare_divergences(cls, x, y, static_b: bool = False, **kwargs):
    """The geometries of ott's Sinkhorn divergence (x/y, x/x and, unless static_b, y/y), the
    signature `sinkhorn_divergence.sinkhorn_divergence(BlockedCost, x, y, ...)` calls."""
    pairs = [(x, y), (x, x)] + ([] if static_b else [(y, y)])
    return tuple(cls(sq_dists(p, q), **kwargs) for p, q in pairs)

  def apply_lse_kernel(self, f, g, eps, vec=None, axis=0):
    if vec is not None:
      return super().apply_lse_kernel(f, g, eps, vec, axis)
    if axis == 1:
      lse, removed = lse_rows(g, self.cost_matrix, eps), f
    else:
      lse, removed = lse_columns(f, self.cost_matrix, eps), g
    # ott's value where the potential it adds and removes again is not finite
    return jnp.where(jnp.isfinite(removed), lse, removed), jnp.array([1.0])
