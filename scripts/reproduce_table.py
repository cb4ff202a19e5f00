r"""The paper table from finished runs, or from a sweep it trains first (resumable).

  python scripts/reproduce_table.py runs/base runs/sft_literary runs/dft_literary --out table/
  python scripts/reproduce_table.py runs/sft "runs/dft_lam0.2=DFT λ=0.2" --out table/
  python scripts/reproduce_table.py --sweep experiments/table1.py --root runs/table1
  python scripts/reproduce_table.py --sweep experiments/table1.py:baselines=True,seeds=3 \
      --root runs/table1_full --launcher=local --max_parallel=3
  python scripts/reproduce_table.py --sweep experiments/table1.py:baselines=True,seeds=3 \
      --root /shared/table1 --launcher=slurm --partition=gpu --gpus_per_node=1
  python scripts/reproduce_table.py --sweep experiments/table1.py --root runs/table1 --collect

Writes table.md, table.tex, results.json, samples/*.jsonl and PNG plots (sentence-length
histograms, per-feature standardized gaps, training curves) to --out (default ROOT/table),
then prints the Markdown table. Without a sweep, rows are named from each run's config, or by
RUN_DIR=LABEL; runs with the same row label are seeds of one row (mean ± sd).
With --sweep, the runs train through --launcher (scripts/sweep.py's launchers; slurm waits
for its jobs here); a later call with the same root, or --collect, writes the table from the
finished runs without training (xpk: launch with scripts/sweep.py, then --collect).
"""

import os
import sys

from absl import app, flags, logging

from dft_jax import sweeps
from dft_jax.evaluation import reproduce
from dft_jax.sweeps import cli

flags.DEFINE_string("sweep", None, "experiments/FILE.py[:args] whose runs make the table.")
flags.DEFINE_string("root", None, "Where the sweep's runs live (with --sweep).")
flags.DEFINE_string("out", None, "Output directory (default: ROOT/table).")
flags.DEFINE_bool("collect", False, "With --sweep: only collect finished runs (no training); "
                  "an unfinished run is an error naming it.")
cli.define_flags()
flags.DEFINE_string("corpus", None, "Prompts' corpus (default: the fine-tuned runs' corpus).")
flags.DEFINE_string("split", "test", "Split of the prompts and perplexity documents (tune on "
                    "validation, report on test).")
flags.DEFINE_integer("num_prompts", 256, "Held-out prompts (non-overlapping document cuts); as "
                     "many more give the second human set of the noise floor.")
flags.DEFINE_integer("prompt_len", 16, "Prompt length in tokens.")
flags.DEFINE_integer("max_new_tokens", 48, "Continuation length in tokens.")
flags.DEFINE_integer("seed", 0, "Sampling seed (the same for every run).")
flags.DEFINE_integer("ppl_docs", 64, "Documents of the split scored for perplexity.")
flags.DEFINE_integer("ppl_pieces", 64, "At most this many 128-token pieces of them, "
                     "round-robin over documents (0: all).")
flags.DEFINE_string("decodings", "0.7:0.9", "TEMPERATURE:TOP_P of each decoding the table is "
                    "evaluated at; the first is the deployed one the verdict uses (0.7:0.9,1:1 "
                    "adds temperature 1).")
flags.DEFINE_integer("bootstrap", 200, "Paired bootstrap replicates for the intervals.")
flags.DEFINE_float("feature_clip", reproduce.FEATURE_CLIP, "Winsorize the feature statistics "
                   "at this many human sds (0: unclipped), so one degenerate text cannot decide "
                   "a divergence.")
flags.DEFINE_bool("reported", True, "Print the article's reported figures beside ours.")
flags.DEFINE_string("embedding_run", "", "Run whose model embeds every text for the "
                    "embedding MMD² / MAUVE columns: 'first' (the first run: base), a run "
                    "directory, or '' for none (default: a forward pass of that model over "
                    "every text set, ~25 s per set for SmolLM2 on 2 CPU cores).")
flags.DEFINE_bool("reuse_scores", True, "Reuse a run's scores kept in RUN/scores/ by an "
                  "earlier table with the same prompts, settings and checkpoint (--noreuse_scores: "
                  "score every run again).")
FLAGS = flags.FLAGS


def main(argv):
  logging.set_verbosity(logging.WARNING)
  run_dirs = argv[1:]
  if bool(FLAGS.sweep) == bool(run_dirs):
    raise app.UsageError("give run directories, or --sweep FILE --root DIR")
  try:
    if FLAGS.sweep:
      if not FLAGS.root:
        raise app.UsageError("--sweep needs --root")
      runs = sweeps.load(FLAGS.sweep)
      sweeps.write_manifest(runs, FLAGS.root, FLAGS.sweep)
      if not FLAGS.collect:
        if FLAGS.launcher == "xpk":
          raise ValueError("xpk workloads are not waited for here: launch them with "
                           "scripts/sweep.py --launcher=xpk, then run this with --collect")
        cli.launch(runs, FLAGS.root, FLAGS.sweep, wait=True)
      unfinished = [r["name"] for r in runs
                    if not sweeps.finished(sweeps.workdir(r, FLAGS.root))]
      if unfinished:
        raise ValueError(f"run(s) not finished in {FLAGS.root}: {', '.join(unfinished)}")
      pairs = [(sweeps.workdir(r, FLAGS.root), r["row"]) for r in runs]
      out = FLAGS.out or os.path.join(FLAGS.root, "table")
    else:
      pairs = [(d, label or None) for d, _, label in (r.partition("=") for r in run_dirs)]
      if not FLAGS.out:
        raise app.UsageError("give --out DIR")
      out = FLAGS.out
    reproduce.reproduce(pairs, out, corpus=FLAGS.corpus, split=FLAGS.split,
                        num_prompts=FLAGS.num_prompts, prompt_len=FLAGS.prompt_len,
                        max_new_tokens=FLAGS.max_new_tokens, seed=FLAGS.seed,
                        ppl_docs=FLAGS.ppl_docs, ppl_pieces=FLAGS.ppl_pieces or None,
                        reported=FLAGS.reported,
                        decodings=reproduce.parse_decodings(FLAGS.decodings),
                        bootstrap=FLAGS.bootstrap, feature_clip=FLAGS.feature_clip,
                        embedding_run=(pairs[0][0] if FLAGS.embedding_run == "first"
                                       else FLAGS.embedding_run or None),
                        reuse_scores=FLAGS.reuse_scores)
  except (ValueError, FileNotFoundError, RuntimeError) as e:  # SweepError too
    print(f"reproduce_table: error: {e}", file=sys.stderr)
    sys.exit(1)
  with open(os.path.join(out, "table.md")) as f:
    print(f.read())


if __name__ == "__main__":
  app.run(main)
