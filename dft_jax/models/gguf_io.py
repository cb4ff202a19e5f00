"""GGUF (llama.cpp) checkpoints in: weights dequantized to float32, config, and tokenizer.

  python -m dft_jax.convert --from-gguf model.gguf --to-hf out_dir

A GGUF file holds the architecture as metadata (`llama.block_count`, ...), the tensors under
llama.cpp's names (`blk.0.attn_q.weight`, ...), possibly quantized (Q4_1, Q8_0, ...), and the
tokenizer (`tokenizer.ggml.tokens` / `merges`). We read it with the `gguf` package (llama.cpp's
own reader and dequantizer), undo the one layout change llama.cpp's converter makes (the rows of
q/k projections are interleaved per rotary pair), and write an HF directory that
`hf_io.from_pretrained` and `transformers` both load. Only the `llama` architecture (Llama,
SmolLM, Mistral without sliding window) with a byte-level BPE (`gpt2`) tokenizer is read; any
other is one error line naming it.
"""

from __future__ import annotations

import json
import os

import gguf
import numpy as np
import tokenizers
from safetensors.numpy import save_file

from dft_jax.models.hf_io import SINGLE_FILE, CheckpointError

# llama.cpp tensor name -> HF name; "{i}" is the layer.
_LAYER_NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL_NAMES = {"token_embd.weight": "model.embed_tokens.weight",
                 "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}
# `tokenizer.ggml.pre` values whose pre-tokenizer isolates each digit (llama.cpp's llama-vocab.cpp).
_DIGITS_FIRST = ("smollm", "codeshell", "exaone", "minerva")


def _field(reader: gguf.GGUFReader, key: str, default=None):
  field = reader.fields.get(key)
  if field is None:
    if default is None:
      raise CheckpointError(f"GGUF metadata has no {key!r}")
    return default
  return field.contents()


def read_config(reader: gguf.GGUFReader) -> dict:
  """The HF `config.json` dict of the file's architecture."""
  arch = _field(reader, "general.architecture")
  if arch != "llama":
    raise CheckpointError(f"GGUF architecture {arch!r} is not supported (only 'llama')")
  get = lambda key, default=None: _field(reader, f"llama.{key}", default)  # noqa: E731
  num_heads = int(get("attention.head_count"))
  hidden = int(get("embedding_length"))
  head_dim = int(get("rope.dimension_count", hidden // num_heads))
  tokens = _field(reader, "tokenizer.ggml.tokens")
  names = {t.name for t in reader.tensors}
  return {
      "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_act": "silu",
      "vocab_size": int(get("vocab_size", len(tokens))), "hidden_size": hidden,
      "intermediate_size": int(get("feed_forward_length")),
      "num_hidden_layers": int(get("block_count")),
      "num_attention_heads": num_heads,
      "num_key_value_heads": int(get("attention.head_count_kv", num_heads)),
      "head_dim": head_dim,
      "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon")),
      "rope_theta": float(get("rope.freq_base", 10000.0)),
      "max_position_embeddings": int(get("context_length")),
      "tie_word_embeddings": "output.weight" not in names,
      "attention_bias": False, "mlp_bias": False,
      "bos_token_id": int(_field(reader, "tokenizer.ggml.bos_token_id", -1)),
      "eos_token_id": int(_field(reader, "tokenizer.ggml.eos_token_id", -1)),
  }


def _unpermute_rotary(w_OxI: np.ndarray, heads: int) -> np.ndarray:
  """Inverse of llama.cpp's `permute`: per head, rows (pair, half) -> (half, pair)."""
  rows = w_OxI.shape[0]
  return (w_OxI.reshape(heads, rows // heads // 2, 2, *w_OxI.shape[1:])
          .swapaxes(1, 2).reshape(w_OxI.shape))


def read_tensors(reader: gguf.GGUFReader, config: dict) -> dict[str, np.ndarray]:
  """HF tensor name -> float32 array in HF layout ([out, in] for Linear weights)."""
  out = {}
  for t in reader.tensors:
    if t.name in _GLOBAL_NAMES:
      name = _GLOBAL_NAMES[t.name]
    else:
      parts = t.name.split(".")
      if len(parts) != 4 or parts[0] != "blk" or parts[2] not in _LAYER_NAMES:
        if t.name.startswith("rope_freqs"):
          raise CheckpointError(f"GGUF tensor {t.name!r}: rope frequency factors are not "
                                "supported")
        raise CheckpointError(f"unexpected GGUF tensor {t.name!r}")
      name = f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}.{parts[3]}"
    try:
      array = gguf.quants.dequantize(t.data, t.tensor_type)
    except NotImplementedError:
      raise CheckpointError(f"GGUF tensor {t.name!r}: quantization "
                            f"{t.tensor_type.name} cannot be dequantized by this gguf package "
                            "(upgrade the gguf package)") from None
    array = np.asarray(array, np.float32).reshape(tuple(reversed(t.shape.tolist())))
    if t.name.endswith("attn_q.weight"):
      array = _unpermute_rotary(array, config["num_attention_heads"])
    elif t.name.endswith("attn_k.weight"):
      array = _unpermute_rotary(array, config["num_key_value_heads"])
    out[name] = array
  return out


def read_tokenizer(reader: gguf.GGUFReader) -> tokenizers.Tokenizer:
  """The file's byte-level BPE as a `tokenizers.Tokenizer` (vocabulary, merges, specials)."""
  kind = _field(reader, "tokenizer.ggml.model")
  if kind != "gpt2":
    raise CheckpointError(f"GGUF tokenizer model {kind!r} is not supported (only 'gpt2', "
                          "byte-level BPE)")
  tokens = list(_field(reader, "tokenizer.ggml.tokens"))
  merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
  types = list(_field(reader, "tokenizer.ggml.token_type", [1] * len(tokens)))
  tok = tokenizers.Tokenizer(tokenizers.models.BPE(
      vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False,
      byte_fallback=False))
  pre = _field(reader, "tokenizer.ggml.pre", "default")
  # ByteLevel's own split is GPT-2's regex; "smollm" and kin split digits one by one first.
  steps = [tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
  if pre in _DIGITS_FIRST:
    steps.insert(0, tokenizers.pre_tokenizers.Digits(individual_digits=True))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Sequence(steps)
  tok.decoder = tokenizers.decoders.ByteLevel()
  # token_type 3 = control (special) tokens: never split, skipped when decoding.
  tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False)
                          for t, kind in zip(tokens, types) if kind == 3])
  return tok


def convert(gguf_path: str, out_dir: str) -> dict:
  """GGUF file -> HF directory (config.json, model.safetensors in float32, tokenizer.json).
  Returns the config dict."""
  if not os.path.isfile(gguf_path):
    raise FileNotFoundError(f"GGUF file not found: {gguf_path}")
  try:
    reader = gguf.GGUFReader(gguf_path)
  except (ValueError, OSError) as e:
    raise CheckpointError(f"{gguf_path} is not a readable GGUF file: {e}") from None
  config = read_config(reader)
  tensors = read_tensors(reader, config)
  tok = read_tokenizer(reader)
  if tok.get_vocab_size(with_added_tokens=True) > config["vocab_size"]:
    raise CheckpointError(f"GGUF tokenizer has {tok.get_vocab_size()} tokens, the model "
                          f"{config['vocab_size']}")
  os.makedirs(out_dir, exist_ok=True)
  save_file(tensors, os.path.join(out_dir, SINGLE_FILE), metadata={"format": "pt"})
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
  tok.save(os.path.join(out_dir, "tokenizer.json"))
  return config
