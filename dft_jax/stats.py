r"""Reference statistics ("domain stats"): the feature bank of human windows that DFT compares
model samples with.

  python -m dft_jax.stats --corpus news --tokenizer runs/base/tokenizer.json --out news.npz

The file holds the bank (up to --max_windows windows of --window tokens, documents' shorter
final windows included), its feature mean and sd, the reference unigram counts behind the Zipf
bins, the featurizer version, the window length and the tokenizer's fingerprint. Loading it
with another tokenizer or featurizer version is an error, never a silent mismatch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import numpy as np

from dft_jax.data import sources
from dft_jax.data import tokenizer as tokenizer_lib
from dft_jax.losses import features


class StatsError(ValueError):
  """A stats file that does not belong to this tokenizer / featurizer, or no usable text."""


@dataclasses.dataclass
class ReferenceStats:
  bank_NxF: np.ndarray
  mean_F: np.ndarray
  sd_F: np.ndarray
  unigram_counts_V: np.ndarray
  window: int
  version: int
  fingerprint: str
  corpus: str

  def tables(self, tokenizer: tokenizer_lib.Tokenizer,
             vocab_size: int | None = None) -> features.Tables:
    return features.build_tables(tokenizer, self.unigram_counts_V, vocab_size)

  def standardize(self, x_NxF):
    return (x_NxF - self.mean_F) / self.sd_F


def reference_windows(ids, window: int, min_tokens: int) -> list[list[int]]:
  """Consecutive windows of `window` tokens of every document, its final shorter window too
  when it has at least `min_tokens` tokens.

  The final windows matter: a model's continuation stops at EOS where its document would end,
  so a bank of full windows only would teach DFT that texts never end.
  """
  return [d[i:i + window] for d in ids for i in range(0, len(d), window)
          if len(d) - i >= min(window, min_tokens)]


def reference_tokens(documents, tokenizer: tokenizer_lib.Tokenizer, *, window: int = 64,
                     max_windows: int = 1024, seed: int = 0, corpus: str = "",
                     min_tokens: int | None = None):
  """(tokens [N, window] int32, valid [N, window] bool, unigram counts [V]) of the reference
  windows: every document's (reference_windows; `min_tokens` defaults to window // 8, at
  least 4), a seeded subset of at most `max_windows`. The same windows feed the statistics
  bank and the embedding bank (losses/embedding.py)."""
  ids = tokenizer.encode_batch([documents[i] for i in range(len(documents))])
  counts = np.bincount(np.concatenate([np.asarray(d, np.int64) for d in ids if d] or
                                      [np.zeros(0, np.int64)]),
                       minlength=tokenizer.vocab_size).astype(np.float64)
  min_tokens = max(window // 8, 4) if min_tokens is None else min_tokens
  windows = reference_windows(ids, window, min_tokens)
  if not windows:
    raise StatsError(f"no document of {corpus or 'the corpus'} has {min(window, min_tokens)} "
                     "tokens")
  rng = np.random.RandomState(seed)
  if len(windows) > max_windows:
    windows = [windows[i] for i in sorted(rng.choice(len(windows), max_windows, replace=False))]
  tokens = np.zeros((len(windows), window), np.int32)
  valid = np.zeros((len(windows), window), bool)
  for r, w in enumerate(windows):
    tokens[r, :len(w)], valid[r, :len(w)] = w, True
  return tokens, valid, counts


def compute(documents, tokenizer: tokenizer_lib.Tokenizer, *, window: int = 64,
            max_windows: int = 1024, seed: int = 0, corpus: str = "",
            min_tokens: int | None = None) -> ReferenceStats:
  """The featurized bank of the reference windows (reference_tokens), its mean and sd."""
  import jax
  tokens, valid, counts = reference_tokens(documents, tokenizer, window=window,
                                           max_windows=max_windows, seed=seed, corpus=corpus,
                                           min_tokens=min_tokens)
  tables = features.build_tables(tokenizer, counts)
  fn = jax.jit(lambda t, v: features.featurize_batch(t, v, tables))
  bank = np.concatenate([np.asarray(fn(tokens[i:i + 256], valid[i:i + 256]))
                         for i in range(0, len(tokens), 256)])
  sd = bank.std(0)
  return ReferenceStats(bank, bank.mean(0), np.where(sd > 1e-6, sd, 1.0), counts, window,
                        features.VERSION, tokenizer.fingerprint, corpus)


def save(stats: ReferenceStats, path: str) -> None:
  meta = dict(window=stats.window, version=stats.version, fingerprint=stats.fingerprint,
              corpus=stats.corpus, feature_names=list(features.FEATURE_NAMES))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez(tmp, bank=stats.bank_NxF, mean=stats.mean_F, sd=stats.sd_F,
           unigram_counts=stats.unigram_counts_V, meta=json.dumps(meta))
  os.replace(tmp, path)  # never a half-written stats file


def load(path: str, tokenizer: tokenizer_lib.Tokenizer | None = None) -> ReferenceStats:
  if not os.path.isfile(path):
    raise StatsError(f"stats file not found: {path}")
  with np.load(path) as f:
    meta = json.loads(str(f["meta"]))
    stats = ReferenceStats(f["bank"], f["mean"], f["sd"], f["unigram_counts"], meta["window"],
                           meta["version"], meta["fingerprint"], meta["corpus"])
  if stats.version != features.VERSION:
    raise StatsError(f"{path} was made by featurizer version {stats.version}; this is version "
                     f"{features.VERSION}: recompute it")
  if tokenizer is not None and tokenizer.fingerprint != stats.fingerprint:
    raise StatsError(f"{path} was made with tokenizer {stats.fingerprint}, not this one "
                     f"({tokenizer.fingerprint}): recompute it with this tokenizer")
  return stats


def for_corpus(corpus: str, tokenizer: tokenizer_lib.Tokenizer, *, window: int,
               data_dir: str | None = None, max_windows: int = 1024) -> ReferenceStats:
  """The stats of a corpus's train split for this tokenizer: cached, made on first use."""
  from dft_jax.data import corpora
  name = corpus.replace("/", "_").replace(",", "+").strip("_")
  path = os.path.join(corpora.data_root(data_dir), "stats",
                      f"{name}-{tokenizer.fingerprint}-w{window}-v{features.VERSION}.npz")
  if not os.path.isfile(path):
    docs = sources.documents(corpus, "train", data_dir)
    save(compute(docs, tokenizer, window=window, max_windows=max_windows, corpus=corpus), path)
  return load(path, tokenizer)


def main(argv):
  del argv
  from absl import flags, logging
  logging.set_verbosity(logging.WARNING)
  f = flags.FLAGS
  try:
    tok = tokenizer_lib.load(f.tokenizer)
    docs = sources.documents(f.corpus, f.split, f.data_dir)
    stats = compute(docs, tok, window=f.window, max_windows=f.max_windows, corpus=f.corpus)
    save(stats, f.out)
  except (ValueError, FileNotFoundError, RuntimeError) as e:
    sys.exit(f"stats: error: {e}")
  print(f"stats: {len(stats.bank_NxF)} windows of {stats.window} tokens from {f.corpus} "
        f"({f.split}) -> {f.out} (tokenizer {stats.fingerprint}, featurizer v{stats.version})")


if __name__ == "__main__":
  from absl import app, flags
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
