"""Text metrics against independent computations of their published formulas."""

import collections
import itertools
import math
import zlib

import numpy as np
import pytest
from nltk.translate import bleu_score

from dft_jax.evaluation import self_bleu as self_bleu_lib
from dft_jax.evaluation import text_metrics as tm

# Fixed "natural" texts: repeats across and within texts, a text shorter than 4 words, ties in
# reference lengths, an empty text.
TEXTS = [
    "the cat sat on the mat . the cat sat on the hat .",
    "a dog sat on the mat and the dog barked at the cat .",
    "the cat sat on the mat .",
    "nothing here matches anything",
    "short one",
    "the the the the the the",
    "on the mat the cat sat , and then the dog sat on the cat .",
    "",
    "a bird flew over the mat and the hat and the cat",
]
HUMAN = [
    "The storm reached the coast at night. Roads were closed! Did anyone stay? Nobody knows.",
    "Mr. Lee said the bridge would reopen soon. Engineers disagreed",
    "It rained. It rained again. Then the sun came out and the town dried slowly.",
]
PROSE = [
    "It was late. The train had gone, and the platform was empty except for a man with a "
    "suitcase! He looked at the clock? It said nine.",
    "She wrote the letter twice. The first draft was too long, the second too short. In the "
    "end she sent neither",
    "Markets fell on Monday. Analysts blamed the rate decision, the weak data and the mood.",
]


# ---------------------------------------------------------------------------------------------
# Independent references (Counter and explicit loops, not the module's helpers).


def ref_grams(text, n):
  words = text.split()
  out = []
  for start in range(0, len(words) - n + 1):
    out.append(" ".join(words[start:start + n]))
  return out


def ref_rep(texts, n):
  unique = sum(len(collections.Counter(ref_grams(t, n))) for t in texts)
  total = sum(sum(collections.Counter(ref_grams(t, n)).values()) for t in texts)
  return 0.0 if total == 0 else 100.0 - 100.0 * unique / total


def ref_distinct(texts, n):
  counter = collections.Counter()
  for t in texts:
    counter.update(ref_grams(t, n))
  return len(counter) / sum(counter.values()) if counter else 0.0


def ref_self_bleu(texts, weights):
  smoothing = bleu_score.SmoothingFunction().method1
  scores = []
  for i, hypothesis in enumerate(texts):
    references = [t.split() for j, t in enumerate(texts) if j != i]
    scores.append(bleu_score.sentence_bleu(references, hypothesis.split(), weights=weights,
                                           smoothing_function=smoothing))
  return sum(scores) / len(scores)


def ref_w1(a, b):
  """integral over the support of |F_a(x) - F_b(x)| dx, both CDFs right-continuous steps."""
  a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
  support = np.unique(np.concatenate([a, b]))
  total = 0.0
  for left, right in zip(support[:-1], support[1:]):
    cdf_a = np.count_nonzero(a <= left) / len(a)
    cdf_b = np.count_nonzero(b <= left) / len(b)
    total += abs(cdf_a - cdf_b) * (right - left)
  return total


# ---------------------------------------------------------------------------------------------
# rep-n, distinct-n, diversity.


def test_rep_distinct_diversity_hand_computed():
  texts = ["a b a b", "c d"]
  # bigrams: doc 1 = ab ba ab (3, unique 2); doc 2 = cd (1, unique 1)
  # rep_2 = 100 (1 - (2 + 1) / (3 + 1)) = 25
  assert tm.rep_n(texts, 2) == pytest.approx(25.0, abs=1e-12)
  # trigrams: doc 1 = aba bab (2, unique 2); doc 2 has none -> rep_3 = 0; likewise rep_4 = 0
  assert tm.rep_n(texts, 3) == 0.0
  assert tm.rep_n(texts, 4) == 0.0
  # diversity = (1 - .25)(1 - 0)(1 - 0) = 0.75
  assert tm.diversity(texts) == pytest.approx(0.75, abs=1e-12)
  # distinct over the set: unigrams a b a b c d -> 4 / 6; bigrams ab ba ab cd -> 3 / 4
  assert tm.distinct_n(texts, 1) == pytest.approx(4 / 6, abs=1e-12)
  assert tm.distinct_n(texts, 2) == pytest.approx(3 / 4, abs=1e-12)


def test_rep_is_per_document_distinct_is_over_the_set():
  texts = ["x y", "x y"]
  # each document's only bigram is unique in it: rep_2 = 100 (1 - 2/2) = 0
  assert tm.rep_n(texts, 2) == 0.0
  # over the set the bigram "x y" appears twice: distinct_2 = 1 / 2
  assert tm.distinct_n(texts, 2) == pytest.approx(0.5, abs=1e-12)


