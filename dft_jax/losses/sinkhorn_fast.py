"""The Sinkhorn speed-ups, behind one seam: `make(solver, bank_MxX, ...)`, chosen by
`loss.sinkhorn_solver` (divergences.sinkhorn, ott's plain `sinkdiv`, is the default and the
reference every path here is tested against).

  value_kernel        the score-function estimator reports D but only weights log p by
                      c = f_xy - f_xx, which does not depend on OT(bank, bank): that term is
                      solved by scaling iterations on its kernel at the shared epsilon, without
                      gradient (the log domain if the result is not finite); c is the same
                      computation, bit for bit, the value equal within the solvers' tolerance
  static_bank         against the fixed bank: epsilon made absolute once by the bank's mean
                      self-cost and OT(bank, bank) solved once per run (`sinkhorn_to_bank`), so
                      each call solves two problems, in the log domain on a cost matrix built
                      once per call and reduced a cache-sized block at a time (blocked_cost.py)
  static_bank_kernel  the same two problems by scaling iterations on kernels exp(-C / eps)
                      built once per call (POT's iterations), the log domain whenever a kernel
                      row or column underflows (outlying samples) or the result is not finite

Timings: BENCHMARKS.md (rounds 5 and 6).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from ott.geometry import geometry, pointcloud
from ott.solvers import linear
from ott.solvers.linear import acceleration
from ott.tools import sinkhorn_divergence

from dft_jax.losses import blocked_cost
from dft_jax.losses.divergences import loo_advantage, sq_dists

SOLVERS = ("ott", "value_kernel", "static_bank", "static_bank_kernel")

def _self_ot_cost_kernel(y_MxF, eps, threshold: float, max_iterations: int):
  """Regularized OT(beta, beta) at absolute `eps` (traced), without gradient: ott's symmetric
  updates as scaling iterations on exp(-C / eps) (its diagonal is 1, so no row underflows),
  the log domain if the result is not finite."""
  y, eps = jax.lax.stop_gradient((y_MxF, eps))
  b = jnp.full((y.shape[0],), 1.0 / y.shape[0])
  solve = _symmetric_solve_kwargs(threshold=threshold, max_iterations=max_iterations)
  with jax.numpy_rank_promotion("allow"):
    kernel = _Kernel(kernel_matrix=jnp.exp(-sq_dists(y, y) / eps), epsilon=eps)
    cost = linear.solve(kernel, a=b, b=b, lse_mode=False, **solve).reg_ot_cost
    cost = jax.lax.cond(jnp.isfinite(cost), lambda: cost, lambda: linear.solve(
        pointcloud.PointCloud(y, y, epsilon=eps), a=b, b=b, **solve).reg_ot_cost)
  return cost


def _self_ot_cost(y_MxF, epsilon: float, threshold: float, max_iterations: int) -> float:
  """Regularized OT(beta, beta) at absolute `epsilon`, with the symmetric updates ott's
  divergence uses for its x/x and y/y terms."""
  m = y_MxF.shape[0]
  b = jnp.full((m,), 1.0 / m)
  with jax.numpy_rank_promotion("allow"):
    out = linear.solve(pointcloud.PointCloud(y_MxF, y_MxF, epsilon=epsilon), a=b, b=b,
                       **_symmetric_solve_kwargs(threshold=threshold,
                                                 max_iterations=max_iterations))
  if not bool(out.converged):
    raise ValueError(f"the bank's self-transport did not converge to {threshold:g} in "
                     f"{max_iterations} iterations (epsilon {epsilon:.4g}); raise "
                     "loss.sinkhorn_iterations or loss.epsilon")
  return float(out.reg_ot_cost)


@jax.tree_util.register_pytree_node_class
class _Kernel(geometry.Geometry):
  """A geometry given by its kernel exp(-C / eps), applied with plain products.

  ott's own kernel mode raises the stored kernel to the power eps / eps' and transposes it on
  every iteration (one n x n pass each, measured in BENCHMARKS.md); this kernel is built at
  the one epsilon it is used with, so neither is needed."""

  def apply_kernel(self, vec, eps=None, axis=0):
    del eps  # ott passes None or self.epsilon: the epsilon the kernel was built at
    return vec @ self._kernel_matrix if axis == 0 else self._kernel_matrix @ vec


def _symmetric_solve_kwargs(**kwargs) -> dict:
  """ott's solver settings for the x/x and y/y terms of its divergence."""
  return dict(kwargs, parallel_dual_updates=True, anderson=None,
              momentum=acceleration.Momentum(start=0, value=0.5))


def _kernel_domain(x_NxF, y_MxF, a_N, b_M, eps, offset, solve):
  """(S_eps, f_xy - f_xx) by scaling iterations on kernels built once; with the ok flag: False
  when a kernel row or column is all zeros (float32 underflow), so the caller falls back."""
  k_xy = jnp.exp(-sq_dists(x_NxF, y_MxF) / eps)
  k_xx = jnp.exp(-sq_dists(x_NxF, x_NxF) / eps)
  ok = (jnp.min(jnp.max(k_xy, axis=1)) > 0) & (jnp.min(jnp.max(k_xy, axis=0)) > 0)
  kernel = dict(lse_mode=False, **solve)
  out_xy = linear.solve(_Kernel(kernel_matrix=k_xy, epsilon=eps), a=a_N, b=b_M, **kernel)
  out_xx = linear.solve(_Kernel(kernel_matrix=k_xx, epsilon=eps), a=a_N, b=a_N,
                        **_symmetric_solve_kwargs(**kernel))
  value = out_xy.reg_ot_cost - 0.5 * (out_xx.reg_ot_cost + offset)
  return value, out_xy.f - out_xx.f, ok


