"""The featurizer phi: statistics of a window of token ids, computed from text only.

The same jit-compatible code featurizes human windows (the reference bank) and model samples.
Word and sentence boundaries come from the tokenizer's own pieces (a leading-space marker
starts a word; a piece containing . ! or ? ends a sentence), through lookup tables built once.

Features (FEATURE_NAMES, in order), each group switchable:
  word_frequency  mass of the window's tokens in K log2-rank bins of the reference unigram
                  distribution; type-token ratio
  diversity       distinct-2, distinct-3 (unique / total n-grams of tokens), rep-4 = 1 - distinct-4
                  (0 without any 4-gram)
  sentence_length mean and sd (population) of words per sentence; fraction of sentences with
                  1-5, 6-10, 11-20, 21-40, 41+ words (a trailing unfinished sentence counts)
  punctuation     per-word rates of comma, semicolon/colon, dash, quote, parenthesis, sentence
                  end; mean and sd of the gap in words between consecutive marks
  entropy         Shannon entropy (nats) of the window's token unigram distribution
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from dft_jax.data.tokenizer import Tokenizer

VERSION = 3  # of the featurizer and the reference windows; stats files carry it
NUM_RANK_BINS = 8
SENT_BINS = (5, 10, 20, 40)  # upper edges; the last bin is open
PUNCT_CLASSES = {"comma": ",", "semicolon_colon": ";:", "dash": "-\u2013\u2014",
                 "quote": "\"\u201c\u201d\u00ab\u00bb", "parenthesis": "()[]",
                 "sentence_end": ".!?"}
GROUPS = {
    "word_frequency": [f"rank_bin_{k}" for k in range(NUM_RANK_BINS)] + ["type_token_ratio"],
    "diversity": ["distinct_2", "distinct_3", "rep_4"],
    "sentence_length": ["sent_len_mean", "sent_len_sd", "sent_frac_1_5", "sent_frac_6_10",
                        "sent_frac_11_20", "sent_frac_21_40", "sent_frac_41_up"],
    "punctuation": [f"rate_{c}" for c in PUNCT_CLASSES] + ["punct_gap_mean", "punct_gap_sd"],
    "entropy": ["unigram_entropy"],
}
FEATURE_NAMES = tuple(name for names in GROUPS.values() for name in names)
RANK_BIN_COLUMNS = np.asarray([FEATURE_NAMES.index(f"rank_bin_{k}")
                               for k in range(NUM_RANK_BINS)])


@dataclasses.dataclass(frozen=True)
class Tables:
  """Per-token lookup tables [V] (numpy; become constants inside jit)."""
  word_start: np.ndarray   # bool: the piece begins a word (leading space marker + alphanumeric)
  alnum: np.ndarray        # bool: the piece has a letter or digit
  punct: np.ndarray        # [V, 6] bool: the piece holds a mark of each class
  rank_bin: np.ndarray     # int32: log2-rank bin of the token in the reference unigram counts

  @property
  def sent_end(self) -> np.ndarray:
    return self.punct[:, -1]


def rank_bins(unigram_counts: np.ndarray, num_bins: int = NUM_RANK_BINS) -> np.ndarray:
  """Bin k holds ranks [2^k, 2^(k+1)) (rank 1 = most frequent); unseen tokens go last."""
  order = np.argsort(-unigram_counts, kind="stable")
  ranks = np.empty_like(order)
  ranks[order] = np.arange(1, len(order) + 1)
  bins = np.minimum(np.floor(np.log2(ranks)).astype(np.int32), num_bins - 1)
  return np.where(unigram_counts > 0, bins, num_bins - 1).astype(np.int32)


def build_tables(tokenizer: Tokenizer, unigram_counts: np.ndarray,
                 vocab_size: int | None = None) -> Tables:
  """Tables over `vocab_size` ids (default: the counts' length); ids the tokenizer never
  makes (a model vocabulary padded past the tokenizer's) are plain, rarest-bin tokens."""
  v = vocab_size or len(unigram_counts)
  unigram_counts = np.pad(unigram_counts[:v], (0, max(v - len(unigram_counts), 0)))
  word_start = np.zeros(v, bool)
  alnum = np.zeros(v, bool)
  punct = np.zeros((v, len(PUNCT_CLASSES)), bool)
  for i in range(min(v, tokenizer.vocab_size)):
    raw = tokenizer.id_to_piece(i) or ""
    text = tokenizer.decode([i], skip_special_tokens=False)
    alnum[i] = any(ch.isalnum() for ch in text)
    starts_space = raw[:1] in ("\u0120", "\u2581", "\u010a") or text[:1].isspace()
    word_start[i] = alnum[i] and starts_space
    for c, marks in enumerate(PUNCT_CLASSES.values()):
      punct[i, c] = any(m in text for m in marks)
  return Tables(word_start, alnum, punct, rank_bins(unigram_counts))


def _masked_mean_sd(x, w):
  n = jnp.maximum(w.sum(), 1.0)
  mean = (x * w).sum() / n
  return mean, jnp.sqrt(jnp.maximum((w * (x - mean) ** 2).sum() / n, 0.0))


def _distinct(tokens_W, valid_W, n: int):
  """Unique / total n-grams among n-grams made only of valid tokens (exact, via lexsort)."""
  w = tokens_W.shape[0]
  if w < n:
    return jnp.zeros(())
  cols = [tokens_W[i:w - n + 1 + i] for i in range(n)]
  ok = valid_W[:w - n + 1]
  for i in range(1, n):
    ok = ok & valid_W[i:w - n + 1 + i]
  sentinel = jnp.iinfo(jnp.int32).max
  cols = [jnp.where(ok, c, sentinel) for c in cols]
  order = jnp.lexsort(cols[::-1])
  s = [c[order] for c in cols]
  differs = jnp.zeros(s[0].shape, bool).at[0].set(True)
  for c in s:
    differs = differs | jnp.concatenate([jnp.ones((1,), bool), c[1:] != c[:-1]])
  is_real = s[0] != sentinel
  total = ok.sum()
  return jnp.where(total > 0, (differs & is_real).sum() / jnp.maximum(total, 1), 0.0)


def featurize(tokens_W: jax.Array, valid_W: jax.Array, tables: Tables) -> jax.Array:
  """[W] ids (+ validity) -> [F] statistics, in FEATURE_NAMES order. vmap over windows."""
  w = tokens_W.shape[0]
  valid = valid_W.astype(bool)
  vf = valid.astype(jnp.float32)
  n = jnp.maximum(vf.sum(), 1.0)
  ws_table, an_table = jnp.asarray(tables.word_start), jnp.asarray(tables.alnum)
  first_valid = jnp.argmax(valid)
  word = (ws_table[tokens_W] | ((jnp.arange(w) == first_valid) & an_table[tokens_W])) & valid
  wf = word.astype(jnp.float32)
  n_words = jnp.maximum(wf.sum(), 1.0)

  # word frequency
  bins = jax.nn.one_hot(jnp.asarray(tables.rank_bin)[tokens_W], NUM_RANK_BINS) * vf[:, None]
  rank_mass = bins.sum(0) / n
  sentinel = jnp.iinfo(jnp.int32).max
  sorted_tok = jnp.sort(jnp.where(valid, tokens_W, sentinel))
  run_start = jnp.concatenate([jnp.ones((1,), bool), sorted_tok[1:] != sorted_tok[:-1]])
  run_start &= sorted_tok != sentinel
  ttr = run_start.sum() / n

  # diversity
  has_4grams = valid.sum() >= 4  # without any, nothing repeats: rep-4 = 0, not 1
  diversity = jnp.stack([_distinct(tokens_W, valid, 2), _distinct(tokens_W, valid, 3),
                         jnp.where(has_4grams, 1.0 - _distinct(tokens_W, valid, 4), 0.0)])

  # sentence length
  punct = jnp.asarray(tables.punct)[tokens_W] & valid[:, None]
  end = punct[:, -1]
  sent_id = jnp.cumsum(end) - end  # a sentence-end token belongs to the sentence it ends
  lengths = jax.ops.segment_sum(wf, sent_id, num_segments=w + 1)
  has = (lengths > 0).astype(jnp.float32)
  len_mean, len_sd = _masked_mean_sd(lengths, has)
  edges = jnp.asarray((0,) + SENT_BINS + (w + 1,), jnp.float32)
  in_bin = (lengths[:, None] > edges[None, :-1]) & (lengths[:, None] <= edges[None, 1:])
  sent_frac = (in_bin * has[:, None]).sum(0) / jnp.maximum(has.sum(), 1.0)

  # punctuation rhythm
  rates = punct.sum(0) / n_words
  is_mark = punct.any(-1)
  word_index = jnp.cumsum(wf)
  mark_pos = jnp.sort(jnp.where(is_mark, jnp.arange(w), w))
  n_marks = is_mark.sum()
  at = word_index[jnp.minimum(mark_pos, w - 1)]
  gaps = at[1:] - at[:-1]
  gap_ok = (jnp.arange(w - 1) < n_marks - 1).astype(jnp.float32)
  gap_mean, gap_sd = _masked_mean_sd(gaps, gap_ok)
  gap_mean = jnp.where(n_marks >= 2, gap_mean, n_words)
  gap_sd = jnp.where(n_marks >= 2, gap_sd, 0.0)

  # entropy of the token unigram distribution
  run_id = jnp.cumsum(run_start) - 1
  counts = jax.ops.segment_sum((sorted_tok != sentinel).astype(jnp.float32),
                               jnp.maximum(run_id, 0), num_segments=w)
  p = counts / n
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))

  return jnp.concatenate([rank_mass, ttr[None], diversity, jnp.stack([len_mean, len_sd]),
                          sent_frac, rates, jnp.stack([gap_mean, gap_sd]), entropy[None]]
                         ).astype(jnp.float32)


