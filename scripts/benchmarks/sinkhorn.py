"""ott_vs_pot_*: the debiased Sinkhorn divergence of two point clouds, ott-jax vs POT, both run
to the same accuracy against a float64 reference at the same absolute epsilon."""

from __future__ import annotations

import jax
import numpy as np
from ott.tools import sinkhorn_divergence

from benchmarks.common import Options, alternate, load_average
from dft_jax.losses import sinkhorn_fast

OT_DIM = 28        # = len(features.FEATURE_NAMES): the DFT feature dimension
OT_REL_EPS = 0.05  # epsilon = 0.05 x the mean cost, the DFT default (experiments/dft.py)
OT_TOL = 1e-4      # relative error of the divergence both solvers must reach
OTT_THRESHOLDS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
POT_THRESHOLDS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
ONLINE_BATCH = 1024  # cost-matrix block of ott's online (low-memory) geometry


def _ot_clouds(n):
  """Two Gaussian clouds in the feature dimension (shifted, rescaled), float32, and the
  absolute epsilon: OT_REL_EPS x the mean squared distance between them (closed form)."""
  rs = np.random.RandomState(n)
  x = rs.randn(n, OT_DIM).astype(np.float32)
  y = (1.1 * rs.randn(n, OT_DIM) + 0.3).astype(np.float32)
  mean_cost = (np.mean(np.sum(x.astype(np.float64) ** 2, 1)) + np.mean(np.sum(y ** 2.0, 1))
               - 2 * x.mean(0).astype(np.float64) @ y.mean(0))
  return x, y, float(OT_REL_EPS * mean_cost)


def _patch_ott_online():
  """Lets ott 0.6's online geometry run on jax >= 0.9: the one monkeypatch of the benchmark.

  The public route to the online mode is `sinkdiv(..., batch_size=...)` (it builds
  `PointCloud(..., batch_size=...)`), and there is no other: every online PointCloud goes
  through ott.utils.batched_vmap, which calls jax.interpreters.batching.is_vmappable, removed
  from that public module in jax 0.9 (ott-jax/ott issue #700; fixed upstream after 0.6.0, the
  latest release, by importing jax's private batching module). Until a fixed ott is released,
  alias the private function back onto the public module; a no-op where it is still there.
  Only the online timing of ott_vs_pot_curve needs it.
  """
  from jax.interpreters import batching
  if not hasattr(batching, "is_vmappable"):
    from jax._src.interpreters import batching as src_batching  # private: see above
    batching.is_vmappable = src_batching.is_vmappable


def _ott_fn(eps, threshold, batch_size=None):
  """ott-jax debiased Sinkhorn divergence, jit: point clouds (squared Euclidean), log domain,
  float32, convergence checked every iteration (inner_iterations=1: stops as soon as the
  marginal error is under `threshold`); batch_size: the online (low-memory) geometry that
  recomputes cost blocks instead of storing n x n matrices."""
  if batch_size is not None:
    _patch_ott_online()
  solve = dict(threshold=threshold, inner_iterations=1, max_iterations=2000)

  def fn(x, y):
    with jax.numpy_rank_promotion("allow"):
      return sinkhorn_divergence.sinkdiv(x, y, epsilon=eps, batch_size=batch_size,
                                         solve_kwargs=solve)[0]
  return jax.jit(fn)


def _library_fn(y, eps, threshold, domain="log"):
  """The loss's own path (sinkhorn_fast.sinkhorn_to_bank, convergence checked every iteration as
  for ott_fn): y a fixed bank whose self-transport is solved once, outside the timing; `eps`
  absolute (turned into the library's relative epsilon, which it makes absolute by the bank's
  mean self-cost); domain 'kernel': scaling iterations on kernels built once per call."""
  to_bank = sinkhorn_fast.sinkhorn_to_bank(y, epsilon=eps / _mean_self_cost(y),
                                         threshold=threshold, max_iterations=2000,
                                         inner_iterations=1, domain=domain)
  fn = jax.jit(lambda x: to_bank(x)[0])
  return lambda x, _y: fn(x)


def _mean_self_cost(y):
  """Mean squared distance between the points of y (closed form: 2 (E|y|^2 - |E y|^2))."""
  y64 = y.astype(np.float64)
  return float(2 * (np.mean(np.sum(y64 ** 2, 1)) - np.sum(y64.mean(0) ** 2)))


def _ott_reference(x, y, eps):
  """ott's divergence in float64 at threshold 1e-7: what its float32 runs are measured by."""
  with jax.enable_x64(True):
    fn = _ott_fn(eps, 1e-7)
    return float(fn(jax.numpy.asarray(x, jax.numpy.float64),
                    jax.numpy.asarray(y, jax.numpy.float64)))


def _pot_fn(eps, threshold, dtype=np.float32):
  """POT's empirical_sinkhorn_divergence (kernel domain) at stopping threshold `threshold`."""
  import ot  # optional (POT, the `bench` extra): only this benchmark uses it

  def fn(x, y):
    return float(ot.bregman.empirical_sinkhorn_divergence(
        x.astype(dtype), y.astype(dtype), eps, stopThr=threshold, numIterMax=100000, warn=False))
  return fn


