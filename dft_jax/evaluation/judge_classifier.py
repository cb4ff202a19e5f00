"""The judge's classifier: L2-regularized logistic regression on judge_features.

Penalty L2 on the weights (the bias unpenalized), classes weighted equally, trained full-batch
with optax adam for a fixed number of steps (STEPS) in one jitted scan from a seeded small
initialization, so a fit is deterministic given its seed (the loss is convex: the seed barely
moves the optimum). Rows and n-gram slots are padded to powers of two, so folds of similar size
reuse one compiled fit.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dft_jax.evaluation.judge_features import (DENSE_NAMES, N_BUCKETS, Features, check_texts,
                                               concat, featurize, pow2)

STEPS = 300
L2 = 1e-2
LEARNING_RATE = 0.05


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
    return sigmoid(self.logits_features(featurize(texts, self.n_buckets)))


def _logits(params: dict, ids_NxK, vals_NxK, z_NxD):
  """Logits of the model inside jit (same formula as Judge.logits_features)."""
  sparse_N = jnp.sum(params["w"][ids_NxK] * vals_NxK, axis=1)
  return sparse_N + z_NxD @ params["v"] + params["b"]


@functools.partial(jax.jit, static_argnames=("steps",))
def _fit_arrays(params: dict, ids_NxK, vals_NxK, z_NxD, y_N, weight_N, hyper: dict, *,
                steps: int) -> dict:
  """`steps` full-batch adam steps on the weighted, L2-regularized logistic loss; hyper:
  {"learning_rate", "l2"} as traced scalars (new values reuse the compiled fit)."""
  tx = optax.adam(hyper["learning_rate"])
  l2 = hyper["l2"]

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


def fit(human: Features, model: Features, *, seed: int, steps: int, l2: float,
        learning_rate: float, n_buckets: int) -> Judge:
  """Fits a judge on featurized texts; each class weighs half of the loss."""
  if not len(human) or not len(model):
    raise ValueError(f"the judge needs texts of both classes, got {len(human)} human and "
                     f"{len(model)} model texts")
  feats = concat([human, model])
  n = len(feats)
  mean_D = feats.dense_NxD.mean(0)
  sd_D = feats.dense_NxD.std(0)
  sd_D = np.where(sd_D > 1e-6, sd_D, 1.0)
  # Rows padded to a power of two with zero weight: folds of similar size share one compile.
  rows = pow2(max(n, 64))
  pad = lambda x: np.pad(x, ((0, rows - n),) + ((0, 0),) * (x.ndim - 1))  # noqa: E731
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
                       {"learning_rate": np.float32(learning_rate), "l2": np.float32(l2)},
                       steps=steps)
  params = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  return Judge(params["w"], params["v"], float(params["b"]), mean_D, sd_D)


def train(human_texts: Sequence[str], model_texts: Sequence[str], seed: int = 0, *,
          steps: int = STEPS, l2: float = L2, learning_rate: float = LEARNING_RATE,
          n_buckets: int = N_BUCKETS) -> Judge:
  """Fits the proxy judge on human (label 1) vs model (label 0) texts; classes weigh equally."""
  check_texts("human_texts", human_texts)
  check_texts("model_texts", model_texts)
  return fit(featurize(human_texts, n_buckets), featurize(model_texts, n_buckets), seed=seed,
             steps=steps, l2=l2, learning_rate=learning_rate, n_buckets=n_buckets)


def fit_config(fit_kwargs: dict) -> dict:
  """train()'s fitting defaults updated with fit_kwargs; unknown keys are an error."""
  cfg = {"steps": STEPS, "l2": L2, "learning_rate": LEARNING_RATE, "n_buckets": N_BUCKETS}
  unknown = set(fit_kwargs) - set(cfg)
  if unknown:
    raise ValueError(f"unknown judge fitting options {sorted(unknown)}; known: {sorted(cfg)}")
  return {**cfg, **fit_kwargs}


def sigmoid(logits_N: np.ndarray) -> np.ndarray:
  """Logits to probabilities, in numpy float64."""
  return 1.0 / (1.0 + np.exp(-logits_N))
