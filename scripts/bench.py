r"""Benchmarks measured side by side in one run; each prints a ratio.

  python scripts/bench.py --parts data_pipeline [--json]

Parts:
  data_pipeline   grain pipeline tokens/s on the embedded corpus vs the tokens/s a CPU train
                  step of the pretrain_tiny config consumes (> 1: the host is not the bottleneck)
"""

import json
import os
import sys
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dft_jax import losses  # noqa: E402
from dft_jax.data import pipeline, sources  # noqa: E402
from dft_jax.data import tokenizer as tokenizer_lib  # noqa: E402
from dft_jax.models import ModelConfig  # noqa: E402
from dft_jax.train import loop, mesh as mesh_lib, optimizer  # noqa: E402
from dft_jax.train import state as state_lib, step as step_lib  # noqa: E402
from experiments import pretrain_tiny  # noqa: E402

flags.DEFINE_list("parts", ["data_pipeline"], "Benchmark parts to run.")
flags.DEFINE_bool("json", False, "Print one JSON object as the last line.")
flags.DEFINE_integer("batches", 60, "Batches timed per measurement.")
FLAGS = flags.FLAGS


def _tiny_setup():
  config = pretrain_tiny.get_config()
  cfg = ModelConfig(**{k: v for k, v in config.model.to_dict().items()})
  workdir = os.path.join("/tmp", "dft_bench")
  os.makedirs(workdir, exist_ok=True)
  tok = loop.tokenizer_for(config, workdir)
  return config, cfg, tok


def _pipeline_tokens_per_s(config, tok, batches, worker_count=0):
  docs = sources.documents(config.data.corpus, "train")
  data_cfg = pipeline.PipelineConfig(seq_len=config.seq_len, batch_size=config.batch_size,
                                     worker_count=worker_count)
  it = iter(pipeline.make_dataset(docs, tok, data_cfg))
  next(it)
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * config.batch_size * config.seq_len / (time.perf_counter() - start)


def _train_step_tokens_per_s(config, cfg, tok, batches):
  optim = ml_collections.ConfigDict(config.optim.to_dict())
  optim.total_steps = config.total_steps
  tx, lr = optimizer.make(optim)
  mesh = mesh_lib.make_mesh((-1, 1, 1))
  state, shardings = state_lib.create(cfg, tx, mesh)
  step = step_lib.jit_train_step(mesh, shardings, graphdef=state_lib.graphdef(cfg),
                                 loss_fn=losses.make(config.loss, cfg, losses.Context(tok, config.data.corpus)),
                                 tx=tx, lr_schedule=lr)
  docs = sources.documents(config.data.corpus, "train")
  data_cfg = pipeline.PipelineConfig(seq_len=config.seq_len, batch_size=config.batch_size)
  batch = pipeline.to_global(next(iter(pipeline.make_dataset(docs, tok, data_cfg))),
                             mesh_lib.batch_sharding(mesh))
  with jax.set_mesh(mesh):
    for _ in range(3):
      state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(batches):
      state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
  return batches * config.batch_size * config.seq_len / (time.perf_counter() - start)


def data_pipeline(batches):
  config, cfg, tok = _tiny_setup()
  step_tps = _train_step_tokens_per_s(config, cfg, tok, max(batches // 3, 10))
  data_tps = _pipeline_tokens_per_s(config, tok, batches)
  print(f"data_pipeline: pipeline {data_tps:,.0f} tok/s (1 process, no workers) vs train step "
        f"{step_tps:,.0f} tok/s ({config.model.hidden_size}d x {config.model.num_layers} "
        f"layers, batch {config.batch_size}x{config.seq_len}): ratio {data_tps / step_tps:.1f}x")
  return {"pipeline_tokens_per_s": data_tps, "train_step_tokens_per_s": step_tps,
          "data_pipeline": data_tps / step_tps}


PARTS = {"data_pipeline": data_pipeline}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  unknown = [p for p in FLAGS.parts if p not in PARTS]
  if unknown:
    sys.exit(f"bench: error: unknown part(s) {unknown}; available: {sorted(PARTS)}")
  results = {"cpu_cores": os.cpu_count(), "devices": str(jax.devices()[0].device_kind)}
  for part in FLAGS.parts:
    results.update(PARTS[part](FLAGS.batches))
  if FLAGS.json:
    print(json.dumps(results))


if __name__ == "__main__":
  app.run(main)
