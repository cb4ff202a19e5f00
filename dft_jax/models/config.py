"""One config for every supported decoder family, and its mapping to HF `config.json`.

The families differ only in switches: Llama 2/3 (rope scaling), Mistral (sliding window),
Qwen2 (bias on q/k/v), Qwen3 (per-head q/k RMSNorm, free head_dim). Anything in an HF config
that the decoder cannot reproduce exactly is an error naming the field, never a silent drift.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax.numpy as jnp

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
REMAT_POLICIES = ("none", "full", "dots", "dots_with_no_batch_dims")
# Attention kernels (models/attention.py): "xla" the blockwise path with its hand-written VJP
# (CPU), "splash" the Pallas TPU kernel, "splash_interpret" the same kernel run by the Pallas
# interpreter (tests on CPU), "cudnn" jax.nn.dot_product_attention (GPU); "auto" by backend.
ATTENTION_IMPLS = ("auto", "xla", "splash", "splash_interpret", "cudnn")
LAYER_LOOPS = ("unrolled", "scan")
# What "auto" numerics become on each backend (`platform_numerics`): accelerators compute in
# bf16 (master weights stay param_dtype, fp32) and recompute each block in the backward pass.
AUTO_NUMERICS = {
    "cpu": dict(dtype="float32", remat_policy="none", attention_impl="xla",
                layer_loop="unrolled"),
    "tpu": dict(dtype="bfloat16", remat_policy="full", attention_impl="splash",
                layer_loop="scan"),
    "gpu": dict(dtype="bfloat16", remat_policy="full", attention_impl="cudnn",
                layer_loop="scan"),
}
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


class ConfigError(ValueError):
  """A model config that the decoder cannot represent; the message names the field."""


def as_dtype(name_or_dtype) -> jnp.dtype:
  """'bfloat16' | jnp.bfloat16 | np.dtype -> jnp dtype, with a clear error otherwise."""
  if isinstance(name_or_dtype, str):
    if name_or_dtype not in _DTYPES:
      raise ConfigError(f"unknown dtype {name_or_dtype!r}; expected one of {sorted(_DTYPES)}")
    return jnp.dtype(_DTYPES[name_or_dtype])
  return jnp.dtype(name_or_dtype)


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """Llama-3-style frequency-dependent rope scaling (HF `rope_type: llama3`)."""
  factor: float
  low_freq_factor: float
  high_freq_factor: float
  original_max_position_embeddings: int


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture plus numerics of one decoder. Hashable, so it can be a static jit argument."""
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  model_type: str = "llama"
  rms_norm_eps: float = 1e-6
  rope_theta: float = 10000.0
  rope_scaling: RopeScaling | None = None
  max_position_embeddings: int = 2048
  # Per-layer sliding window in tokens (None: full causal attention in that layer).
  sliding_windows: tuple[int | None, ...] | None = None
  qkv_bias: bool = False
  o_bias: bool = False
  mlp_bias: bool = False
  qk_norm: bool = False
  tie_word_embeddings: bool = False
  bos_token_id: int | None = None
  eos_token_id: int | tuple[int, ...] | None = None
  pad_token_id: int | None = None
  param_dtype: str = "float32"
  dtype: str = "float32"  # compute dtype
  remat_policy: str = "none"
  attention_impl: str = "auto"
  layer_loop: str = "unrolled"  # unrolled | scan (lax.scan over stacked blocks) | auto
  # LoRA: rank 0 = off. Adapters W + (alpha / rank) * A @ B on the targeted projections.
  lora_rank: int = 0
  lora_alpha: float = 16.0
  lora_targets: tuple[str, ...] = ("q", "k", "v", "o")

  def __post_init__(self):
    if self.model_type not in SUPPORTED_MODEL_TYPES:
      raise ConfigError(f"unsupported model_type {self.model_type!r}; "
                        f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                 "num_kv_heads", "head_dim"):
      value = getattr(self, name)
      if not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
    if self.num_heads % self.num_kv_heads:
      raise ConfigError(f"num_heads={self.num_heads} is not a multiple of "
                        f"num_kv_heads={self.num_kv_heads}")
    if self.head_dim % 2:
      raise ConfigError(f"head_dim={self.head_dim} must be even for rotary embeddings")
    if self.sliding_windows is not None and len(self.sliding_windows) != self.num_layers:
      raise ConfigError(f"sliding_windows has {len(self.sliding_windows)} entries for "
                        f"{self.num_layers} layers")
    if self.remat_policy not in REMAT_POLICIES:
      raise ConfigError(f"unknown remat_policy {self.remat_policy!r}; "
                        f"expected one of {REMAT_POLICIES}")
    if self.layer_loop not in LAYER_LOOPS:
      raise ConfigError(f"unknown layer_loop {self.layer_loop!r}; expected one of {LAYER_LOOPS}")
    if self.attention_impl not in ATTENTION_IMPLS:
      raise ConfigError(f"unknown attention_impl {self.attention_impl!r}; "
                        f"expected one of {ATTENTION_IMPLS}")
    as_dtype(self.param_dtype)
    as_dtype(self.dtype)
    if self.lora_rank < 0 or set(self.lora_targets) - set(LORA_TARGETS):
      raise ConfigError(f"bad LoRA setting: rank {self.lora_rank}, targets {self.lora_targets}; "
                        f"targets must come from {LORA_TARGETS}")

  def window(self, layer: int) -> int | None:
    return None if self.sliding_windows is None else self.sliding_windows[layer]

  def replace(self, **changes) -> "ModelConfig":
    if isinstance(changes.get("lora_targets"), (list, str)):
      targets = changes["lora_targets"]
      changes["lora_targets"] = tuple(targets.split(",") if isinstance(targets, str) else targets)
    if isinstance(changes.get("rope_scaling"), dict):
      changes["rope_scaling"] = RopeScaling(**changes["rope_scaling"])
    for key in ("param_dtype", "dtype"):
      if key in changes and not isinstance(changes[key], str):
        changes[key] = jnp.dtype(changes[key]).name
    return dataclasses.replace(self, **changes)

  @property
  def num_params(self) -> int:
    d, f, n, k, h = (self.hidden_size, self.intermediate_size, self.num_heads,
                     self.num_kv_heads, self.head_dim)
    attn = d * (n + 2 * k) * h + n * h * d
    attn += (n + 2 * k) * h * self.qkv_bias + d * self.o_bias + 2 * h * self.qk_norm
    mlp = 3 * d * f + (2 * f + d) * self.mlp_bias
    per_layer = attn + mlp + 2 * d
    embed = self.vocab_size * d * (1 if self.tie_word_embeddings else 2)
    return self.num_layers * per_layer + embed + d

  # --- native (de)serialization -------------------------------------------------------------

  def to_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    if self.sliding_windows is not None:
      out["sliding_windows"] = list(self.sliding_windows)
    if isinstance(self.eos_token_id, tuple):
      out["eos_token_id"] = list(self.eos_token_id)
    out["lora_targets"] = list(self.lora_targets)
    return out

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ConfigError(f"unknown model config field(s): {', '.join(unknown)}")
    d = dict(d)
    if d.get("rope_scaling") is not None:
      d["rope_scaling"] = RopeScaling(**d["rope_scaling"])
    if d.get("sliding_windows") is not None:
      d["sliding_windows"] = tuple(d["sliding_windows"])
    if isinstance(d.get("eos_token_id"), list):
      d["eos_token_id"] = tuple(d["eos_token_id"])
    if isinstance(d.get("lora_targets"), list):
      d["lora_targets"] = tuple(d["lora_targets"])
    return cls(**d)


