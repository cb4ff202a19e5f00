"""Text metrics of decoded samples, as the papers define them.

Every metric works on whitespace words (`text.split()`) of decoded text; an n-gram is a tuple
of n consecutive words inside one text (n-grams never cross texts).

  rep_n            100 * (1 - unique / total n-grams, summed over texts)    SimCTG (Su et al. 2022)
  diversity        prod_{n=2..4} (1 - rep_n / 100)                          SimCTG
  distinct_n       unique / total n-grams over the whole set                Li et al. 2016
  self_bleu        BLEU-4 of each text against all the others, averaged     Zhu et al. 2018
  zipf_coefficient s of the least-squares fit log f_r = c - s log r         Holtzman et al. 2020
  sentence lengths mean, population variance, W1 to the human lengths
  unigram_l2       || p_sample - p_human ||_2 over the union vocabulary
  compression_ratio bytes / gzip bytes of the texts joined by spaces          Shaib et al. 2024
  degenerate       share of texts caught in a repetition loop: at least half of a text's own
                   word 4-grams are repeats of earlier ones (its rep-4 >= 50)
  slop_ratio       mean over the SLOP_TOP most over-represented word 1-3-grams of
                   f_model(g) / f_human(g), add-one smoothed                  Paech et al. 2025
  mauve            MAUVE on given features, if `mauve-text` is installed     Pillutla et al. 2021

Pure numpy / scipy; `compute` returns all of them (except MAUVE) as Python floats.
"""

from __future__ import annotations

import collections
import gzip
import re
from typing import Sequence

import numpy as np
import scipy.stats

from dft_jax.evaluation.ngrams import check_texts as _check_texts
from dft_jax.evaluation.ngrams import ngrams as _ngrams
from dft_jax.evaluation.self_bleu import SELF_BLEU_MAX_TEXTS, self_bleu


COMPUTE_KEYS = ("rep_2", "rep_3", "rep_4", "diversity", "distinct_1", "distinct_2",
                "distinct_3", "self_bleu4", "zipf", "sent_len_mean", "sent_len_var",
                "sent_len_w1", "unigram_l2", "compression_ratio", "slop_ratio", "degenerate")
ZIPF_MAX_RANK = 5000
SLOP_TOP = 20        # over-represented n-grams averaged by slop_ratio
SLOP_MIN_COUNT = 3   # an n-gram must occur this often in the model's text to be a candidate
_SLOP_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_SENTENCE_BOUNDARY = re.compile(r"(?<=[.!?])\s+")


# ---------------------------------------------------------------------------------------------
# Words and n-grams.


def _word_counts(texts: Sequence[str], name: str = "samples") -> collections.Counter[str]:
  """Word -> number of occurrences over all texts; raises when there is no word at all."""
  _check_texts(texts)
  counts = collections.Counter(word for text in texts for word in text.split())
  if not counts:
    raise ValueError(f"no words in the {name}")
  return counts


# ---------------------------------------------------------------------------------------------
# Repetition and diversity.


def _unique_and_total(text: str, n: int) -> tuple[int, int]:
  grams = _ngrams(text.split(), n)
  return len(set(grams)), len(grams)


def _rep(num_unique: int, num_total: int) -> float:
  return 0.0 if num_total == 0 else float(100.0 * (1.0 - num_unique / num_total))


def _diversity(reps: Sequence[float]) -> float:
  return float(np.prod([1.0 - rep / 100.0 for rep in reps]))


def rep_n(texts: Sequence[str], n: int) -> float:
  """rep-n = 100 * (1 - sum_doc |unique n-grams of doc| / sum_doc |n-grams of doc|).

  Su et al. 2022, "A Contrastive Framework for Neural Text Generation" (SimCTG). Texts with
  fewer than n words contribute no n-grams; with no n-gram at all the result is 0.0 (nothing
  is repeated).
  """
  _check_texts(texts)
  return _rep(*np.sum([_unique_and_total(text, n) for text in texts], axis=0, dtype=np.int64))


def degenerate_rate(texts: Sequence[str], n: int = 4, threshold: float = 50.0) -> float:
  """Share of texts in a repetition loop: a text's own rep-n (rep_n of it alone) at least
  `threshold`, i.e. half its n-grams repeat earlier ones. Such texts sit tens of sds out on the
  feature statistics; the table counts them here rather than let them decide a divergence.
  Human prose reaches it only in lists (a genealogy's "became the father of" is ~20%)."""
  _check_texts(texts)
  return float(np.mean([rep_n([text], n) >= threshold for text in texts]))


