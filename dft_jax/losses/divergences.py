"""Divergences between the law of sample features and the reference bank, each returning the
value and every sample's first variation.

c_i = d/dt D((1 - t) alpha + t delta_{x_i}) at t = 0: how D changes when mass moves toward sample
i. The score-function estimator weights log p(x_i) by c_i; tests check c against
finite differences of the sample weights.

  sinkhorn  debiased Sinkhorn divergence S_eps (ott-jax `sinkdiv`), squared-Euclidean cost,
            fp32, epsilon relative to the mean cost; c = f_xy - f_xx (dual potentials of
            OT(alpha, beta) and OT(alpha, alpha)), centred. Faster paths for the loss (a
            value-only bank term, a bank solved once, kernel-domain iterations) are in
            sinkhorn_fast.py, chosen by loss.sinkhorn_solver.
  mmd       unbiased MMD^2, mixture of RBF kernels at multiples of the median distance
  energy    MMD^2 with the energy-distance kernel k(x, y) = -|x - y|
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from ott.tools import sinkhorn_divergence

RBF_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


def sinkhorn(x_NxX, y_MxX, *, epsilon: float = 0.05, threshold: float = 1e-3,
             max_iterations: int = 200, a_N=None, b_M=None, implicit_diff: bool = True,
             relative_epsilon: str | None = "mean"):
  """(S_eps(alpha, beta), c_N): ott's debiased Sinkhorn divergence, epsilon relative to the
  mean cost of x against y and shared by the three problems (relative_epsilon=None: epsilon
  as given). Gradients with respect to the points: implicit differentiation of the fixed
  point (default), or unrolled through the iterations (implicit_diff=False)."""
  x, y = x_NxX.astype(jnp.float32), y_MxX.astype(jnp.float32)
  a = jnp.full((x.shape[0],), 1.0 / x.shape[0]) if a_N is None else a_N
  solve = dict(threshold=threshold, max_iterations=max_iterations,
               **({} if implicit_diff else {"implicit_diff": None}))
  with jax.numpy_rank_promotion("allow"):  # ott broadcasts implicitly inside
    value, out = sinkhorn_divergence.sinkdiv(
        x, y, a=a, b=b_M, epsilon=epsilon, relative_epsilon=relative_epsilon,
        solve_kwargs=solve)
  (f_xy, _), (f_xx, _), _ = out.potentials
  c = f_xy - f_xx
  return value, c - jnp.dot(c, a)


def sq_dists(x_NxX, y_MxX):
  """|x_i - y_j|^2, clamped at 0 (the one squared distance of the losses)."""
  x, y = x_NxX, y_MxX
  return jnp.maximum(jnp.sum(x * x, -1)[:, None] + jnp.sum(y * y, -1)[None, :]
                     - 2.0 * x @ y.T, 0.0)


def rbf_kernel(bandwidth2):
  def k(x, y):
    d2 = sq_dists(x, y)
    return sum(jnp.exp(-d2 / (s * bandwidth2)) for s in RBF_SCALES) / len(RBF_SCALES)
  return k


def _energy_kernel(x, y):
  return -jnp.sqrt(sq_dists(x, y) + 1e-12)


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


def loo_advantage(c_N):
  """c_i minus the mean of the other samples' c (the leave-one-out baseline)."""
  m = c_N.shape[0]
  return c_N - (c_N.sum() - c_N) / (m - 1)


def kernel_advantage(kernel, x_NxF, y_MxF):
  """c_i - b_i for an MMD-type divergence with b_i free of x_i: b_i is the mean first
  variation of the other samples computed without sample i. E[(c_i - b_i) grad log p(x_i)]
  is then exactly the gradient of the population MMD^2 (a plain leave-one-out mean of the c_j
  would leak x_i through k(x_j, x_i): an O(1/m) bias)."""
  m = x_NxF.shape[0]
  kxx = kernel(x_NxF, x_NxF) * (1 - jnp.eye(m))
  s_N = kxx.sum(1)
  mu_N = kernel(x_NxF, y_MxF).mean(1)
  c_raw = 2 * (s_N / (m - 1) - mu_N)
  baseline = (2 / (m - 1)) * ((s_N.sum() - 2 * s_N) / (m - 2) - (mu_N.sum() - mu_N))
  return c_raw - baseline


def mmd(x_NxF, y_MxF, *, a_N=None, bandwidth2=None):
  """(unbiased MMD^2 with an RBF mixture, c_N); bandwidth: median pooled squared distance
  unless given."""
  x, y = x_NxF.astype(jnp.float32), y_MxF.astype(jnp.float32)
  a = jnp.full((x.shape[0],), 1.0 / x.shape[0]) if a_N is None else a_N
  return _mmd_with_variation(rbf_kernel(_bandwidth2(x, y, bandwidth2)), x, y, a)


def _bandwidth2(x, y, bandwidth2=None):
  if bandwidth2 is not None:
    return bandwidth2
  pooled = jnp.concatenate([x, y])
  return jax.lax.stop_gradient(jnp.maximum(jnp.median(sq_dists(pooled, pooled)), 1e-6))


def energy(x_NxF, y_MxF, *, a_N=None):
  """(energy distance as MMD^2 with k = -|x - y|, c_N)."""
  x, y = x_NxF.astype(jnp.float32), y_MxF.astype(jnp.float32)
  a = jnp.full((x.shape[0],), 1.0 / x.shape[0]) if a_N is None else a_N
  return _mmd_with_variation(_energy_kernel, x, y, a)


def make(name: str, **kwargs):
  """name -> fn(x, y) -> (value, advantage): the advantage is what the score-function
  estimator weights log p(x_i) with (the first variation c_i minus a baseline). `kwargs`:
  sinkhorn's settings (epsilon, threshold, max_iterations, implicit_diff)."""
  if name == "sinkhorn":
    def fn(x, y):
      value, c = sinkhorn(x, y, **kwargs)
      return value, loo_advantage(c)
    return fn
  if kwargs:
    raise ValueError(f"divergence {name!r} takes no settings, got {sorted(kwargs)}")
  kernels = {"mmd": lambda x, y: rbf_kernel(_bandwidth2(x, y)),
             "energy": lambda x, y: _energy_kernel}
  if name in kernels:
    def fn(x, y):
      x, y = x.astype(jnp.float32), y.astype(jnp.float32)
      kernel = kernels[name](x, y)
      m = x.shape[0]
      value = _weighted_mmd(kernel, x, y, jnp.full((m,), 1.0 / m))
      return value, kernel_advantage(kernel, x, y)
    return fn
  raise ValueError(f"unknown divergence {name!r}; expected sinkhorn, mmd or energy")
