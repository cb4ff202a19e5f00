"""Two-sample accuracy: how well a cross-validated judge tells human from model text.

0.5 means this proxy cannot tell them apart (their surface statistics match), not that people
would prefer the model's text.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dft_jax.evaluation.judge_classifier import fit, fit_config
from dft_jax.evaluation.judge_features import check_texts, featurize


def _subsample(texts: Sequence[str], n: int, rng: np.random.Generator) -> list[str]:
  """A seeded subset of n texts, in their original order (balances the two classes)."""
  return [texts[i] for i in np.sort(rng.choice(len(texts), n, replace=False))]


def fold_ids(n: int, folds: int, rng: np.random.Generator) -> np.ndarray:
  """A seeded assignment of n items to folds of sizes differing by at most one, [n]."""
  fold_n = np.empty(n, np.int64)
  fold_n[rng.permutation(n)] = np.arange(n) % folds
  return fold_n


def _check(human_texts, model_texts, folds: int) -> None:
  """Strings on both sides, folds >= 2, and at least `folds` texts in each class."""
  check_texts("human_texts", human_texts)
  check_texts("model_texts", model_texts)
  if folds < 2:
    raise ValueError(f"two_sample_accuracy needs folds >= 2, got {folds}")
  for name, texts in (("human_texts", human_texts), ("model_texts", model_texts)):
    if len(texts) < folds:
      raise ValueError(f"two_sample_accuracy: {name} has {len(texts)} texts, fewer than "
                       f"folds={folds}")


def two_sample_accuracy(human_texts: Sequence[str], model_texts: Sequence[str], *,
                        folds: int = 5, seed: int = 0, **fit_kwargs) -> dict:
  """Cross-validated accuracy of the proxy judge at telling human from model text.

  The larger set is subsampled (seeded) to the smaller one's size n; each class is split into
  `folds` folds (stratified), and a judge trained on the other folds classifies each held-out
  fold (p_human > 0.5 means human). 0.5 = indistinguishable to this proxy.

  Returns {"accuracy": mean held-out accuracy over folds, "sd": its sd over folds (ddof 1),
  "n": texts per class, "correct_human" / "correct_model": [n] bool, each text's held-out
  verdict, in input order when no subsampling happened (equal class sizes)}. fit_kwargs
  (steps, l2, learning_rate, n_buckets) go to the fits.
  """
  _check(human_texts, model_texts, folds)
  cfg = fit_config(fit_kwargs)
  rng = np.random.default_rng(seed)
  n = min(len(human_texts), len(model_texts))
  human = featurize(_subsample(human_texts, n, rng), cfg["n_buckets"])
  model = featurize(_subsample(model_texts, n, rng), cfg["n_buckets"])
  fold_h, fold_m = fold_ids(n, folds, rng), fold_ids(n, folds, rng)
  accuracies = []
  correct_h_N, correct_m_N = np.zeros(n, bool), np.zeros(n, bool)
  for k in range(folds):
    judge = fit(human.take(np.flatnonzero(fold_h != k)), model.take(np.flatnonzero(fold_m != k)),
                seed=seed + k, **cfg)
    held_h, held_m = np.flatnonzero(fold_h == k), np.flatnonzero(fold_m == k)
    correct_h_N[held_h] = judge.logits_features(human.take(held_h)) > 0
    correct_m_N[held_m] = judge.logits_features(model.take(held_m)) <= 0
    accuracies.append(np.concatenate([correct_h_N[held_h], correct_m_N[held_m]]).mean())
  return {"accuracy": float(np.mean(accuracies)), "sd": float(np.std(accuracies, ddof=1)),
          "n": n, "correct_human": correct_h_N, "correct_model": correct_m_N}