def diversity(texts: Sequence[str]) -> float:
  """diversity = prod_{n=2}^{4} (1 - rep_n / 100).  Su et al. 2022 (SimCTG)."""
  return _diversity([rep_n(texts, n) for n in (2, 3, 4)])


class PerText:
  """Each text's distinct / total n-grams (rep-n) and sentence lengths, kept so that the
  metrics of any selection of the texts (a bootstrap's draws, repeats allowed) are sums over
  arrays instead of recounts; equal to the functions of this module on the selected texts."""

  def __init__(self, texts: Sequence[str]):
    _check_texts(texts)
    self.unique_total = {n: np.array([_unique_and_total(t, n) for t in texts], np.int64)
                         for n in (2, 3, 4)}
    self.lengths = [sentence_lengths([t]) for t in texts]

  def rep_n(self, idx: np.ndarray, n: int) -> float:
    return _rep(*self.unique_total[n][idx].sum(0))

  def diversity(self, idx: np.ndarray) -> float:
    return _diversity([self.rep_n(idx, n) for n in (2, 3, 4)])

  def degenerate_rate(self, idx: np.ndarray, n: int = 4, threshold: float = 50.0) -> float:
    return float(np.mean([_rep(*self.unique_total[n][i]) >= threshold for i in idx]))

  def sentence_lengths(self, idx: np.ndarray, name: str = "samples") -> np.ndarray:
    """The selection's pooled sentence lengths (raising, as the metrics do, when none)."""
    return _nonempty(np.concatenate([self.lengths[i] for i in idx]), name)


def distinct_n(texts: Sequence[str], n: int) -> float:
  """distinct-n = |unique n-grams over the set| / |n-grams over the set|.

  Li et al. 2016, "A Diversity-Promoting Objective Function for Neural Conversation Models".
  With no n-gram at all (every text shorter than n words) the result is 0.0.
  """
  _check_texts(texts)
  grams = [gram for text in texts for gram in _ngrams(text.split(), n)]
  if not grams:
    return 0.0
  return len(set(grams)) / len(grams)


# ---------------------------------------------------------------------------------------------
# Word frequencies (self-BLEU: self_bleu.py).


def zipf_fit(frequencies: np.ndarray, max_rank: int = ZIPF_MAX_RANK) -> float:
  """s of the least-squares fit log f_r = c - s log r over ranks r = 1..min(max_rank, V).

  `frequencies` (counts or probabilities, any order) are sorted descending and ranked from 1;
  natural logs (s does not depend on the base). Holtzman et al. 2020, "The Curious Case of
  Neural Text Degeneration", §5 (Zipf's law, f_r ∝ r^-s).
  """
  freqs = np.sort(np.asarray(frequencies, np.float64))[::-1][:max_rank]
  if len(freqs) < 2 or freqs[-1] <= 0:
    raise ValueError("the Zipf fit needs at least 2 words, all with positive frequency")
  log_rank = np.log(np.arange(1, len(freqs) + 1, dtype=np.float64))
  log_freq = np.log(freqs)
  centered_log_rank = log_rank - log_rank.mean()
  slope = (np.dot(centered_log_rank, log_freq - log_freq.mean()) /
           np.dot(centered_log_rank, centered_log_rank))
  return float(-slope)


def zipf_coefficient(texts: Sequence[str], max_rank: int = ZIPF_MAX_RANK) -> float:
  """`zipf_fit` of the word frequencies over the whole set (Holtzman et al. 2020)."""
  counts = _word_counts(texts)
  return zipf_fit(np.fromiter(counts.values(), np.float64, len(counts)), max_rank)


def _unigram_distribution(counts: collections.Counter[str], vocab: Sequence[str]) -> np.ndarray:
  """p(w) = count(w) / total count, over `vocab` (0 for words not in `counts`)."""
  values = np.array([counts.get(word, 0) for word in vocab], np.float64)
  return values / sum(counts.values())


def unigram_l2(texts: Sequence[str], human_texts: Sequence[str]) -> float:
  """|| p - q ||_2 of the normalized word-frequency vectors of samples (p) and human (q),
  over the union of both vocabularies."""
  sample_counts = _word_counts(texts)
  human_counts = _word_counts(human_texts, "human texts")
  vocab = sorted(set(sample_counts) | set(human_counts))
  difference = (_unigram_distribution(sample_counts, vocab) -
                _unigram_distribution(human_counts, vocab))
  return float(np.linalg.norm(difference))


