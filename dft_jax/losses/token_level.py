"""Token-level baselines (rows of the paper table): small changes to the per-token CE.

  dyft   DFT as *Dynamic* Fine-Tuning (Wu et al. 2025, arXiv 2508.05629, "On the
         Generalization of SFT: A Reinforcement Learning Perspective with Reward
         Rectification"): nll weighted by sg(q_y). A different method from this library's
         Distribution Fine-Tuning that shares its initials; here as a baseline row.

  mixce  MixCE (Zhang et al., ACL 2023, "MixCE: Training Autoregressive Language Models by
         Mixing Forward and Reverse Cross-Entropies"), its practical form:
         eta * nll + (1 - eta) * sg(q_y) * nll, q_y the model's probability of the target.
  tailr  TaiLr (Ji et al., ICLR 2023, "Tailoring Language Generation Models under Total
         Variation Distance"): nll weighted by sg(q_y / (gamma + (1 - gamma) * q_y)).
  emo    EMO (Ren et al., ICLR 2024, "EMO: Earth Mover Distance Optimization for
         Auto-Regressive Language Modeling"): CE plus the transport-cost bound
         sum_v q_v * (1 - cos(e_v, e_y)) = 1 - <E_q[e_hat], e_hat_y>, with e the output
         embeddings held fixed (stop-gradient).
All are averaged over the masked targets, like CE.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from dft_jax.losses import cross_entropy


def _targets(logits_BxTxV, batch):
  logits = logits_BxTxV[:, :-1].astype(jnp.float32)
  targets = batch["tokens"][:, 1:]
  weights = batch["loss_mask"][:, 1:].astype(jnp.float32)
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return logits, targets, weights, nll


def _mean(x_BxT, w_BxT):
  return jnp.sum(x_BxT * w_BxT) / jnp.maximum(jnp.sum(w_BxT), 1.0)


def mixce_terms(logits_BxTxV, batch, eta: float):
  _, _, w, nll = _targets(logits_BxTxV, batch)
  q_y = jax.lax.stop_gradient(jnp.exp(-nll))
  return _mean(eta * nll + (1 - eta) * q_y * nll, w), _mean(nll, w), jnp.sum(w)


def dyft_terms(logits_BxTxV, batch):
  _, _, w, nll = _targets(logits_BxTxV, batch)
  q_y = jax.lax.stop_gradient(jnp.exp(-nll))
  return _mean(q_y * nll, w), _mean(nll, w), jnp.sum(w)


def tailr_terms(logits_BxTxV, batch, gamma: float):
  _, _, w, nll = _targets(logits_BxTxV, batch)
  q_y = jax.lax.stop_gradient(jnp.exp(-nll))
  weight = q_y / (gamma + (1 - gamma) * q_y)
  return _mean(weight * nll, w), _mean(nll, w), jnp.sum(w)


def emo_terms(logits_BxTxV, batch, embeddings_VxD):
  logits, targets, w, nll = _targets(logits_BxTxV, batch)
  e = jax.lax.stop_gradient(embeddings_VxD.astype(jnp.float32))
  e_hat = e / jnp.maximum(jnp.linalg.norm(e, axis=-1, keepdims=True), 1e-6)
  expected_BxTxD = jax.nn.softmax(logits, axis=-1) @ e_hat
  cost = 1.0 - jnp.sum(expected_BxTxD * e_hat[targets], axis=-1)
  ce = _mean(nll, w)
  return ce + _mean(cost, w), ce, jnp.sum(w)


def output_embeddings(model) -> jax.Array:
  """[V, D]: the LM head's rows (the input embeddings when tied)."""
  if model.cfg.tie_word_embeddings:
    return model.embed_VxD[...]
  return model.lm_head_DxV[...].T


def make(loss_cfg, model_cfg, context):
  del model_cfg, context
  name = loss_cfg.name

  def loss_fn(model, batch, rng, step, anchor=None):
    del rng, step, anchor
    logits = cross_entropy.forward(model, batch)
    if name == "mixce":
      loss, ce, count = mixce_terms(logits, batch, loss_cfg.get("eta", 0.1))
    elif name == "dyft":
      loss, ce, count = dyft_terms(logits, batch)
    elif name == "tailr":
      loss, ce, count = tailr_terms(logits, batch, loss_cfg.get("gamma", 0.1))
    else:
      loss, ce, count = emo_terms(logits, batch, output_embeddings(model))
    return loss, {"ce": ce, "tokens": count}

  return loss_fn
