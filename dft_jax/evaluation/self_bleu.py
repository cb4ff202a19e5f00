"""Self-BLEU (Zhu et al. 2018): BLEU-n of each text against all the others as references,
averaged; NLTK's corpus-free sentence BLEU with SmoothingFunction().method1, computed from each
n-gram's two largest counts among the texts (one sort) instead of a pass over the others per
text."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dft_jax.evaluation.ngrams import Ngram, check_texts, ngrams

SELF_BLEU_MAX_TEXTS = 500
BLEU_EPSILON = 0.1  # NLTK SmoothingFunction().method1 default


def _subsample(n_texts: int, max_texts: int | None, seed: int) -> np.ndarray | None:
  """Indices of `max_texts` of `n_texts` texts drawn without replacement (seeded, order kept),
  or None to keep all."""
  if max_texts is None or n_texts <= max_texts:
    return None
  return np.sort(np.random.default_rng(seed).choice(n_texts, max_texts, replace=False))


class SelfBleu:
  """Self-BLEU-n of any selection of a fixed list of texts (`self_bleu`): each text's n-grams
  are coded as integers and counted once, and a selection's BLEU scores are computed on those
  arrays at once (a bootstrap scores hundreds of selections of the same texts)."""

  def __init__(self, texts: Sequence[str], n: int = 4):
    words_per_text = [text.split() for text in texts]
    self.lengths = np.array([len(words) for words in words_per_text], np.int64)
    self.per_order = []  # per order: per text, (distinct n-gram codes, their counts)
    for k in range(1, n + 1):
      code: dict[Ngram, int] = {}
      per_text = []
      for words in words_per_text:
        grams = ngrams(words, k)
        codes = np.fromiter((code.setdefault(g, len(code)) for g in grams), np.int64, len(grams))
        per_text.append(np.unique(codes, return_counts=True))
      self.per_order.append(per_text)

  def _matches(self, per_text, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clipped matches and n-gram totals of each selected text against the other selected
    texts: each n-gram's count capped by its largest count among the others, which is the
    second largest count for the text holding the largest, else the largest (BLEU's reference
    max-counts in one sort over the set, not a pass per text)."""
    grams = np.concatenate([per_text[i][0] for i in idx])
    counts = np.concatenate([per_text[i][1] for i in idx])
    owner = np.repeat(np.arange(len(idx)), [len(per_text[i][0]) for i in idx])
    if not len(grams):  # every selected text shorter than the order
      return np.zeros(len(idx)), np.zeros(len(idx))
    order = np.lexsort((-counts, grams))  # by n-gram, largest count first
    grams, counts, owner = grams[order], counts[order], owner[order]
    top = np.r_[True, grams[1:] != grams[:-1]]  # the first (largest) count of each n-gram
    group = np.cumsum(top) - 1
    first = np.flatnonzero(top)
    shared = np.r_[~top[1:], False][first]  # the n-gram has a second holder
    second = np.where(shared, counts[np.minimum(first + 1, len(counts) - 1)], 0)
    others = np.where(top, second[group], counts[first][group])
    matches = np.bincount(owner, weights=np.minimum(counts, others), minlength=len(idx))
    return matches, np.bincount(owner, weights=counts, minlength=len(idx))

  def __call__(self, idx: np.ndarray, *, max_texts: int | None = SELF_BLEU_MAX_TEXTS,
               seed: int = 0) -> float:
    """Self-BLEU of texts[idx] (repeats allowed: a repeated text is another text)."""
    idx = np.asarray(idx)
    chosen = _subsample(len(idx), max_texts, seed)
    idx = idx if chosen is None else idx[chosen]
    if len(idx) < 2:
      raise ValueError("self-BLEU needs at least 2 texts")
    # BLEU = BP * exp(sum_n (1/N) log p_n), p_n = clipped matches / max(1, hypothesis n-grams)
    # (Papineni et al. 2002), a zero numerator smoothed to epsilon (Chen & Cherry 2014 method 1);
    # as NLTK's sentence_bleu, 0 when no unigram matches. BP = 1 if c > r, else exp(1 - r / c),
    # 0 for an empty hypothesis.
    matches_KxL, totals_KxL = map(np.stack, zip(*(self._matches(p, idx) for p in self.per_order)))
    lengths = self.lengths[idx]
    log_precisions = np.log(np.where(matches_KxL > 0, matches_KxL, BLEU_EPSILON)
                            / np.maximum(1, totals_KxL))
    bleu = np.exp(np.sum(log_precisions / len(self.per_order), axis=0))
    ref = _closest_other_lengths(lengths)
    with np.errstate(divide="ignore"):
      penalty = np.where(lengths > ref, 1.0, np.exp(1.0 - ref / np.maximum(lengths, 1)))
    scores = np.where((matches_KxL[0] == 0) | (lengths == 0), 0.0, penalty * bleu)
    return float(np.mean(scores))


def _closest_other_lengths(lengths: np.ndarray) -> np.ndarray:
  """BLEU's effective reference length of each text: the other texts' length closest to its
  own, ties to the shorter (Papineni et al. 2002; NLTK `closest_ref_length`)."""
  distance = np.abs(lengths[None, :] - lengths[:, None]).astype(np.float64)
  np.fill_diagonal(distance, np.inf)
  closest = distance == distance.min(1, keepdims=True)
  return np.where(closest, lengths[None, :], np.iinfo(np.int64).max).min(1)


def self_bleu(texts: Sequence[str], n: int = 4, *, max_texts: int | None = SELF_BLEU_MAX_TEXTS,
              seed: int = 0) -> float:
  """Self-BLEU-n = mean over texts i of BLEU(hypothesis = text i, references = all others).

  Zhu et al. 2018, "Texygen: A Benchmarking Platform for Text Generation Models": uniform
  weights 1/n, smoothing method 1 (Chen & Cherry 2014, epsilon 0.1). Equal to NLTK's
  `sentence_bleu(others, text, weights=(1/n,)*n, smoothing_function=method1)` averaged, but
  without NLTK and linear in the total number of n-grams. Sets larger than `max_texts` are
  first subsampled to `max_texts` texts (seeded by `seed`; None keeps all), each then scored
  against the other subsampled texts. Lower is more diverse.
  """
  check_texts(texts)
  return SelfBleu(texts, n)(np.arange(len(texts)), max_texts=max_texts, seed=seed)
