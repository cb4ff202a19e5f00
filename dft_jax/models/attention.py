"""Softmax attention for the decoder: masks, a custom-VJP core, and blockwise causal attention.

Shapes: B batch, T query length, S key length, N query heads, K key/value heads, G = N // K
heads per group, H head dim, C query rows per block.

Two things make the training forward/backward cheaper than differentiating a plain softmax
attention (measured in BENCHMARKS.md):
- `_core` has a hand-written VJP that keeps the unnormalized probabilities and their row sums
  from the forward pass, so the backward is four matmuls and one elementwise pass over the
  [.., Q, S] scores (autodiff of softmax adds several more, and the division by the row sum
  runs on [Q, S] instead of [Q, H]);
- without a cache (training, scoring), queries are processed in blocks of C rows that only see
  the keys up to the block's last row (and no further back than a sliding window), so the
  masked upper triangle is never computed: (n + 1) / 2n of the full work for n blocks.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

MASKED = -1e30  # finite, so a fully masked row (padding) gives a uniform softmax, not NaN


def block_size(t: int) -> int:
  """Query rows per block of the blockwise causal path: about four blocks per row, 16 to 128
  (measured on 2 CPU cores: T = 128 fastest at 16-32, T = 256 at 64; BENCHMARKS.md)."""
  return max(16, min(128, t // 4))


def attention_mask(q_slots_T, kv_slots_S, q_segments_BxT, kv_segments_BxS, window):
  """Causal (by slot), same segment, and within `window` slots when one is set."""
  causal_TxS = kv_slots_S[None, :] <= q_slots_T[:, None]
  if window is not None:
    causal_TxS &= (q_slots_T[:, None] - kv_slots_S[None, :]) < window
  same_BxTxS = q_segments_BxT[:, :, None] == kv_segments_BxS[:, None, :]
  return causal_TxS[None] & same_BxTxS


def _scores(q_BxKxQxH, k_BxKxSxH, mask_Bx1x1xCxS):
  """Masked float32 scores, their row max subtracted and exponentiated, and 1 / row sum."""
  b, kv, rows, _ = q_BxKxQxH.shape
  c, s = mask_Bx1x1xCxS.shape[3], k_BxKxSxH.shape[2]
  logits = jnp.einsum("bkqh,bksh->bkqs", q_BxKxQxH, k_BxKxSxH,
                      preferred_element_type=jnp.float32).reshape(b, kv, rows // c, c, s)
  logits = jnp.where(mask_Bx1x1xCxS, logits, MASKED)
  e = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True)).reshape(b, kv, rows, s)
  return e, 1.0 / jnp.sum(e, axis=-1, keepdims=True)


@jax.custom_vjp
def _core(q_BxKxQxH, k_BxKxSxH, v_BxKxSxH, mask_Bx1x1xCxS):
  """softmax(q k^T + mask) v over grouped queries (Q = G * C rows, group-major)."""
  return _core_fwd(q_BxKxQxH, k_BxKxSxH, v_BxKxSxH, mask_Bx1x1xCxS)[0]


def _core_fwd(q, k, v, mask):
  e, inv_sum = _scores(q, k, mask)
  out = (jnp.einsum("bkqs,bksh->bkqh", e.astype(v.dtype), v,
                    preferred_element_type=jnp.float32) * inv_sum).astype(v.dtype)
  return out, (q, k, v, e, inv_sum, out)


def _core_bwd(residuals, d_out):
  """With P = e * inv_sum: dV = P^T dO, dS = P * (dO V^T - rowsum(dO * O)), dQ = dS K,
  dK = dS^T Q (the scale is folded into q by the caller)."""
  q, k, v, e, inv_sum, out = residuals
  d_out32 = d_out.astype(jnp.float32)
  dv = jnp.einsum("bkqs,bkqh->bksh", e, d_out32 * inv_sum)
  dp = jnp.einsum("bkqh,bksh->bkqs", d_out, v, preferred_element_type=jnp.float32)
  delta = jnp.sum(d_out32 * out.astype(jnp.float32), axis=-1, keepdims=True)
  ds = (e * ((dp - delta) * inv_sum)).astype(q.dtype)
  dq = jnp.einsum("bkqs,bksh->bkqh", ds, k)
  dk = jnp.einsum("bkqs,bkqh->bksh", ds, q)
  return dq, dk, dv.astype(v.dtype), None


_core.defvjp(_core_fwd, _core_bwd)


def _grouped(q_BxTxNxH, kv_heads: int):
  """[B, T, N, H] -> [B, K, G, T, H], the scale 1/sqrt(H) folded in."""
  b, t, n, h = q_BxTxNxH.shape
  q = q_BxTxNxH * jnp.asarray(h ** -0.5, q_BxTxNxH.dtype)
  return q.reshape(b, t, kv_heads, n // kv_heads, h).transpose(0, 2, 3, 1, 4)


def _block(q_BxKxGxCxH, k_BxKxSxH, v_BxKxSxH, mask_BxCxS):
  b, kv, g, c, h = q_BxKxGxCxH.shape
  out = _core(q_BxKxGxCxH.reshape(b, kv, g * c, h), k_BxKxSxH, v_BxKxSxH,
              mask_BxCxS[:, None, None])
  return out.reshape(b, kv, g, c, h)


def attend(q_BxTxNxH, k_BxKxSxH, v_BxKxSxH, mask_BxTxS, *, causal: bool = False,
           window: int | None = None, block: int | None = None):
  """Attention output [B, T, N, H]. `causal`: query t and key t are the same slot (no cache),
  so block i of queries needs keys [max(0, start - window + 1), end) only.

  Keys and values come heads-major (the KV cache's layout) and queries are moved ahead once
  ([B, K, G*C, H]): both products are plain batched matmuls that XLA CPU runs without
  transposing the scores.
  """
  b, t, n, h = q_BxTxNxH.shape
  kv = k_BxKxSxH.shape[1]
  block = block or block_size(t)
  q5 = _grouped(q_BxTxNxH, kv)
  if not causal or t <= block:
    out5 = _block(q5, k_BxKxSxH, v_BxKxSxH, mask_BxTxS)
  else:
    outs = []
    for start in range(0, t, block):
      end = min(start + block, t)
      lo = 0 if window is None else max(0, start - window + 1)
      outs.append(_block(q5[:, :, :, start:end], k_BxKxSxH[:, :, lo:end],
                         v_BxKxSxH[:, :, lo:end], mask_BxTxS[:, start:end, lo:end]))
    out5 = jnp.concatenate(outs, axis=3)
  return out5.transpose(0, 3, 1, 2, 4).reshape(b, t, n, h)


# --- accelerator kernels: one seam, chosen by ModelConfig.attention_impl --------------------

SPLASH_MIN_BLOCK = 128  # the Pallas TPU kernel tiles queries and keys in multiples of 128 lanes


def splash_fits(t: int) -> bool:
  """Whether a sequence of `t` tokens tiles into the splash kernel's blocks."""
  return t % SPLASH_MIN_BLOCK == 0


def _splash_kernel(t: int, groups: int, window: int | None, interpret: bool):
  """The Pallas splash kernel for one KV head's `groups` query heads over `t` tokens:
  causal, or causal within `window` slots (q - kv < window)."""
  from jax.experimental.pallas.ops.tpu.splash_attention import (  # TPU-only module
      splash_attention_kernel as splash, splash_attention_mask as masks)
  if window is None:
    head_mask = masks.CausalMask((t, t))
  else:
    head_mask = masks.LocalMask((t, t), window_size=(window - 1, 0), offset=0)
  block = next(b for b in (512, 256, 128) if t % b == 0)
  sizes = splash.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                            block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
                            block_q_dq=block, block_kv_dq=block)
  return splash.make_splash_mqa_single_device(
      masks.MultiHeadMask([head_mask] * groups), block_sizes=sizes, interpret=interpret), splash


