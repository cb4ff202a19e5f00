"""Next-token cross-entropy over packed rows, honouring the loss mask."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def token_nll(logits_BxTxV: jax.Array, batch: dict) -> tuple[jax.Array, jax.Array]:
  """Summed negative log-likelihood of the masked targets, and how many there are.

  logits at t predict token t+1; `loss_mask[t+1]` says whether that target counts.
  """
  targets_BxT1 = batch["tokens"][:, 1:]
  weights_BxT1 = batch["loss_mask"][:, 1:].astype(jnp.float32)
  nll_BxT1 = optax.softmax_cross_entropy_with_integer_labels(
      logits_BxTxV[:, :-1].astype(jnp.float32), targets_BxT1)
  return jnp.sum(nll_BxT1 * weights_BxT1), jnp.sum(weights_BxT1)


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