def sinkhorn_to_bank(y_MxF, *, epsilon: float = 0.05, threshold: float = 1e-3,
                     max_iterations: int = 200, implicit_diff: bool = True,
                     inner_iterations: int = 10, domain: str = "log"):
  """fn(x_NxF) -> (S_eps(alpha, beta), c_N) against the fixed bank beta = `y_MxF`.

  epsilon is relative to the bank's mean self-cost and turned absolute here, once; OT(beta,
  beta) at that epsilon is solved once (to threshold / 100, at least 1e-6: float32) and handed
  to ott as the static offset. Convergence is checked every `inner_iterations` iterations:
  10 (ott's default) for the loss's few samples against ~1000 bank rows, 1 for thousands of
  points on both sides (it stops as soon as the marginal error is under `threshold`). The log
  domain runs on `blocked_cost.BlockedCost` (cost built once per call, log-sum-exps by
  cache-sized blocks). domain='kernel': the two problems by scaling iterations on kernels
  built once per call (POT's iterations), the log domain whenever a kernel row or column
  underflows or the result is not finite."""
  if domain not in ("log", "kernel"):
    raise ValueError(f"unknown Sinkhorn domain {domain!r}; expected 'log' or 'kernel'")
  y = jnp.asarray(y_MxF, jnp.float32)
  eps_abs = float(epsilon * jnp.mean(sq_dists(y, y)))
  offset = _self_ot_cost(y, eps_abs, max(threshold / 100, 1e-6), max_iterations * 10)
  solve = dict(threshold=threshold, max_iterations=max_iterations,
               inner_iterations=inner_iterations,
               **({} if implicit_diff else {"implicit_diff": None}))

  def log_domain(x, a):
    value, out = sinkhorn_divergence.sinkhorn_divergence(
        blocked_cost.BlockedCost, x, y, a=a, epsilon=eps_abs, static_b=True,
        offset_static_b=offset, solve_kwargs=solve)
    (f_xy, _), (f_xx, _), _ = out.potentials
    return value, f_xy - f_xx

  def fn(x_NxF, a_N=None):
    x = x_NxF.astype(jnp.float32)
    a = jnp.full((x.shape[0],), 1.0 / x.shape[0]) if a_N is None else a_N
    with jax.numpy_rank_promotion("allow"):
      if domain == "log":
        value, c = log_domain(x, a)
      else:
        b = jnp.full((y.shape[0],), 1.0 / y.shape[0])
        value, c, ok = _kernel_domain(x, y, a, b, eps_abs, offset, solve)
        ok = ok & jnp.isfinite(value) & jnp.all(jnp.isfinite(c))
        value, c = jax.lax.cond(ok, lambda: (value, c), lambda: log_domain(x, a))
    return value, c - jnp.dot(c, a)
  return fn


def sinkhorn_value_kernel(x_NxX, y_MxX, *, epsilon: float = 0.05, threshold: float = 1e-3,
                          max_iterations: int = 200, a_N=None, implicit_diff: bool = True):
  """divergences.sinkhorn with OT(beta, beta) by kernel scaling iterations and no gradient:
  for the score-function estimator, which reports the value and never differentiates it."""
  x, y = x_NxX.astype(jnp.float32), y_MxX.astype(jnp.float32)
  a = jnp.full((x.shape[0],), 1.0 / x.shape[0]) if a_N is None else a_N
  solve = dict(threshold=threshold, max_iterations=max_iterations,
               **({} if implicit_diff else {"implicit_diff": None}))
  eps = pointcloud.PointCloud(x, y, epsilon=epsilon, relative_epsilon="mean").epsilon
  with jax.numpy_rank_promotion("allow"):  # ott broadcasts implicitly inside
    value, out = sinkhorn_divergence.sinkdiv(
        x, y, a=a, epsilon=epsilon, relative_epsilon="mean", solve_kwargs=solve,
        static_b=True, offset_static_b=_self_ot_cost_kernel(y, eps, threshold, max_iterations))
  (f_xy, _), (f_xx, _), _ = out.potentials
  c = f_xy - f_xx
  return value, c - jnp.dot(c, a)


def make(solver: str, bank_MxX=None, **kwargs):
  """fn(x, y) -> (S_eps, leave-one-out advantage) for a `loss.sinkhorn_solver` other than
  'ott'; the static-bank solvers are bound to `bank_MxX` (its self-transport solved here)."""
  if solver == "value_kernel":
    def fn(x, y):
      value, c = sinkhorn_value_kernel(x, y, **kwargs)
      return value, loo_advantage(c)
    return fn
  if solver in ("static_bank", "static_bank_kernel"):
    to_bank = sinkhorn_to_bank(bank_MxX, domain="kernel" if solver.endswith("kernel") else "log",
                               **kwargs)

    def fn(x, y):
      del y  # the bank the divergence was made for
      value, c = to_bank(x)
      return value, loo_advantage(c)
    return fn
  raise ValueError(f"unknown loss.sinkhorn_solver {solver!r}; available: {', '.join(SOLVERS)}")
