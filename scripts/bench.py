r"""Benchmarks measured side by side in one run; each prints a ratio.

  python scripts/bench.py --parts data_pipeline [--json]

Parts:
  data_pipeline   grain pipeline tokens/s on the embedded corpus vs the tokens/s a CPU train
                  step of the pretrain_tiny config consumes (> 1: the host is not the bottleneck)
  dft_over_ce     DFT train step time / CE train step time at the default DFT config
                  (experiments/dft.py) on the tiny model; dist_share: the share of that step
                  spent featurizing the samples and computing the divergence
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


def _time_step(config, cfg, tok, batches):
  """Seconds per train step (median of `batches` timed steps after warm-up)."""
  optim = ml_collections.ConfigDict(config.optim.to_dict())
  optim.total_steps = config.total_steps
  tx, lr = optimizer.make(optim)
  mesh = mesh_lib.make_mesh((-1, 1, 1))
  state, shardings = state_lib.create(cfg, tx, mesh)
  step = step_lib.jit_train_step(
      mesh, shardings, graphdef=state_lib.graphdef(cfg),
      loss_fn=losses.make(config.loss, cfg, losses.Context(tok, config.data.corpus)),
      tx=tx, lr_schedule=lr)
  docs = sources.documents(config.data.corpus, "train")
  data_cfg = pipeline.PipelineConfig(seq_len=config.seq_len, batch_size=config.batch_size)
  batch = pipeline.to_global(next(iter(pipeline.make_dataset(docs, tok, data_cfg))),
                             mesh_lib.batch_sharding(mesh))
  times = []
  with jax.set_mesh(mesh):
    for i in range(batches + 3):
      start = time.perf_counter()
      state, metrics = step(state, batch)
      jax.block_until_ready(metrics)
      if i >= 3:
        times.append(time.perf_counter() - start)
  return float(np.median(times))


def dft_over_ce(batches):
  from experiments import dft as dft_exp
  from dft_jax import stats as stats_lib
  from dft_jax.losses import divergences, features
  config = dft_exp.get_config()
  cfg = ModelConfig(**config.model.to_dict())
  workdir = os.path.join("/tmp", "dft_bench")
  os.makedirs(workdir, exist_ok=True)
  tok = loop.tokenizer_for(config, workdir)
  n = max(batches // 4, 8)
  dft_s = _time_step(config, cfg, tok, n)
  config.loss = ml_collections.ConfigDict({"name": "ce"})
  ce_s = _time_step(config, cfg, tok, n)
  # the featurizer + divergence alone, on samples of the DFT step's shape
  loss = dft_exp.dft_loss()
  ref = stats_lib.for_corpus(config.data.corpus, tok, window=loss.gen_len)
  tables = ref.tables(tok, cfg.vocab_size)
  bank = jax.numpy.asarray(ref.standardize(ref.bank_NxF))
  div = divergences.make(loss.divergence, epsilon=loss.epsilon,
                         threshold=loss.sinkhorn_threshold,
                         max_iterations=loss.sinkhorn_iterations)
  tokens = np.random.RandomState(0).randint(0, cfg.vocab_size, (loss.dist_batch, loss.gen_len))
  fn = jax.jit(lambda t: div(features.featurize_batch(t, jax.numpy.ones(t.shape, bool), tables),
                             bank))
  jax.block_until_ready(fn(tokens))
  times = []
  for _ in range(n):
    start = time.perf_counter()
    jax.block_until_ready(fn(tokens))
    times.append(time.perf_counter() - start)
  dist_s = float(np.median(times))
  print(f"dft_over_ce: DFT step {dft_s * 1e3:.1f} ms vs CE step {ce_s * 1e3:.1f} ms: "
        f"{dft_s / ce_s:.2f}x; featurizer + {loss.divergence} {dist_s * 1e3:.1f} ms = "
        f"{100 * dist_s / dft_s:.1f}% of the DFT step (dist_batch {loss.dist_batch}, prompt "
        f"{loss.prompt_len}, continuation {loss.gen_len}, bank {len(ref.bank_NxF)})")
  return {"dft_step_s": dft_s, "ce_step_s": ce_s, "dft_over_ce": dft_s / ce_s,
          "dist_share": dist_s / dft_s}


def _train_step_tokens_per_s(config, cfg, tok, batches):
  return config.batch_size * config.seq_len / _time_step(config, cfg, tok, batches)


def data_pipeline(batches):
  config, cfg, tok = _tiny_setup()
  step_tps = _train_step_tokens_per_s(config, cfg, tok, max(batches // 3, 10))
  data_tps = _pipeline_tokens_per_s(config, tok, batches)
  print(f"data_pipeline: pipeline {data_tps:,.0f} tok/s (1 process, no workers) vs train step "
        f"{step_tps:,.0f} tok/s ({config.model.hidden_size}d x {config.model.num_layers} "
        f"layers, batch {config.batch_size}x{config.seq_len}): ratio {data_tps / step_tps:.1f}x")
  return {"pipeline_tokens_per_s": data_tps, "train_step_tokens_per_s": step_tps,
          "data_pipeline": data_tps / step_tps}


PARTS = {"data_pipeline": data_pipeline, "dft_over_ce": dft_over_ce}


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