def featurize_batch(tokens_NxW, valid_NxW, tables: Tables) -> jax.Array:
  return jax.vmap(lambda t, v: featurize(t, v, tables))(tokens_NxW, valid_NxW)


def group_mask(groups) -> np.ndarray:
  """[F] float mask of the features in the selected groups."""
  unknown = set(groups) - set(GROUPS)
  if unknown:
    raise ValueError(f"unknown feature group(s) {sorted(unknown)}; known: {list(GROUPS)}")
  return np.asarray([any(name in GROUPS[g] for g in groups) for name in FEATURE_NAMES],
                    np.float32)


# --- soft statistics (straight-through rollouts) -------------------------------------------

SOFT_FEATURES = tuple([f"rank_bin_{k}" for k in range(NUM_RANK_BINS)]
                      + ["sent_len_mean", "sent_len_sd"]
                      + [f"rate_{c}" for c in PUNCT_CLASSES] + ["unigram_entropy"])
SOFT_COLUMNS = np.asarray([FEATURE_NAMES.index(n) for n in SOFT_FEATURES])


def soft_featurize(y_CxV: jax.Array, tables: Tables) -> jax.Array:
  """The differentiable subset SOFT_FEATURES of phi for a window of token distributions.

  At one-hot inputs each value equals `featurize` on those tokens; in between it is linear in
  the distributions (bin mass, rates), or a smooth function of them (sentence lengths through a
  soft running-length recurrence, entropy of the mean distribution).
  """
  y = y_CxV.astype(jnp.float32)
  word_start = jnp.asarray(tables.word_start, jnp.float32)
  first_word = jnp.asarray(tables.alnum & ~tables.word_start, jnp.float32)
  punct = jnp.asarray(tables.punct, jnp.float32)
  w_C = y @ word_start
  w_C = w_C.at[0].add(y[0] @ first_word)
  n_words = jnp.maximum(w_C.sum(), 1.0)
  rank_mass = y.mean(0) @ jax.nn.one_hot(jnp.asarray(tables.rank_bin), NUM_RANK_BINS)
  rates = (y @ punct).sum(0) / n_words
  e_C = y @ punct[:, -1]

  def running(before, inputs):  # words of the current sentence before token t
    w, e = inputs
    length = before + w
    return length * (1.0 - e), (length, e * jnp.minimum(length, 1.0))

  trailing, (lengths, weights) = jax.lax.scan(running, jnp.zeros(()), (w_C, e_C))
  lengths = jnp.concatenate([lengths, trailing[None]])
  weights = jnp.concatenate([weights, jnp.minimum(trailing, 1.0)[None]])
  total = jnp.maximum(weights.sum(), 1e-6)
  mean = (weights * lengths).sum() / total
  sd = jnp.sqrt(jnp.maximum((weights * (lengths - mean) ** 2).sum() / total, 1e-12))
  q = y.mean(0)
  entropy = -jnp.sum(q * jnp.log(jnp.maximum(q, 1e-12)))
  return jnp.concatenate([rank_mass, jnp.stack([mean, sd]), rates, entropy[None]])