def test_no_ngrams_conventions():
  assert tm.rep_n(["one two", "three"], 3) == 0.0
  assert tm.distinct_n(["one two", "three"], 3) == 0.0
  assert tm.rep_n([""], 2) == 0.0


def test_repeated_text():
  texts = ["the cat sat " * 50]
  # 150 words, 149 bigrams of which 3 unique: rep_2 = 100 (1 - 3/149)
  assert tm.rep_n(texts, 2) == pytest.approx(100 * (1 - 3 / 149), abs=1e-9)
  assert tm.rep_n(texts, 2) > 97.9
  # diversity = (3/149)(3/148)(3/147) ~ 8e-6
  assert tm.diversity(texts) == pytest.approx(27 / (149 * 148 * 147), rel=1e-9)
  assert tm.diversity(texts) < 1e-5


def test_distinct_texts_have_diversity_one():
  texts = ["alpha beta gamma delta epsilon", "zeta eta theta iota kappa lambda"]
  assert tm.diversity(texts) == 1.0
  for n in (1, 2, 3):
    assert tm.distinct_n(texts, n) == 1.0


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_rep_distinct_against_reference(n):
  assert tm.rep_n(TEXTS, n) == pytest.approx(ref_rep(TEXTS, n), abs=1e-12)
  assert tm.distinct_n(TEXTS, n) == pytest.approx(ref_distinct(TEXTS, n), abs=1e-12)


def test_diversity_against_reference():
  expected = 1.0
  for n in (2, 3, 4):
    expected *= 1.0 - ref_rep(TEXTS, n) / 100.0
  assert tm.diversity(TEXTS) == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Self-BLEU.


def test_self_bleu_matches_nltk():
  assert tm.self_bleu(TEXTS) == pytest.approx(ref_self_bleu(TEXTS, (0.25,) * 4), abs=1e-9)
  assert tm.self_bleu(PROSE + HUMAN) == pytest.approx(
      ref_self_bleu(PROSE + HUMAN, (0.25,) * 4), abs=1e-9)


def test_self_bleu_bigram_matches_nltk():
  assert tm.self_bleu(TEXTS, n=2) == pytest.approx(ref_self_bleu(TEXTS, (0.5, 0.5)), abs=1e-9)


def test_self_bleu_identical_texts_is_one():
  texts = ["one two three four five"] * 3
  assert tm.self_bleu(texts) == pytest.approx(1.0, abs=1e-12)


def test_self_bleu_subsample():
  texts = TEXTS[:6]
  assert tm.self_bleu(texts, max_texts=None) == tm.self_bleu(texts, max_texts=6)
  subsampled = tm.self_bleu(texts, max_texts=3, seed=1)
  assert subsampled == tm.self_bleu(texts, max_texts=3, seed=1)
  # the score of some 3 of the 6 texts, each against the other two
  candidates = [ref_self_bleu(list(subset), (0.25,) * 4)
                for subset in itertools.combinations(texts, 3)]
  assert min(abs(subsampled - c) for c in candidates) < 1e-9


# ---------------------------------------------------------------------------------------------
# Zipf.


def test_zipf_exact_power_law():
  ranks = np.arange(1, 2001, dtype=np.float64)
  frequencies = 1e6 * ranks ** -1.3
  assert tm.zipf_fit(np.random.default_rng(0).permutation(frequencies)) == pytest.approx(
      1.3, abs=1e-6)


def test_zipf_uses_the_first_5000_ranks():
  ranks = np.arange(1, 5001, dtype=np.float64)
  head = 1e9 * ranks ** -1.3
  tail = np.full(3000, head[-1] * 0.5)  # ranks past 5000 that would bend the fit
  assert tm.zipf_fit(np.concatenate([tail, head])) == pytest.approx(1.3, abs=1e-6)
  assert abs(tm.zipf_fit(np.concatenate([tail, head]), max_rank=8000) - 1.3) > 0.01


def test_zipf_coefficient_against_polyfit():
  for texts in (TEXTS, PROSE + HUMAN):
    counts = collections.Counter(w for t in texts for w in t.split())
    sorted_counts = sorted(counts.values(), reverse=True)
    ranks = list(range(1, len(sorted_counts) + 1))
    slope, _ = np.polyfit([math.log(r) for r in ranks], [math.log(c) for c in sorted_counts],
                          1)
    assert tm.zipf_coefficient(texts) == pytest.approx(-slope, abs=1e-9)


def test_zipf_coefficient_of_synthetic_text():
  # word r appears round(400 r^-1.3) times: a text whose fit is close to 1.3
  words = []
  for r in range(1, 41):
    words += [f"w{r}"] * round(400 * r ** -1.3)
  s = tm.zipf_coefficient([" ".join(words)])
  assert s == pytest.approx(1.3, abs=0.05)


