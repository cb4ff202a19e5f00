"""Tiny random Hugging Face checkpoints of every supported family, built with transformers'
own config classes: the independent reference for the decoder."""

from __future__ import annotations

import numpy as np
import torch
import transformers

COMMON = dict(vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
              num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=256,
              rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)

# name -> (config class, kwargs). Every architecture switch of the decoder appears at least once.
VARIANTS = {
    "llama2": (transformers.LlamaConfig, dict(num_key_value_heads=6)),
    "llama2_gqa_bias": (transformers.LlamaConfig, dict(attention_bias=True, mlp_bias=True)),
    "llama3_rope_scaling": (transformers.LlamaConfig, dict(
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                             low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=64))),
    "llama_tied": (transformers.LlamaConfig, dict(tie_word_embeddings=True)),
    "mistral_window": (transformers.MistralConfig, dict(sliding_window=7)),
    "qwen2": (transformers.Qwen2Config, dict(tie_word_embeddings=True)),
    "qwen2_sliding": (transformers.Qwen2Config, dict(use_sliding_window=True, sliding_window=5,
                                                     max_window_layers=1)),
    "qwen3": (transformers.Qwen3Config, dict(head_dim=12)),
    "qwen3_bias_untied": (transformers.Qwen3Config, dict(head_dim=16, attention_bias=True,
                                                         tie_word_embeddings=False)),
}


def build(name: str, seed: int = 0):
  """A random HF model whose every weight (norms and biases included) is non-trivial."""
  config_cls, kwargs = VARIANTS[name]
  config = config_cls(**{**COMMON, **kwargs})
  torch.manual_seed(seed)
  model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
  with torch.no_grad():
    for pname, p in model.named_parameters():
      if pname.endswith("norm.weight"):
        p.copy_(1.0 + 0.2 * torch.randn_like(p))
      else:
        p.copy_(0.15 * torch.randn_like(p))
  return model.eval()


def save(name: str, path, seed: int = 0):
  model = build(name, seed)
  model.save_pretrained(path, safe_serialization=True)
  return model


def logits(model, ids: np.ndarray) -> np.ndarray:
  with torch.no_grad():
    return model(torch.from_numpy(np.asarray(ids, np.int64))).logits.float().numpy()


def greedy(model, ids: np.ndarray, new_tokens: int, pad_id: int = 0) -> np.ndarray:
  """HF greedy decoding, stopping at the config's EOS; finished rows padded with `pad_id`."""
  with torch.no_grad():
    out = model.generate(torch.from_numpy(np.asarray(ids, np.int64)), max_new_tokens=new_tokens,
                         do_sample=False, pad_token_id=pad_id)
  new = out[:, ids.shape[1]:].numpy()
  return np.pad(new, ((0, 0), (0, new_tokens - new.shape[1])), constant_values=pad_id)
