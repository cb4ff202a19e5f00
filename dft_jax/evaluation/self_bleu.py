"""Self-BLEU (Zhu et al. 2018): BLEU-n of each text against all the others as references,
averaged; NLTK's corpus-free sentence BLEU with SmoothingFunction().method1, computed from each
n-gram's two largest counts among the texts so it is O(texts) instead of O(texts^2)."""

from __future__ import annotations

import collections
import math
from typing import Sequence

import numpy as np

from dft_jax.evaluation.ngrams import Ngram, check_texts, ngrams

SELF_BLEU_MAX_TEXTS = 500
BLEU_EPSILON = 0.1  # NLTK SmoothingFunction().method1 default


def _top_two_counts(counts_per_text: Sequence[collections.Counter[Ngram]]
                    ) -> dict[Ngram, tuple[int, int, int]]:
  """n-gram -> (largest count in any text, index of that text, second largest count).

  The largest count among all texts but i is then the second largest when text i holds the
  largest, else the largest: the reference max-counts of BLEU in one pass over the set.
  """
  top: dict[Ngram, tuple[int, int, int]] = {}
  for index, counts in enumerate(counts_per_text):
    for gram, count in counts.items():
      best, best_index, second = top.get(gram, (0, -1, 0))
      if count > best:
        top[gram] = (count, index, best)
      else:
        top[gram] = (best, best_index, max(second, count))
  return top


def _max_count_in_others(top: dict[Ngram, tuple[int, int, int]], gram: Ngram,
                         index: int) -> int:
  """max over texts j != index of count_j(gram), from `_top_two_counts`."""
  best, best_index, second = top[gram]
  return second if best_index == index else best


def _closest_other_length(lengths: np.ndarray, index: int) -> int:
  """BLEU's effective reference length: the other text's length closest to the hypothesis
  length, ties to the shorter (Papineni et al. 2002; NLTK `closest_ref_length`)."""
  others = np.delete(lengths, index)
  distance = np.abs(others - lengths[index])
  return int(others[distance == distance.min()].min())


def _brevity_penalty(hyp_len: int, ref_len: int) -> float:
  """BP = 1 if c > r, else exp(1 - r / c); 0 for an empty hypothesis (Papineni et al. 2002)."""
  if hyp_len > ref_len:
    return 1.0
  if hyp_len == 0:
    return 0.0
  return math.exp(1.0 - ref_len / hyp_len)


def _smoothed_bleu(matches: Sequence[int], totals: Sequence[int], hyp_len: int,
                   ref_len: int, epsilon: float = BLEU_EPSILON) -> float:
  """BLEU = BP * exp(sum_n (1/N) log p_n), p_n = clipped matches / max(1, hypothesis n-grams).

  Papineni et al. 2002, smoothed by Chen & Cherry 2014 method 1: a zero numerator becomes
  epsilon. As NLTK `sentence_bleu`, the score is 0 when no unigram matches at all.
  """
  if matches[0] == 0:
    return 0.0
  log_precisions = []
  for match, total in zip(matches, totals):
    denominator = max(1, total)
    log_precisions.append(math.log((match if match > 0 else epsilon) / denominator))
  weight = 1.0 / len(matches)
  return _brevity_penalty(hyp_len, ref_len) * math.exp(
      math.fsum(weight * lp for lp in log_precisions))


def _subsample(texts: Sequence[str], max_texts: int | None, seed: int) -> list[str]:
  """All texts, or `max_texts` of them drawn without replacement (seeded, order kept)."""
  if max_texts is None or len(texts) <= max_texts:
    return list(texts)
  chosen = np.sort(np.random.default_rng(seed).choice(len(texts), max_texts, replace=False))
  return [texts[i] for i in chosen]


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
  texts = _subsample(texts, max_texts, seed)
  if len(texts) < 2:
    raise ValueError("self-BLEU needs at least 2 texts")
  words_per_text = [text.split() for text in texts]
  lengths = np.array([len(words) for words in words_per_text], np.int64)
  counts_per_order = [[collections.Counter(ngrams(words, k)) for words in words_per_text]
                      for k in range(1, n + 1)]
  tops = [_top_two_counts(counts) for counts in counts_per_order]
  scores = []
  for index in range(len(texts)):
    matches, totals = [], []
    for counts, top in zip(counts_per_order, tops):
      hyp_counts = counts[index]
      matches.append(sum(min(count, _max_count_in_others(top, gram, index))
                         for gram, count in hyp_counts.items()))
      totals.append(sum(hyp_counts.values()))
    scores.append(_smoothed_bleu(matches, totals, int(lengths[index]),
                                 _closest_other_length(lengths, index)))
  return float(np.mean(scores))


# ---------------------------------------------------------------------------------------------
# Word frequencies.