def platform_numerics(numerics: dict[str, Any], platform: str) -> dict[str, Any]:
  """`numerics` with each "auto" entry (dtype, remat_policy, attention_impl, layer_loop) by the
  choice for `platform` (cpu | tpu | gpu; cuda/rocm count as gpu): AUTO_NUMERICS."""
  platform = "gpu" if platform in ("cuda", "rocm") else platform
  if platform not in AUTO_NUMERICS:
    raise ConfigError(f"no automatic numerics for platform {platform!r}; set model.dtype, "
                      "model.remat_policy and model.attention_impl explicitly")
  return {k: AUTO_NUMERICS[platform][k] if v == "auto" else v for k, v in numerics.items()}


# --- Hugging Face config.json <-> ModelConfig ----------------------------------------------


def _rope_from_hf(hf: dict[str, Any]) -> tuple[float, RopeScaling | None]:
  """Reads rope theta and scaling from either transformers layout (v4 `rope_scaling`, v5
  `rope_parameters`)."""
  params = dict(hf.get("rope_parameters") or {})
  legacy = hf.get("rope_scaling") or {}
  params = {**legacy, **params}
  theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
  rope_type = params.get("rope_type", params.get("type", "default"))
  if rope_type == "default":
    return theta, None
  if rope_type == "llama3":
    try:
      return theta, RopeScaling(
          factor=float(params["factor"]),
          low_freq_factor=float(params["low_freq_factor"]),
          high_freq_factor=float(params["high_freq_factor"]),
          original_max_position_embeddings=int(params["original_max_position_embeddings"]))
    except KeyError as e:
      raise ConfigError(f"rope scaling 'llama3' is missing field {e.args[0]!r}") from None
  raise ConfigError(f"unsupported rope scaling type {rope_type!r} (supported: default, llama3)")


