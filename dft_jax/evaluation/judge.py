r"""The judge: a classifier trained to tell human text from model text.

It is a *proxy* for human preference, never the thing itself: a judge that cannot tell a run's
text from human text (two-sample accuracy 0.5) says the text's surface statistics match, not that
people would prefer it. Reports built on it must name it as a proxy too.

Features of one text (pure python / numpy, deterministic, no tokenizer):
  hashed n-grams  lowercased whitespace words; every unigram ("1 w") and bigram ("2 w1 w2") is
                  hashed with zlib.crc32 (stable across processes, unlike the salted hash()) into
                  `n_buckets` (2^14) buckets; log1p of the bucket counts, L2-normalized per text
  style (DENSE_NAMES, standardized by the training set's mean and sd)
                  log(1 + words); mean word length in characters; type-token ratio;
                  log(1 + sentences); mean and sd (ddof 0) of words per sentence, sentences split
                  after . ! or ? followed by whitespace or the end; punctuation characters per word

Model: L2-regularized logistic regression (penalty L2 on the weights, the bias unpenalized),
classes weighted equally, trained full-batch with optax adam for a fixed number of steps (STEPS) in
one jitted scan from a seeded small initialization, so a fit is deterministic given its seed (the
loss is convex: the seed barely moves the optimum). Rows and n-gram slots are padded to powers of
two, so folds of similar size reuse one compiled fit.

  two_sample_accuracy(human, model)   k-fold cross-validated accuracy of the proxy (0.5 = cannot
                                      tell them apart)
  train(human, model) -> Judge        a fitted judge; Judge.p_human(texts)
  win_rate(judge, a, b)               how often the proxy prefers run A's continuation of a prompt
                                      to run B's, both presentation orders, ties reported
  pairwise(human, a, b)               win_rate with judges cross-fitted on data disjoint from the
                                      pairs they judge
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import string
import zlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dft_jax.evaluation import text_metrics

N_BUCKETS = 2 ** 14
STEPS = 300
L2 = 1e-2
LEARNING_RATE = 0.05
DENSE_NAMES = ("log_words", "mean_word_len", "type_token_ratio", "log_sentences",
               "sent_len_mean", "sent_len_sd", "punct_per_word")
_PUNCT = frozenset(string.punctuation)


# ---------------------------------------------------------------------------------------------
# Featurization.


@dataclasses.dataclass(frozen=True)
class Features:
  """Texts as padded sparse hashed n-grams plus raw (unstandardized) style statistics."""
  ids_NxK: np.ndarray    # int32 bucket of each nonzero entry; padding points at bucket 0
  vals_NxK: np.ndarray   # float32 value of each entry (L2-normalized log1p counts); 0 at padding
  dense_NxD: np.ndarray  # float64 style statistics, DENSE_NAMES order

  def __len__(self) -> int:
    return len(self.dense_NxD)

  def take(self, idx_M: np.ndarray) -> Features:
    """The rows idx_M, in that order."""
    return Features(self.ids_NxK[idx_M], self.vals_NxK[idx_M], self.dense_NxD[idx_M])


def _bucket(key: str, n_buckets: int) -> int:
  """Stable hash of an n-gram key into [0, n_buckets)."""
  return zlib.crc32(key.encode("utf-8")) % n_buckets


def _hashed(words: list[str], n_buckets: int) -> tuple[np.ndarray, np.ndarray]:
  """Sorted buckets of a text's unigrams and bigrams and their L2-normalized log1p counts."""
  counts = collections.Counter(_bucket("1 " + w, n_buckets) for w in words)
  counts.update(_bucket(f"2 {a} {b}", n_buckets) for a, b in zip(words, words[1:]))
  ids_K = np.asarray(sorted(counts), np.int32)
  vals_K = np.log1p(np.asarray([counts[i] for i in ids_K], np.float64))
  if len(vals_K):
    vals_K /= np.linalg.norm(vals_K)
  return ids_K, vals_K


