r"""Benchmarks measured side by side in one run; each prints a ratio.

  python scripts/bench.py --parts ce_vs_hf_small,ce_vs_hf_medium,mfu_medium --json
  python scripts/bench.py --parts all --quick     # every part, few repetitions (smoke run)

Parts (A/B measurements alternate the two sides after warm-up and report medians):
  ce_vs_hf_small  our CE train step (jit, AdamW, fp32) vs a `transformers` Llama train step in
                  PyTorch CPU on the same config, weights and batch: tokens/s ratio (> 1: ours
                  faster). d=128, 4 layers, 4 heads (2 kv), MLP 384, vocab 4096, batch 16x128
  ce_vs_hf_medium the same at d=512, 8 layers, 8 heads, MLP 1408, vocab 8192, batch 8x256
  mfu_medium      model FLOPs per step (loop.flops_per_token: 6 x (non-embedding params + LM
                  head) + 12 x layers x seq x heads x head_dim per token) / step time / the
                  FLOP/s of a 2048^2 f32 matmul measured in the same run
  dft_over_ce     DFT train step time / CE train step time at the default DFT config
                  (experiments/dft.py) on the tiny model; dft_flop_floor: the FLOP ratio of
                  the same two steps (CE + the decode + forward/backward over the sample rows),
                  dft_over_floor = dft_over_ce / dft_flop_floor; dft_static_bank_over_ce: the
                  DFT step with loss.sinkhorn_solver=static_bank; dist_share: the share of the DFT
                  step spent featurizing the samples and computing the divergence (as the
                  loss builds it); dist_three_log_problems_s: the same with all three
                  Sinkhorn problems in ott's log domain, OT(bank, bank) included
  ott_vs_pot_4096 debiased Sinkhorn divergence of two n=4096 clouds in the feature dimension:
                  POT `empirical_sinkhorn_divergence` time / ott-jax time at the same absolute
                  epsilon, both run to the same accuracy against a float64 reference;
                  ott_library_vs_pot_4096: the loss's own path to a fixed bank
                  (sinkhorn_fast.sinkhorn_to_bank: the bank's self-transport solved once);
                  ott_library_kernel_vs_pot_4096: the same in its kernel domain
  ott_vs_pot_curve the same for n = 256 ... 8192 (--ott_sizes), ott's online (low-memory)
                  geometry at the largest n
  decode_vs_hf    tokens/s of our jit'd KV-cache sampler vs `transformers` `generate` (greedy,
                  KV cache) on the same tiny model, batch and prompt
  data_pipeline   grain pipeline tokens/s on the embedded corpus vs the tokens/s a CPU train
                  step of the pretrain_tiny config consumes (> 1: the host is not the bottleneck)
  gpu_mfu_1b      bf16 MFU of a ~1B-parameter config vs a large bf16 matmul; skipped (and says
                  so) without a GPU
  bank_fold_compile  the default DFT step's build + compile + first step with its 1,024-row
                  bank closed over as a constant (XLA folds the bank's self-cost while
                  compiling) / the same with the bank entering through dft.traced; both steps' times
  table_bootstrap the paper table's clustered bootstrap of one row against SFT (feature
                  divergences of the row, SFT and the human floor; self-BLEU and slop ratio):
                  one divergence per draw, compiled per draw size, as before / drawn.py's
                  batched counts form and n-grams counted once

The parts live in scripts/benchmarks/ (one module per subject); this file is the CLI.
"""

import json
import os
import sys

import jax
from absl import app, flags, logging

from benchmarks import PARTS, Options

flags.DEFINE_list("parts", ["data_pipeline"], "Benchmark parts to run ('all': every part).")
flags.DEFINE_bool("json", False, "Print one JSON object as the last line.")
flags.DEFINE_integer("batches", 60, "Batches timed per measurement (data_pipeline, dft_over_ce).")
flags.DEFINE_integer("reps", 7, "Timed repetitions of each side of an A/B measurement.")
flags.DEFINE_bool("quick", False, "Few repetitions, small curve: checks that every part runs.")
flags.DEFINE_list("ott_sizes", ["256", "512", "1024", "2048", "4096", "8192"],
                  "Point-cloud sizes of ott_vs_pot_curve.")
FLAGS = flags.FLAGS


def _options() -> Options:
  """The measurement settings from the flags; --quick: every part runs, nothing is measured
  seriously."""
  if FLAGS.quick:
    return Options(batches=12, reps=2, ott_sizes=(256, 1024))
  return Options(batches=FLAGS.batches, reps=FLAGS.reps,
                 ott_sizes=tuple(int(n) for n in FLAGS.ott_sizes))


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  parts = list(PARTS) if FLAGS.parts == ["all"] else FLAGS.parts
  unknown = [p for p in parts if p not in PARTS]
  if unknown:
    sys.exit(f"bench: error: unknown part(s) {unknown}; available: {sorted(PARTS)}")
  opts = _options()
  results = {"cpu_cores": os.cpu_count(), "devices": str(jax.devices()[0].device_kind),
             "load_before": os.getloadavg()[0]}
  for part in parts:
    results.update(PARTS[part](opts))
  results["load_after"] = os.getloadavg()[0]
  if FLAGS.json:
    print(json.dumps(results))


if __name__ == "__main__":
  app.run(main)