# ---------------------------------------------------------------------------------------------
# Sentence lengths.


def split_sentences(text: str) -> list[str]:
  """Sentences of `text`: a split after `.`, `!` or `?` followed by whitespace or the end of
  the text. A trailing piece without a terminator is a sentence too; pieces with no word are
  dropped. So "Dr. Smith came." is two sentences, "a.b" and "Hi!Bye." are one."""
  pieces = _SENTENCE_BOUNDARY.split(text)
  return [piece.strip() for piece in pieces if piece.split()]


def sentence_lengths(texts: Sequence[str]) -> np.ndarray:
  """Number of whitespace words of every sentence of every text, pooled: int64 [S]."""
  _check_texts(texts)
  return np.array([len(sentence.split()) for text in texts for sentence in
                   split_sentences(text)], np.int64)


def _nonempty_sentence_lengths(texts: Sequence[str], name: str = "samples") -> np.ndarray:
  """`sentence_lengths`, raising when there is no sentence."""
  return _nonempty(sentence_lengths(texts), name)


def _nonempty(lengths: np.ndarray, name: str) -> np.ndarray:
  if lengths.size == 0:
    raise ValueError(f"no sentences in the {name}")
  return lengths


def sentence_length_mean(texts: Sequence[str]) -> float:
  """Mean words per sentence, over all sentences of all texts."""
  return float(np.mean(_nonempty_sentence_lengths(texts)))


def sentence_length_variance(texts: Sequence[str]) -> float:
  """Population variance (ddof 0) of words per sentence, in words^2."""
  return float(np.var(_nonempty_sentence_lengths(texts), ddof=0))


def sentence_length_w1(texts: Sequence[str], human_texts: Sequence[str]) -> float:
  """W1 = integral |F_sample(x) - F_human(x)| dx between the empirical sentence-length
  distributions (1-D Wasserstein-1, in words)."""
  return float(scipy.stats.wasserstein_distance(
      _nonempty_sentence_lengths(texts), _nonempty_sentence_lengths(human_texts, "human texts")))


# ---------------------------------------------------------------------------------------------
# MAUVE (optional).


def compression_ratio(texts: Sequence[str]) -> float:
  """UTF-8 bytes of the texts joined by single spaces over their gzip size (level 9), as in
  Shaib et al. 2024 ("Standardizing the measurement of text diversity"): higher = more
  repetitive. Human prose is typically 2.5-3."""
  _check_texts(texts)
  data = " ".join(texts).encode("utf-8")
  if not data:
    raise ValueError("compression_ratio: the texts are all empty")
  return len(data) / len(gzip.compress(data, compresslevel=9, mtime=0))


class Slop:
  """The model's over-represented word n-grams (`slop_ngrams`) for any selection of a fixed
  list of model texts and of human texts, each text's n-grams coded as integers once: a
  bootstrap counts hundreds of selections of the same texts."""

  def __init__(self, texts: Sequence[str], human_texts: Sequence[str],
               orders: Sequence[int] = (1, 2, 3)):
    _check_texts(texts)
    _check_texts(human_texts)
    words = [_SLOP_WORD.findall(t.lower()) for t in list(texts) + list(human_texts)]
    self.orders, self.n_texts, self.names, self.codes = tuple(orders), len(texts), {}, {}
    for n in self.orders:
      grams = [_ngrams(w, n) for w in words]
      names = sorted({g for text in grams for g in text})
      code = {g: i for i, g in enumerate(names)}
      self.names[n] = [" ".join(g) for g in names]
      self.codes[n] = [np.fromiter((code[g] for g in text), np.int64, len(text)) for text in grams]

  def _counts(self, n: int, idx: np.ndarray, offset: int) -> np.ndarray:
    picked = [self.codes[n][offset + i] for i in idx]
    return np.bincount(np.concatenate(picked + [np.zeros(0, np.int64)]),
                       minlength=len(self.names[n]))

  def ngrams(self, idx: np.ndarray, human_idx: np.ndarray, *, top: int = SLOP_TOP,
             min_count: int = SLOP_MIN_COUNT) -> list[tuple[str, float, int, int]]:
    """`slop_ngrams` of model texts[idx] against human texts[human_idx] (repeats allowed)."""
    out = []
    for n in self.orders:
      model, human = self._counts(n, idx, 0), self._counts(n, human_idx, self.n_texts)
      vocab = int(np.count_nonzero(model + human))
      total_m, total_h = int(model.sum()) + vocab, int(human.sum()) + vocab
      for g in np.flatnonzero(model >= min_count):
        count, human_count = int(model[g]), int(human[g])
        ratio = ((count + 1) / total_m) / ((human_count + 1) / total_h)
        out.append((self.names[n][g], ratio, count, human_count))
    out.sort(key=lambda x: (-x[1], -x[2], x[0]))
    return out[:top]

  def ratio(self, idx: np.ndarray, human_idx: np.ndarray, **kwargs) -> float:
    """`slop_ratio` of the selection."""
    found = self.ngrams(idx, human_idx, **kwargs)
    return float(np.mean([r for _, r, _, _ in found])) if found else float("nan")