def style_stats(text: str) -> np.ndarray:
  """The dense style statistics of one text (DENSE_NAMES order); zeros for an empty text."""
  words = text.split()
  n_words = len(words)
  lengths = np.asarray([len(s.split()) for s in text_metrics.split_sentences(text)],
                       np.float64)
  if not n_words:
    return np.zeros(len(DENSE_NAMES))
  return np.asarray([
      np.log1p(n_words),
      np.mean([len(w) for w in words]),
      len(set(w.lower() for w in words)) / n_words,
      np.log1p(len(lengths)),
      lengths.mean(),
      lengths.std(),
      sum(c in _PUNCT for c in text) / n_words,
  ])


def featurize(texts: Sequence[str], n_buckets: int = N_BUCKETS) -> Features:
  """Hashed n-grams and style statistics of each text; K is padded to a power of two."""
  _check_texts("texts", texts)
  hashed = [_hashed(t.lower().split(), n_buckets) for t in texts]
  k = _pow2(max([len(ids) for ids, _ in hashed] + [1]))
  ids_NxK = np.zeros((len(texts), k), np.int32)
  vals_NxK = np.zeros((len(texts), k), np.float32)
  for row, (ids_K, vals_K) in enumerate(hashed):
    ids_NxK[row, :len(ids_K)] = ids_K
    vals_NxK[row, :len(vals_K)] = vals_K
  dense_NxD = np.stack([style_stats(t) for t in texts]) if texts else np.zeros(
      (0, len(DENSE_NAMES)))
  return Features(ids_NxK, vals_NxK, dense_NxD)


def _concat(parts: Sequence[Features]) -> Features:
  """Rows of several feature sets, K padded to the widest."""
  k = max(p.ids_NxK.shape[1] for p in parts)
  pad = lambda x: np.pad(x, ((0, 0), (0, k - x.shape[1])))
  return Features(np.concatenate([pad(p.ids_NxK) for p in parts]),
                  np.concatenate([pad(p.vals_NxK) for p in parts]),
                  np.concatenate([p.dense_NxD for p in parts]))


def _pow2(n: int) -> int:
  """The smallest power of two >= n (padding sizes, so few shapes are ever compiled)."""
  return 1 << max(0, int(n) - 1).bit_length()


# ---------------------------------------------------------------------------------------------
# The classifier.


@dataclasses.dataclass(frozen=True)
class Judge:
  """A fitted human-vs-model logistic regression: a proxy for human preference."""
  w_B: np.ndarray      # weights of the hashed buckets
  v_D: np.ndarray      # weights of the standardized style statistics
  b: float             # bias
  mean_D: np.ndarray   # training-set mean of the style statistics
  sd_D: np.ndarray     # training-set sd (1 where constant)

  @property
  def n_buckets(self) -> int:
    return len(self.w_B)

  def logits_features(self, feats: Features) -> np.ndarray:
    """Log-odds that each featurized text is human."""
    z_NxD = (feats.dense_NxD - self.mean_D) / self.sd_D
    sparse_N = np.sum(self.w_B[feats.ids_NxK] * feats.vals_NxK, axis=1, dtype=np.float64)
    return sparse_N + z_NxD @ self.v_D + self.b

  def p_human(self, texts: Sequence[str]) -> np.ndarray:
    """The proxy's probability that each text is human, [N] float64."""
    return _sigmoid(self.logits_features(featurize(texts, self.n_buckets)))


def _logits(params: dict, ids_NxK, vals_NxK, z_NxD):
  """Logits of the model inside jit (same formula as Judge.logits_features)."""
  sparse_N = jnp.sum(params["w"][ids_NxK] * vals_NxK, axis=1)
  return sparse_N + z_NxD @ params["v"] + params["b"]


