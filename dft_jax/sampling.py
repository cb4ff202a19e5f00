"""Jit-compiled batched decoding with the KV cache: greedy, temperature, top-k, top-p, EOS.

Prompts of different lengths are left-padded; `prompt_mask_BxP` marks real tokens. Padding gets
segment id 0, so no real token ever attends to it. The random key of step i is
`fold_in(rng, i)`, so any decoder that recomputes the full sequence draws the same tokens.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from dft_jax.models.decoder import Decoder, KVCache


class Samples(NamedTuple):
  tokens_BxC: jax.Array   # generated tokens; after EOS, `pad_id`
  valid_BxC: jax.Array    # True up to and including the first EOS


def _nucleus_floor(logits_BxV: jax.Array, top_p: float, iterations: int = 40) -> jax.Array:
  """A value just below the smallest logit of the top-p nucleus, per row [B, 1].

  The nucleus keeps token j iff the mass of the tokens strictly above it is < top_p, i.e. the
  logits >= x*, where x* is the smallest logit whose strictly-above mass S(x*) < top_p. S is
  non-increasing, so bisection on the value keeps lo (S(lo) >= top_p, below x*) and hi
  (S(hi) < top_p, at or above x*); after `iterations` halvings of a range of a few tens the
  interval is far below float32 spacing of distinct logits, and "logit > lo" is the nucleus.
  40 masked sums over the vocabulary instead of a sort (cheaper on CPU at 49k tokens:
  BENCHMARKS.md, top-p filtering).
  """
  probs_BxV = jax.nn.softmax(logits_BxV, axis=-1)
  finite_BxV = jnp.isfinite(logits_BxV)
  hi_Bx1 = jnp.max(logits_BxV, axis=-1, keepdims=True)   # S(max) = 0 < top_p
  lo_Bx1 = jnp.min(jnp.where(finite_BxV, logits_BxV, hi_Bx1), axis=-1, keepdims=True) - 1.0

  def halve(_, bounds):
    lo, hi = bounds
    mid = 0.5 * (lo + hi)
    above_Bx1 = jnp.sum(jnp.where(logits_BxV > mid, probs_BxV, 0.0), axis=-1, keepdims=True)
    inside = above_Bx1 < top_p   # mid >= x*: the nucleus starts at or below mid
    return jnp.where(inside, lo, mid), jnp.where(inside, mid, hi)

  lo_Bx1, _ = jax.lax.fori_loop(0, iterations, halve, (lo_Bx1, hi_Bx1))
  return lo_Bx1


def filter_logits(logits_BxV: jax.Array, temperature: float, top_k: int,
                  top_p: float) -> jax.Array:
  """Temperature, then top-k, then nucleus (top-p) filtering; removed entries become -inf.

  The nucleus is the smallest set of most likely tokens whose mass reaches top_p (the top
  token always kept), found by bisection on the logit value (`_nucleus_floor`), not a sort.
  """
  logits_BxV = logits_BxV.astype(jnp.float32) / temperature
  if top_k > 0:
    kth_Bx1 = jax.lax.top_k(logits_BxV, top_k)[0][:, -1:]
    logits_BxV = jnp.where(logits_BxV < kth_Bx1, -jnp.inf, logits_BxV)
  if top_p < 1.0:
    floor_Bx1 = _nucleus_floor(logits_BxV, top_p)
    logits_BxV = jnp.where(logits_BxV > floor_Bx1, logits_BxV, -jnp.inf)
  return logits_BxV


def argmax(x_BxV: jax.Array) -> jax.Array:
  """First index of the maximum per row, as jnp.argmax, from two plain reductions (max, then
  min of the matching indices): XLA CPU vectorizes these, not the variadic argmax reduce."""
  v = x_BxV.shape[-1]
  max_Bx1 = jnp.max(x_BxV, axis=-1, keepdims=True)
  return jnp.min(jnp.where(x_BxV == max_Bx1, jnp.arange(v, dtype=jnp.int32), v), axis=-1)


def _last_positive(x: jax.Array) -> jax.Array:
  """Index of the last positive entry of each row (0 if none)."""
  return jnp.max(jnp.where(x > 0, jnp.arange(x.shape[-1], dtype=jnp.int32), 0), axis=-1)


def sample_categorical(rng, logits_BxV: jax.Array, block: int = 64) -> jax.Array:
  """One draw per row from softmax(logits) (-inf entries never drawn) by inverse CDF with one
  uniform per row: block sums, the block holding u * total, then within that block. Cheaper
  on CPU than Gumbel-max (`jax.random.categorical`), which needs V random numbers and a
  variadic argmax per row (BENCHMARKS.md)."""
  b, v = logits_BxV.shape
  nb = -(-v // block)
  p_BxV = jnp.exp(logits_BxV - jnp.max(logits_BxV, axis=-1, keepdims=True))
  # [B, blocks, block]
  p_blocks = jnp.pad(p_BxV, ((0, 0), (0, nb * block - v))).reshape(b, nb, block)
  block_mass = p_blocks.sum(-1)
  cum_block_mass = jnp.cumsum(block_mass, axis=-1)
  target_Bx1 = jax.random.uniform(rng, (b, 1)) * cum_block_mass[:, -1:]
  # the chosen entry has cum[j - 1] <= target < cum[j], so its mass is > 0; rounding can put
  # the target past the end: then the last entry with mass
  blk_B = jnp.sum(cum_block_mass <= target_Bx1, axis=-1, dtype=jnp.int32)
  blk_B = jnp.where(blk_B >= nb, _last_positive(block_mass), blk_B)
  before_B = jnp.take_along_axis(jnp.pad(cum_block_mass, ((0, 0), (1, 0))), blk_B[:, None],
                                 axis=1)[:, 0]
  inner = jnp.take_along_axis(p_blocks, blk_B[:, None, None], axis=1)[:, 0]
  cum_inner = before_B[:, None] + jnp.cumsum(inner, axis=-1)
  j_B = jnp.sum(cum_inner <= target_Bx1, axis=-1, dtype=jnp.int32)
  j_B = jnp.where(j_B >= block, _last_positive(inner), j_B)
  return blk_B * block + j_B


def choose(logits_BxV, rng, step, temperature: float, top_k: int, top_p: float) -> jax.Array:
  """Next token ids [B] for one decoding step."""
  if temperature == 0.0:
    return argmax(logits_BxV)
  filtered = filter_logits(logits_BxV, temperature, top_k, top_p)
  return sample_categorical(jax.random.fold_in(rng, step), filtered)


def prompt_layout(prompt_mask_BxP: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Segment ids (1 real, 0 pad), positions, and each row's next position for left-padded
  prompts."""
  mask = prompt_mask_BxP.astype(jnp.int32)
  positions_BxP = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
  return mask, positions_BxP, mask.sum(axis=1)


