"""Paired bootstrap intervals of DFT − SFT over prompts, the gap-closed column, and the verdict.

Every run continues the same prompts, so prompt i's SFT text, DFT text and human continuation
form one unit. A bootstrap replicate draws units with replacement and recomputes each
set-level metric (diversity, sentence-length variance, feature divergence, ...) on the drawn
units of both runs (and of the human texts for comparative metrics). Prompts cut from one
document are not independent (same topic, names, style), so the draw is clustered
(`clustered`): documents with replacement, then prompts with replacement within each drawn
document (the two-stage bootstrap of Davison & Hinkley 1997, sec. 3.8); with one prompt per
document it is the plain prompt bootstrap (`indices`). The 2.5 / 97.5 percentiles
of the replicate differences, re-centred on the point difference (resampling repeats texts,
which shifts distinct-n / self-BLEU of every replicate alike), are the 95% interval.

  gap closed = (SFT − DFT) / (SFT − human)          1 = DFT reaches human, 0 = no change
  (not given when the SFT − human gap's own interval holds 0)

The verdict of a claim is "holds" when its interval lies wholly on the claimed side,
"does not hold" when wholly on the other, else "inconclusive" — computed, never written.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

Metric = Callable[[np.ndarray], float]   # prompt indices -> the metric on those units


def indices(n: int, reps: int, seed: int) -> np.ndarray:
  """[reps, n] prompt indices drawn with replacement (the same draws for every metric)."""
  return np.random.default_rng(seed).integers(0, n, size=(reps, n))


def clustered(doc_ids_N: np.ndarray, reps: int, seed: int) -> list[np.ndarray]:
  """`reps` draws of prompt indices, two-stage: as many documents as there are, with
  replacement, then for each drawn document as many of its prompts as it has, with
  replacement. A replicate's size varies with the documents drawn (their prompt counts)."""
  doc_ids_N = np.asarray(doc_ids_N)
  members = [np.flatnonzero(doc_ids_N == d) for d in np.unique(doc_ids_N)]
  rng = np.random.default_rng(seed)
  draws = []
  for _ in range(reps):
    picked = rng.integers(0, len(members), size=len(members))
    draws.append(np.concatenate([rng.choice(members[d], size=len(members[d])) for d in picked]))
  return draws


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
  finite = values[np.isfinite(values)]
  if finite.size == 0:
    return (float("nan"), float("nan"))
  tail = 100 * (1 - level) / 2
  return float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))


def memo(metric: Metric, *, batch: Callable[[list], list] | None = None,
         sources: Sequence[Metric] = ()) -> Metric:
  """The metric, computed once per distinct draw (claims and gap closed reuse the deltas').

  Its `fill(draws)` computes every draw not yet known: `batch(draws)` gives their values in
  one call (drawn.py's divergences: one compiled, vmapped solve for the lot); a metric made
  from other memoized metrics names them as `sources`, filled first."""
  cache = {}

  def cached(idx):
    key = idx.tobytes()
    if key not in cache:
      cache[key] = metric(idx)
    return cache[key]

  def fill(draws):
    for source in sources:
      source.fill(draws)
    todo = list({d.tobytes(): d for d in draws if d.tobytes() not in cache}.values())
    if todo:
      cache.update(zip((d.tobytes() for d in todo), batch(todo) if batch else map(metric, todo)))
  cached.fill = fill
  return cached


def prefetch(metrics: Sequence[Metric], draws: Sequence[np.ndarray]) -> None:
  """Fills memoized metrics (`memo`) for every draw: the batched ones (the feature
  divergences) in a few calls instead of one solve, and one compile, per draw size. The point
  value on all the units is left to the metric itself, so it is the table's own value to the
  bit (a batched value agrees with it to float rounding only)."""
  for metric in metrics:
    metric.fill(list(draws))


def _centred(point: float, values: np.ndarray) -> tuple[float, float]:
  """Percentile interval of the replicates shifted so their median is the point value.
  Resampling repeats texts, which moves distinct-n / self-BLEU-like metrics of every replicate
  the same way; the shift removes that bias from the interval's location."""
  finite = values[np.isfinite(values)]
  if finite.size == 0 or not np.isfinite(point):
    return (float("nan"), float("nan"))
  return interval(finite - np.median(finite) + point)


def paired(sft: Metric, dft: Metric, draws: np.ndarray, point_n: int) -> dict:
  """Point value and 95% interval of dft − sft."""
  everything = np.arange(point_n)
  point = float(dft(everything) - sft(everything))
  lo, hi = _centred(point, np.asarray([dft(idx) - sft(idx) for idx in draws]))
  return {"delta": point, "lo": lo, "hi": hi}