@functools.partial(jax.jit, static_argnames=("steps",))
def _fit_arrays(params: dict, ids_NxK, vals_NxK, z_NxD, y_N, weight_N, learning_rate, l2, *,
                steps: int) -> dict:
  """`steps` full-batch adam steps on the weighted, L2-regularized logistic loss."""
  tx = optax.adam(learning_rate)

  def loss_fn(p):
    ce_N = optax.sigmoid_binary_cross_entropy(_logits(p, ids_NxK, vals_NxK, z_NxD), y_N)
    penalty = jnp.sum(jnp.square(p["w"])) + jnp.sum(jnp.square(p["v"]))
    return jnp.sum(weight_N * ce_N) + 0.5 * l2 * penalty

  def step(carry, _):
    p, opt_state = carry
    updates, opt_state = tx.update(jax.grad(loss_fn)(p), opt_state, p)
    return (optax.apply_updates(p, updates), opt_state), None

  (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
  return params


def _fit(human: Features, model: Features, *, seed: int, steps: int, l2: float,
         learning_rate: float, n_buckets: int) -> Judge:
  """Fits a judge on featurized texts; each class weighs half of the loss."""
  if not len(human) or not len(model):
    raise ValueError(f"the judge needs texts of both classes, got {len(human)} human and "
                     f"{len(model)} model texts")
  feats = _concat([human, model])
  n = len(feats)
  mean_D = feats.dense_NxD.mean(0)
  sd_D = feats.dense_NxD.std(0)
  sd_D = np.where(sd_D > 1e-6, sd_D, 1.0)
  # Rows padded to a power of two with zero weight: folds of similar size share one compile.
  rows = _pow2(max(n, 64))
  pad = lambda x: np.pad(x, ((0, rows - n),) + ((0, 0),) * (x.ndim - 1))
  y_N = np.concatenate([np.ones(len(human)), np.zeros(len(model))])
  weight_N = np.concatenate([np.full(len(human), 0.5 / len(human)),
                             np.full(len(model), 0.5 / len(model))])
  rng = np.random.default_rng(seed)
  init = {"w": 1e-3 * rng.standard_normal(n_buckets), "v": 1e-3 * rng.standard_normal(
      len(DENSE_NAMES)), "b": np.zeros(())}
  init = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), init)
  params = _fit_arrays(init, pad(feats.ids_NxK), pad(feats.vals_NxK),
                       pad((feats.dense_NxD - mean_D) / sd_D).astype(np.float32),
                       pad(y_N).astype(np.float32), pad(weight_N).astype(np.float32),
                       np.float32(learning_rate), np.float32(l2), steps=steps)
  params = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  return Judge(params["w"], params["v"], float(params["b"]), mean_D, sd_D)


def train(human_texts: Sequence[str], model_texts: Sequence[str], seed: int = 0, *,
          steps: int = STEPS, l2: float = L2, learning_rate: float = LEARNING_RATE,
          n_buckets: int = N_BUCKETS) -> Judge:
  """Fits the proxy judge on human (label 1) vs model (label 0) texts; classes weigh equally."""
  _check_texts("human_texts", human_texts)
  _check_texts("model_texts", model_texts)
  return _fit(featurize(human_texts, n_buckets), featurize(model_texts, n_buckets), seed=seed,
              steps=steps, l2=l2, learning_rate=learning_rate, n_buckets=n_buckets)


# ---------------------------------------------------------------------------------------------
# Two-sample accuracy.


def _subsample(texts: Sequence[str], n: int, rng: np.random.Generator) -> list[str]:
  """A seeded subset of n texts, in their original order (balances the two classes)."""
  return [texts[i] for i in np.sort(rng.choice(len(texts), n, replace=False))]


def _fold_ids(n: int, folds: int, rng: np.random.Generator) -> np.ndarray:
  """A seeded assignment of n items to folds of sizes differing by at most one, [n]."""
  fold_n = np.empty(n, np.int64)
  fold_n[rng.permutation(n)] = np.arange(n) % folds
  return fold_n


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
  _check_texts("human_texts", human_texts)
  _check_texts("model_texts", model_texts)
  if folds < 2:
    raise ValueError(f"two_sample_accuracy needs folds >= 2, got {folds}")
  for name, texts in (("human_texts", human_texts), ("model_texts", model_texts)):
    if len(texts) < folds:
      raise ValueError(f"two_sample_accuracy: {name} has {len(texts)} texts, fewer than "
                       f"folds={folds}")
  cfg = _fit_config(fit_kwargs)
  rng = np.random.default_rng(seed)
  n = min(len(human_texts), len(model_texts))
  human = featurize(_subsample(human_texts, n, rng), cfg["n_buckets"])
  model = featurize(_subsample(model_texts, n, rng), cfg["n_buckets"])
  fold_h, fold_m = _fold_ids(n, folds, rng), _fold_ids(n, folds, rng)
  accuracies = []
  correct_h_N, correct_m_N = np.zeros(n, bool), np.zeros(n, bool)
  for k in range(folds):
    judge = _fit(human.take(np.flatnonzero(fold_h != k)), model.take(np.flatnonzero(fold_m != k)),
                 seed=seed + k, **cfg)
    held_h, held_m = np.flatnonzero(fold_h == k), np.flatnonzero(fold_m == k)
    correct_h_N[held_h] = judge.logits_features(human.take(held_h)) > 0
    correct_m_N[held_m] = judge.logits_features(model.take(held_m)) <= 0
    accuracies.append(np.concatenate([correct_h_N[held_h], correct_m_N[held_m]]).mean())
  return {"accuracy": float(np.mean(accuracies)), "sd": float(np.std(accuracies, ddof=1)),
          "n": n, "correct_human": correct_h_N, "correct_model": correct_m_N}


