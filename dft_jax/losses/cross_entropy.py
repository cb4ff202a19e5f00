"""Next-token cross-entropy over packed rows, honouring the loss mask.

Training uses `fused_head_nll`: the LM head and the cross-entropy in blocks of positions, the
gradient formed in the same pass (as fused linear cross-entropy kernels do), so the [B, T, V]
logits are never held in memory and each block's softmax is read while it is still in cache.
Evaluation and the losses that need the logits themselves use `token_nll`.
"""

from __future__ import annotations

import math

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


ROWS_PER_BLOCK = 512  # positions (over the whole batch) per block of fused_head_nll: the
# fastest of 64 ... 1024 on 2 CPU cores at both benchmark configs (V = 4096 and 8192)


def _block_nll(h_BxCxD, kernel_DxV, targets_BxC, weights_BxC):
  """One block: (NLL per position, d(sum of weighted NLL) / d logits)."""
  logits = jnp.einsum("bcd,dv->bcv", h_BxCxD, kernel_DxV, preferred_element_type=jnp.float32)
  top = jnp.max(logits, axis=-1, keepdims=True)
  e = jnp.exp(logits - top)
  total = jnp.sum(e, axis=-1, keepdims=True)
  target_logit = jnp.take_along_axis(logits, targets_BxC[..., None], axis=-1)[..., 0]
  nll_BxC = (top[..., 0] + jnp.log(total[..., 0])) - target_logit
  w = weights_BxC[..., None]
  is_target = jax.lax.broadcasted_iota(jnp.int32, logits.shape, 2) == targets_BxC[..., None]
  d_logits = e * (w / total) - jnp.where(is_target, w, 0.0)
  return nll_BxC, d_logits


def _blocks(hidden_BxTxD, targets_BxT, weights_BxT):
  """[n, B, C, ...] blocks of C positions, the time axis padded with weight 0."""
  b, t = targets_BxT.shape
  c = min(t, max(1, math.ceil(ROWS_PER_BLOCK / b)))
  n = -(-t // c)
  pad = lambda x: jnp.pad(x, [(0, 0), (0, n * c - t)] + [(0, 0)] * (x.ndim - 2))
  split = lambda x: jnp.moveaxis(pad(x).reshape(b, n, c, *x.shape[2:]), 1, 0)
  return split(hidden_BxTxD), split(targets_BxT), split(weights_BxT), n * c - t


def _unblock(x_NxBxC, pad):
  n, b, c = x_NxBxC.shape[:3]
  x = jnp.moveaxis(x_NxBxC, 0, 1).reshape(b, n * c, *x_NxBxC.shape[3:])
  return x[:, :n * c - pad]


@jax.custom_vjp
def fused_head_nll(hidden_BxTxD, kernel_DxV, targets_BxT, weights_BxT):
  """sum_bt weights * -log softmax(hidden @ kernel)[target], without the [B, T, V] logits
  (each row summed on its own, then the rows). For training: the gradient is formed on the
  way, so a call outside differentiation pays for it too (evaluation uses token_nll)."""
  return _fused_fwd(hidden_BxTxD, kernel_DxV, targets_BxT, weights_BxT)[0]


def _fused_fwd(hidden_BxTxD, kernel_DxV, targets_BxT, weights_BxT):
  """The value and, in the same scan, its gradient with respect to hidden and kernel (the
  output is a scalar, so the backward only scales them)."""
  *blocks, pad = _blocks(hidden_BxTxD, targets_BxT, weights_BxT)

  def body(carry, block):
    row_totals_B, d_kernel = carry
    h, tgt, w = block
    nll, d_logits = _block_nll(h, kernel_DxV, tgt, w)
    d_h = jnp.einsum("bcv,dv->bcd", d_logits.astype(h.dtype), kernel_DxV)
    d_kernel = d_kernel + jnp.einsum("bcd,bcv->dv", h, d_logits.astype(h.dtype),
                                     preferred_element_type=jnp.float32)
    return (row_totals_B + jnp.sum(nll * w, axis=1), d_kernel), (d_h, nll)

  init = (jnp.zeros(targets_BxT.shape[:1], jnp.float32),
          jnp.zeros(kernel_DxV.shape, jnp.float32))
  (row_totals_B, d_kernel), (d_h, nll) = jax.lax.scan(body, init, tuple(blocks))
  residuals = (_unblock(d_h, pad), d_kernel.astype(kernel_DxV.dtype), _unblock(nll, pad))
  return jnp.sum(row_totals_B), residuals


def _fused_bwd(residuals, g):
  d_hidden, d_kernel, nll_BxT = residuals
  return ((g * d_hidden).astype(d_hidden.dtype), (g * d_kernel).astype(d_kernel.dtype),
          None, g * nll_BxT)


fused_head_nll.defvjp(_fused_fwd, _fused_bwd)


def model_nll(model, batch: dict) -> tuple[jax.Array, jax.Array]:
  """token_nll of the model on the batch through fused_head_nll (for training: its gradient is
  formed in the forward pass)."""
  hidden = model(batch["tokens"], batch["positions"], batch["segment_ids"],
                 hidden_layer=model.cfg.num_layers)
  kernel_DxV = model.head_kernel_DxV()
  targets_BxT, weights_BxT = shifted_targets(batch)
  total = fused_head_nll(hidden.astype(kernel_DxV.dtype), kernel_DxV, targets_BxT, weights_BxT)
  return total, jnp.sum(weights_BxT)


def forward(model, batch: dict) -> jax.Array:
  return model(batch["tokens"], batch["positions"], batch["segment_ids"])


def mean_nll(logits_BxTxV, batch) -> tuple[jax.Array, dict]:
  return _mean(*token_nll(logits_BxTxV, batch))


def _mean(total, count) -> tuple[jax.Array, dict]:
  ce = total / jnp.maximum(count, 1.0)
  return ce, {"ce": ce, "tokens": count}


def model_mean_nll(model, batch) -> tuple[jax.Array, dict]:
  """(mean CE, metrics) through the fused head."""
  return _mean(*model_nll(model, batch))


def make(loss_cfg, model_cfg, context):
  del loss_cfg, model_cfg, context

  def loss_fn(model, batch, rng, step, anchor=None):
    del rng, step, anchor
    return model_mean_nll(model, batch)

  return loss_fn
