"""Decoding: our KV-cache sampler vs `transformers` generate, and the top-p filter's bisection
vs a full sort."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks.common import Options, alternate, load_average
from dft_jax import sampling
from dft_jax.models import Decoder, ModelConfig, hf_io
from experiments import base as exp_base


def decode_vs_hf(opts: Options) -> dict:
  """Greedy decoding of 64 tokens after 16-token prompts, batch 16, tiny model; no EOS, so
  both decode every token."""
  import torch  # optional (the `bench` / `hf` extras): only the PyTorch side needs it
  torch.set_num_threads(os.cpu_count())
  cfg = ModelConfig(**exp_base.MODELS["tiny"])
  model = Decoder(cfg, rngs=nnx.Rngs(0))
  hf = hf_io.to_transformers(model).eval()
  batch, prompt_len, new = 16, 16, 64
  prompt = np.random.RandomState(0).randint(0, cfg.vocab_size, (batch, prompt_len))
  ids = torch.from_numpy(prompt.astype(np.int64))

  def ours():
    return np.asarray(sampling.generate(model, prompt, max_new_tokens=new).tokens_BxC)

  def theirs():
    with torch.no_grad():
      out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                        min_new_tokens=new, do_sample=False, use_cache=True, pad_token_id=0)
    return out[:, prompt_len:].numpy()

  same = float(np.mean(ours() == theirs()))
  t = alternate({"ours": ours, "hf": theirs}, opts.reps)
  ratio = t["hf"] / t["ours"]
  n = batch * new
  print(f"decode_vs_hf: ours {n / t['ours']:,.0f} tok/s ({t['ours'] * 1e3:.1f} ms) vs HF generate "
        f"{n / t['hf']:,.0f} tok/s ({t['hf'] * 1e3:.1f} ms): {ratio:.2f}x (batch {batch}, prompt "
        f"{prompt_len}, {new} new tokens, greedy; {100 * same:.0f}% same tokens; "
        f"{load_average()})")
  return {"decode_vs_hf": ratio, "decode_tokens_per_s": n / t["ours"],
          "hf_generate_tokens_per_s": n / t["hf"]}


def _top_p_by_sorting(logits_BxV, top_p):
  """The nucleus filter as it was before bisection: a full descending sort per row."""
  sorted_BxV = jnp.sort(logits_BxV, axis=-1)[:, ::-1]
  probs_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
  keep_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV < top_p
  threshold_Bx1 = jnp.min(jnp.where(keep_BxV, sorted_BxV, jnp.inf), axis=-1, keepdims=True)
  return jnp.where(logits_BxV < threshold_Bx1, -jnp.inf, logits_BxV)


def top_p_vs_sort(opts: Options) -> dict:
  """Top-p (0.9, T=0.7) filtering of [64, 49152] logits (one decoding step of the demo's
  SmolLM2 at batch 64): the library's bisection against the full sort, alternated."""
  logits = jax.random.normal(jax.random.key(0), (64, 49152)) * 3.0
  ours = jax.jit(lambda x: sampling.filter_logits(x, 0.7, 0, 0.9))
  sort = jax.jit(lambda x: _top_p_by_sorting(x / 0.7, 0.9))
  same = np.mean(np.isfinite(ours(logits)) == np.isfinite(sort(logits)))
  t = alternate({"ours": lambda: ours(logits).block_until_ready(),
                 "sort": lambda: sort(logits).block_until_ready()}, reps=opts.reps * 5)
  print(f"top-p filter [64, 49152]: bisection {1e3 * t['ours']:.1f} ms, sort "
        f"{1e3 * t['sort']:.1f} ms: {t['sort'] / t['ours']:.2f}x; same nucleus on "
        f"{100 * same:.4f}% of entries")
  return {"top_p_ms": 1e3 * t["ours"], "top_p_sort_ms": 1e3 * t["sort"],
          "top_p_vs_sort": t["sort"] / t["ours"]}
