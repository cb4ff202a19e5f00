"""Hugging Face checkpoints in and out: `config.json` + (sharded) `*.safetensors`, local only.

No pickle, no remote code. The tensor map is written once (`_tensor_map`) and used both ways:
each entry is (HF tensor name, path in the NNX state, to_hf, from_hf) with the two layout
transforms between HF's `[out, in]` Linear weights and our `[in, heads, head_dim]` kernels.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from dft_jax.models import config as config_lib
from dft_jax.models.config import ModelConfig, as_dtype
from dft_jax.models.decoder import Decoder, abstract_model, merge_lora

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


class CheckpointError(ValueError):
  """A checkpoint that does not match its config; the message names the tensor."""


Transform = Callable[[np.ndarray], np.ndarray]
_same: Transform = lambda x: x


def _tensor_map(cfg: ModelConfig) -> Iterator[tuple[str, tuple, Transform, Transform]]:
  """(hf_name, state_path, ours->hf, hf->ours) for every tensor of the model."""
  d, n, k, h = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
  t = lambda x: x.T

  def heads_in(count):  # HF [count*h, d] <-> ours [d, count, h]
    return (lambda x: x.reshape(d, count * h).T,
            lambda x: x.T.reshape(d, count, h))

  def bias_heads(count):  # HF [count*h] <-> ours [count, h]
    return (lambda x: x.reshape(count * h), lambda x: x.reshape(count, h))

  o_to_hf = lambda x: x.reshape(n * h, d).T      # ours [n, h, d] -> HF [d, n*h]
  o_from_hf = lambda x: x.T.reshape(n, h, d)

  yield "model.embed_tokens.weight", ("embed_VxD",), _same, _same
  for i in range(cfg.num_layers):
    hf, ours = f"model.layers.{i}.", ("layers", i)
    yield hf + "input_layernorm.weight", ours + ("attn_norm", "scale"), _same, _same
    yield hf + "post_attention_layernorm.weight", ours + ("mlp_norm", "scale"), _same, _same
    att = ours + ("attn",)
    for name, count in (("q", n), ("k", k), ("v", k)):
      suffix = "NxH" if name == "q" else "KxH"
      yield (hf + f"self_attn.{name}_proj.weight", att + (f"{name}_Dx{suffix}",),
             *heads_in(count))
      if cfg.qkv_bias:
        yield (hf + f"self_attn.{name}_proj.bias", att + (f"{name}_bias_{suffix}",),
               *bias_heads(count))
    yield hf + "self_attn.o_proj.weight", att + ("o_NxHxD",), o_to_hf, o_from_hf
    if cfg.o_bias:
      yield hf + "self_attn.o_proj.bias", att + ("o_bias_D",), _same, _same
    if cfg.qk_norm:
      yield hf + "self_attn.q_norm.weight", att + ("q_norm", "scale"), _same, _same
      yield hf + "self_attn.k_norm.weight", att + ("k_norm", "scale"), _same, _same
    mlp = ours + ("mlp",)
    yield hf + "mlp.gate_proj.weight", mlp + ("gate_DxF",), t, t
    yield hf + "mlp.up_proj.weight", mlp + ("up_DxF",), t, t
    yield hf + "mlp.down_proj.weight", mlp + ("down_FxD",), t, t
    if cfg.mlp_bias:
      for proj, leaf in (("gate", "gate_bias_F"), ("up", "up_bias_F"), ("down", "down_bias_D")):
        yield hf + f"mlp.{proj}_proj.bias", mlp + (leaf,), _same, _same
  yield "model.norm.weight", ("final_norm", "scale"), _same, _same
  if not cfg.tie_word_embeddings:
    yield "lm_head.weight", ("lm_head_DxV",), t, t


# --- reading -------------------------------------------------------------------------------


def _open(file: str):
  """safe_open, with a truncated, corrupt or unreadable file as one CheckpointError naming it
  (safetensors raises its own error type, which callers' error handlers would not catch)."""
  try:
    return safe_open(file, framework="numpy")
  except SafetensorError as e:
    reason = str(e).removeprefix("Error while deserializing header: ")
    raise CheckpointError(f"{file} is not a readable safetensors file (truncated or corrupt: "
                          f"{reason}); re-download or re-export it") from None
  except OSError as e:
    raise CheckpointError(f"cannot read {file}: {e}") from None


def weight_files(path: str) -> dict[str, str]:
  """HF tensor name -> safetensors file that holds it."""
  index = os.path.join(path, INDEX_FILE)
  if os.path.isfile(index):
    with open(index) as f:
      weight_map = json.load(f)["weight_map"]
    missing = sorted({f for f in weight_map.values()
                      if not os.path.isfile(os.path.join(path, f))})
    if missing:
      raise CheckpointError(f"{INDEX_FILE} names missing file(s): {', '.join(missing)}")
    return {name: os.path.join(path, f) for name, f in weight_map.items()}
  files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
  if not files:
    if any(f.endswith((".bin", ".pt", ".pth")) for f in os.listdir(path)):
      raise CheckpointError(f"{path} holds only pickle weights (*.bin); convert them to "
                            "safetensors first (pickle is never loaded)")
    raise CheckpointError(f"no *.safetensors in {path}")
  out = {}
  for file in files:
    with _open(os.path.join(path, file)) as f:
      for name in f.keys():
        out[name] = os.path.join(path, file)
  return out


def from_pretrained(path: str | os.PathLike, dtype=None, param_dtype=None, *,
                    return_config: bool = False, **overrides):
  """Loads an HF checkpoint directory (llama, mistral, qwen2, qwen3) as a Decoder.

  dtype: compute dtype (default float32); param_dtype: storage dtype (default: dtype).
  overrides: other ModelConfig numerics, e.g. remat_policy="full".
  Returns the model, or (model, config) when return_config is set.
  """
  path = os.fspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"HF checkpoint directory not found: {path}")
  dtype = as_dtype(dtype or jnp.float32)
  param_dtype = as_dtype(param_dtype or dtype)
  cfg = config_lib.load_hf_config(path, dtype=dtype.name, param_dtype=param_dtype.name,
                                  **overrides)
  files = weight_files(path)
  graphdef, abstract_state = nnx.split(abstract_model(cfg))
  flat = dict(nnx.to_flat_state(abstract_state))
  expected = {hf_name for hf_name, *_ in _tensor_map(cfg)}
  unexpected = sorted(name for name in files if name not in expected
                      and not (cfg.tie_word_embeddings and name == "lm_head.weight")
                      and not name.endswith("rotary_emb.inv_freq"))
  if unexpected:
    raise CheckpointError(f"unexpected tensor {unexpected[0]!r} in {path} "
                          f"({len(unexpected)} in all) for model_type {cfg.model_type!r}")
  handles = {}
  try:
    for hf_name, state_path, _, from_hf in _tensor_map(cfg):
      if hf_name not in files:
        raise CheckpointError(f"missing tensor {hf_name!r} in {path}")
      file = files[hf_name]
      if file not in handles:
        handles[file] = _open(file).__enter__()
      try:
        array = from_hf(handles[file].get_tensor(hf_name))
      except SafetensorError as e:  # e.g. an index that names the wrong shard
        raise CheckpointError(f"tensor {hf_name!r} cannot be read from {file}: {e}") from None
      variable = flat[state_path]
      if array.shape != variable.shape:
        raise CheckpointError(
            f"tensor {hf_name!r} has shape {tuple(handles[file].get_slice(hf_name).get_shape())}"
            f", config.json implies {tuple(to_hf_shape(variable.shape, state_path, cfg))}")
      variable.set_value(jnp.asarray(array, dtype=param_dtype))
  finally:
    for h in handles.values():
      h.__exit__(None, None, None)
  model = nnx.merge(graphdef, nnx.from_flat_state(flat))
  return (model, cfg) if return_config else model