def _batch_and_kv_specs(b: int, kv: int):
  """shard_map specs of [B, K, ...] and [B, T] arrays on the current mesh: batch over the
  data-parallel axes and KV heads over 'tensor' where they divide, else replicated."""
  from jax.sharding import PartitionSpec as P
  mesh = jax.sharding.get_abstract_mesh()
  names = set(mesh.axis_names)
  batch = tuple(a for a in ("data", "fsdp") if a in names)
  b_spec = batch if batch and b % math.prod(mesh.shape[a] for a in batch) == 0 else None
  k_spec = "tensor" if "tensor" in names and kv % mesh.shape["tensor"] == 0 else None
  return P(b_spec, k_spec), P(b_spec)


def splash_attend(q_BxTxNxH, k_BxKxSxH, v_BxKxSxH, segment_ids_BxT, *,
                  window: int | None = None, interpret: bool = False):
  """Causal self-attention [B, T, N, H] by the Pallas splash kernel (TPU; `interpret` runs it
  on any backend), packed documents kept apart by their segment ids. Under a mesh it runs per
  shard (shard_map): batch over the data-parallel axes, KV heads over 'tensor'."""
  b, t, n, h = q_BxTxNxH.shape
  kv = k_BxKxSxH.shape[1]
  kernel, splash = _splash_kernel(t, n // kv, window, interpret)
  q5 = _grouped(q_BxTxNxH, kv)  # [B, K, G, T, H], scale folded in

  def per_shard(q5, k, v, seg):
    per_kv = lambda q, k, v, s: kernel(q, k, v, segment_ids=splash.SegmentIds(s, s))
    over_kv = jax.vmap(per_kv, in_axes=(0, 0, 0, None))
    return jax.vmap(over_kv)(q5, k.astype(q5.dtype), v.astype(q5.dtype), seg)

  if jax.sharding.get_abstract_mesh().empty:
    out5 = per_shard(q5, k_BxKxSxH, v_BxKxSxH, segment_ids_BxT)
  else:
    kv_spec, seg_spec = _batch_and_kv_specs(b, kv)
    out5 = jax.shard_map(per_shard, in_specs=(kv_spec, kv_spec, kv_spec, seg_spec),
                         out_specs=kv_spec, check_vma=False)(q5, k_BxKxSxH, v_BxKxSxH,
                                                             segment_ids_BxT)
  return out5.transpose(0, 3, 1, 2, 4).reshape(b, t, n, h).astype(q_BxTxNxH.dtype)


def dot_product_attend(q_BxTxNxH, k_BxKxSxH, v_BxKxSxH, mask_BxTxS):
  """`jax.nn.dot_product_attention`: cuDNN's fused kernel where it takes the call (GPU), XLA's
  otherwise. Grouped heads are passed as they are (the function repeats them itself)."""
  k, v = k_BxKxSxH.transpose(0, 2, 1, 3), v_BxKxSxH.transpose(0, 2, 1, 3)  # [B, S, K, H]
  return jax.nn.dot_product_attention(q_BxTxNxH, k.astype(q_BxTxNxH.dtype),
                                      v.astype(q_BxTxNxH.dtype), mask=mask_BxTxS[:, None])
