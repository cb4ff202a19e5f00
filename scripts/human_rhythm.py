r"""How steady is the human sentence-length variance the tables aim at? For each split and
continuation length: the variance of the two human sets a table would cut (A: the target, B:
the second set), and A's document-clustered bootstrap sd (the tables' two-stage draws). No
model is involved: text and tokenizer only.

  python scripts/human_rhythm.py --corpus wisdom --tokenizer runs/table2_wisdom/base/tokenizer.json

Each continuation length takes the largest prompt count of --prompts that the split's
non-overlapping cuts allow (two sets of it).
"""

import sys

from absl import app, flags
import numpy as np

from dft_jax.data import tokenizer as tokenizer_lib
from dft_jax.evaluation import intervals, samples, text_metrics

flags.DEFINE_string("corpus", "wisdom", "a prepared corpus")
flags.DEFINE_string("tokenizer", None, "a run's tokenizer.json (the cuts are in its tokens)",
                    required=True)
flags.DEFINE_string("splits", "validation:test", "':'-separated splits")
flags.DEFINE_string("lengths", "48:96:160", "':'-separated continuation lengths (tokens)")
flags.DEFINE_string("prompts", "256:128:64", "':'-separated prompt counts, tried in order")
flags.DEFINE_integer("prompt_len", 16, "prompt tokens (the tables' default)")
flags.DEFINE_integer("reps", 200, "bootstrap replicates")
FLAGS = flags.FLAGS


def spread(corpus: str, tok, split: str, length: int, counts: list[int]) -> str:
  for n in counts:
    try:
      prompts, human_ids, doc_ids = samples.held_out(
          corpus, tok, num_prompts=2 * n, prompt_len=FLAGS.prompt_len,
          continuation_len=length, split=split)
    except samples.TooFewCuts:  # try the next, smaller count
      continue
    texts = [r["text"] for r in samples.records(tok, prompts, human_ids)]
    per_text = text_metrics.PerText(texts[:n])
    boot = [per_text.sentence_lengths(idx).var()
            for idx in intervals.clustered(doc_ids[:n], FLAGS.reps, seed=0)]
    var_a = text_metrics.sentence_length_variance(texts[:n])
    var_b = text_metrics.sentence_length_variance(texts[n:])
    return (f"{split} ({n} prompts, {len(np.unique(doc_ids[:n]))} documents): A {var_a:.1f}, "
            f"B {var_b:.1f}, A's bootstrap sd {np.std(boot):.1f}")
  return f"{split}: fewer than 2 x {counts[-1]} cuts"


def main(argv):
  del argv
  tok = tokenizer_lib.load(FLAGS.tokenizer)
  counts = [int(n) for n in FLAGS.prompts.split(":")]
  print(f"human sentence-length variance of {FLAGS.corpus}, {FLAGS.prompt_len}-token prompts")
  for length in (int(x) for x in FLAGS.lengths.split(":")):
    try:
      cells = [spread(FLAGS.corpus, tok, s, length, counts) for s in FLAGS.splits.split(":")]
    except ValueError as e:  # an unknown corpus or split: one line
      sys.exit(f"human_rhythm: {e}")
    print(f"{length} new tokens | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
  app.run(main)
