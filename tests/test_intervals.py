"""Paired bootstrap intervals, gap closed and verdicts against direct computations."""

import numpy as np
import pytest

from dft_jax.evaluation import intervals


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
  intervals.prefetch([cached], draws, workers=2)
  assert len(calls) == len({d.tobytes() for d in draws} | {np.arange(50).tobytes()})
  out = intervals.paired(mean_of(x), cached, draws, 50)   # every value now from the memo
  assert len(calls) == len(set(calls))
  direct = [np.std(x[i]) - np.mean(x[i]) for i in draws]
  assert out["delta"] == pytest.approx(np.std(x) - np.mean(x))
  assert out["lo"] == pytest.approx(np.percentile(np.asarray(direct) - np.median(direct)
                                                  + out["delta"], 2.5))
