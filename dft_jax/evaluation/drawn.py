"""The feature divergences of many bootstrap draws at once, from how often each unit was drawn.

A bootstrap replicate repeats some prompts and leaves others out, and a clustered one has a
size of its own, so computing its divergences on the drawn points compiles the solver once per
distinct size (a hundred or more sizes in 200 replicates). Here a replicate is its draw counts
c over the N units instead: every replicate has the shape [N], so one compiled, vmapped call
scores a whole batch. The values are those of `report._divergences` on the drawn, repeated
points, up to float rounding:

  Sinkhorn  S_eps between x and y weighted c / n (n = sum c; undrawn units weigh 0), with
            epsilon = 0.05 x the mean cost over the drawn pairs: entropic OT with the KL
            regularizer gives repeated points the value of one point holding their mass.
  MMD²      the unbiased RBF mixture of `divergences.mmd`: the diagonal it leaves out is the
            pairs of a drawn copy with itself, so the within-set sums are c^T K c - c . diag K;
            the bandwidth is the median over the drawn pairs, a weighted median.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dft_jax.losses import divergences

BATCH = 64  # replicates per vmapped call (memory grows with it: [BATCH, 2N, 2N] distances)


def counts(draws: Sequence[np.ndarray], n: int) -> np.ndarray:
  """[len(draws), n] times each unit appears in each draw."""
  return np.stack([np.bincount(d, minlength=n) for d in draws]).astype(np.float32)


def weighted_median(values_K, weights_K):
  """jnp.median of `values_K`, each repeated `weights_K` (integer) times: the mean of the two
  middle elements of the repeated, sorted values."""
  order = jnp.argsort(values_K)
  values, cum = values_K[order], jnp.cumsum(weights_K[order].astype(jnp.int32))
  total = cum[-1]
  at = lambda rank: values[jnp.searchsorted(cum, rank, side="right")]  # noqa: E731
  return 0.5 * (at((total - 1) // 2) + at(total // 2))


def _sinkhorn(x_NxF, y_NxF, c_N):
  a_N = c_N / c_N.sum()
  epsilon = 0.05 * (a_N @ divergences.sq_dists(x_NxF, y_NxF) @ a_N)
  return divergences.sinkhorn(x_NxF, y_NxF, a_N=a_N, b_M=a_N, epsilon=epsilon,
                              relative_epsilon=None)[0]


def _mmd(x_NxF, y_NxF, c_N):
  n = c_N.sum()
  pooled, pooled_c = jnp.concatenate([x_NxF, y_NxF]), jnp.concatenate([c_N, c_N])
  bandwidth2 = jnp.maximum(weighted_median(
      divergences.sq_dists(pooled, pooled).ravel(), jnp.outer(pooled_c, pooled_c).ravel()), 1e-6)
  kernel = divergences.rbf_kernel(bandwidth2)

  def within(z_NxF):  # over the pairs of distinct drawn copies
    k_NxN = kernel(z_NxF, z_NxF)
    return (c_N @ k_NxN @ c_N - c_N @ jnp.diag(k_NxN)) / (n * (n - 1))
  return within(x_NxF) + within(y_NxF) - 2 * (c_N @ kernel(x_NxF, y_NxF) @ c_N) / n**2


_both = jax.jit(jax.vmap(lambda x, y, c: (_sinkhorn(x, y, c), _mmd(x, y, c)), (None, None, 0)))
_mmd_only = jax.jit(jax.vmap(lambda x, y, c: (_mmd(x, y, c),), (None, None, 0)))


def _of_draws(fn, x_NxF, y_NxF, draws) -> list[tuple[float, ...]]:
  x, y = jnp.asarray(x_NxF, jnp.float32), jnp.asarray(y_NxF, jnp.float32)
  c_DxN = counts(draws, len(x_NxF))
  out = []
  for start in range(0, len(c_DxN), BATCH):  # the last chunk padded to BATCH: one shape
    chunk = c_DxN[start:start + BATCH]
    padded = np.concatenate([chunk, np.repeat(chunk[-1:], BATCH - len(chunk), 0)])
    values = [np.asarray(v)[:len(chunk)] for v in fn(x, y, jnp.asarray(padded))]
    out += [tuple(map(float, row)) for row in zip(*values)]
  return out


def divergences_of_draws(x_NxF: np.ndarray, y_NxF: np.ndarray,
                         draws: Sequence[np.ndarray]) -> list[dict]:
  """{"feature_sinkhorn", "feature_mmd"} of x[d] against y[d] for every draw d (indices into
  both sets, which pair unit by unit)."""
  return [{"feature_sinkhorn": s, "feature_mmd": m} for s, m in _of_draws(_both, x_NxF, y_NxF,
                                                                          draws)]


def mmd_of_draws(x_NxF: np.ndarray, y_NxF: np.ndarray, draws: Sequence[np.ndarray]) -> list:
  """The MMD² of x[d] against y[d] for every draw d."""
  return [m for (m,) in _of_draws(_mmd_only, x_NxF, y_NxF, draws)]
