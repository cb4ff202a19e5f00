"""Architecture presets (published configs, no weights): their parameter counts, their HF
config round trip, and `model=<preset>` in every experiment config."""

import importlib
import os
import sys

import pytest

from dft_jax.models import presets
from dft_jax.models.config import from_hf_config, to_hf_config
from dft_jax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# parameter counts the model cards state (embeddings included)
PUBLISHED = {"llama3.2-1b": 1.24e9, "llama3.1-8b": 8.03e9, "qwen3-0.6b": 0.6e9,
             "qwen3-8b": 8.2e9, "mistral-7b": 7.24e9}


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_preset_sizes_and_hf_round_trip(name):
  cfg = presets.config(name)
  assert cfg.num_params == pytest.approx(PUBLISHED[name], rel=0.015), cfg.num_params
  assert from_hf_config(to_hf_config(cfg)) == cfg
  transformers = pytest.importorskip("transformers")
  hf = transformers.AutoConfig.for_model(**to_hf_config(cfg))
  assert (hf.num_hidden_layers, hf.num_key_value_heads, hf.vocab_size) == \
      (cfg.num_layers, cfg.num_kv_heads, cfg.vocab_size)


@pytest.mark.parametrize("experiment", ["sft", "dft", "baselines", "pretrain_tiny"])
def test_every_experiment_config_takes_a_preset(experiment):
  module = importlib.import_module(f"experiments.{experiment}")
  config = module.get_config("model=llama3.1-8b")
  cfg = loop.model_config(config, platform="tpu")
  assert cfg == presets.config("llama3.1-8b", dtype="bfloat16", remat_policy="full",
                               attention_impl="splash", layer_loop="scan")
