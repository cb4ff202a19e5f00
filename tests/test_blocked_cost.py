"""The blocked cost geometry: its cost and log-sum-exps against float64 numpy, and ott's Sinkhorn
divergence on it against the same on ott's PointCloud (value, potentials, gradient)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import pointcloud
from ott.tools import sinkhorn_divergence

from dft_jax.losses import blocked_cost, divergences


def _points(n, m, f=6, seed=0):
  rng = np.random.RandomState(seed)
  return rng.randn(n, f).astype(np.float32), (1.2 * rng.randn(m, f) + 0.5).astype(np.float32)


def _lse64(z, axis):
  top = np.max(z, axis=axis, keepdims=True)
  return np.squeeze(top, axis) + np.log(np.sum(np.exp(z - top), axis=axis))


def test_sq_dists_equals_pairwise_distances():
  x, y = _points(37, 23)
  ref = np.sum((x[:, None].astype(np.float64) - y[None]) ** 2, -1)
  np.testing.assert_allclose(np.asarray(divergences.sq_dists(x, y)), ref,
                             atol=2e-5 * ref.max())


@pytest.mark.parametrize("block_entries", [10**9, 7 * 23, 23])  # one block; 7 rows; one row
def test_blocked_log_sum_exps_equal_float64(monkeypatch, block_entries):
  """Row and column log-sum-exps over blocks that do not divide the rows (the last block
  overlaps the one before), with -inf potential entries (a whole first block of them) and a
  column far enough out that a shift of 0 would underflow it: equal to the float64
  reference."""
  monkeypatch.setattr(blocked_cost, "BLOCK_ENTRIES", block_entries)
  rng = np.random.RandomState(1)
  n, m, eps = 37, 23, 0.05
  cost = rng.uniform(0, 10, (n, m)).astype(np.float32)
  pot_n = rng.uniform(-5, 5, n).astype(np.float32)
  pot_m = rng.uniform(-5, 5, m).astype(np.float32)
  cost[:, 0] += 40.0  # (pot - C) / eps ~ -800 in that column
  pot_n[:7] = pot_m[2] = -np.inf
  # fresh lambdas: jit's cache is keyed by the function, and the block size is read at trace
  rows = jax.jit(lambda p, c: blocked_cost.lse_rows(p, c, eps))(pot_m, cost)
  cols = jax.jit(lambda p, c: blocked_cost.lse_columns(p, c, eps))(pot_n, cost)
  c64 = cost.astype(np.float64)
  np.testing.assert_allclose(np.asarray(rows), eps * _lse64((pot_m[None] - c64) / eps, 1),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(cols), eps * _lse64((pot_n[:, None] - c64) / eps, 0),
                             rtol=1e-5, atol=1e-5)


def _divergence(geometry_class, x, y, eps):
  with jax.numpy_rank_promotion("allow"):
    value, out = sinkhorn_divergence.sinkhorn_divergence(
        geometry_class, x, y, epsilon=eps, static_b=True, offset_static_b=0.0,
        solve_kwargs=dict(threshold=1e-6, max_iterations=5000))
  (f_xy, g_xy), (f_xx, _), _ = out.potentials
  return value, (f_xy, g_xy, f_xx)


def test_sinkhorn_on_blocked_cost_equals_pointcloud(monkeypatch):
  """ott's solver on the blocked geometry (several blocks per pass) gives PointCloud's value,
  potentials and gradient with respect to the points (implicit differentiation)."""
  monkeypatch.setattr(blocked_cost, "BLOCK_ENTRIES", 5 * 40)
  x, y = _points(33, 40)
  eps = 0.05 * float(np.mean(np.sum((x[:, None] - y[None]) ** 2, -1)))
  (v_ref, pots_ref), grad_ref = jax.jit(jax.value_and_grad(
      lambda p: _divergence(pointcloud.PointCloud, p, y, eps), has_aux=True))(x)
  (v, pots), grad = jax.jit(jax.value_and_grad(
      lambda p: _divergence(blocked_cost.BlockedCost, p, y, eps), has_aux=True))(x)
  np.testing.assert_allclose(float(v), float(v_ref), rtol=1e-5)
  for got, ref in zip(pots, pots_ref):
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-4 * np.abs(ref).max())
  np.testing.assert_allclose(np.asarray(grad), np.asarray(grad_ref),
                             atol=1e-4 * np.abs(grad_ref).max())
