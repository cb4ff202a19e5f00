"""Rotary position embeddings (the HF `rotate_half` layout), with Llama-3 frequency scaling."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from dft_jax.models.config import ModelConfig


def inverse_frequencies(cfg: ModelConfig) -> np.ndarray:
  """[head_dim // 2] float32 inverse frequencies, scaled as HF `rope_type: llama3` does."""
  dim = cfg.head_dim
  inv_freq = 1.0 / (cfg.rope_theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
  s = cfg.rope_scaling
  if s is not None:
    low_freq_wavelen = s.original_max_position_embeddings / s.low_freq_factor
    high_freq_wavelen = s.original_max_position_embeddings / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq)
    smooth = ((s.original_max_position_embeddings / wavelen - s.low_freq_factor)
              / (s.high_freq_factor - s.low_freq_factor))
    smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
    is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    inv_freq = np.where(is_medium, smoothed, scaled)
  return inv_freq.astype(np.float32)


def cos_sin(positions_BxT: jax.Array, cfg: ModelConfig, dtype) -> tuple[jax.Array, jax.Array]:
  """cos, sin tables [B, T, head_dim], duplicated over the two halves as HF does."""
  inv_freq = jnp.asarray(inverse_frequencies(cfg))
  angles_BxTxH2 = positions_BxT.astype(jnp.float32)[..., None] * inv_freq[None, None, :]
  angles_BxTxH = jnp.concatenate([angles_BxTxH2, angles_BxTxH2], axis=-1)
  return jnp.cos(angles_BxTxH).astype(dtype), jnp.sin(angles_BxTxH).astype(dtype)


def apply(x_BxTxNxH: jax.Array, cos_BxTxH: jax.Array, sin_BxTxH: jax.Array) -> jax.Array:
  half = x_BxTxNxH.shape[-1] // 2
  x1, x2 = x_BxTxNxH[..., :half], x_BxTxNxH[..., half:]
  rotated = jnp.concatenate([-x2, x1], axis=-1)
  return x_BxTxNxH * cos_BxTxH[:, :, None, :] + rotated * sin_BxTxH[:, :, None, :]
