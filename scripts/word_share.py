r"""Does a model write words? The share of each sample file's words found in the human corpora.

  python scripts/word_share.py runs/table1/table/samples

For every `*.jsonl` samples file (one {"prompt", "text"} per line, as `reproduce_table.py`
writes them) prints the share of its alphabetic words (lower-cased `[A-Za-z]+`) that occur
anywhere in the train and validation splits of the embedded corpora. Test documents are left
out of the vocabulary, because the human continuations are cut from them. A model that writes
English scores near the human file; a babbling one far below it.
"""

import glob
import json
import os
import re
import sys

from absl import app, flags

from dft_jax.data import corpora, sources

flags.DEFINE_string("domains", ",".join(corpora.DOMAINS), "Corpora whose words count as known.")
FLAGS = flags.FLAGS

WORD = re.compile(r"[A-Za-z]+")


def known_words(domains) -> set[str]:
  """Lower-cased alphabetic words of the train and validation splits of `domains`."""
  vocab = set()
  for domain in domains:
    for split in ("train", "validation"):
      docs = sources.documents(domain, split)
      for i in range(len(docs)):
        vocab.update(w.lower() for w in WORD.findall(docs[i]))
  return vocab


def share(texts, vocab) -> tuple[float, int]:
  """(share of the texts' alphabetic words found in vocab, number of words)."""
  words = [w.lower() for t in texts for w in WORD.findall(t)]
  if not words:
    return float("nan"), 0
  return sum(w in vocab for w in words) / len(words), len(words)


def main(argv):
  if len(argv) != 2:
    raise app.UsageError("usage: word_share.py SAMPLES_DIR")
  files = sorted(glob.glob(os.path.join(argv[1], "*.jsonl")))
  if not files:
    sys.exit(f"error: no *.jsonl samples files in {argv[1]}")
  try:
    vocab = known_words([d for d in FLAGS.domains.split(",") if d])
  except ValueError as e:  # an unknown domain, or one not prepared (says the command to run)
    sys.exit(f"error: {e}")
  for path in files:
    with open(path) as f:
      texts = [json.loads(line)["text"] for line in f if line.strip()]
    value, n = share(texts, vocab)
    print(f"{os.path.basename(path)}\t{value:.3f}\t{n} words")


if __name__ == "__main__":
  app.run(main)
