"""One NNX decoder-only transformer for the Llama 2/3, Mistral and Qwen2/3 families.

Shapes in names: B batch, T query length, S key length (cache size), D hidden, N query heads,
K key/value heads, G = N // K heads per group, H head dim, F MLP width, V vocabulary, L layers.
Every parameter carries logical axis names (`out_sharding` metadata) that sharding rules map to
mesh axes; parameters are never sharded eagerly here, the train state decides placement.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from flax import struct

from dft_jax.models import attention, rope
from dft_jax.models.config import AUTO_NUMERICS, ModelConfig, as_dtype

_REMAT = {
    "full": None,  # save nothing
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def _lead(x: jax.Array, ndim: int) -> jax.Array:
  """Adds leading unit axes so `x` broadcasts against an `ndim`-rank activation explicitly."""
  return x.reshape((1,) * (ndim - x.ndim) + x.shape)


def _dense(x, kernel, in_dims: int = 1, preferred_element_type=None):
  """x [..., *in] @ kernel [*in, *out] as one 2-D matmul [prod(lead), prod(in)] @ [prod(in),
  prod(out)]. XLA CPU lays out 2-D dots and their weight gradients without the transposes it
  inserts for contractions over several axes (batch and time): a faster backward
  (BENCHMARKS.md)."""
  lead, ins, outs = x.shape[:x.ndim - in_dims], kernel.shape[:in_dims], kernel.shape[in_dims:]
  k = math.prod(ins)
  y = jnp.matmul(x.reshape(-1, k), kernel.reshape(k, -1),
                 preferred_element_type=preferred_element_type)
  return y.reshape(*lead, *outs)


def _param(rngs: nnx.Rngs, shape, dtype, names, stddev=0.02, value=None) -> nnx.Param:
  if value is None:
    value = stddev * jax.random.normal(rngs.params(), shape, dtype)
  return nnx.Param(value, out_sharding=names, eager_sharding=False)


def _ones(shape, dtype, names) -> nnx.Param:
  return _param(None, shape, dtype, names, value=jnp.ones(shape, dtype))


def _zeros(shape, dtype, names) -> nnx.Param:
  return _param(None, shape, dtype, names, value=jnp.zeros(shape, dtype))


def _add_lora(module, name, in_shape, out_shape, in_names, out_names, cfg, rngs) -> None:
  """Adapters for `name` when LoRA targets it: A [in..., r] random, B [r, out...] zero, so the
  adapted model starts equal to the base."""
  short = name.split("_")[0]
  if cfg.lora_rank == 0 or short not in cfg.lora_targets:
    return
  pd, r = as_dtype(cfg.param_dtype), cfg.lora_rank
  fan_in = 1
  for d in in_shape:
    fan_in *= d
  a = jax.random.normal(rngs.params(), (*in_shape, r), pd) / jnp.sqrt(fan_in).astype(pd)
  setattr(module, name + "_lora_a",
          nnx.LoRAParam(a, out_sharding=(*in_names, "lora"), eager_sharding=False))
  setattr(module, name + "_lora_b",
          nnx.LoRAParam(jnp.zeros((r, *out_shape), pd), out_sharding=("lora", *out_names),
                        eager_sharding=False))


def _kernel(module, name, dt):
  """The weight `name` in compute dtype, with its LoRA update folded in when it has one."""
  kernel = getattr(module, name)[...].astype(dt)
  a = getattr(module, name + "_lora_a", None)
  if a is None:
    return kernel
  b = getattr(module, name + "_lora_b")
  scale = module.cfg.lora_alpha / module.cfg.lora_rank
  return kernel + scale * jnp.tensordot(a[...].astype(dt), b[...].astype(dt), axes=1)


@struct.dataclass
class KVCache:
  """Keys/values of every layer for slots [0, S), and the next free slot.

  One [B, K, S, H] array per layer (heads-major, as attention reads them), not one stacked
  [L, ...] array: a decoding step writes each layer's slot in place and reads the layer's keys
  without slicing them out of a stack (a copy of the whole layer cache per layer and step on
  XLA CPU). `segment_ids_BxS` marks which document each slot belongs to (0 = padding), so
  left-padded prompts never attend to their padding.
  """
  k_BxKxSxH: tuple[jax.Array, ...]  # one per layer
  v_BxKxSxH: tuple[jax.Array, ...]
  segment_ids_BxS: jax.Array
  index: jax.Array  # int32 scalar

  @classmethod
  def zeros(cls, cfg: ModelConfig, batch: int, size: int, dtype=None) -> "KVCache":
    dtype = as_dtype(dtype or cfg.dtype)
    shape = (batch, cfg.num_kv_heads, size, cfg.head_dim)
    layers = range(cfg.num_layers)
    return cls(tuple(jnp.zeros(shape, dtype) for _ in layers),
               tuple(jnp.zeros(shape, dtype) for _ in layers),
               jnp.zeros((batch, size), jnp.int32), jnp.zeros((), jnp.int32))

  @property
  def size(self) -> int:
    return self.k_BxKxSxH[0].shape[2]


class RMSNorm(nnx.Module):
  """RMSNorm computed in float32, as the HF reference does."""

  def __init__(self, dim: int, eps: float, cfg: ModelConfig, names=("norm",)):
    self.eps = eps
    self.dtype = as_dtype(cfg.dtype)
    self.scale = _ones((dim,), as_dtype(cfg.param_dtype), names)

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return x32.astype(self.dtype) * _lead(self.scale[...].astype(self.dtype), x.ndim)


class Attention(nnx.Module):
  """Grouped-query attention with optional q/k/v bias, q/k RMSNorm and a sliding window."""

  def __init__(self, cfg: ModelConfig, layer: int, rngs: nnx.Rngs):
    pd = as_dtype(cfg.param_dtype)
    d, n, k, h = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    self.cfg = cfg
    self.window = cfg.window(layer)
    self.q_DxNxH = _param(rngs, (d, n, h), pd, ("embed", "heads", "head_dim"))
    self.k_DxKxH = _param(rngs, (d, k, h), pd, ("embed", "kv_heads", "head_dim"))
    self.v_DxKxH = _param(rngs, (d, k, h), pd, ("embed", "kv_heads", "head_dim"))
    self.o_NxHxD = _param(rngs, (n, h, d), pd, ("heads", "head_dim", "embed"))
    for name, heads, axis in (("q_DxNxH", n, "heads"), ("k_DxKxH", k, "kv_heads"),
                              ("v_DxKxH", k, "kv_heads")):
      _add_lora(self, name, (d,), (heads, h), ("embed",), (axis, "head_dim"), cfg, rngs)
    _add_lora(self, "o_NxHxD", (n, h), (d,), ("heads", "head_dim"), ("embed",), cfg, rngs)
    if cfg.qkv_bias:
      self.q_bias_NxH = _zeros((n, h), pd, ("heads", "head_dim"))
      self.k_bias_KxH = _zeros((k, h), pd, ("kv_heads", "head_dim"))
      self.v_bias_KxH = _zeros((k, h), pd, ("kv_heads", "head_dim"))
    if cfg.o_bias:
      self.o_bias_D = _zeros((d,), pd, ("embed",))
    if cfg.qk_norm:
      self.q_norm = RMSNorm(h, cfg.rms_norm_eps, cfg, names=("head_dim",))
      self.k_norm = RMSNorm(h, cfg.rms_norm_eps, cfg, names=("head_dim",))

  def _attend(self, q_BxTxNxH, k_BxKxSxH, v_BxKxSxH, mask_BxTxS, segments_BxT, decoding):
    """The attention kernel of cfg.attention_impl ("auto": by backend). Decoding with a cache
    and sequences the splash kernel cannot tile take the blockwise XLA path."""
    impl = self.cfg.attention_impl
    if impl == "auto":
      impl = AUTO_NUMERICS.get(jax.default_backend(), AUTO_NUMERICS["cpu"])["attention_impl"]
    t = q_BxTxNxH.shape[1]
    if not decoding and impl.startswith("splash") and attention.splash_fits(t):
      return attention.splash_attend(q_BxTxNxH, k_BxKxSxH, v_BxKxSxH, segments_BxT,
                                     window=self.window, interpret=impl == "splash_interpret")
    if not decoding and impl == "cudnn":
      return attention.dot_product_attend(q_BxTxNxH, k_BxKxSxH, v_BxKxSxH, mask_BxTxS)
    return attention.attend(q_BxTxNxH, k_BxKxSxH, v_BxKxSxH, mask_BxTxS, causal=not decoding,
                            window=self.window)

  def __call__(self, x_BxTxD, cos_BxTxH, sin_BxTxH, mask_BxTxS, cache_k_BxKxSxH=None,
               cache_v_BxKxSxH=None, index=None, segments_BxT=None):
    """Returns the attention output, and this layer's cache with the new keys/values written at
    `index` when given one (updated in place by XLA: no per-step copy of the cache)."""
    cfg, dt = self.cfg, as_dtype(self.cfg.dtype)
    w = lambda p: p[...].astype(dt)
    q = _dense(x_BxTxD, _kernel(self, "q_DxNxH", dt))
    k = _dense(x_BxTxD, _kernel(self, "k_DxKxH", dt))
    v = _dense(x_BxTxD, _kernel(self, "v_DxKxH", dt))
    if cfg.qkv_bias:
      q = q + _lead(w(self.q_bias_NxH), 4)
      k = k + _lead(w(self.k_bias_KxH), 4)
      v = v + _lead(w(self.v_bias_KxH), 4)
    if cfg.qk_norm:
      q, k = self.q_norm(q), self.k_norm(k)
    q = rope.apply(q, cos_BxTxH, sin_BxTxH)
    k = rope.apply(k, cos_BxTxH, sin_BxTxH)
    k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, K, T, H]: heads ahead
    decoding = cache_k_BxKxSxH is not None
    if decoding:  # write this step's keys/values at slot `index`
      cache_k_BxKxSxH = jax.lax.dynamic_update_slice_in_dim(
          cache_k_BxKxSxH, k.astype(cache_k_BxKxSxH.dtype), index, axis=2)
      cache_v_BxKxSxH = jax.lax.dynamic_update_slice_in_dim(
          cache_v_BxKxSxH, v.astype(cache_v_BxKxSxH.dtype), index, axis=2)
      k, v = cache_k_BxKxSxH.astype(dt), cache_v_BxKxSxH.astype(dt)
    out_BxTxNxH = self._attend(q, k, v, mask_BxTxS, segments_BxT, decoding)
    out_BxTxD = _dense(out_BxTxNxH, _kernel(self, "o_NxHxD", dt), in_dims=2)
    if cfg.o_bias:
      out_BxTxD = out_BxTxD + _lead(w(self.o_bias_D), 3)
    return out_BxTxD, cache_k_BxKxSxH, cache_v_BxKxSxH


class MLP(nnx.Module):
  """SwiGLU: down(silu(gate(x)) * up(x))."""

  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    pd = as_dtype(cfg.param_dtype)
    d, f = cfg.hidden_size, cfg.intermediate_size
    self.cfg = cfg
    self.dtype = as_dtype(cfg.dtype)
    self.gate_DxF = _param(rngs, (d, f), pd, ("embed", "mlp"))
    self.up_DxF = _param(rngs, (d, f), pd, ("embed", "mlp"))
    self.down_FxD = _param(rngs, (f, d), pd, ("mlp", "embed"))
    _add_lora(self, "gate_DxF", (d,), (f,), ("embed",), ("mlp",), cfg, rngs)
    _add_lora(self, "up_DxF", (d,), (f,), ("embed",), ("mlp",), cfg, rngs)
    _add_lora(self, "down_FxD", (f,), (d,), ("mlp",), ("embed",), cfg, rngs)
    self.bias = cfg.mlp_bias
    if cfg.mlp_bias:
      self.gate_bias_F = _zeros((f,), pd, ("mlp",))
      self.up_bias_F = _zeros((f,), pd, ("mlp",))
      self.down_bias_D = _zeros((d,), pd, ("embed",))

  def __call__(self, x_BxTxD):
    w = lambda p: p[...].astype(self.dtype)
    bias = lambda p: _lead(w(p), 3)
    gate = _dense(x_BxTxD, _kernel(self, "gate_DxF", self.dtype))
    up = _dense(x_BxTxD, _kernel(self, "up_DxF", self.dtype))
    if self.bias:
      gate, up = gate + bias(self.gate_bias_F), up + bias(self.up_bias_F)
    out = _dense(jax.nn.silu(gate) * up, _kernel(self, "down_FxD", self.dtype))
    return out + bias(self.down_bias_D) if self.bias else out


class Block(nnx.Module):
  """Pre-norm residual block: x + attn(norm(x)); x + mlp(norm(x))."""

  def __init__(self, cfg: ModelConfig, layer: int, rngs: nnx.Rngs):
    self.attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg)
    self.attn = Attention(cfg, layer, rngs)
    self.mlp_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg)
    self.mlp = MLP(cfg, rngs)

  def __call__(self, x_BxTxD, cos, sin, mask_BxTxS, k=None, v=None, index=None,
               segments_BxT=None):
    attn_out, k, v = self.attn(self.attn_norm(x_BxTxD), cos, sin, mask_BxTxS, k, v, index,
                               segments_BxT)
    x_BxTxD = x_BxTxD + attn_out
    x_BxTxD = x_BxTxD + self.mlp(self.mlp_norm(x_BxTxD))
    return x_BxTxD, k, v


def shard_batch(x_BxTxD: jax.Array) -> jax.Array:
  """The activations split by rows over the data-parallel mesh axes ('data', 'fsdp'), when a
  mesh is set and the rows divide. Without it, GSPMD meets FSDP weights (split on D over
  'fsdp') with rows split over the same axis and may gather the rows instead: every chip then
  computes the whole batch (seen in AOT compiles: [B, T, F] activations at the global B)."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return x_BxTxD
  axes = tuple(a for a in ("data", "fsdp") if a in mesh.axis_names and mesh.shape[a] > 1)
  if not axes or x_BxTxD.shape[0] % math.prod(mesh.shape[a] for a in axes):
    return x_BxTxD
  return jax.lax.with_sharding_constraint(x_BxTxD, jax.sharding.PartitionSpec(axes))


