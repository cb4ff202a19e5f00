"""Paired bootstrap intervals, gap closed and verdicts against direct computations."""

import jax.numpy as jnp
import numpy as np
import pytest

from dft_jax.evaluation import drawn, intervals, report


def mean_of(x):
  return lambda idx: float(np.mean(x[idx]))


def test_paired_interval_is_the_percentiles_of_the_replicate_differences():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=200), rng.normal(size=200) + 0.5
  draws = intervals.indices(200, 300, seed=1)
  out = intervals.paired(mean_of(a), mean_of(b), draws, 200)
  deltas = np.asarray([b[i].mean() - a[i].mean() for i in draws])
  assert out["delta"] == pytest.approx(b.mean() - a.mean())
  centred = deltas - np.median(deltas) + out["delta"]
  assert (out["lo"], out["hi"]) == pytest.approx(tuple(np.percentile(centred, [2.5, 97.5])))
  assert out["lo"] < out["delta"] < out["hi"]
  # pairing: a shared per-prompt effect cancels, so the interval is narrower than unpaired
  shared = rng.normal(size=200) * 5
  paired = intervals.paired(mean_of(a + shared), mean_of(b + shared), draws, 200)
  assert paired["hi"] - paired["lo"] == pytest.approx(out["hi"] - out["lo"])
  assert intervals.verdict(out["lo"], out["hi"]) == "holds"  # a true shift of 0.5, n=200


def test_gap_closed_formula_and_verdicts():
  sft, dft, human = np.full(50, 10.0), np.full(50, 7.0), np.full(50, 4.0)
  out = intervals.gap_closed(mean_of(sft), mean_of(dft), mean_of(human),
                             intervals.indices(50, 20, 0), 50)
  assert out == {"value": 0.5, "lo": 0.5, "hi": 0.5, "defined": True}  # (10 - 7) / (10 - 4)
  rng = np.random.default_rng(0)
  noisy = intervals.gap_closed(mean_of(sft + rng.normal(size=50)), mean_of(dft),
                               mean_of(sft + rng.normal(size=50)), intervals.indices(50, 50, 0),
                               50)
  assert not noisy["defined"]  # SFT and "human" differ by noise only
  assert intervals.verdict(0.1, 0.3) == "holds"
  assert intervals.verdict(-0.3, -0.1) == "does not hold"
  assert intervals.verdict(-0.1, 0.3) == "inconclusive"
  assert intervals.verdict(float("nan"), 0.3) == "inconclusive"
  assert intervals.verdict(-0.02, -0.01, above=-0.03) == "holds"


def test_claims_read_their_directions():
  n = 100
  rng = np.random.default_rng(3)
  noise = lambda: rng.normal(size=n) * 0.01  # noqa: E731
  sft = {"diversity": mean_of(0.6 + noise()), "sent_len_var": mean_of(20 + noise()),
         "judge_accuracy": mean_of(0.9 + noise())}
  # DFT: diversity up, variance moved past human to the other side but nearer, judge nearer 0.5
  dft = {"diversity": mean_of(0.7 + noise()), "sent_len_var": mean_of(45 + noise()),
         "judge_accuracy": mean_of(0.7 + noise())}
  human = {"sent_len_var": mean_of(40 + noise())}
  worse = {"delta": 0.10, "lo": 0.08, "hi": 0.12}  # DFT perplexity 10% above SFT
  out = intervals.claims(sft, dft, human, intervals.indices(n, 50, 0), n, worse)
  got = {c["claim"].split(" (")[0]: c["verdict"] for c in out}
  assert got == {"diversity up": "holds", "sentence-length variance toward human": "holds",
                 "perplexity not worse": "does not hold", "judge nearer 0.5": "holds"}
  assert out[1]["delta"] == pytest.approx(20 - 5, abs=0.01)  # |20-40| - |45-40|
  text = intervals.summarize(out)
  assert text.count("\n") == 3 and "**does not hold**" in text


def test_perplexity_ratio_over_paired_pieces():
  rng = np.random.default_rng(0)
  tokens = rng.integers(5, 50, size=80).astype(float)
  nll_a = tokens * 3.0 + rng.normal(size=80)
  nll_b = nll_a + tokens * 0.1  # every token 0.1 nat worse: ratio e^0.1 - 1
  out = intervals.ratio_interval(nll_a, tokens, nll_b, reps=50, seed=0)
  assert out["delta"] == pytest.approx(np.expm1(0.1))
  assert out["lo"] == pytest.approx(np.expm1(0.1)) and out["hi"] == pytest.approx(np.expm1(0.1))


def test_prefetch_fills_the_memo_with_the_values_computed_in_order():
  rng = np.random.default_rng(3)
  x = rng.normal(size=50)
  calls = []

  def metric(idx):
    calls.append(idx.tobytes())
    return float(np.std(x[idx]))
  cached = intervals.memo(metric)
  draws = intervals.indices(50, 40, seed=2)
  intervals.prefetch([cached], draws)
  assert len(calls) == len({d.tobytes() for d in draws})
  out = intervals.paired(mean_of(x), cached, draws, 50)   # every value now from the memo
  assert len(calls) == len(set(calls))
  direct = [np.std(x[i]) - np.mean(x[i]) for i in draws]
  assert out["delta"] == pytest.approx(np.std(x) - np.mean(x))
  assert out["lo"] == pytest.approx(np.percentile(np.asarray(direct) - np.median(direct)
                                                  + out["delta"], 2.5))


