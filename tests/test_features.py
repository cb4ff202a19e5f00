"""The featurizer against a plain-Python reference on real text windows."""

import math
from collections import Counter

import jax
import numpy as np
import pytest

from dft_jax.data import tokenizer as tokenizer_lib
from dft_jax.losses import features as F

# Public-domain prose (Ambrose Bierce, The Devil's Dictionary, 1911; Jane Austen, 1813).
TEXT = (
    "ABSURDITY, n. A statement or belief manifestly inconsistent with one's own opinion. "
    "ACADEME, n. An ancient school where morality and philosophy were taught; the modern "
    "school where football is taught! ACCIDENT, n. An inevitable occurrence due to the "
    "action of immutable natural laws -- (see the dictionary) -- and nothing else. "
    "\"It is a truth universally acknowledged, that a single man in possession of a good "
    "fortune, must be in want of a wife.\" However little known the feelings or views of such "
    "a man may be on his first entering a neighbourhood, this truth is so well fixed in the "
    "minds of the surrounding families, that he is considered as the rightful property of "
    "some one or other of their daughters. Is it? Yes; it is: always, always, always.")


@pytest.fixture(scope="module")
def setup():
  tok = tokenizer_lib.train_byte_level_bpe([TEXT] * 3, vocab_size=300)
  ids = tok.encode(TEXT)
  counts = np.bincount(ids, minlength=tok.vocab_size).astype(np.float64)
  return tok, ids, F.build_tables(tok, counts), counts


def reference(window, valid, tok, counts):
  """Every statistic from its definition, with plain Python over decoded pieces."""
  toks = [t for t, v in zip(window, valid) if v]
  n = len(toks)
  pieces = [tok.decode([t], skip_special_tokens=False) for t in toks]
  raw = [tok.id_to_piece(t) for t in toks]
  alnum = [any(c.isalnum() for c in p) for p in pieces]
  word = [a and (r[0] in "\u0120\u2581\u010a" or p[:1].isspace()) for a, r, p in
          zip(alnum, raw, pieces)]
  if toks:
    word[0] = word[0] or alnum[0]
  n_words = max(sum(word), 1)
  ranks = {t: r + 1 for r, t in enumerate(sorted(range(len(counts)), key=lambda t: (-counts[t],
                                                                                   t)))}
  def rank_bin(t):
    return min(int(math.floor(math.log2(ranks[t]))), 7) if counts[t] > 0 else 7
  bins = Counter(rank_bin(t) for t in toks)
  out = {f"rank_bin_{k}": bins[k] / n for k in range(8)}
  out["type_token_ratio"] = len(set(toks)) / n
  def distinct(k):
    grams = [tuple(toks[i:i + k]) for i in range(n - k + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0
  out.update(distinct_2=distinct(2), distinct_3=distinct(3),
             rep_4=1 - distinct(4) if n >= 4 else 0.0)  # no 4-grams: nothing repeated
  lengths, current = [], 0
  for w, p in zip(word, pieces):
    current += w
    if any(m in p for m in ".!?"):
      lengths.append(current)
      current = 0
  lengths.append(current)
  lengths = [l for l in lengths if l > 0]
  mean = sum(lengths) / len(lengths) if lengths else 0.0
  out["sent_len_mean"] = mean
  out["sent_len_sd"] = math.sqrt(sum((l - mean) ** 2 for l in lengths) / len(lengths)) \
      if lengths else 0.0
  for name, lo, hi in (("1_5", 1, 5), ("6_10", 6, 10), ("11_20", 11, 20), ("21_40", 21, 40),
                       ("41_up", 41, 10**9)):
    out[f"sent_frac_{name}"] = sum(lo <= l <= hi for l in lengths) / max(len(lengths), 1)
  marks_at = []
  words_so_far = 0
  for w, p in zip(word, pieces):
    words_so_far += w
    if any(m in p for marks in F.PUNCT_CLASSES.values() for m in marks):
      marks_at.append(words_so_far)
  for cls, marks in F.PUNCT_CLASSES.items():
    out[f"rate_{cls}"] = sum(any(m in p for m in marks) for p in pieces) / n_words
  gaps = [b - a for a, b in zip(marks_at, marks_at[1:])]
  if gaps:
    gm = sum(gaps) / len(gaps)
    out["punct_gap_mean"], out["punct_gap_sd"] = gm, math.sqrt(
        sum((g - gm) ** 2 for g in gaps) / len(gaps))
  else:
    out["punct_gap_mean"], out["punct_gap_sd"] = float(n_words), 0.0
  c = Counter(toks)
  out["unigram_entropy"] = -sum(v / n * math.log(v / n) for v in c.values())
  return np.asarray([out[name] for name in F.FEATURE_NAMES])


@pytest.mark.parametrize("start,width,pad", [(0, 64, 0), (17, 48, 0), (40, 64, 9), (90, 32, 31),
                                             (5, 32, 29)])  # 3 tokens: no 4-gram
def test_featurizer_equals_plain_python(setup, start, width, pad):
  tok, ids, tables, counts = setup
  window = np.asarray(ids[start:start + width], np.int32)
  valid = np.ones(width, bool)
  if pad:  # trailing positions invalid (after EOS in a sample)
    valid[-pad:] = False
  got = np.asarray(jax.jit(lambda t, v: F.featurize(t, v, tables))(window, valid))
  want = reference(window.tolist(), valid.tolist(), tok, counts)
  for name, g, w in zip(F.FEATURE_NAMES, got, want):
    assert abs(g - w) <= 1e-6 * max(1.0, abs(w)), (name, g, w)


def test_feature_groups_and_vocabulary_tables(setup):
  tok, _, tables, _ = setup
  assert len(F.FEATURE_NAMES) == sum(len(v) for v in F.GROUPS.values()) == 28
  mask = F.group_mask(["punctuation", "entropy"])
  assert mask.sum() == 9 and mask[-1] == 1 and mask[0] == 0
  with pytest.raises(ValueError, match="unknown feature group"):
    F.group_mask(["rhythm"])
  comma = tok.encode(",")[0]
  assert tables.punct[comma, 0] and not tables.word_start[comma]


@pytest.mark.parametrize("start,width", [(0, 64), (33, 40), (100, 24)])
def test_soft_statistics_equal_the_hard_ones_at_one_hot_inputs(setup, start, width):
  tok, ids, tables, _ = setup
  window = np.asarray(ids[start:start + width], np.int32)
  hard = np.asarray(F.featurize(window, np.ones(width, bool), tables))[F.SOFT_COLUMNS]
  y = jax.nn.one_hot(window, len(tables.rank_bin))
  soft = np.asarray(jax.jit(lambda y: F.soft_featurize(y, tables))(y))
  np.testing.assert_allclose(soft, hard, atol=1e-5)
  grad = jax.grad(lambda y: F.soft_featurize(y, tables).sum())(y + 0.01)
  assert np.isfinite(np.asarray(grad)).all() and np.abs(np.asarray(grad)).max() > 0
