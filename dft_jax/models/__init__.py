"""The decoder (Llama / Mistral / Qwen families) and its Hugging Face interop."""

from dft_jax.models.config import ConfigError, ModelConfig, RopeScaling, from_hf_config, to_hf_config
from dft_jax.models.decoder import Decoder, KVCache
from dft_jax.models.hf_io import CheckpointError, from_pretrained, save_pretrained

__all__ = [
    "CheckpointError", "ConfigError", "Decoder", "KVCache", "ModelConfig", "RopeScaling",
    "from_hf_config", "from_pretrained", "save_pretrained", "to_hf_config",
]