def gap_closed(sft: Metric, dft: Metric, human: Metric, draws: np.ndarray,
               point_n: int) -> dict:
  """(SFT − DFT) / (SFT − human), its point value and 95% interval; "defined" is False when
  the SFT − human gap itself is not resolved (its interval holds 0): a ratio over a gap that
  may be nothing says nothing."""
  def ratio(idx):
    s, d, h = sft(idx), dft(idx), human(idx)
    return (s - d) / (s - h) if abs(s - h) > 1e-12 else float("nan")
  everything = np.arange(point_n)
  point = ratio(everything)
  lo, hi = _centred(point, np.asarray([ratio(idx) for idx in draws]))
  gap = paired(human, sft, draws, point_n)
  return {"value": float(point), "lo": lo, "hi": hi,
          "defined": bool(gap["lo"] > 0 or gap["hi"] < 0)}


def verdict(lo: float, hi: float, *, above: float = 0.0) -> str:
  """'holds' if [lo, hi] lies above `above`, 'does not hold' if below, else 'inconclusive'."""
  if not (np.isfinite(lo) and np.isfinite(hi)):
    return "inconclusive"
  if lo > above:
    return "holds"
  if hi < above:
    return "does not hold"
  return "inconclusive"


def toward(target: Metric, sft: Metric, dft: Metric) -> tuple[Metric, Metric]:
  """The two metrics as negated distances to `target`, so that dft − sft > 0 means DFT is
  the nearer: |sft − target| − |dft − target| on the same draw."""
  return (lambda idx: -abs(sft(idx) - target(idx)), lambda idx: -abs(dft(idx) - target(idx)))


def claims(sft: dict[str, Metric], dft: dict[str, Metric], human: dict[str, Metric],
           draws: np.ndarray, point_n: int, ppl_ratio: dict | None = None,
           ppl_tolerance: float = 0.03) -> list[dict]:
  """The article's claims, each {claim, statistic, value, lo, hi, verdict}.

  sft / dft / human map metric names to Metric functions (human: its own value, for
  sentence-length variance). ppl_ratio: {"value", "lo", "hi"} of DFT/SFT perplexity − 1.
  """
  out = []

  def add(claim, statistic, stat, above=0.0):
    out.append({"claim": claim, "statistic": statistic, **stat,
                "verdict": verdict(stat["lo"], stat["hi"], above=above)})

  add("diversity up", "DFT − SFT diversity", paired(sft["diversity"], dft["diversity"], draws,
                                                    point_n))
  s, d = toward(human["sent_len_var"], sft["sent_len_var"], dft["sent_len_var"])
  add("sentence-length variance toward human", "|SFT − human| − |DFT − human|",
      paired(s, d, draws, point_n))
  if ppl_ratio is not None:
    # "not worse": holds when the whole interval of DFT/SFT − 1 is under the tolerance
    flipped = {"delta": -ppl_ratio["delta"], "lo": -ppl_ratio["hi"], "hi": -ppl_ratio["lo"]}
    add(f"perplexity not worse (within +{100 * ppl_tolerance:.0f}%)",
        f"−(DFT/SFT perplexity − 1), vs −{ppl_tolerance}", flipped, above=-ppl_tolerance)
  s, d = toward(lambda idx: 0.5, sft["judge_accuracy"], dft["judge_accuracy"])
  add("judge nearer 0.5", "|SFT acc − 0.5| − |DFT acc − 0.5|", paired(s, d, draws, point_n))
  return out


def ratio_interval(nll_a: np.ndarray, tok_a: np.ndarray, nll_b: np.ndarray, reps: int,
                   seed: int, doc_ids: np.ndarray | None = None) -> dict:
  """Perplexity ratio b/a − 1 over paired scored pieces (same pieces, same token counts):
  exp((Σ nll_b − Σ nll_a) / Σ tokens) − 1, point value and 95% bootstrap interval (clustered
  by the pieces' documents when `doc_ids` is given)."""
  def ratio(idx):
    return float(np.expm1((nll_b[idx].sum() - nll_a[idx].sum()) / max(tok_a[idx].sum(), 1)))
  draws = (indices(len(nll_a), reps, seed) if doc_ids is None
           else clustered(doc_ids, reps, seed))
  lo, hi = interval(np.asarray([ratio(i) for i in draws]))
  return {"delta": ratio(np.arange(len(nll_a))), "lo": lo, "hi": hi}


def summarize(results: Sequence[dict]) -> str:
  """One line per claim: '<claim>: <verdict> (statistic = v [lo, hi])'."""
  return "\n".join(f"- {c['claim']}: **{c['verdict']}** ({c['statistic']} = "
                   f"{c['delta']:+.4g}, 95% CI [{c['lo']:+.4g}, {c['hi']:+.4g}])"
                   for c in results)
