r"""Samples a run's continuations of held-out prompts into JSONL, one {"prompt", "text"} a line.

  python -m dft_jax.sample --workdir runs/dft_literary --out runs/dft_literary/samples.jsonl \
      [--human_out human.jsonl] [--num_prompts 64 --prompt_len 16 --max_new_tokens 64]
      [--temperature 1.0 --top_k 0 --top_p 1.0 --seed 0] [--corpus literary]

Prompts are the first `prompt_len` tokens of the corpus's validation documents (default: the
run's own data.corpus), so runs sampled with the same flags continue the same prompts, line by
line; `--human_out` writes the documents' true continuations of those prompts.
Decoding is jit-compiled with the KV cache; temperature 0 is greedy; generation stops at EOS.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags, logging

from dft_jax.evaluation import samples

flags.DEFINE_string("workdir", None, "Training workdir (or native model dir) to sample from.",
                    required=True)
flags.DEFINE_string("out", None, "JSONL file to write (default: WORKDIR/samples.jsonl).")
flags.DEFINE_string("human_out", None, "Also write the human continuations of the prompts.")
flags.DEFINE_string("corpus", None, "Corpus of the prompts (default: the run's data.corpus).")
flags.DEFINE_string("split", "validation", "Split the prompts come from.")
flags.DEFINE_integer("num_prompts", 64, "How many prompts.")
flags.DEFINE_integer("prompt_len", 16, "Prompt length in tokens.")
flags.DEFINE_integer("max_new_tokens", 64, "Continuation length in tokens (stops at EOS).")
flags.DEFINE_float("temperature", 1.0, "Sampling temperature; 0 = greedy.")
flags.DEFINE_integer("top_k", 0, "Keep the k most likely tokens (0 = all).")
flags.DEFINE_float("top_p", 1.0, "Nucleus mass (1 = all).")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_integer("batch_size", 32, "Prompts decoded at once.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  start = time.time()
  out = FLAGS.out or os.path.join(FLAGS.workdir, "samples.jsonl")
  try:
    rows, human = samples.sample_run(
        FLAGS.workdir, corpus=FLAGS.corpus, num_prompts=FLAGS.num_prompts,
        prompt_len=FLAGS.prompt_len, max_new_tokens=FLAGS.max_new_tokens, seed=FLAGS.seed,
        split=FLAGS.split, batch_size=FLAGS.batch_size, temperature=FLAGS.temperature,
        top_k=FLAGS.top_k, top_p=FLAGS.top_p)
  except (ValueError, FileNotFoundError) as e:
    print(f"sample: error: {e}", file=sys.stderr)
    sys.exit(1)
  samples.write_jsonl(out, rows)
  if FLAGS.human_out:
    samples.write_jsonl(FLAGS.human_out, human)
  print(f"sample: {len(rows)} continuations -> {out}"
        + (f", human -> {FLAGS.human_out}" if FLAGS.human_out else "")
        + f" ({time.time() - start:.1f}s)")


if __name__ == "__main__":
  app.run(main)