def slop_ngrams(texts: Sequence[str], human_texts: Sequence[str], *, top: int = SLOP_TOP,
                min_count: int = SLOP_MIN_COUNT, orders: Sequence[int] = (1, 2, 3)
                ) -> list[tuple[str, float, int, int]]:
  """The model's most over-represented word n-grams against human text (Paech et al. 2025,
  "Antislop"): [(n-gram, ratio, model count, human count)], highest ratio first.

  Words: lower-cased `[a-z]+('[a-z]+)?`. For each order n, with C the n-gram counts, T the
  totals and V_n the distinct n-grams of both sets, f(g) = (C(g) + 1) / (T + V_n) (add-one) and
  ratio(g) = f_model(g) / f_human(g). Candidates occur >= min_count times in the model's text;
  ties are broken by model count, then alphabetically.
  """
  return Slop(texts, human_texts, orders).ngrams(np.arange(len(texts)),
                                                 np.arange(len(human_texts)), top=top,
                                                 min_count=min_count)


def slop_ratio(texts: Sequence[str], human_texts: Sequence[str], *, top: int = SLOP_TOP,
               min_count: int = SLOP_MIN_COUNT) -> float:
  """Mean ratio of `slop_ngrams` (1 = no phrase over-used; human text against itself: 1).
  NaN when no n-gram reaches min_count."""
  return Slop(texts, human_texts).ratio(np.arange(len(texts)), np.arange(len(human_texts)),
                                        top=top, min_count=min_count)


def mauve(sample_features: np.ndarray, human_features: np.ndarray, *, seed: int = 25,
          **mauve_kwargs) -> float | None:
  """MAUVE (Pillutla et al. 2021) between features of samples [N, F] and human texts [M, F].

  A thin wrapper over `mauve.compute_mauve(p_features=human, q_features=samples)`: quantize
  both sets by k-means, area under the divergence frontier, in (0, 1] (1 = same). Pass the
  featurizer's standardized features. Returns None when `mauve-text` is not installed.
  """
  try:
    import mauve as mauve_lib  # optional: the `eval` extra (mauve-text)
  except ImportError:
    return None
  result = mauve_lib.compute_mauve(p_features=np.asarray(human_features),
                                   q_features=np.asarray(sample_features), seed=seed,
                                   verbose=False, **mauve_kwargs)
  return float(result.mauve)


# ---------------------------------------------------------------------------------------------
# Everything at once.


def compute(texts: Sequence[str], human_texts: Sequence[str], *,
            self_bleu_max_texts: int | None = SELF_BLEU_MAX_TEXTS,
            seed: int = 0) -> dict[str, float]:
  """All metrics of COMPUTE_KEYS for samples `texts` against `human_texts`, as Python floats.

  Scores of the human texts themselves: pass them as `texts` too.
  """
  rep = {n: rep_n(texts, n) for n in (2, 3, 4)}
  metrics = {f"rep_{n}": value for n, value in rep.items()}
  metrics["diversity"] = _diversity(list(rep.values()))
  for n in (1, 2, 3):
    metrics[f"distinct_{n}"] = distinct_n(texts, n)
  metrics["self_bleu4"] = self_bleu(texts, 4, max_texts=self_bleu_max_texts, seed=seed)
  metrics["zipf"] = zipf_coefficient(texts)
  metrics["sent_len_mean"] = sentence_length_mean(texts)
  metrics["sent_len_var"] = sentence_length_variance(texts)
  metrics["sent_len_w1"] = sentence_length_w1(texts, human_texts)
  metrics["unigram_l2"] = unigram_l2(texts, human_texts)
  metrics["compression_ratio"] = compression_ratio(texts)
  metrics["slop_ratio"] = slop_ratio(texts, human_texts)
  metrics["degenerate"] = degenerate_rate(texts)
  return {key: float(metrics[key]) for key in COMPUTE_KEYS}
