"""dft_over_ce: the DFT train step's cost over a CE step, and the featurizer + divergence's
share of it."""

from __future__ import annotations

import time

import jax
import ml_collections
import numpy as np

from benchmarks.common import Options, alternate
from benchmarks.train_step import step_runner, tokenizer
from dft_jax.train import loop
from dft_jax.losses import dft as dft_objective, divergences, features, reference
from experiments import dft as dft_exp


def _distance_seconds(loss, ref, tables, vocab_size: int, reps: int, div) -> float:
  """Median seconds of the featurizer + divergence `div` alone (jit), on random samples of the
  DFT step's shape against the standardized reference bank."""
  bank = jax.numpy.asarray(ref.standardize(ref.bank_MxF))
  tokens = np.random.RandomState(0).randint(0, vocab_size, (loss.dist_batch, loss.gen_len))
  fn = jax.jit(lambda t: div(features.featurize_batch(t, jax.numpy.ones(t.shape, bool), tables),
                             bank))
  jax.block_until_ready(fn(tokens))
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(fn(tokens))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def flop_floor(cfg, config, loss) -> float:
  """FLOPs of a DFT step over a CE step at the same config: CE forward/backward over the human
  batch, plus the decode of dist_batch continuations (a forward per token, a third of a
  training token's FLOPs), plus the teacher-forced forward/backward over prompt + continuation
  rows (train.loop.flops_per_token for both lengths)."""
  ce = loop.flops_per_token(cfg, config.seq_len) * config.batch_size * config.seq_len
  rows = loss.prompt_len + loss.gen_len
  samples = loop.flops_per_token(cfg, rows) * loss.dist_batch * rows
  return (ce + samples / 3 + samples) / ce


def dft_over_ce(opts: Options) -> dict:
  """DFT step time / CE step time at the default DFT config (experiments/dft.py), tiny model,
  the DFT, static-bank DFT and CE steps alternated; dist_share: the share of the DFT step
  spent featurizing and computing the divergence."""
  config = dft_exp.get_config()
  cfg = loop.model_config(config)
  tok = tokenizer(config)
  n = max(opts.batches // 4, 8)
  runs = {"dft": step_runner(config, cfg, tok)}
  config.loss = dft_exp.dft_loss(sinkhorn_solver="static_bank")
  runs["static"] = step_runner(config, cfg, tok)
  config.loss = ml_collections.ConfigDict({"name": "ce"})
  runs["ce"] = step_runner(config, cfg, tok)
  # round-robin, so that load drifting during the part moves the three steps alike
  t = alternate(runs, n, warmup=3)
  dft_s, static_s, ce_s = t["dft"], t["static"], t["ce"]
  loss = dft_exp.dft_loss()
  ref = reference.stats_for_corpus(config.data.corpus, tok, window=loss.gen_len)
  tables = ref.tables(tok, cfg.vocab_size)
  dist_s = _distance_seconds(loss, ref, tables, cfg.vocab_size, n,
                             dft_objective.make_divergence(loss))
  # the three ott log-domain problems, OT(bank, bank) included (what the loss solved before)
  three_s = _distance_seconds(loss, ref, tables, cfg.vocab_size, n, divergences.make(
      loss.divergence, epsilon=loss.epsilon, threshold=loss.sinkhorn_threshold,
      max_iterations=loss.sinkhorn_iterations))
  floor = flop_floor(cfg, config, loss)
  print(f"dft_over_ce: DFT step {dft_s * 1e3:.1f} ms vs CE step {ce_s * 1e3:.1f} ms: "
        f"{dft_s / ce_s:.2f}x (FLOP floor {floor:.2f}x: {dft_s / ce_s / floor:.2f} x the "
        f"floor); featurizer + {loss.divergence} {dist_s * 1e3:.1f} ms = "
        f"{100 * dist_s / dft_s:.1f}% of the DFT step (all three Sinkhorn problems in the log "
        f"domain: {three_s * 1e3:.1f} ms; dist_batch {loss.dist_batch}, prompt "
        f"{loss.prompt_len}, continuation {loss.gen_len}, bank {len(ref.bank_MxF)}); with "
        f"loss.sinkhorn_solver=static_bank {static_s * 1e3:.1f} ms = {static_s / ce_s:.2f}x")
  return {"dft_step_s": dft_s, "ce_step_s": ce_s, "dft_over_ce": dft_s / ce_s,
          "dft_flop_floor": floor, "dft_over_floor": dft_s / ce_s / floor,
          "dft_static_bank_over_ce": static_s / ce_s,
          "dist_share": dist_s / dft_s, "dist_s": dist_s, "dist_three_log_problems_s": three_s}


def bank_fold_compile(opts: Options) -> dict:
  """Build + compile + first-step seconds, and step seconds, of the default DFT train step
  (experiments/dft.py, tiny model, its 1,024-row bank) with the bank closed over as a constant
  (XLA folds its self-cost while compiling) against the bank entering through dft.traced (the
  loss's way): the compile time saved, and what computing the bank's terms every step costs."""
  config = dft_exp.get_config()
  cfg = loop.model_config(config)
  tok = tokenizer(config)
  keep = dft_objective.traced
  first, step = {}, {}
  try:
    for arm, traced in (("constant", lambda bank: bank), ("traced", keep)):
      dft_objective.traced = traced
      start = time.perf_counter()
      run = step_runner(config, cfg, tok)
      run()
      first[arm] = time.perf_counter() - start
      times = []
      for _ in range(max(opts.reps, 3)):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
      step[arm] = float(np.median(times))
  finally:
    dft_objective.traced = keep
  print(f"bank_fold_compile: build + compile + first step {first['constant']:.1f} s with the "
        f"bank a constant vs {first['traced']:.1f} s traced: "
        f"{first['constant'] / first['traced']:.2f}x; step {step['constant'] * 1e3:.0f} ms vs "
        f"{step['traced'] * 1e3:.0f} ms ({step['traced'] / step['constant']:.2f}x)")
  return {"bank_fold_first_constant_s": first["constant"],
          "bank_fold_first_traced_s": first["traced"],
          "bank_fold_first_ratio": first["constant"] / first["traced"],
          "bank_fold_step_constant_s": step["constant"], "bank_fold_step_traced_s": step["traced"]}
