"""The fused LM-head cross-entropy against the plain one on materialized logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dft_jax.losses import cross_entropy
from dft_jax.models import Decoder, ModelConfig


def _plain(hidden_BxTxD, kernel_DxV, targets_BxT, weights_BxT):
  """The textbook formula, autodiff'd: sum of weights * (logsumexp - target logit)."""
  logits = jnp.einsum("btd,dv->btv", hidden_BxTxD, kernel_DxV)
  target = jnp.take_along_axis(logits, targets_BxT[..., None], axis=-1)[..., 0]
  return jnp.sum((jax.nn.logsumexp(logits, axis=-1) - target) * weights_BxT)


# blocks of 8 positions (the last one padded), of 1, and one block of all 3
@pytest.mark.parametrize("b,t,rows", [(2, 37, 16), (16, 24, 16), (1, 3, 512)])
def test_fused_head_nll_value_and_gradients_equal_the_plain_formula(b, t, rows, monkeypatch):
  monkeypatch.setattr(cross_entropy, "ROWS_PER_BLOCK", rows)
  rng = np.random.RandomState(b * t)
  hidden = jnp.asarray(rng.randn(b, t, 16), jnp.float32)
  kernel = jnp.asarray(0.3 * rng.randn(16, 50), jnp.float32)
  targets = jnp.asarray(rng.randint(0, 50, (b, t)), jnp.int32)
  weights = jnp.asarray(rng.rand(b, t) > 0.3, jnp.float32)
  fused = lambda h, k, w: cross_entropy.fused_head_nll(h, k, targets, w)
  plain = lambda h, k, w: _plain(h, k, targets, w)
  np.testing.assert_allclose(jax.jit(fused)(hidden, kernel, weights),
                             plain(hidden, kernel, weights), rtol=1e-6)
  grads = lambda f: jax.grad(lambda *a: 3.0 * f(*a), argnums=(0, 1, 2))(hidden, kernel, weights)
  for ours, ref in zip(grads(fused), grads(plain)):
    np.testing.assert_allclose(ours, ref, atol=2e-5 * float(jnp.max(jnp.abs(ref))), rtol=0)


@pytest.mark.parametrize("tied", [True, False])
def test_model_nll_equals_token_nll_on_the_logits_with_gradients(tied):
  cfg = ModelConfig(vocab_size=61, hidden_size=32, intermediate_size=48, num_layers=2,
                    num_heads=4, num_kv_heads=2, head_dim=8, tie_word_embeddings=tied)
  model = Decoder(cfg, rngs=nnx.Rngs(0))
  rng = np.random.RandomState(1)
  tokens = rng.randint(0, 61, (3, 70)).astype(np.int32)
  segments = np.repeat([[1] * 30 + [2] * 40], 3, 0).astype(np.int32)
  batch = {"tokens": tokens, "segment_ids": segments,
           "positions": np.concatenate([np.arange(30), np.arange(40)])[None].repeat(3, 0),
           "loss_mask": (rng.rand(3, 70) > 0.2).astype(np.int32)}
  fused = lambda m: cross_entropy.model_nll(m, batch)[0]
  plain = lambda m: cross_entropy.token_nll(cross_entropy.forward(m, batch), batch)[0]
  np.testing.assert_allclose(fused(model), plain(model), rtol=1e-6)
  g_fused = nnx.state(nnx.grad(fused)(model), nnx.Param)
  g_plain = nnx.state(nnx.grad(plain)(model), nnx.Param)
  for (path, a), (_, b) in zip(nnx.to_flat_state(g_fused), nnx.to_flat_state(g_plain)):
    np.testing.assert_allclose(a[...], b[...], atol=1e-5 * float(jnp.max(jnp.abs(b[...]))) + 1e-9,
                               rtol=0, err_msg=str(path))
