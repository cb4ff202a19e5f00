"""The decoder against Hugging Face `transformers` (PyTorch CPU), for every family and switch."""

import json
import os

import hf_reference as ref
import jax.numpy as jnp
import numpy as np
import pytest
import transformers

from dft_jax import sampling
from dft_jax.models import from_pretrained, save_pretrained

VARIANTS = sorted(ref.VARIANTS)
SEQ = 24  # longer than every sliding window in the reference variants


def _ids(batch=2, length=SEQ, seed=0):
  return np.random.RandomState(seed).randint(0, ref.COMMON["vocab_size"], size=(batch, length))


@pytest.mark.parametrize("name", VARIANTS)
def test_logits_match_transformers(name, hf_checkpoint):
  path, hf_model = hf_checkpoint(name)
  model = from_pretrained(path, dtype=jnp.float32)
  ids = _ids()
  ours = np.asarray(model(jnp.asarray(ids)))
  theirs = ref.logits(hf_model, ids)
  assert ours.shape == theirs.shape == (2, SEQ, ref.COMMON["vocab_size"])
  assert np.abs(theirs).max() > 1.0  # logits of a scale where a wrong weight would show
  np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", ["llama3_rope_scaling", "mistral_window"])
def test_long_sequence_logits_match_transformers(name, hf_checkpoint):
  """150 tokens: past several blocks of the blockwise causal attention (blocks of 37 query rows),
  with and without a sliding window."""
  path, hf_model = hf_checkpoint(name)
  model = from_pretrained(path, dtype=jnp.float32)
  ids = _ids(length=150, seed=3)
  np.testing.assert_allclose(np.asarray(model(jnp.asarray(ids))), ref.logits(hf_model, ids),
                             rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", VARIANTS)
def test_greedy_tokens_match_transformers(name, hf_checkpoint):
  path, hf_model = hf_checkpoint(name)
  model = from_pretrained(path)
  prompt = _ids(batch=2, length=6, seed=1)
  ours = sampling.generate(model, prompt, max_new_tokens=16, eos_id=model.cfg.eos_token_id,
                          pad_id=0).tokens_BxC
  np.testing.assert_array_equal(np.asarray(ours), ref.greedy(hf_model, prompt, 16, pad_id=0))


@pytest.mark.parametrize("name,field", [("mistral_window", "sliding_window"),
                                        ("qwen2_sliding", "layer_types"),
                                        ("llama3_rope_scaling", "rope_parameters")])
def test_switch_under_test_changes_the_logits(name, field, hf_checkpoint, tmp_path):
  """Guards the parity tests above: each switch really is exercised by the sequence used."""
  path, _ = hf_checkpoint(name)
  for file in os.listdir(path):
    os.symlink(os.path.join(path, file), tmp_path / file)
  with open(os.path.join(path, "config.json")) as f:
    config = json.load(f)
  switched_off = {"sliding_window": lambda: None,
                  "layer_types": lambda: ["full_attention"] * len(config["layer_types"]),
                  "rope_parameters": lambda: {"rope_theta": 500000.0, "rope_type": "default"}}
  config[field] = switched_off[field]()
  os.remove(tmp_path / "config.json")
  with open(tmp_path / "config.json", "w") as f:
    json.dump(config, f)
  ids = jnp.asarray(_ids())
  with_switch = np.asarray(from_pretrained(path)(ids))
  without = np.asarray(from_pretrained(tmp_path)(ids))
  assert np.abs(with_switch - without).max() > 1e-2


@pytest.mark.parametrize("name", VARIANTS)
def test_round_trip_through_dft_jax_gives_identical_transformers_logits(name, hf_checkpoint,
                                                                        tmp_path):
  path, hf_model = hf_checkpoint(name)
  save_pretrained(from_pretrained(path), tmp_path)
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
  assert type(reloaded) is type(hf_model)
  ids = _ids()
  np.testing.assert_array_equal(ref.logits(reloaded, ids), ref.logits(hf_model, ids))


def test_sharded_export_is_read_by_transformers_and_by_us(hf_checkpoint, tmp_path):
  path, hf_model = hf_checkpoint("qwen3")
  save_pretrained(from_pretrained(path), tmp_path, max_shard_bytes=40_000)
  shards = sorted(f for f in os.listdir(tmp_path) if f.endswith(".safetensors"))
  assert len(shards) > 2 and os.path.isfile(tmp_path / "model.safetensors.index.json")
  ids = _ids()
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
  np.testing.assert_array_equal(ref.logits(reloaded, ids), ref.logits(hf_model, ids))
  ours = np.asarray(from_pretrained(tmp_path)(jnp.asarray(ids)))
  np.testing.assert_allclose(ours, ref.logits(hf_model, ids), atol=1e-4, rtol=0)


def test_bf16_export_loads_in_transformers(hf_checkpoint, tmp_path):
  path, hf_model = hf_checkpoint("llama2")
  save_pretrained(from_pretrained(path), tmp_path, dtype=jnp.bfloat16)
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype="auto")
  assert next(reloaded.parameters()).dtype == ref.torch.bfloat16
  ids = _ids()
  diff = np.abs(ref.logits(reloaded.float().eval(), ids) - ref.logits(hf_model, ids)).max()
  assert 0 < diff < 0.5  # bf16 rounding of the weights, nothing more