def _cheapest(make, thresholds, reference, x, y):
  """(threshold, relative error) of the loosest threshold whose result is within OT_TOL of
  the reference: the cheapest run at the required accuracy."""
  for thr in thresholds:
    err = abs(float(make(thr)(x, y)) - reference) / abs(reference)
    if err <= OT_TOL:
      return thr, err
  raise RuntimeError(f"no threshold in {thresholds} reaches relative error {OT_TOL}")


def _ott_vs_pot(n, reps, online=False):
  """Both solvers at their cheapest accurate threshold on n points, alternated; online: ott's
  online geometry too."""
  x, y, eps = _ot_clouds(n)
  ref_ott, ref_pot = _ott_reference(x, y, eps), _pot_fn(eps, 1e-8, np.float64)(x, y)
  ott_thr, ott_err = _cheapest(lambda t: _ott_fn(eps, t), OTT_THRESHOLDS, ref_ott, x, y)
  pot_thr, pot_err = _cheapest(lambda t: _pot_fn(eps, t), POT_THRESHOLDS, ref_pot, x, y)
  xj, yj = jax.numpy.asarray(x), jax.numpy.asarray(y)
  fns = {"ott": lambda f=_ott_fn(eps, ott_thr): f(xj, yj).block_until_ready(),
         "pot": lambda f=_pot_fn(eps, pot_thr): f(x, y)}
  lib_thr, lib_err = _cheapest(lambda t: _library_fn(y, eps, t), OTT_THRESHOLDS, ref_ott, x, y)
  lib_fn = _library_fn(y, eps, lib_thr)
  fns["ott_library"] = lambda: lib_fn(xj, yj).block_until_ready()
  ker_thr, ker_err = _cheapest(lambda t: _library_fn(y, eps, t, "kernel"), OTT_THRESHOLDS,
                               ref_ott, x, y)
  ker_fn = _library_fn(y, eps, ker_thr, "kernel")
  fns["ott_library_kernel"] = lambda: ker_fn(xj, yj).block_until_ready()
  if online:
    online_fn = _ott_fn(eps, ott_thr, batch_size=ONLINE_BATCH)
    fns["ott_online"] = lambda: online_fn(xj, yj).block_until_ready()
  t = alternate(fns, reps, warmup=1)
  out = {f"ott_vs_pot_{n}": t["pot"] / t["ott"], f"ott_{n}_s": t["ott"], f"pot_{n}_s": t["pot"],
         f"ott_library_vs_pot_{n}": t["pot"] / t["ott_library"],
         f"ott_library_{n}_s": t["ott_library"],
         f"ott_library_kernel_vs_pot_{n}": t["pot"] / t["ott_library_kernel"],
         f"ott_library_kernel_{n}_s": t["ott_library_kernel"]}
  line = (f"ott_vs_pot_{n}: ott {t['ott']:.3f} s (threshold {ott_thr:g}, rel. err {ott_err:.1e}) "
          f"vs POT {t['pot']:.3f} s (stopThr {pot_thr:g}, rel. err {pot_err:.1e}): "
          f"{t['pot'] / t['ott']:.2f}x; the library's path to a fixed bank "
          f"(sinkhorn_fast.sinkhorn_to_bank: bank self-transport solved once, convergence checked "
          f"every iteration) {t['ott_library']:.3f} s (threshold {lib_thr:g}, rel. err "
          f"{lib_err:.1e}): {t['pot'] / t['ott_library']:.2f}x; its kernel domain "
          f"(loss.sinkhorn_solver='static_bank_kernel') {t['ott_library_kernel']:.3f} s (threshold "
          f"{ker_thr:g}, rel. err {ker_err:.1e}): {t['pot'] / t['ott_library_kernel']:.2f}x")
  if online:
    out[f"ott_online_{n}_s"] = t["ott_online"]
    out[f"ott_online_vs_pot_{n}"] = t["pot"] / t["ott_online"]
    line += (f"; ott online (batch {ONLINE_BATCH}) {t['ott_online']:.3f} s: "
             f"{t['pot'] / t['ott_online']:.2f}x")
  print(line + f" (eps {eps:.3f} = {OT_REL_EPS} x mean cost, dim {OT_DIM}; {load_average()})")
  return out


def ott_vs_pot_4096(opts: Options) -> dict:
  return _ott_vs_pot(4096, opts.reps)


def ott_vs_pot_curve(opts: Options) -> dict:
  """The same for each of opts.ott_sizes; ott's online geometry too at the largest."""
  sizes = [int(n) for n in opts.ott_sizes]
  out = {}
  for n in sizes:
    out.update(_ott_vs_pot(n, max(opts.reps // 2, 1) if n >= 4096 else opts.reps,
                           online=n == max(sizes)))
  return out
