"""Divergences between the law of sample features and the reference bank, each returning the
value and every sample's first variation.

c_i = d/dt D((1 - t) alpha + t delta_{x_i}) at t = 0: how D changes when mass moves toward sample
i. The score-function estimator weights log p(x_i) by c_i (DESIGN §2.3); tests check c against
finite differences of the sample weights.

  sinkhorn  debiased Sinkhorn divergence S_eps (ott-jax), squared-Euclidean cost, fp32;
            c = f_xy - f_xx (dual potentials of OT(alpha, beta) and OT(alpha, alpha)), centred
  mmd       unbiased MMD^2, mixture of RBF kernels at multiples of the median distance
  energy    MMD^2 with the energy-distance kernel k(x, y) = -|x - y|
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from ott.tools import sinkhorn_divergence

RBF_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


def sinkhorn(x_NxF, y_MxF, *, epsilon: float = 0.05, threshold: float = 1e-3,
             max_iterations: int = 200, a_N=None):
  """(S_eps(alpha, beta), c_N). epsilon is relative to the mean cost."""
  x, y = x_NxF.astype(jnp.float32), y_MxF.astype(jnp.float32)
  a = jnp.full((x.shape[0],), 1.0 / x.shape[0]) if a_N is None else a_N
  with jax.numpy_rank_promotion("allow"):  # ott broadcasts implicitly inside
    value, out = sinkhorn_divergence.sinkdiv(
        x, y, a=a, epsilon=epsilon, relative_epsilon="mean",
        solve_kwargs=dict(threshold=threshold, max_iterations=max_iterations))
  (f_xy, _), (f_xx, _), _ = out.potentials
  c = f_xy - f_xx
  return value, c - jnp.dot(c, a)


def _sq_dists(x, y):
  return jnp.maximum(jnp.sum(x * x, -1)[:, None] + jnp.sum(y * y, -1)[None, :]
                     - 2.0 * x @ y.T, 0.0)


def _rbf_kernel(bandwidth2):
  def k(x, y):
    d2 = _sq_dists(x, y)
    return sum(jnp.exp(-d2 / (s * bandwidth2)) for s in RBF_SCALES) / len(RBF_SCALES)
  return k


def _energy_kernel(x, y):
  return -jnp.sqrt(_sq_dists(x, y) + 1e-12)


def _weighted_mmd(kernel, x, y, a):
  """Unbiased MMD^2 at uniform weights, written with sample weights `a` so that its weight
  derivative is the first variation: m/(m-1) sum_{i!=j} a_i a_j k_ij + (same for y)
  - 2 sum_ij a_i b_j k(x_i, y_j)."""
  m, n = x.shape[0], y.shape[0]
  b = jnp.full((n,), 1.0 / n)
  kxx = kernel(x, x) * (1 - jnp.eye(m))
  kyy = kernel(y, y) * (1 - jnp.eye(n))
  return (m / (m - 1)) * a @ kxx @ a + (n / (n - 1)) * b @ kyy @ b - 2 * a @ kernel(x, y) @ b


def _mmd_with_variation(kernel, x, y, a):
  value, grad_a = jax.value_and_grad(lambda w: _weighted_mmd(kernel, x, y, w))(a)
  return value, grad_a - jnp.dot(grad_a, a)


def mmd(x_NxF, y_MxF, *, a_N=None):
  """(unbiased MMD^2 with an RBF mixture, c_N); bandwidth: median pooled squared distance."""
  x, y = x_NxF.astype(jnp.float32), y_MxF.astype(jnp.float32)
  a = jnp.full((x.shape[0],), 1.0 / x.shape[0]) if a_N is None else a_N
  pooled = jnp.concatenate([x, y])
  bandwidth2 = jax.lax.stop_gradient(jnp.maximum(jnp.median(_sq_dists(pooled, pooled)), 1e-6))
  return _mmd_with_variation(_rbf_kernel(bandwidth2), x, y, a)


def energy(x_NxF, y_MxF, *, a_N=None):
  """(energy distance as MMD^2 with k = -|x - y|, c_N)."""
  x, y = x_NxF.astype(jnp.float32), y_MxF.astype(jnp.float32)
  a = jnp.full((x.shape[0],), 1.0 / x.shape[0]) if a_N is None else a_N
  return _mmd_with_variation(_energy_kernel, x, y, a)


def make(name: str, **kwargs):
  """name -> fn(x, y) -> (value, c)."""
  if name == "sinkhorn":
    return lambda x, y: sinkhorn(x, y, **kwargs)
  if name in ("mmd", "energy"):
    return {"mmd": mmd, "energy": energy}[name]
  raise ValueError(f"unknown divergence {name!r}; expected sinkhorn, mmd or energy")