def to_hf_shape(shape, state_path, cfg: ModelConfig):
  for _, path, to_hf, _ in _tensor_map(cfg):
    if path == state_path:
      return to_hf(np.empty(shape, np.float32)).shape
  return shape


# --- writing -------------------------------------------------------------------------------


def save_pretrained(model: Decoder, path: str | os.PathLike, *, dtype=None,
                    max_shard_bytes: int = 5 * 1024**3, tokenizer_file: str | None = None):
  """Writes `config.json` + `model.safetensors` (or shards with an index) loadable by
  `transformers.AutoModelForCausalLM.from_pretrained(path)`."""
  path = os.fspath(path)
  os.makedirs(path, exist_ok=True)
  model = merge_lora(model)
  cfg = model.cfg
  dtype = as_dtype(dtype or cfg.param_dtype)
  flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
  tensors = {}
  for hf_name, state_path, to_hf, _ in _tensor_map(cfg):
    array = np.asarray(jax.device_get(flat[state_path][...].astype(dtype)))
    tensors[hf_name] = np.ascontiguousarray(to_hf(array))
  shards = _split_into_shards(tensors, max_shard_bytes)
  for stale in os.listdir(path):
    if re.fullmatch(r"model(-\d+-of-\d+)?\.safetensors(\.index\.json)?", stale):
      os.remove(os.path.join(path, stale))
  if len(shards) == 1:
    save_file(shards[0], os.path.join(path, SINGLE_FILE), metadata={"format": "pt"})
  else:
    weight_map = {}
    for i, shard in enumerate(shards, 1):
      name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
      save_file(shard, os.path.join(path, name), metadata={"format": "pt"})
      weight_map.update({tensor: name for tensor in shard})
    total = sum(a.nbytes for a in tensors.values())
    with open(os.path.join(path, INDEX_FILE), "w") as f:
      json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
  hf_config = config_lib.to_hf_config(cfg)
  hf_config["dtype"] = dtype.name
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(hf_config, f, indent=2)
  if tokenizer_file:
    with open(tokenizer_file, "rb") as src, open(os.path.join(path, "tokenizer.json"), "wb") as dst:
      dst.write(src.read())


def _split_into_shards(tensors: dict[str, np.ndarray], max_bytes: int) -> list[dict]:
  shards, current, size = [], {}, 0
  for name, array in tensors.items():
    if current and size + array.nbytes > max_bytes:
      shards.append(current)
      current, size = {}, 0
    current[name] = array
    size += array.nbytes
  shards.append(current)
  return shards


def to_transformers(model: Decoder, dtype="float32"):
  """The same model as a `transformers` PyTorch module with identical weights (needs the `hf`
  extra): written with `save_pretrained` to a temporary directory and read back, so the tensor
  map is the one exports use. For side-by-side comparisons (benchmarks, parity checks)."""
  import torch  # optional: the `hf` / `test` extras
  import transformers

  with tempfile.TemporaryDirectory() as path:
    save_pretrained(model, path, dtype=dtype)
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
