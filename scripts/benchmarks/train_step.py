"""Train steps the benchmarks time: built in one place (build_train_step), then timed on a
real pipeline batch (step_runner, time_step) or on a fixed random batch (ce_step)."""

from __future__ import annotations

import os
import time
from typing import NamedTuple

import jax
import ml_collections
import numpy as np

from dft_jax import losses
from dft_jax.data import pipeline, sources
from dft_jax.train import loop, mesh as mesh_lib, setup as setup_lib
from dft_jax.train import state as state_lib

WORKDIR = os.path.join("/tmp", "dft_bench")  # where the benchmark's tokenizer is kept


class Built(NamedTuple):
  """What a timed train step is made of."""
  mesh: jax.sharding.Mesh
  state: state_lib.TrainState
  step: object          # (state, batch) -> (state, metrics), jitted, the state donated
  graphdef: object      # the model's nnx graphdef (model_of needs it)


def build_train_step(cfg, optim, loss_config, tokenizer=None, corpus: str = "",
                     seed: int = 0) -> Built:
  """The mesh (all devices on the data axis), the sharded state, the loss and the jitted train
  step of one model config, from the builder the training loop uses (train/setup.py)."""
  setup = setup_lib.build(cfg, optim, with_anchor=losses.needs_anchor(loss_config))
  state = setup.init_state(seed)
  step = setup.train_step(setup.loss_fn(loss_config, state, tokenizer, corpus))
  return Built(setup.mesh, state, step, setup.graphdef)


def tokenizer(config):
  """The tokenizer of an experiments config (trained once, kept under WORKDIR)."""
  os.makedirs(WORKDIR, exist_ok=True)
  return loop.tokenizer_for(config, WORKDIR)


def step_runner(config, cfg, tok):
  """run(): one train step of an experiments config on one batch of its corpus, the state
  donated and kept between calls (what time_step times, and what parts that alternate
  several steps call)."""
  optim = ml_collections.ConfigDict(config.optim.to_dict())
  optim.total_steps = config.total_steps
  built = build_train_step(cfg, optim, config.loss, tok, config.data.corpus)
  docs = sources.documents(config.data.corpus, "train")
  data_cfg = pipeline.PipelineConfig(seq_len=config.seq_len, batch_size=config.batch_size)
  batch = pipeline.to_global(next(iter(pipeline.make_dataset(docs, tok, data_cfg))),
                             mesh_lib.batch_sharding(built.mesh))
  box = {"state": built.state}

  def run():
    with jax.set_mesh(built.mesh):
      box["state"], metrics = built.step(box["state"], batch)
      jax.block_until_ready(metrics)

  return run


def time_step(config, cfg, tok, batches: int) -> float:
  """Seconds per train step of an experiments config (median of `batches` timed steps after
  3 warm-up steps) on one batch of its corpus."""
  run, times = step_runner(config, cfg, tok), []
  for i in range(batches + 3):
    start = time.perf_counter()
    run()
    if i >= 3:
      times.append(time.perf_counter() - start)
  return float(np.median(times))


def ce_step(cfg, batch_size: int, seq_len: int, seed: int = 0):
  """(run_one_step, model, tokens_BxT): our jitted CE train step (constant lr 1e-3, AdamW
  b=(0.9, 0.95), weight decay 0.1 on matrices, clip 1.0), state donated, on a fixed random
  batch of whole rows; `model` is a host copy of the starting weights."""
  optim = ml_collections.ConfigDict(dict(
      lr=1e-3, warmup_steps=0, decay="constant", min_lr_ratio=1.0, b1=0.9, b2=0.95, eps=1e-8,
      weight_decay=0.1, clip_norm=1.0, total_steps=1))
  built = build_train_step(cfg, optim, ml_collections.ConfigDict({"name": "ce"}), seed=seed)
  model = state_lib.model_of(jax.tree.map(np.asarray, built.state), built.graphdef)
  tokens = np.random.RandomState(seed).randint(0, cfg.vocab_size, (batch_size, seq_len))
  batch = {"tokens": tokens.astype(np.int32),
           "positions": np.broadcast_to(np.arange(seq_len, dtype=np.int32), tokens.shape),
           "segment_ids": np.ones(tokens.shape, np.int32),
           "loss_mask": np.ones(tokens.shape, np.int32)}
  batch = pipeline.to_global(batch, mesh_lib.batch_sharding(built.mesh))
  box = {"state": built.state}

  def run():
    with jax.set_mesh(built.mesh):
      box["state"], metrics = built.step(box["state"], batch)
    return float(jax.block_until_ready(metrics)["loss"])

  return run, model, tokens
