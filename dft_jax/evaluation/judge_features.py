"""The judge's features of a text: hashed word n-grams plus dense style statistics.

Pure python / numpy, deterministic, no tokenizer, so a verdict never depends on the run's
vocabulary:
  hashed n-grams  lowercased whitespace words; every unigram ("1 w") and bigram ("2 w1 w2") is
                  hashed with zlib.crc32 (stable across processes, unlike the salted hash()) into
                  `n_buckets` (2^14) buckets; log1p of the bucket counts, L2-normalized per text
  style (DENSE_NAMES, standardized later by the training set's mean and sd)
                  log(1 + words); mean word length in characters; type-token ratio;
                  log(1 + sentences); mean and sd (ddof 0) of words per sentence, sentences split
                  after . ! or ? followed by whitespace or the end; punctuation characters per word
"""

from __future__ import annotations

import collections
import dataclasses
import string
import zlib
from typing import Sequence

import numpy as np

from dft_jax.evaluation import text_metrics

N_BUCKETS = 2 ** 14
DENSE_NAMES = ("log_words", "mean_word_len", "type_token_ratio", "log_sentences",
               "sent_len_mean", "sent_len_sd", "punct_per_word")
_PUNCT = frozenset(string.punctuation)


@dataclasses.dataclass(frozen=True)
class Features:
  """Texts as padded sparse hashed n-grams plus raw (unstandardized) style statistics."""
  ids_NxK: np.ndarray    # int32 bucket of each nonzero entry; padding points at bucket 0
  vals_NxK: np.ndarray   # float32 value of each entry (L2-normalized log1p counts); 0 at padding
  dense_NxD: np.ndarray  # float64 style statistics, DENSE_NAMES order

  def __len__(self) -> int:
    return len(self.dense_NxD)

  def take(self, idx_M: np.ndarray) -> Features:
    """The rows idx_M, in that order."""
    return Features(self.ids_NxK[idx_M], self.vals_NxK[idx_M], self.dense_NxD[idx_M])


def _bucket(key: str, n_buckets: int) -> int:
  """Stable hash of an n-gram key into [0, n_buckets)."""
  return zlib.crc32(key.encode("utf-8")) % n_buckets


def _hashed(words: list[str], n_buckets: int) -> tuple[np.ndarray, np.ndarray]:
  """Sorted buckets of a text's unigrams and bigrams and their L2-normalized log1p counts."""
  counts = collections.Counter(_bucket("1 " + w, n_buckets) for w in words)
  counts.update(_bucket(f"2 {a} {b}", n_buckets) for a, b in zip(words, words[1:]))
  ids_K = np.asarray(sorted(counts), np.int32)
  vals_K = np.log1p(np.asarray([counts[i] for i in ids_K], np.float64))
  if len(vals_K):
    vals_K /= np.linalg.norm(vals_K)
  return ids_K, vals_K


def style_stats(text: str) -> np.ndarray:
  """The dense style statistics of one text (DENSE_NAMES order); zeros for an empty text."""
  words = text.split()
  n_words = len(words)
  lengths = np.asarray([len(s.split()) for s in text_metrics.split_sentences(text)],
                       np.float64)
  if not n_words:
    return np.zeros(len(DENSE_NAMES))
  return np.asarray([
      np.log1p(n_words),
      np.mean([len(w) for w in words]),
      len(set(w.lower() for w in words)) / n_words,
      np.log1p(len(lengths)),
      lengths.mean(),
      lengths.std(),
      sum(c in _PUNCT for c in text) / n_words,
  ])


def featurize(texts: Sequence[str], n_buckets: int = N_BUCKETS) -> Features:
  """Hashed n-grams and style statistics of each text; K is padded to a power of two."""
  check_texts("texts", texts)
  hashed = [_hashed(t.lower().split(), n_buckets) for t in texts]
  k = pow2(max([len(ids) for ids, _ in hashed] + [1]))
  ids_NxK = np.zeros((len(texts), k), np.int32)
  vals_NxK = np.zeros((len(texts), k), np.float32)
  for row, (ids_K, vals_K) in enumerate(hashed):
    ids_NxK[row, :len(ids_K)] = ids_K
    vals_NxK[row, :len(vals_K)] = vals_K
  dense_NxD = np.stack([style_stats(t) for t in texts]) if texts else np.zeros(
      (0, len(DENSE_NAMES)))
  return Features(ids_NxK, vals_NxK, dense_NxD)


def concat(parts: Sequence[Features]) -> Features:
  """Rows of several feature sets, K padded to the widest."""
  k = max(p.ids_NxK.shape[1] for p in parts)
  pad = lambda x: np.pad(x, ((0, 0), (0, k - x.shape[1])))  # noqa: E731
  return Features(np.concatenate([pad(p.ids_NxK) for p in parts]),
                  np.concatenate([pad(p.vals_NxK) for p in parts]),
                  np.concatenate([p.dense_NxD for p in parts]))


def pow2(n: int) -> int:
  """The smallest power of two >= n (padding sizes, so few shapes are ever compiled)."""
  return 1 << max(0, int(n) - 1).bit_length()


def check_texts(name: str, texts) -> None:
  """A sequence of strings, or one clear error naming the argument."""
  if isinstance(texts, (str, bytes)) or not hasattr(texts, "__len__"):
    raise ValueError(f"{name} must be a sequence of strings, got {type(texts).__name__}")
  for i, t in enumerate(texts):
    if not isinstance(t, str):
      raise ValueError(f"{name}[{i}] is a {type(t).__name__}, not a string")