def _sliding_windows_from_hf(hf: dict[str, Any], model_type: str,
                             num_layers: int) -> tuple[int | None, ...] | None:
  window = hf.get("sliding_window")
  if model_type == "mistral":
    return None if window is None else (int(window),) * num_layers
  if model_type in ("qwen2", "qwen3"):
    layer_types = hf.get("layer_types")
    if layer_types is None:  # transformers v4 layout
      if not hf.get("use_sliding_window", False):
        return None
      first = int(hf.get("max_window_layers", num_layers))
      layer_types = ["full_attention" if i < first else "sliding_attention"
                     for i in range(num_layers)]
    if len(layer_types) != num_layers:
      raise ConfigError(f"layer_types has {len(layer_types)} entries for {num_layers} layers")
    unknown = set(layer_types) - {"full_attention", "sliding_attention"}
    if unknown:
      raise ConfigError(f"unsupported layer_types entries: {sorted(unknown)}")
    if "sliding_attention" not in layer_types:
      return None
    if window is None:
      raise ConfigError("layer_types asks for sliding_attention but sliding_window is null")
    return tuple(int(window) if t == "sliding_attention" else None for t in layer_types)
  return None


def from_hf_config(hf: dict[str, Any], **overrides) -> ModelConfig:
  """HF `config.json` dict -> ModelConfig. `overrides` set numerics (dtype, remat_policy, ...)."""
  model_type = hf.get("model_type")
  if model_type not in SUPPORTED_MODEL_TYPES:
    raise ConfigError(f"unsupported model_type {model_type!r} in config.json; "
                      f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
  act = hf.get("hidden_act", "silu")
  if act != "silu":
    raise ConfigError(f"unsupported hidden_act {act!r} (only 'silu' / SwiGLU)")

  def need(key):
    if key not in hf:
      raise ConfigError(f"config.json is missing required field {key!r}")
    return hf[key]

  num_heads = int(need("num_attention_heads"))
  hidden = int(need("hidden_size"))
  num_layers = int(need("num_hidden_layers"))
  theta, scaling = _rope_from_hf(hf)
  head_dim = hf.get("head_dim") or hidden // num_heads
  attention_bias = bool(hf.get("attention_bias", False))
  qkv_bias = True if model_type == "qwen2" else attention_bias
  o_bias = False if model_type == "qwen2" else attention_bias
  if model_type in ("qwen2", "qwen3") and hf.get("mlp_bias"):
    raise ConfigError("mlp_bias is not supported for qwen models")
  eos = hf.get("eos_token_id")
  return ModelConfig(
      model_type=model_type,
      vocab_size=int(need("vocab_size")),
      hidden_size=hidden,
      intermediate_size=int(need("intermediate_size")),
      num_layers=num_layers,
      num_heads=num_heads,
      num_kv_heads=int(hf.get("num_key_value_heads") or num_heads),
      head_dim=int(head_dim),
      rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
      rope_theta=theta,
      rope_scaling=scaling,
      max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
      sliding_windows=_sliding_windows_from_hf(hf, model_type, num_layers),
      qkv_bias=qkv_bias,
      o_bias=o_bias,
      mlp_bias=bool(hf.get("mlp_bias", False)),
      qk_norm=model_type == "qwen3",
      tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
      bos_token_id=hf.get("bos_token_id"),
      eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
      pad_token_id=hf.get("pad_token_id"),
  ).replace(**overrides)


_ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                  "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}


def to_hf_config(cfg: ModelConfig) -> dict[str, Any]:
  """ModelConfig -> HF `config.json` dict that `transformers.AutoConfig` reads back."""
  mt = cfg.model_type
  if mt == "qwen2" and (not cfg.qkv_bias or cfg.o_bias):
    raise ConfigError("qwen2 requires qkv_bias=True and o_bias=False")
  if mt in ("llama", "mistral", "qwen3") and cfg.qkv_bias != cfg.o_bias:
    raise ConfigError(f"{mt} has one attention_bias for q/k/v/o; got qkv_bias={cfg.qkv_bias}, "
                      f"o_bias={cfg.o_bias}")
  if cfg.qk_norm != (mt == "qwen3"):
    raise ConfigError(f"qk_norm={cfg.qk_norm} cannot be expressed as model_type {mt!r}")
  rope = {"rope_theta": cfg.rope_theta, "rope_type": "default"}
  if cfg.rope_scaling is not None:
    rope.update(rope_type="llama3", **dataclasses.asdict(cfg.rope_scaling))
  hf = {
      "architectures": [_ARCHITECTURES[mt]],
      "model_type": mt,
      "vocab_size": cfg.vocab_size,
      "hidden_size": cfg.hidden_size,
      "intermediate_size": cfg.intermediate_size,
      "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_heads,
      "num_key_value_heads": cfg.num_kv_heads,
      "head_dim": cfg.head_dim,
      "hidden_act": "silu",
      "rms_norm_eps": cfg.rms_norm_eps,
      "max_position_embeddings": cfg.max_position_embeddings,
      "rope_parameters": rope,
      # transformers v4 readers look here:
      "rope_theta": cfg.rope_theta,
      "rope_scaling": None if cfg.rope_scaling is None else dict(rope),
      "tie_word_embeddings": cfg.tie_word_embeddings,
      "bos_token_id": cfg.bos_token_id,
      "eos_token_id": list(cfg.eos_token_id) if isinstance(cfg.eos_token_id, tuple)
                      else cfg.eos_token_id,
      "pad_token_id": cfg.pad_token_id,
      "dtype": cfg.param_dtype,
  }
  if mt in ("llama", "qwen3", "mistral"):
    hf["attention_bias"] = cfg.qkv_bias
  if mt == "llama":
    hf["mlp_bias"] = cfg.mlp_bias
  elif cfg.mlp_bias:
    raise ConfigError(f"mlp_bias cannot be expressed as model_type {mt!r}")
  windows = cfg.sliding_windows
  if mt in ("llama",) and windows is not None:
    raise ConfigError("llama has no sliding window; use model_type 'mistral' or 'qwen2'")
  if mt == "mistral":
    if windows is not None and len(set(windows)) != 1:
      raise ConfigError("mistral needs the same sliding window in every layer")
    hf["sliding_window"] = None if windows is None else windows[0]
  if mt in ("qwen2", "qwen3"):
    sizes = {w for w in (windows or ()) if w is not None}
    if len(sizes) > 1:
      raise ConfigError("qwen sliding layers must share one window size")
    hf["use_sliding_window"] = bool(sizes)
    hf["sliding_window"] = sizes.pop() if sizes else None
    hf["layer_types"] = ["full_attention" if windows is None or windows[i] is None
                         else "sliding_attention" for i in range(cfg.num_layers)]
  return hf


def load_hf_config(path: str | os.PathLike, **overrides) -> ModelConfig:
  file = os.path.join(path, "config.json")
  if not os.path.isfile(file):
    raise FileNotFoundError(f"no config.json in {path}")
  with open(file) as f:
    return from_hf_config(json.load(f), **overrides)