def decode(model: Decoder, prompt_BxP, prompt_mask_BxP, rng, *, max_new_tokens: int,
           temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
           eos_ids: tuple[int, ...] = (), pad_id: int = 0) -> Samples:
  """Traceable decoding loop (prefill, then one token at a time); call it under jit."""
  b, p = prompt_BxP.shape
  segments_BxP, positions_BxP, next_pos_B = prompt_layout(prompt_mask_BxP)
  cache = KVCache.zeros(model.cfg, b, p + max_new_tokens)
  logits, cache = model(prompt_BxP, positions_BxP, segments_BxP, cache=cache)
  first_B = choose(logits[:, -1], rng, 0, temperature, top_k, top_p)
  eos = jnp.asarray(eos_ids if eos_ids else (-1,), jnp.int32)

  def step(i, carry):
    tokens_BxC, done_B, cache, last_B = carry
    pos_Bx1 = (next_pos_B + i - 1)[:, None]
    logits, cache = model(last_B[:, None], pos_Bx1, jnp.ones_like(pos_Bx1), cache=cache)
    token_B = choose(logits[:, -1], rng, i, temperature, top_k, top_p)
    token_B = jnp.where(done_B, pad_id, token_B)
    done_B = done_B | jnp.isin(token_B, eos)
    return tokens_BxC.at[:, i].set(token_B), done_B, cache, token_B

  tokens_BxC = jnp.full((b, max_new_tokens), pad_id, jnp.int32).at[:, 0].set(first_B)
  carry = (tokens_BxC, jnp.isin(first_B, eos), cache, first_B)
  tokens_BxC, _, _, _ = jax.lax.fori_loop(1, max_new_tokens, step, carry)
  is_eos_BxC = jnp.isin(tokens_BxC, eos)
  eos_before_BxC = jnp.cumsum(is_eos_BxC, axis=1) - is_eos_BxC
  return Samples(tokens_BxC, eos_before_BxC == 0)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "temperature",
                                             "top_k", "top_p", "eos_ids", "pad_id"))
def _generate(graphdef, state, prompt_BxP, prompt_mask_BxP, rng, **kwargs) -> Samples:
  return decode(nnx.merge(graphdef, state), prompt_BxP, prompt_mask_BxP, rng, **kwargs)


def generate(model: Decoder, prompt_BxP, *, max_new_tokens: int, prompt_mask_BxP=None,
             rng: jax.Array | None = None, temperature: float = 0.0, top_k: int = 0,
             top_p: float = 1.0, eos_id: int | tuple[int, ...] | None = None,
             pad_id: int = 0) -> Samples:
  """Samples `max_new_tokens` continuations of left-padded prompts (temperature 0: greedy)."""
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
    raise ValueError(f"bad sampling settings: temperature={temperature}, top_k={top_k}, "
                     f"top_p={top_p}")
  prompt_BxP = jnp.asarray(prompt_BxP, jnp.int32)
  if prompt_mask_BxP is None:
    prompt_mask_BxP = jnp.ones_like(prompt_BxP)
  if rng is None:
    rng = jax.random.key(0)
  eos_ids = () if eos_id is None else tuple(eos_id) if isinstance(eos_id, (tuple, list)) \
      else (int(eos_id),)
  graphdef, state = nnx.split(model)
  return _generate(graphdef, state, prompt_BxP, jnp.asarray(prompt_mask_BxP), rng,
                   max_new_tokens=max_new_tokens, temperature=float(temperature),
                   top_k=int(top_k), top_p=float(top_p), eos_ids=eos_ids, pad_id=int(pad_id))
