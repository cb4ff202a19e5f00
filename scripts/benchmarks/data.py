"""data_pipeline: does the grain pipeline feed a CPU train step faster than it consumes?"""

from __future__ import annotations

import time

from benchmarks.common import Options
from benchmarks.train_step import time_step, tokenizer
from dft_jax.data import pipeline, sources
from dft_jax.train import loop
from experiments import pretrain_tiny


def _pipeline_tokens_per_s(config, tok, batches: int, worker_count: int = 0) -> float:
  """Tokens/s of the pipeline on the config's corpus (first batch untimed)."""
  docs = sources.documents(config.data.corpus, "train")
  data_cfg = pipeline.PipelineConfig(seq_len=config.seq_len, batch_size=config.batch_size,
                                     worker_count=worker_count)
  it = iter(pipeline.make_dataset(docs, tok, data_cfg))
  next(it)
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * config.batch_size * config.seq_len / (time.perf_counter() - start)


def data_pipeline(opts: Options) -> dict:
  """Pipeline tokens/s on the embedded corpus vs the tokens/s a train step of the
  pretrain_tiny config consumes (> 1: the host is not the bottleneck)."""
  config = pretrain_tiny.get_config()
  cfg = loop.model_config(config)
  tok = tokenizer(config)
  step_s = time_step(config, cfg, tok, max(opts.batches // 3, 10))
  step_tps = config.batch_size * config.seq_len / step_s
  data_tps = _pipeline_tokens_per_s(config, tok, opts.batches)
  print(f"data_pipeline: pipeline {data_tps:,.0f} tok/s (1 process, no workers) vs train step "
        f"{step_tps:,.0f} tok/s ({config.model.hidden_size}d x {config.model.num_layers} "
        f"layers, batch {config.batch_size}x{config.seq_len}): ratio {data_tps / step_tps:.1f}x")
  return {"pipeline_tokens_per_s": data_tps, "train_step_tokens_per_s": step_tps,
          "data_pipeline": data_tps / step_tps}