def test_prefetch_fills_a_batched_memo_in_one_call_and_its_sources_first():
  x = np.random.default_rng(4).normal(size=30)
  batches = []

  def batch(draws):
    batches.append(len(draws))
    return [float(np.std(x[d])) for d in draws]
  leaf = intervals.memo(lambda idx: pytest.fail("computed one by one"), batch=batch)
  derived = intervals.memo(lambda idx: 2 * leaf(idx), sources=[leaf])
  draws = intervals.clustered(np.arange(30) // 3, 25, seed=1)
  intervals.prefetch([derived], draws)
  assert batches == [len({d.tobytes() for d in draws})]
  assert [derived(d) for d in draws] == [2 * np.std(x[d]) for d in draws]


def test_clustered_bootstrap_matches_the_hand_computed_two_document_case():
  # Two documents of 20 prompts each; every prompt of document A scores 0, of B scores 1.
  # Drawing 2 documents with replacement gives a mean of 0 (AA, p 1/4), 1/2 (AB or BA, p 1/2)
  # or 1 (BB, p 1/4) whatever the prompts drawn within them: the 95% interval is [0, 1]. The
  # prompt-level bootstrap, blind to the documents, reads a binomial(40, 1/2)/40 spread.
  doc_ids = np.repeat([0, 1], 20)
  score = doc_ids.astype(float)
  draws = intervals.clustered(doc_ids, 4000, seed=0)
  means = np.asarray([score[d].mean() for d in draws])
  assert all(len(d) == 40 for d in draws)  # equal documents: every replicate has 40 prompts
  assert set(np.round(means, 6)) == {0.0, 0.5, 1.0}
  freq = {v: np.mean(np.isclose(means, v)) for v in (0.0, 0.5, 1.0)}
  assert freq[0.0] == pytest.approx(0.25, abs=0.03) and freq[0.5] == pytest.approx(0.5, abs=0.03)
  assert intervals.interval(means) == (0.0, 1.0)
  plain = np.asarray([score[d].mean() for d in intervals.indices(40, 4000, seed=0)])
  lo, hi = intervals.interval(plain)
  assert 0.3 < lo < 0.4 and 0.6 < hi < 0.7  # ± 1.96 * sqrt(1/4 / 40) = ± 0.155
  # within a document, prompts are drawn from that document only, with replacement
  uneven = np.asarray([0, 0, 0, 1, 2, 2])
  for d in intervals.clustered(uneven, 200, seed=1):
    counts = np.bincount(uneven[d], minlength=3)
    assert counts.sum() == len(d)
    for doc in range(3):  # a document drawn k times contributes k x its size prompts
      assert counts[doc] % np.bincount(uneven)[doc] == 0


def test_one_prompt_per_document_is_the_plain_bootstrap():
  draws = intervals.clustered(np.arange(30), 500, seed=4)
  x = np.random.default_rng(0).normal(size=30)
  means = np.asarray([x[d].mean() for d in draws])
  assert means.std() == pytest.approx(x.std() / np.sqrt(30), rel=0.15)


def test_divergences_of_draws_equal_those_of_the_drawn_points():
  # The counts form (weights, one shape for every draw) against the repeated points themselves:
  # Sinkhorn with its mean-cost epsilon, unbiased MMD² with its median bandwidth; clustered
  # draws of different sizes, an outlier, and the padded last batch.
  rng = np.random.default_rng(0)
  x_NxF = rng.normal(size=(40, 6)).astype(np.float32)
  y_NxF = (rng.normal(size=(40, 6)) + 0.5).astype(np.float32)
  x_NxF[3] *= 20
  draws = intervals.clustered(np.arange(40) // 7, drawn.BATCH + 3, seed=0)
  assert len({len(d) for d in draws}) > 1
  got = drawn.divergences_of_draws(x_NxF, y_NxF, draws)
  mmd = drawn.mmd_of_draws(x_NxF, y_NxF, draws)
  for d, g, m in list(zip(draws, got, mmd))[::30] + [(draws[-1], got[-1], mmd[-1])]:
    sink, mmd_d = report._divergences(x_NxF[d], y_NxF[d])  # what the table computed per draw
    assert g["feature_sinkhorn"] == pytest.approx(float(sink), rel=1e-4)
    assert g["feature_mmd"] == pytest.approx(float(mmd_d), rel=1e-4, abs=1e-6)
    assert m == g["feature_mmd"]


def test_weighted_median_is_the_median_of_the_repeated_values():
  rng = np.random.default_rng(1)
  for size in (1, 2, 7, 10):
    values, weights = rng.normal(size=size), rng.integers(0, 4, size=size)
    weights[0] += 1
    assert float(drawn.weighted_median(jnp.asarray(values), jnp.asarray(weights))) == \
        pytest.approx(np.median(np.repeat(values, weights)), rel=1e-6)
