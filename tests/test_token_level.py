"""MixCE, TaiLr, EMO and DyFT against their published formulas, computed independently in numpy."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from dft_jax import losses
from dft_jax.losses import token_level
from dft_jax.models import Decoder, ModelConfig

rng = np.random.RandomState(0)
V, B, T = 11, 3, 7
LOGITS = jnp.asarray(rng.randn(B, T, V) * 2, jnp.float32)
BATCH = {"tokens": jnp.asarray(rng.randint(0, V, (B, T)), jnp.int32),
         "loss_mask": jnp.asarray(rng.rand(B, T) > 0.2, jnp.float32)}


def _numpy_parts():
  logits = np.asarray(LOGITS, np.float64)[:, :-1]
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  y = np.asarray(BATCH["tokens"])[:, 1:]
  w = np.asarray(BATCH["loss_mask"])[:, 1:]
  q_y = np.take_along_axis(p, y[..., None], -1)[..., 0]
  return p, y, w, q_y, -np.log(q_y)


def test_mixce_formula():
  _, _, w, q_y, nll = _numpy_parts()
  eta = 0.3
  want = (w * (eta * nll + (1 - eta) * q_y * nll)).sum() / w.sum()
  got, ce, _ = token_level.mixce_terms(LOGITS, BATCH, eta)
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  np.testing.assert_allclose(float(token_level.mixce_terms(LOGITS, BATCH, 1.0)[0]), float(ce),
                             rtol=1e-6)  # eta = 1 is plain CE


def test_tailr_formula():
  _, _, w, q_y, nll = _numpy_parts()
  gamma = 0.2
  want = (w * q_y / (gamma + (1 - gamma) * q_y) * nll).sum() / w.sum()
  got, ce, _ = token_level.tailr_terms(LOGITS, BATCH, gamma)
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  np.testing.assert_allclose(float(token_level.tailr_terms(LOGITS, BATCH, 0.0)[0]), float(ce),
                             rtol=1e-6)  # gamma = 0 weights every token by 1


def test_dyft_formula():
  _, _, w, q_y, nll = _numpy_parts()
  want = (w * q_y * nll).sum() / w.sum()   # Wu et al. 2025: CE weighted by sg(p(y))
  got, ce, _ = token_level.dyft_terms(LOGITS, BATCH)
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  assert float(got) < float(ce)
  # the weight is a stop-gradient: d/dlogits = q_y * d(nll)/dlogits, not d(q_y * nll)
  g = jax.grad(lambda x: token_level.dyft_terms(x, BATCH)[0])(LOGITS)
  g_ce = jax.grad(lambda x: token_level.dyft_terms(x, BATCH)[1])(LOGITS)
  np.testing.assert_allclose(np.asarray(g)[:, :-1], np.asarray(g_ce)[:, :-1]
                             * np.where(w > 0, q_y, 0)[..., None], rtol=1e-4, atol=1e-7)


def test_emo_formula():
  p, y, w, _, nll = _numpy_parts()
  e = rng.randn(V, 5)
  cos = (e @ e.T) / np.outer(np.linalg.norm(e, axis=1), np.linalg.norm(e, axis=1))
  cost = np.einsum("btv,btv->bt", p, 1 - cos[y])  # sum_v q_v (1 - cos(e_v, e_y))
  want = (w * nll).sum() / w.sum() + (w * cost).sum() / w.sum()
  got, _, _ = token_level.emo_terms(LOGITS, BATCH, jnp.asarray(e, jnp.float32))
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


@pytest.mark.parametrize("name", ["mixce", "tailr", "emo", "dyft"])
def test_baselines_are_loss_names_with_gradients(name):
  cfg = ModelConfig(vocab_size=V, hidden_size=16, intermediate_size=32, num_layers=1,
                    num_heads=2, num_kv_heads=1, head_dim=8)
  loss_fn = losses.make(ml_collections.ConfigDict({"name": name, "eta": 0.1, "gamma": 0.1}),
                        cfg)
  batch = {**BATCH, "segment_ids": jnp.ones((B, T), jnp.int32),
           "positions": jnp.broadcast_to(jnp.arange(T), (B, T))}
  model = Decoder(cfg, rngs=nnx.Rngs(0))
  (loss, metrics), grads = nnx.value_and_grad(
      lambda m: loss_fn(m, batch, None, 0), has_aux=True)(model)
  assert np.isfinite(float(loss)) and float(metrics["ce"]) > 0
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
