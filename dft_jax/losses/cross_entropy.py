"""Next-token cross-entropy over packed rows, honouring the loss mask."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def shifted_targets(batch: dict) -> tuple[jax.Array, jax.Array]:
  """(targets_BxT, weights_BxT): position t predicts token t+1; the last position gets weight 0.

  Keeping all T positions (instead of slicing logits[:, :-1]) spares a copy of the [B, T, V]
  logits forward and a pad of their gradient backward.
  """
  tokens_BxT = batch["tokens"]
  targets_BxT = jnp.concatenate([tokens_BxT[:, 1:], tokens_BxT[:, :1]], axis=1)
  mask_BxT = batch["loss_mask"].astype(jnp.float32)
  weights_BxT = jnp.concatenate([mask_BxT[:, 1:], jnp.zeros_like(mask_BxT[:, :1])], axis=1)
  return targets_BxT, weights_BxT


def token_nll(logits_BxTxV: jax.Array, batch: dict) -> tuple[jax.Array, jax.Array]:
  """Summed negative log-likelihood of the masked targets, and how many there are.

  logits at t predict token t+1; `loss_mask[t+1]` says whether that target counts.
  """
  targets_BxT, weights_BxT = shifted_targets(batch)
  logits_BxTxV = logits_BxTxV.astype(jnp.float32)
  lse_BxT = jax.nn.logsumexp(logits_BxTxV, axis=-1)
  target_logit_BxT = jnp.take_along_axis(logits_BxTxV, targets_BxT[..., None], axis=-1)[..., 0]
  nll_BxT = lse_BxT - target_logit_BxT
  return jnp.sum(jnp.where(weights_BxT > 0, nll_BxT, 0.0) * weights_BxT), jnp.sum(weights_BxT)


def forward(model, batch: dict) -> jax.Array:
  return model(batch["tokens"], batch["positions"], batch["segment_ids"])


def mean_nll(logits_BxTxV, batch) -> tuple[jax.Array, dict]:
  total, count = token_nll(logits_BxTxV, batch)
  ce = total / jnp.maximum(count, 1.0)
  return ce, {"ce": ce, "tokens": count}


def make(loss_cfg, model_cfg, context):
  del loss_cfg, model_cfg, context

  def loss_fn(model, batch, rng, step, anchor=None):
    del rng, step, anchor
    return mean_nll(forward(model, batch), batch)

  return loss_fn