# ---------------------------------------------------------------------------------------------
# Sentences.


@pytest.mark.parametrize("text, expected", [
    ("Dr. Smith came.", ["Dr.", "Smith came."]),     # "." then whitespace splits, even "Dr."
    ("a.b", ["a.b"]),                                # no whitespace after "."
    ("Hi!Bye.", ["Hi!Bye."]),                        # "!" then a non-space does not split
    ("One two. Three four five", ["One two.", "Three four five"]),  # trailing, no terminator
    ("Really?  Yes!\nOk.", ["Really?", "Yes!", "Ok."]),
    ("Wait... what?", ["Wait...", "what?"]),
    ("", []),
    ("   \n ", []),
])
def test_split_sentences(text, expected):
  assert tm.split_sentences(text) == expected


def test_sentence_length_stats():
  texts = ["Dr. Smith came.", "a b c d"]
  lengths = tm.sentence_lengths(texts)
  np.testing.assert_array_equal(lengths, [1, 2, 4])
  # mean 7/3; population variance ((1 - 7/3)^2 + (2 - 7/3)^2 + (4 - 7/3)^2) / 3
  #                                = (16/9 + 1/9 + 25/9) / 3 = 14/9  (ddof 1 would be 7/3)
  assert tm.sentence_length_mean(texts) == pytest.approx(7 / 3, abs=1e-12)
  assert tm.sentence_length_variance(texts) == pytest.approx(14 / 9, abs=1e-12)


def test_sentence_length_w1():
  assert tm.sentence_length_w1(HUMAN, HUMAN) == 0.0
  # against a point mass at 3, W1 = mean |x - 3| over {1, 2, 4} = (2 + 1 + 1) / 3 = 4/3
  assert tm.sentence_length_w1(["Dr. Smith came.", "a b c d"], ["x y z"]) == pytest.approx(
      4 / 3, abs=1e-12)
  expected = ref_w1(tm.sentence_lengths(PROSE), tm.sentence_lengths(HUMAN))
  assert expected > 0
  assert tm.sentence_length_w1(PROSE, HUMAN) == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Unigram L2.


