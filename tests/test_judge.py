"""The judge (a proxy for human preference): features, two-sample accuracy, win rates, errors."""

import math
import zlib

import numpy as np
import pytest

from dft_jax.evaluation import judge, text_metrics

WORDS = ("the a of and to in is was for on that with as by at from it his her they we this "
         "river city morning council report market winter garden letter doctor village engine "
         "storm teacher window harbour station question answer history mountain painter sailor "
         "quickly slowly never often bright quiet heavy narrow ancient sudden careful strange "
         "walked found opened carried watched remembered built crossed followed wrote").split()
OTHER_WORDS = ("tensor gradient kernel matrix vector sampler compiler buffer cache thread "
               "socket packet router schema query index shard replica batch epoch").split()


def corpus(n: int, seed: int, words=WORDS) -> list[str]:
  """Human-like texts: 1-4 sentences of 3-17 Zipf-drawn words, commas, varied end marks."""
  rng = np.random.default_rng(seed)
  p_W = 1.0 / np.arange(1, len(words) + 1)
  p_W /= p_W.sum()
  texts = []
  for _ in range(n):
    sentences = []
    for _ in range(rng.integers(1, 5)):
      ws = list(rng.choice(words, rng.integers(3, 18), p=p_W))
      if len(ws) > 5 and rng.random() < 0.5:
        ws[rng.integers(2, len(ws) - 1)] += ","
      ws[0] = ws[0].capitalize()
      sentences.append(" ".join(ws) + rng.choice([".", ".", ".", "!", "?"]))
    texts.append(" ".join(sentences))
  return texts


def degenerate(n: int, seed: int) -> list[str]:
  """Repetitive model text: "the the the ..." of random length."""
  rng = np.random.default_rng(seed)
  return [" ".join(["the"] * int(rng.integers(5, 40))) for _ in range(n)]


def flattened(n: int, seed: int) -> list[str]:
  """Subtly off text: human-like, but no commas and every sentence ends in a period."""
  return [t.replace(",", "").replace("!", ".").replace("?", ".") for t in corpus(n, seed)]


@pytest.fixture(scope="module")
def human():
  return corpus(400, seed=0)


@pytest.fixture(scope="module")
def degenerate_judge(human):
  return judge.train(human[:100], degenerate(100, seed=1), seed=0)


def test_featurize_stable_hash_and_unit_norm():
  feats = judge.featurize(["Hello world hello", ""], n_buckets=1024)
  ids_K, vals_K = feats.ids_NxK[0], feats.vals_NxK[0]
  assert zlib.crc32(b"1 hello") % 1024 in ids_K  # stable crc32, not the salted hash()
  assert zlib.crc32(b"2 world hello") % 1024 in ids_K
  assert np.linalg.norm(vals_K) == pytest.approx(1.0, abs=1e-6)
  np.testing.assert_array_equal(feats.vals_NxK[1], 0.0)  # the empty text has no features
  np.testing.assert_array_equal(feats.dense_NxD[1], 0.0)
  again = judge.featurize(["Hello world hello", ""], n_buckets=1024)
  np.testing.assert_array_equal(again.ids_NxK, feats.ids_NxK)


def test_style_stats():
  text = "One two. Three 3.5 five! Six?"  # "3.5" ends no sentence: no whitespace after the dot
  assert [len(s.split()) for s in text_metrics.split_sentences(text)] == [2, 3, 1]
  stats = dict(zip(judge.DENSE_NAMES, judge.style_stats(text)))
  assert stats["log_words"] == pytest.approx(math.log(7))
  assert stats["mean_word_len"] == pytest.approx(24 / 6)
  assert stats["type_token_ratio"] == 1.0
  assert stats["log_sentences"] == pytest.approx(math.log(4))
  assert stats["sent_len_mean"] == pytest.approx(2.0)
  assert stats["sent_len_sd"] == pytest.approx(math.sqrt(2 / 3))
  assert stats["punct_per_word"] == pytest.approx(4 / 6)


def test_same_distribution_is_indistinguishable(human):
  result = judge.two_sample_accuracy(human[:200], human[200:])  # measured 0.475
  assert result["n"] == 200
  assert abs(result["accuracy"] - 0.5) < 0.15, result


