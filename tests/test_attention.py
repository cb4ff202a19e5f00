"""Blockwise causal attention with its hand-written VJP vs a plain softmax attention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dft_jax.models import attention


def _reference(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, mask_BxTxS):
  """Textbook attention, autodiff'd: repeat kv heads, softmax(q k^T / sqrt(H) + mask) v."""
  g = q_BxTxNxH.shape[2] // k_BxSxKxH.shape[2]
  k = jnp.repeat(k_BxSxKxH, g, axis=2)
  v = jnp.repeat(v_BxSxKxH, g, axis=2)
  logits = jnp.einsum("btnh,bsnh->bnts", q_BxTxNxH, k) / np.sqrt(q_BxTxNxH.shape[-1])
  logits = jnp.where(mask_BxTxS[:, None], logits, -1e30)
  return jnp.einsum("bnts,bsnh->btnh", jax.nn.softmax(logits, axis=-1), v)


def _attend(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, mask_BxTxS, **kw):
  """attention.attend with keys/values in the reference's [B, S, K, H] layout."""
  heads_major = lambda x: x.transpose(0, 2, 1, 3)
  return attention.attend(q_BxTxNxH, heads_major(k_BxSxKxH), heads_major(v_BxSxKxH), mask_BxTxS,
                          **kw)


def _inputs(b=2, t=37, n=4, kv=2, h=8, seed=0):
  rng = np.random.RandomState(seed)
  q, k, v = (jnp.asarray(rng.randn(b, t, heads, h), jnp.float32) for heads in (n, kv, kv))
  return q, k, v


def _mask(t, window=None, segments=None):
  slots = jnp.arange(t)
  seg = jnp.ones((2, t), jnp.int32) if segments is None else segments
  return attention.attention_mask(slots, slots, seg, seg, window)


@pytest.mark.parametrize("window", [None, 6])
@pytest.mark.parametrize("block", [5, 16, 64])
def test_blockwise_causal_equals_plain_attention_and_its_gradients(window, block):
  q, k, v = _inputs()
  segments = jnp.asarray(np.repeat([[1, 2, 3]], 2, 0).repeat([12, 20, 5], axis=1), jnp.int32)
  mask = _mask(q.shape[1], window, segments)
  ours = lambda q, k, v: _attend(q, k, v, mask, causal=True, window=window, block=block)
  assert_same_attention(ours, lambda q, k, v: _reference(q, k, v, mask), q, k, v, grad_atol=2e-5)


def assert_same_attention(ours, ref, q, k, v, *, grad_atol):
  """Values at 2e-6, and the gradients of <out, a random cotangent> for q, k and v."""
  np.testing.assert_allclose(ours(q, k, v), ref(q, k, v), atol=2e-6, rtol=0)
  cotangent = jnp.asarray(np.random.RandomState(1).randn(*q.shape), jnp.float32)
  grads = lambda f: jax.grad(lambda *a: jnp.sum(f(*a) * cotangent), argnums=(0, 1, 2))(q, k, v)
  for g_ours, g_ref in zip(grads(ours), grads(ref)):
    np.testing.assert_allclose(g_ours, g_ref, atol=grad_atol, rtol=0)


def test_general_mask_path_equals_reference_with_a_cache_shaped_key_axis():
  """causal=False (decoding against a cache): any mask, S != T."""
  q, _, _ = _inputs(t=3)
  _, k, v = _inputs(t=11, seed=2)
  mask = jnp.asarray(np.random.RandomState(3).rand(2, 3, 11) < 0.6).at[:, :, 0].set(True)
  np.testing.assert_allclose(_attend(q, k, v, mask), _reference(q, k, v, mask),
                             atol=2e-6, rtol=0)


def test_bfloat16_blockwise_attention_stays_close_and_keeps_dtypes():
  q, k, v = (x.astype(jnp.bfloat16) for x in _inputs(t=40))
  mask = _mask(40)
  out = _attend(q, k, v, mask, causal=True, block=8)
  assert out.dtype == jnp.bfloat16
  ref = _reference(*(x.astype(jnp.float32) for x in (q, k, v)), mask)
  assert float(jnp.max(jnp.abs(out.astype(jnp.float32) - ref))) < 0.05
  dq = jax.grad(lambda q: jnp.sum(_attend(q, k, v, mask, causal=True, block=8)
                                  .astype(jnp.float32)))(q)
  assert dq.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(dq.astype(jnp.float32))))