def test_unigram_l2():
  assert tm.unigram_l2(HUMAN, HUMAN) == 0.0
  # p = (a 2/3, b 1/3, c 0), q = (a 1/2, b 0, c 1/2): diff (1/6, 1/3, -1/2),
  # squared 1/36 + 4/36 + 9/36 = 14/36
  assert tm.unigram_l2(["a a b"], ["a c"]) == pytest.approx(math.sqrt(14) / 6, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Errors, MAUVE, compute.


@pytest.mark.parametrize("call, message", [
    (lambda: tm.rep_n([], 2), "no texts"),
    (lambda: tm.distinct_n([], 2), "no texts"),
    (lambda: tm.zipf_coefficient(["", "  "]), "no words in the samples"),
    (lambda: tm.zipf_coefficient(["same same"]), "at least 2 words"),
    (lambda: tm.unigram_l2(["a"], [""]), "no words in the human texts"),
    (lambda: tm.self_bleu(["only one"]), "at least 2 texts"),
    (lambda: tm.sentence_length_mean([" "]), "no sentences in the samples"),
    (lambda: tm.sentence_length_w1(["a."], [""]), "no sentences in the human texts"),
])
def test_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_mauve_optional():
  rng = np.random.default_rng(0)
  score = tm.mauve(rng.normal(size=(40, 4)), rng.normal(size=(40, 4)))
  assert score is None or 0.0 < score <= 1.0


def test_compute():
  metrics = tm.compute(PROSE + TEXTS, HUMAN)
  assert set(metrics) == {"rep_2", "rep_3", "rep_4", "diversity", "distinct_1", "distinct_2",
                          "distinct_3", "self_bleu4", "zipf", "sent_len_mean", "sent_len_var",
                          "sent_len_w1", "unigram_l2", "compression_ratio", "slop_ratio",
                          "degenerate"}
  for value in metrics.values():
    assert type(value) is float and math.isfinite(value)
  assert metrics["rep_3"] == pytest.approx(ref_rep(PROSE + TEXTS, 3), abs=1e-12)
  assert metrics["diversity"] == pytest.approx(tm.diversity(PROSE + TEXTS), abs=1e-15)
  assert metrics["self_bleu4"] == pytest.approx(
      ref_self_bleu(PROSE + TEXTS, (0.25,) * 4), abs=1e-9)
  human_against_itself = tm.compute(HUMAN, HUMAN)
  assert human_against_itself["sent_len_w1"] == 0.0
  assert human_against_itself["unigram_l2"] == 0.0
  assert human_against_itself["slop_ratio"] == 1.0


def test_compression_ratio_against_zlib():
  texts = ["the cat sat on the mat", "the cat sat on the mat again", "a dog"]
  data = "the cat sat on the mat the cat sat on the mat again a dog".encode()
  deflate = zlib.compressobj(9, zlib.DEFLATED, 31)   # wbits 31: the gzip container
  size = len(deflate.compress(data) + deflate.flush())
  assert tm.compression_ratio(texts) == pytest.approx(len(data) / size, rel=1e-12)
  assert tm.compression_ratio(["word " * 200]) > 10 * tm.compression_ratio(PROSE)


def test_slop_ngrams_hand_computed():
  model = ["Delve delve delve into it.", "We delve into it."]
  human = ["We look into it.", "Look at it."]
  # unigrams, model: delve 4, into 2, it 2, we 1; human: we 1, look 2, into 1, it 2, at 1
  # V_1 = |{delve, into, it, we, look, at}| = 6; T_model + V = 9 + 6, T_human + V = 7 + 6
  out = tm.slop_ngrams(model, human, min_count=2, orders=(1,))
  ratio = lambda cm, ch: ((cm + 1) / 15) / ((ch + 1) / 13)  # noqa: E731
  assert [g for g, *_ in out] == ["delve", "into", "it"]
  assert out[0] == ("delve", pytest.approx(ratio(4, 0)), 4, 0)
  assert out[1][1] == pytest.approx(ratio(2, 1))
  assert out[2][1] == pytest.approx(ratio(2, 2))
  # bigrams, model: "delve delve" 2, "delve into" 2, "into it" 2, "we delve" 1 (T = 7);
  # human: we look, look into, into it, look at, at it (T = 5); V_2 = 8
  bigrams = dict((g, r) for g, r, _, _ in tm.slop_ngrams(model, human, min_count=2,
                                                          orders=(2,)))
  assert bigrams == pytest.approx({"delve delve": (3 / 15) / (1 / 13),
                                   "delve into": (3 / 15) / (1 / 13),
                                   "into it": (3 / 15) / (2 / 13)})
  # trigrams: "delve into it" 2 of 5 (V_3 = 7; human: 3 trigrams, none of it) -> (3/12)/(1/10)
  # so over orders 1-3 the top four are delve 13/3, the two bigrams 2.6, the trigram 2.5
  assert tm.slop_ratio(model, human, min_count=2, top=4) == pytest.approx(
      (13 / 3 + 2.6 + 2.6 + 2.5) / 4)


def test_slop_ratio_of_human_text_is_one():
  assert tm.slop_ratio(PROSE, PROSE, min_count=1) == pytest.approx(1.0)
  assert tm.slop_ratio(["x y"], ["a b"]) != tm.slop_ratio(["x y"], ["a b"])  # NaN: no candidate


def test_selection_forms_equal_the_metrics_on_the_selected_texts():
  # The bootstrap's forms (n-grams counted once, any selection with repeats) against the
  # metrics recomputed from the selected texts themselves.
  texts = PROSE + HUMAN + TEXTS + ["one", "two words", "", "three words here"]
  human = (HUMAN + TEXTS + PROSE + ["a b c d e"] * 4)[:len(texts)]
  bleu, slop, per = self_bleu_lib.SelfBleu(texts, 4), tm.Slop(texts, human), tm.PerText(texts)
  rng = np.random.default_rng(0)
  short = np.arange(len(texts) - 4, len(texts) - 1)  # no 3-gram among them
  for idx in [short] + [rng.integers(0, len(texts), size) for size in (2, len(texts),
                                                                      2 * len(texts))]:
    picked, picked_human = [texts[i] for i in idx], [human[i] for i in idx]
    assert bleu(idx) == tm.self_bleu(picked, 4)
    assert bleu(idx, max_texts=3, seed=2) == tm.self_bleu(picked, 4, max_texts=3, seed=2)
    got = slop.ratio(idx, idx, min_count=2)
    want = tm.slop_ratio(picked, picked_human, min_count=2)
    assert got == want or (np.isnan(got) and np.isnan(want))
    assert slop.ngrams(idx, idx, min_count=1) == tm.slop_ngrams(picked, picked_human,
                                                                min_count=1)
    assert per.diversity(idx) == tm.diversity(picked)
    assert per.rep_n(idx, 3) == tm.rep_n(picked, 3)
    assert per.degenerate_rate(idx) == tm.degenerate_rate(picked)
    assert np.array_equal(per.sentence_lengths(idx), tm.sentence_lengths(picked))
