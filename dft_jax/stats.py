r"""Reference statistics ("domain stats") of a corpus, as a file: the CLI of
losses/reference.py (what the file holds and why: its docstring).

  python -m dft_jax.stats --corpus news --tokenizer runs/base/tokenizer.json --out news.npz

A run computes and caches these itself; a file made here is used with loss.stats_file.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from dft_jax.data import sources
from dft_jax.data import tokenizer as tokenizer_lib
from dft_jax.losses import reference

def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  f = flags.FLAGS
  try:
    tok = tokenizer_lib.load(f.tokenizer)
    docs = sources.documents(f.corpus, f.split, f.data_dir)
    stats = reference.compute_stats(docs, tok, window=f.window, max_windows=f.max_windows,
                                    corpus=f.corpus)
    reference.save_stats(stats, f.out)
  except (ValueError, FileNotFoundError, RuntimeError) as e:
    sys.exit(f"stats: error: {e}")
  print(f"stats: {len(stats.bank_MxF)} windows of {stats.window} tokens from {f.corpus} "
        f"({f.split}) -> {f.out} (tokenizer {stats.fingerprint}, featurizer v{stats.version})")


if __name__ == "__main__":
  flags.DEFINE_string("corpus", None, "Embedded domain, text directory or tfds:NAME.",
                      required=True)
  flags.DEFINE_string("tokenizer", None, "tokenizer.json (or a directory holding one).",
                      required=True)
  flags.DEFINE_string("out", None, "Output .npz file.", required=True)
  flags.DEFINE_integer("window", 64, "Window length in tokens (= DFT continuation length).")
  flags.DEFINE_integer("max_windows", 1024, "Largest bank kept.")
  flags.DEFINE_string("split", "train", "Corpus split.")
  flags.DEFINE_string("data_dir", None, "Data dir (default $DFT_JAX_DATA or ~/.cache/dft_jax).")
  app.run(main)