def _block_apply(block, *args):
  """block(x, cos, sin, mask, k, v, index, segments): one decoder block, as a plain function."""
  return block(*args)


def _rematted(policy):
  """`_block_apply` recomputed in the backward pass. jax.checkpoint over a closure, not
  nnx.remat: the block only reads its parameters, and models merged at an outer trace level
  (the KL anchor, the frozen embedder inside the train step) cannot pass an nnx transform."""
  def apply(block, *args):
    return jax.checkpoint(lambda *a: _block_apply(block, *a), policy=policy)(*args)
  return apply


def positions_from_segments(segment_ids_BxT: jax.Array) -> jax.Array:
  """Position of each token within its segment (packed rows restart at 0 per document)."""
  t = segment_ids_BxT.shape[1]
  idx_BxT = jnp.broadcast_to(jnp.arange(t), segment_ids_BxT.shape)
  starts = jnp.concatenate([jnp.ones_like(segment_ids_BxT[:, :1], bool),
                            segment_ids_BxT[:, 1:] != segment_ids_BxT[:, :-1]], axis=1)
  start_idx_BxT = jax.lax.cummax(jnp.where(starts, idx_BxT, 0), axis=1)
  return idx_BxT - start_idx_BxT


class Decoder(nnx.Module):
  """Token ids [B, T] -> float32 logits [B, T, V]; with a KVCache, also the updated cache."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    pd = as_dtype(cfg.param_dtype)
    self.cfg = cfg
    self.embed_VxD = _param(rngs, (cfg.vocab_size, cfg.hidden_size), pd, ("vocab", "embed"))
    self.layers = nnx.List([Block(cfg, i, rngs) for i in range(cfg.num_layers)])
    self.final_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg)
    if not cfg.tie_word_embeddings:
      self.lm_head_DxV = _param(rngs, (cfg.hidden_size, cfg.vocab_size), pd, ("embed", "vocab"))

  def __call__(self, tokens_BxT: jax.Array, positions_BxT: jax.Array | None = None,
               segment_ids_BxT: jax.Array | None = None, cache: KVCache | None = None,
               soft_tokens_BxTxV: jax.Array | None = None, hidden_layer: int | None = None):
    """soft_tokens_BxTxV: distributions over the vocabulary fed as `p @ embed` instead of the
    ids' embeddings (straight-through rollouts); `tokens_BxT` then only gives the shape.
    hidden_layer (no cache): return the residual stream after that many blocks instead of
    logits, [B, T, D] float32; num_layers gives the final-normed state the head reads."""
    cfg, dt = self.cfg, as_dtype(self.cfg.dtype)
    b, t = tokens_BxT.shape
    if segment_ids_BxT is None:
      segment_ids_BxT = jnp.ones((b, t), jnp.int32)
    start = jnp.zeros((), jnp.int32) if cache is None else cache.index
    q_slots_T = start + jnp.arange(t, dtype=jnp.int32)
    if positions_BxT is None:
      positions_BxT = (positions_from_segments(segment_ids_BxT) if cache is None
                       else jnp.broadcast_to(q_slots_T, (b, t)))
    if cache is None:
      kv_slots_S, kv_segments_BxS = q_slots_T, segment_ids_BxT
    else:
      kv_slots_S = jnp.arange(cache.size, dtype=jnp.int32)
      kv_segments_BxS = jax.lax.dynamic_update_slice_in_dim(
          cache.segment_ids_BxS, segment_ids_BxT.astype(jnp.int32), start, axis=1)
    masks = {w: attention.attention_mask(q_slots_T, kv_slots_S, segment_ids_BxT,
                                         kv_segments_BxS, w)
             for w in set(cfg.window(i) for i in range(cfg.num_layers))}
    cos, sin = rope.cos_sin(positions_BxT, cfg, dt)

    block_fn = _block_apply
    if cfg.remat_policy != "none" and cache is None:  # decoding takes no gradient
      block_fn = _rematted(_REMAT[cfg.remat_policy])

    if soft_tokens_BxTxV is None:
      x_BxTxD = jnp.take(self.embed_VxD[...], tokens_BxT, axis=0).astype(dt)
    else:
      x_BxTxD = _dense(soft_tokens_BxTxV.astype(dt), self.embed_VxD[...].astype(dt))
    x_BxTxD = shard_batch(x_BxTxD)
    if hidden_layer is not None and not (cache is None and 0 <= hidden_layer <= cfg.num_layers):
      raise ValueError(f"hidden_layer must be in [0, {cfg.num_layers}] and used without a "
                       f"cache, got {hidden_layer}")
    if self._scannable(cache, hidden_layer):
      x_BxTxD = self._scan_blocks(x_BxTxD, cos, sin, masks[cfg.window(0)], segment_ids_BxT)
      return self._head(x_BxTxD, hidden_layer)
    new_k, new_v = [], []
    for i, block in enumerate(self.layers):
      if i == hidden_layer:
        return x_BxTxD.astype(jnp.float32)
      k = v = None
      if cache is not None:
        k, v = cache.k_BxKxSxH[i], cache.v_BxKxSxH[i]
      x_BxTxD, k, v = block_fn(block, x_BxTxD, cos, sin, masks[cfg.window(i)], k, v, start,
                               segment_ids_BxT)
      x_BxTxD = shard_batch(x_BxTxD)
      new_k.append(k)
      new_v.append(v)
    if cache is None:
      return self._head(x_BxTxD, hidden_layer)
    logits_BxTxV = self._head(x_BxTxD, None)
    cache = KVCache(tuple(new_k), tuple(new_v), kv_segments_BxS, start + t)
    return logits_BxTxV, cache

  def _head(self, x_BxTxD, hidden_layer):
    """Final norm, then the logits (float32), or the normed state when hidden_layer is set."""
    x_BxTxD = self.final_norm(x_BxTxD)
    if hidden_layer is not None:
      return x_BxTxD.astype(jnp.float32)
    return _dense(x_BxTxD, self.head_kernel_DxV(), preferred_element_type=jnp.float32)

  def _scannable(self, cache, hidden_layer) -> bool:
    """cfg.layer_loop 'scan' applies without a cache, through every layer, when all layers
    share one attention window (one block body)."""
    cfg = self.cfg
    return (cfg.layer_loop == "scan" and cache is None and hidden_layer in (None, cfg.num_layers)
            and len({cfg.window(i) for i in range(cfg.num_layers)}) == 1)

  def _scan_blocks(self, x_BxTxD, cos, sin, mask_BxTxS, segments_BxT):
    """The blocks as one lax.scan over their parameters stacked [L, ...] (copies of the
    sharded parameters, made in the step): each iteration gathers only its own layer's FSDP
    shards, where unrolled layers let XLA keep every layer's gathered weights alive from the
    forward pass to the backward (AOT compiles: BENCHMARKS.md). Parameters and checkpoints
    keep their per-layer layout."""
    graphdef = nnx.graphdef(self.layers[0])
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[nnx.state(b) for b in self.layers])

    def body(x_BxTxD, layer_state):
      block = nnx.merge(graphdef, layer_state)
      x_BxTxD, _, _ = _block_apply(block, x_BxTxD, cos, sin, mask_BxTxS, None, None, None,
                                   segments_BxT)
      return shard_batch(x_BxTxD)

    if self.cfg.remat_policy != "none":
      body = jax.checkpoint(body, policy=_REMAT[self.cfg.remat_policy])
    x_BxTxD, _ = jax.lax.scan(lambda x, st: (body(x, st), None), x_BxTxD, stacked)
    return x_BxTxD

  def head_kernel_DxV(self) -> jax.Array:
    """The output projection in compute dtype (the embedding's transpose when tied)."""
    dt = as_dtype(self.cfg.dtype)
    if self.cfg.tie_word_embeddings:
      return self.embed_VxD[...].astype(dt).T
    return self.lm_head_DxV[...].astype(dt)

  def init_cache(self, batch: int, size: int, dtype=None) -> KVCache:
    return KVCache.zeros(self.cfg, batch, size, dtype)


def merge_lora(model: Decoder) -> Decoder:
  """The same function without adapters: each W + (alpha / r) * A @ B folded into W."""
  if model.cfg.lora_rank == 0:
    return model
  cfg = model.cfg.replace(lora_rank=0)
  graphdef, state = nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))
  for path, var in nnx.to_flat_state(state):
    owner = model
    for p in path[:-1]:
      owner = owner[p] if isinstance(p, int) else getattr(owner, p)
    var.set_value(_kernel(owner, path[-1], var.dtype))
  return nnx.merge(graphdef, state)


def abstract_model(cfg) -> Decoder:
  """The model with ShapeDtypeStruct leaves: structure for free, no random init."""
  return nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0)))