@pytest.mark.parametrize("other", ["degenerate", "other_vocabulary", "flattened"])
def test_different_text_is_told_apart(human, other):
  model = {"degenerate": lambda: degenerate(250, seed=1),  # measured 1.0
           "other_vocabulary": lambda: corpus(250, seed=2, words=OTHER_WORDS),  # 1.0
           "flattened": lambda: flattened(250, seed=3)}[other]()  # 0.795: subtler
  result = judge.two_sample_accuracy(human[:200], model)
  assert result["n"] == 200  # the larger set is subsampled to the smaller one's size
  assert result["accuracy"] > (0.65 if other == "flattened" else 0.9), result


def test_deterministic_given_seed(human):
  model = flattened(100, seed=3)
  first = judge.two_sample_accuracy(human[:100], model, seed=7)
  second = judge.two_sample_accuracy(human[:100], model, seed=7)
  assert first["accuracy"] == second["accuracy"] and first["sd"] == second["sd"]
  np.testing.assert_array_equal(first["correct_model"], second["correct_model"])
  # the per-text verdicts are the accuracy's own: their class-balanced mean over folds
  both = np.concatenate([first["correct_human"], first["correct_model"]])
  assert abs(both.mean() - first["accuracy"]) < 0.02
  np.testing.assert_array_equal(judge.train(human[:50], model[:50], 3).p_human(human[300:320]),
                                judge.train(human[:50], model[:50], 3).p_human(human[300:320]))


def test_win_rate_prefers_human_like(human, degenerate_judge):
  a, b = corpus(60, seed=4), degenerate(60, seed=5)
  result = judge.win_rate(degenerate_judge, a, b)
  assert result["win_rate"] > 0.8, result
  assert result["wins_a_first"] == result["wins_b_first"]  # a pointwise judge: orders agree
  assert result["n"] == 60
  crossfit = judge.pairwise(human[:100], a, b)
  assert crossfit["win_rate"] > 0.8 and crossfit["n"] == 60, crossfit


def test_self_pairs_all_tie(human, degenerate_judge):
  a = corpus(40, seed=6)
  result = judge.win_rate(degenerate_judge, a, a)
  assert result["win_rate"] == 0.5 and result["ties"] == 40, result
  assert result["wins_a_first"] == result["wins_b_first"] == 0
  assert judge.pairwise(human[:100], a, a)["win_rate"] == 0.5


def test_swapping_runs_gives_complement(human):
  proxy = judge.train(human[:150], flattened(150, seed=7))
  a = corpus(60, seed=8)
  b = flattened(30, seed=9) + corpus(30, seed=10)  # a mixture: a win rate strictly inside (0, 1)
  ab, ba = judge.win_rate(proxy, a, b), judge.win_rate(proxy, b, a)
  assert 0.0 < ab["win_rate"] < 1.0
  assert ab["win_rate"] == pytest.approx(1.0 - ba["win_rate"], abs=1e-12)
  assert ab["ties"] == ba["ties"]
  # Pair i of b is a tie with itself: ties count half, never towards either side.
  c = list(a[:30]) + list(b[30:])
  ac = judge.win_rate(proxy, a, c)
  assert ac["ties"] == 30
  ca = judge.win_rate(proxy, c, a)
  assert ac["win_rate"] == pytest.approx(1.0 - ca["win_rate"], abs=1e-12)


def test_bad_input(human, degenerate_judge):
  with pytest.raises(ValueError, match="texts_a and texts_b must pair up.*3 and 2"):
    judge.win_rate(degenerate_judge, human[:3], human[3:5])
  with pytest.raises(ValueError, match="texts_a and texts_b must pair up"):
    judge.pairwise(human[:10], human[:6], human[:7])
  with pytest.raises(ValueError, match="model_texts has 3 texts, fewer than folds=5"):
    judge.two_sample_accuracy(human[:10], human[10:13])
  with pytest.raises(ValueError, match=r"pairs \(texts_a, texts_b\) has 4 texts"):
    judge.pairwise(human[:10], human[:4], human[4:8])
  with pytest.raises(ValueError, match=r"human_texts\[1\] is a int"):
    judge.train(["fine", 3], ["also fine"])
  with pytest.raises(ValueError, match="must be a sequence of strings"):
    degenerate_judge.p_human("one string, not a list")
  with pytest.raises(ValueError, match="unknown judge fitting options"):
    judge.two_sample_accuracy(human[:10], human[10:20], lr=0.1)
