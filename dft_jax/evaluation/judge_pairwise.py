"""Pairwise win rate: how often the proxy judge prefers run A's continuation to run B's.

Both presentation orders are judged and ties count half, so swapping A and B gives
1 - win_rate; `pairwise` cross-fits the judges so none judges pairs it was trained on.
"""

from __future__ import annotations

import collections
from typing import Sequence

import numpy as np

from dft_jax.evaluation.judge_accuracy import fold_ids
from dft_jax.evaluation.judge_classifier import Judge, fit, fit_config, sigmoid
from dft_jax.evaluation.judge_features import check_texts, concat, featurize


def _outcome_first(p_first_N: np.ndarray, p_second_N: np.ndarray, tie_tol: float) -> np.ndarray:
  """Per pair, 1 if the proxy prefers the text shown first, 0 if the second, 0.5 on a tie."""
  delta_N = p_first_N - p_second_N
  return np.where(np.abs(delta_N) <= tie_tol, 0.5, (delta_N > 0).astype(np.float64))


def _win_counts(p_a_N: np.ndarray, p_b_N: np.ndarray, tie_tol: float) -> dict:
  """Wins and ties of A in both presentation orders."""
  a_first_N = _outcome_first(p_a_N, p_b_N, tie_tol)         # A shown first: A wins on 1
  b_first_N = 1.0 - _outcome_first(p_b_N, p_a_N, tie_tol)   # B shown first: A wins on 0
  return {"wins_a_first": int(np.sum(a_first_N == 1.0)),
          "wins_b_first": int(np.sum(b_first_N == 1.0)),
          "ties_a_first": int(np.sum(a_first_N == 0.5)),
          "ties_b_first": int(np.sum(b_first_N == 0.5)),
          "ties": int(np.sum((a_first_N == 0.5) | (b_first_N == 0.5))),
          "n": len(p_a_N)}


def _with_rate(counts: dict) -> dict:
  """Adds the win rate: (wins + ties / 2) / pairs, averaged over both orders."""
  n = counts["n"]
  score = (counts["wins_a_first"] + counts["wins_b_first"]
           + 0.5 * (counts["ties_a_first"] + counts["ties_b_first"]))
  return {"win_rate": score / (2 * n), **counts}


def _check_pairs(texts_a, texts_b) -> None:
  """Two runs' continuations of the same prompts: strings, equal in number."""
  check_texts("texts_a", texts_a)
  check_texts("texts_b", texts_b)
  if len(texts_a) != len(texts_b):
    raise ValueError(f"texts_a and texts_b must pair up prompt by prompt, got {len(texts_a)} "
                     f"and {len(texts_b)} texts")


def win_rate(judge: Judge, texts_a: Sequence[str], texts_b: Sequence[str], *,
             tie_tol: float = 1e-6) -> dict:
  """How often the proxy judge prefers run A's continuation of prompt i to run B's.

  texts_a[i] and texts_b[i] continue the same prompt i. The judge prefers the text with the
  higher p_human; |Δp| <= tie_tol is a tie and counts half. Both presentation orders (A first,
  then B first) are judged and averaged; for this pointwise judge they agree by construction,
  but both are computed and reported so that a positional judge could drop in.

  Returns {"win_rate", "wins_a_first", "wins_b_first" (A's wins in each order), "ties" (pairs
  tied in either order), "ties_a_first", "ties_b_first", "n" (pairs)}. Swapping A and B gives
  1 - win_rate.
  """
  _check_pairs(texts_a, texts_b)
  if not len(texts_a):
    raise ValueError("win_rate needs at least one pair, got none")
  return _with_rate(_win_counts(judge.p_human(texts_a), judge.p_human(texts_b), tie_tol))


def _check_pairwise(human_texts, texts_a, texts_b, folds: int) -> None:
  """Strings, paired runs, folds >= 2, and at least `folds` pairs and human texts."""
  check_texts("human_texts", human_texts)
  _check_pairs(texts_a, texts_b)
  if folds < 2:
    raise ValueError(f"pairwise needs folds >= 2, got {folds}")
  for name, texts in (("pairs (texts_a, texts_b)", texts_a), ("human_texts", human_texts)):
    if len(texts) < folds:
      raise ValueError(f"pairwise: {name} has {len(texts)} texts, fewer than folds={folds}")


def pairwise(human_texts: Sequence[str], texts_a: Sequence[str], texts_b: Sequence[str], *,
             seed: int = 0, folds: int = 5, tie_tol: float = 1e-6, **fit_kwargs) -> dict:
  """Win rate of run A over run B with proxy judges never trained on the pairs they judge.

  Cross-fitting: the prompt indices are split into `folds` seeded folds; for each fold a judge
  is trained on human texts vs the A and B texts of the other folds (human texts of the
  held-out part left out too: when len(human_texts) == number of pairs, human_texts[i] is taken
  as the human continuation of prompt i and shares its fold, otherwise the human texts get
  their own folds) and judges the held-out pairs. Counts are summed over folds; returns the
  win_rate dict plus "folds".
  """
  _check_pairwise(human_texts, texts_a, texts_b, folds)
  cfg = fit_config(fit_kwargs)
  rng = np.random.default_rng(seed)
  fold_p = fold_ids(len(texts_a), folds, rng)
  fold_h = fold_p if len(human_texts) == len(texts_a) else fold_ids(len(human_texts), folds,
                                                                    rng)
  human = featurize(human_texts, cfg["n_buckets"])
  feats_a, feats_b = featurize(texts_a, cfg["n_buckets"]), featurize(texts_b, cfg["n_buckets"])
  total = collections.Counter()
  for k in range(folds):
    train_p, held_p = np.flatnonzero(fold_p != k), np.flatnonzero(fold_p == k)
    judge = fit(human.take(np.flatnonzero(fold_h != k)),
                concat([feats_a.take(train_p), feats_b.take(train_p)]), seed=seed + k, **cfg)
    p_a_N = sigmoid(judge.logits_features(feats_a.take(held_p)))
    p_b_N = sigmoid(judge.logits_features(feats_b.take(held_p)))
    total.update(_win_counts(p_a_N, p_b_N, tie_tol))
  return {**_with_rate(dict(total)), "folds": folds}
