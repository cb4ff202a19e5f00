"""Architectures of published checkpoints, usable without their weights (AOT compiles,
from-scratch runs, sizing). Shapes are those of each model's Hugging Face `config.json`:

  llama3.2-1b   meta-llama/Llama-3.2-1B        (tied embeddings, llama3 rope scaling x32)
  llama3.1-8b   meta-llama/Llama-3.1-8B        (llama3 rope scaling x8)
  qwen3-0.6b    Qwen/Qwen3-0.6B                (q/k RMSNorm, head_dim 128 > hidden / heads)
  qwen3-8b      Qwen/Qwen3-8B
  mistral-7b    mistralai/Mistral-7B-v0.1      (4096-token sliding window in every layer)

Each entry is a dict of ModelConfig fields (architecture only; numerics are the run's).
"""

from __future__ import annotations

from dft_jax.models.config import ModelConfig

_LLAMA3_ROPE = dict(low_freq_factor=1.0, high_freq_factor=4.0,
                    original_max_position_embeddings=8192)

PRESETS = {
    "llama3.2-1b": dict(
        model_type="llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192,
        num_layers=16, num_heads=32, num_kv_heads=8, head_dim=64, rms_norm_eps=1e-5,
        rope_theta=500000.0, rope_scaling=dict(factor=32.0, **_LLAMA3_ROPE),
        max_position_embeddings=131072, tie_word_embeddings=True, bos_token_id=128000,
        eos_token_id=128001),
    "llama3.1-8b": dict(
        model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
        num_layers=32, num_heads=32, num_kv_heads=8, head_dim=128, rms_norm_eps=1e-5,
        rope_theta=500000.0, rope_scaling=dict(factor=8.0, **_LLAMA3_ROPE),
        max_position_embeddings=131072, bos_token_id=128000, eos_token_id=128001),
    "qwen3-0.6b": dict(
        model_type="qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
        num_layers=28, num_heads=16, num_kv_heads=8, head_dim=128, rms_norm_eps=1e-6,
        rope_theta=1000000.0, max_position_embeddings=40960, qk_norm=True,
        tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645),
    "qwen3-8b": dict(
        model_type="qwen3", vocab_size=151936, hidden_size=4096, intermediate_size=12288,
        num_layers=36, num_heads=32, num_kv_heads=8, head_dim=128, rms_norm_eps=1e-6,
        rope_theta=1000000.0, max_position_embeddings=40960, qk_norm=True,
        bos_token_id=151643, eos_token_id=151645),
    "mistral-7b": dict(
        model_type="mistral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
        num_layers=32, num_heads=32, num_kv_heads=8, head_dim=128, rms_norm_eps=1e-5,
        rope_theta=10000.0, max_position_embeddings=32768, sliding_windows=(4096,) * 32,
        bos_token_id=1, eos_token_id=2),
}


def config(name: str, **numerics) -> ModelConfig:
  """The ModelConfig of preset `name`, with numerics (dtype, remat_policy, ...) applied."""
  if name not in PRESETS:
    raise ValueError(f"unknown architecture preset {name!r}; known: {', '.join(PRESETS)}")
  return ModelConfig.from_dict({**PRESETS[name], **numerics})
