"""Divergences: first variations against finite differences; Sinkhorn's basic properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dft_jax.losses import divergences as D
from dft_jax.losses import sinkhorn_fast as F

jax.config.update("jax_enable_x64", False)


def _clouds(n=12, m=20, f=5, shift=0.7, seed=0):
  rng = np.random.RandomState(seed)
  return (jnp.asarray(rng.randn(n, f) + shift, jnp.float32),
          jnp.asarray(rng.randn(m, f), jnp.float32))


@pytest.mark.parametrize("name", ["sinkhorn", "mmd", "energy"])
def test_first_variation_equals_finite_difference(name):
  x, y = _clouds()
  kwargs = dict(epsilon=0.1, threshold=1e-7, max_iterations=5000) if name == "sinkhorn" else {}
  fn = getattr(D, name)
  n = x.shape[0]
  a = jnp.full((n,), 1.0 / n)
  _, c = fn(x, y, a_N=a, **kwargs)
  h = 1e-3
  for i in (0, 5, 11):
    e = jnp.zeros(n).at[i].set(1.0)
    plus = fn(x, y, a_N=(1 - h) * a + h * e, **kwargs)[0]
    minus = fn(x, y, a_N=(1 + h) * a - h * e, **kwargs)[0]
    fd = (plus - minus) / (2 * h)
    assert abs(float(c[i]) - float(fd)) <= 2e-2 * max(1.0, abs(float(fd))), (i, c[i], fd)
  assert abs(float(jnp.dot(c, a))) < 1e-5  # centred


def test_sinkhorn_zero_on_identical_clouds_and_symmetric():
  x, y = _clouds()
  same, _ = D.sinkhorn(x, x)
  assert abs(float(same)) < 1e-4
  xy, _ = D.sinkhorn(x, y, threshold=1e-6, max_iterations=2000)
  yx, _ = D.sinkhorn(y, x, threshold=1e-6, max_iterations=2000)
  assert float(xy) > 0.1 and abs(float(xy) - float(yx)) < 1e-3 * float(xy)


@pytest.mark.parametrize("case", ["identical", "duplicated", "far"])
def test_sinkhorn_gradients_are_finite_at_small_epsilon(case):
  x, y = _clouds()
  if case == "identical":
    y = x
  elif case == "duplicated":
    x = jnp.concatenate([x[:3]] * 4)
  else:
    x = x + 1e3
  grad = jax.grad(lambda p: D.sinkhorn(p, y, epsilon=1e-3)[0])(x)
  value, c = D.sinkhorn(x, y, epsilon=1e-3)
  assert np.isfinite(np.asarray(grad)).all() and np.isfinite(float(value))
  assert np.isfinite(np.asarray(c)).all()


def test_mmd_and_energy_near_zero_for_same_law_and_positive_apart():
  rng = np.random.RandomState(1)
  x, y = jnp.asarray(rng.randn(200, 4)), jnp.asarray(rng.randn(200, 4))
  for fn in (D.mmd, D.energy):
    assert abs(float(fn(x, y)[0])) < 0.02
    assert float(fn(x + 2.0, y)[0]) > 0.3


def test_unrolled_and_implicit_sinkhorn_gradients_agree():
  x, y = _clouds()
  grad = lambda implicit: jax.grad(lambda p: D.sinkhorn(
      p, y, epsilon=0.1, threshold=1e-6, max_iterations=500, implicit_diff=implicit)[0])(x)
  with jax.numpy_rank_promotion("allow"):  # ott's unrolled backward pass broadcasts implicitly
    implicit, unrolled = np.asarray(grad(True)), np.asarray(grad(False))
  assert np.isfinite(unrolled).all()
  np.testing.assert_allclose(unrolled, implicit, atol=1e-3 * np.abs(implicit).max())


def test_sinkhorn_to_a_fixed_bank_equals_the_full_divergence():
  """The bank's self-transport solved once (absolute epsilon from the bank's mean self-cost)
  gives the divergence and first variations of the three-problem computation."""
  from ott.tools import sinkhorn_divergence
  x, y = _clouds(n=16, m=48)
  to_bank = F.sinkhorn_to_bank(y, epsilon=0.1, threshold=1e-7, max_iterations=5000)
  value, c = jax.jit(to_bank)(x)
  eps = 0.1 * float(jnp.mean(jnp.sum((y[:, None] - y[None]) ** 2, -1)))
  with jax.numpy_rank_promotion("allow"):
    ref, out = sinkhorn_divergence.sinkdiv(
        x, y, epsilon=eps, solve_kwargs=dict(threshold=1e-7, max_iterations=5000))
  (f_xy, _), (f_xx, _), _ = out.potentials
  c_ref = (f_xy - f_xx) - jnp.mean(f_xy - f_xx)
  np.testing.assert_allclose(float(value), float(ref), rtol=1e-4)
  np.testing.assert_allclose(np.asarray(c), np.asarray(c_ref), atol=1e-3 * float(jnp.abs(
      c_ref).max()))
  assert abs(float(F.sinkhorn_to_bank(y, epsilon=0.1, threshold=1e-7,
                                      max_iterations=5000)(y)[0])) < 1e-3 * float(ref)


def test_kernel_domain_equals_log_domain_and_falls_back_on_underflow():
  """domain='kernel' (scaling iterations on a kernel built once) gives the log domain's value
  and first variations; a sample far enough out to underflow its kernel row takes the log
  domain and stays finite."""
  x, y = _clouds(n=16, m=48)
  solve = dict(epsilon=0.1, threshold=1e-6, max_iterations=5000)
  log_fn = jax.jit(F.sinkhorn_to_bank(y, **solve))
  kernel_fn = jax.jit(F.sinkhorn_to_bank(y, domain="kernel", **solve))
  for points in (x, x.at[3].set(1e3)):  # the second: exp(-C / eps) underflows on row 3
    (v_log, c_log), (v_kernel, c_kernel) = log_fn(points), kernel_fn(points)
    assert np.isfinite(float(v_kernel)) and np.isfinite(np.asarray(c_kernel)).all()
    np.testing.assert_allclose(float(v_kernel), float(v_log), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(c_kernel), np.asarray(c_log),
                               atol=1e-3 * float(jnp.abs(c_log).max()))
  with pytest.raises(ValueError, match="unknown Sinkhorn domain"):
    F.sinkhorn_to_bank(y, domain="kernal")


@pytest.mark.parametrize("case", ["near", "far", "small_epsilon"])
def test_sinkhorn_without_value_gradient_has_the_same_variations_and_value(case):
  """sinkhorn_value_kernel (OT(beta, beta) by kernel scaling iterations, no gradient)
  leaves c as it was, bit for bit, and the value within the solvers' tolerance."""
  x, y = _clouds(n=16, m=48)
  kwargs = dict(epsilon=1e-3 if case == "small_epsilon" else 0.05, threshold=1e-6,
                max_iterations=5000)
  if case == "far":
    x = x + 30.0
  full = jax.jit(lambda p: D.sinkhorn(p, y, **kwargs))(x)
  fast = jax.jit(lambda p: F.sinkhorn_value_kernel(p, y, **kwargs))(x)
  assert np.array_equal(np.asarray(fast[1]), np.asarray(full[1]))
  assert np.isfinite(float(fast[0]))
  np.testing.assert_allclose(float(fast[0]), float(full[0]), rtol=1e-4, atol=1e-6)
