"""ce_vs_hf_*: our CE train step vs the same step of a `transformers` Llama in PyTorch CPU."""

from __future__ import annotations

import os

import numpy as np

from benchmarks.common import Options, alternate, load_average
from benchmarks.train_step import ce_step
from dft_jax.models import ModelConfig, hf_io
from experiments import base as exp_base

# the two configs of ce_vs_hf: (model preset, batch, seq_len)
CE_CONFIGS = {"small": ("tiny", 16, 128), "medium": ("medium", 8, 256)}


def _hf_step(model, tokens):
  """The same model as a `transformers` Llama, trained by the same step in PyTorch: loss,
  backward, clip 1.0, AdamW (decay on matrices only, as ours)."""
  import torch  # optional (the `bench` / `hf` extras): only the PyTorch sides need it
  torch.set_num_threads(os.cpu_count())  # = XLA's CPU thread pool
  hf = hf_io.to_transformers(model).train()
  params = list(hf.parameters())
  opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
                           {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
                          lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
  ids = torch.from_numpy(tokens.astype(np.int64))

  def run():
    loss = hf(input_ids=ids, labels=ids).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss)

  return run


def _ce_vs_hf(name: str, reps: int) -> dict:
  """tokens/s of both steps on one config of CE_CONFIGS, alternated in blocks of 3 steps."""
  preset, batch_size, seq_len = CE_CONFIGS[name]
  cfg = ModelConfig(**exp_base.MODELS[preset])
  ours, model, tokens = ce_step(cfg, batch_size, seq_len)
  theirs = _hf_step(model, tokens)
  loss_ours, loss_theirs = ours(), theirs()  # first steps: same weights, same batch
  t = alternate({"ours": ours, "hf": theirs}, reps, warmup=1, block=3)
  tokens_n = batch_size * seq_len
  ratio = t["hf"] / t["ours"]
  print(f"ce_vs_hf_{name}: ours {tokens_n / t['ours']:,.0f} tok/s ({t['ours'] * 1e3:.0f} ms) vs "
        f"HF PyTorch {tokens_n / t['hf']:,.0f} tok/s ({t['hf'] * 1e3:.0f} ms): {ratio:.2f}x "
        f"(d={cfg.hidden_size}, {cfg.num_layers} layers, batch {batch_size}x{seq_len}; first-step "
        f"loss {loss_ours:.4f} vs {loss_theirs:.4f}; {load_average()})")
  return {f"ce_vs_hf_{name}": ratio, f"ce_{name}_step_s": t["ours"],
          f"hf_{name}_step_s": t["hf"]}


def ce_vs_hf_small(opts: Options) -> dict:
  return _ce_vs_hf("small", opts.reps)


def ce_vs_hf_medium(opts: Options) -> dict:
  return _ce_vs_hf("medium", opts.reps)
