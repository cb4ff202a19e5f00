r"""Trains a byte-level BPE tokenizer for from-scratch models.

  python scripts/train_tokenizer.py --corpus news,encyclopedia --vocab_size 4096 --out tok.json

--corpus takes embedded domains, local text directories or tfds:NAME (comma-separated).
"""

import sys
import time

from absl import app, flags

from dft_jax.data import sources
from dft_jax.data import tokenizer as tokenizer_lib

flags.DEFINE_string("corpus", "news,encyclopedia,legal,literary", "Corpora to train on.")
flags.DEFINE_integer("vocab_size", 4096, "Vocabulary size, special tokens included.")
flags.DEFINE_string("out", None, "Where to write tokenizer.json.", required=True)
FLAGS = flags.FLAGS


def main(argv):
  del argv
  start = time.time()
  try:
    texts = []
    for corpus in FLAGS.corpus.split(","):
      docs = sources.documents(corpus.strip(), "train")
      texts.extend(docs[i] for i in range(len(docs)))
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"train_tokenizer: error: {e}")
  tok = tokenizer_lib.train_byte_level_bpe(texts, FLAGS.vocab_size)
  tok.save(FLAGS.out)
  print(f"train_tokenizer: {tok.vocab_size} tokens from {len(texts)} documents -> {FLAGS.out} "
        f"(fingerprint {tok.fingerprint}, {time.time() - start:.1f}s)")


if __name__ == "__main__":
  app.run(main)