# ---------------------------------------------------------------------------------------------
# Pairwise win rate.


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
  _check_texts("human_texts", human_texts)
  _check_pairs(texts_a, texts_b)
  if folds < 2:
    raise ValueError(f"pairwise needs folds >= 2, got {folds}")
  for name, texts in (("pairs (texts_a, texts_b)", texts_a), ("human_texts", human_texts)):
    if len(texts) < folds:
      raise ValueError(f"pairwise: {name} has {len(texts)} texts, fewer than folds={folds}")
  cfg = _fit_config(fit_kwargs)
  rng = np.random.default_rng(seed)
  fold_p = _fold_ids(len(texts_a), folds, rng)
  fold_h = fold_p if len(human_texts) == len(texts_a) else _fold_ids(len(human_texts), folds,
                                                                     rng)
  human = featurize(human_texts, cfg["n_buckets"])
  feats_a, feats_b = featurize(texts_a, cfg["n_buckets"]), featurize(texts_b, cfg["n_buckets"])
  total = collections.Counter()
  for k in range(folds):
    train_p, held_p = np.flatnonzero(fold_p != k), np.flatnonzero(fold_p == k)
    judge = _fit(human.take(np.flatnonzero(fold_h != k)),
                 _concat([feats_a.take(train_p), feats_b.take(train_p)]), seed=seed + k, **cfg)
    p_a_N = _sigmoid(judge.logits_features(feats_a.take(held_p)))
    p_b_N = _sigmoid(judge.logits_features(feats_b.take(held_p)))
    total.update(_win_counts(p_a_N, p_b_N, tie_tol))
  return {**_with_rate(dict(total)), "folds": folds}


# ---------------------------------------------------------------------------------------------
# Helpers.


def _sigmoid(logits_N: np.ndarray) -> np.ndarray:
  return 1.0 / (1.0 + np.exp(-logits_N))


def _fit_config(fit_kwargs: dict) -> dict:
  """train()'s fitting defaults updated with fit_kwargs; unknown keys are an error."""
  cfg = {"steps": STEPS, "l2": L2, "learning_rate": LEARNING_RATE, "n_buckets": N_BUCKETS}
  unknown = set(fit_kwargs) - set(cfg)
  if unknown:
    raise ValueError(f"unknown judge fitting options {sorted(unknown)}; known: {sorted(cfg)}")
  return {**cfg, **fit_kwargs}


def _check_texts(name: str, texts) -> None:
  """A sequence of strings, or one clear error naming the argument."""
  if isinstance(texts, (str, bytes)) or not hasattr(texts, "__len__"):
    raise ValueError(f"{name} must be a sequence of strings, got {type(texts).__name__}")
  for i, t in enumerate(texts):
    if not isinstance(t, str):
      raise ValueError(f"{name}[{i}] is a {type(t).__name__}, not a string")


def _check_pairs(texts_a, texts_b) -> None:
  """Two runs' continuations of the same prompts: strings, equal in number."""
  _check_texts("texts_a", texts_a)
  _check_texts("texts_b", texts_b)
  if len(texts_a) != len(texts_b):
    raise ValueError(f"texts_a and texts_b must pair up prompt by prompt, got {len(texts_a)} "
                     f"and {len(texts_b)} texts")
