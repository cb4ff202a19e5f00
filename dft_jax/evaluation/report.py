"""Every metric of the paper table for one set of texts against a human reference.

  evaluate(texts, human_texts, tokenizer=..., model=...) -> {"rep_2": ..., "judge_accuracy": ...}

Text metrics work on whitespace words (text_metrics.py). The feature-space divergences embed
each text's first `window` tokens with the DFT featurizer (losses/features.py; the word-rank
table comes from the human texts' own unigram counts), standardize by the human texts' mean and
sd, and compare the two clouds with the debiased Sinkhorn divergence (ε = 0.05 × mean cost) and
the unbiased RBF-mixture MMD². The judge is a proxy for human preference (judge.py).
Perplexity needs a model: exp(mean NLL) of the human texts, each scored alone (+ EOS).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dft_jax.data import tokenizer as tokenizer_lib
from dft_jax.evaluation import judge, text_metrics
from dft_jax.losses import cross_entropy, divergences, embedding, features, reference

KEYS = ("rep_2", "rep_3", "rep_4", "diversity", "distinct_1", "distinct_2", "distinct_3",
        "self_bleu4", "zipf", "sent_len_mean", "sent_len_var", "sent_len_w1", "unigram_l2",
        "feature_sinkhorn", "feature_mmd", "judge_accuracy")


def fallback_tokenizer(human_texts: Sequence[str], vocab_size: int = 1024):
  """A byte-level BPE trained on the human texts (deterministic), when no run gives one."""
  return tokenizer_lib.train_byte_level_bpe(list(human_texts), vocab_size=vocab_size)


def _windows(texts, tokenizer, window: int) -> tuple[np.ndarray, np.ndarray]:
  ids = tokenizer.encode_batch(list(texts))
  tokens = np.zeros((len(ids), window), np.int32)
  valid = np.zeros((len(ids), window), bool)
  for i, row in enumerate(ids):
    row = row[:window]
    tokens[i, :len(row)], valid[i, :len(row)] = row, True
  return tokens, valid


@jax.jit
def _divergences(x_NxF, y_MxF):
  return divergences.sinkhorn(x_NxF, y_MxF)[0], divergences.mmd(x_NxF, y_MxF)[0]


class _Standardized:
  """A text featurization (`raw`, [N, F]) standardized by the mean and sd of human texts; F is
  the space's width (28 statistics, or a model's hidden size). Featurized texts are kept by
  their content, so a table featurizes each set of texts once however often it is asked."""

  def _fit(self, human_texts) -> None:
    self._seen = {}
    raw = self.raw(human_texts)
    self.mean_F, self.sd_F = reference.standardization(raw)
    self.human_NxF = self.standardize(raw)
    self._seen[tuple(human_texts)] = self.human_NxF

  def raw(self, texts) -> np.ndarray:
    raise NotImplementedError

  clip = 0.0  # > 0: standardized coordinates winsorized at ±clip (FeatureSpace's clip)

  def standardize(self, x_NxF):
    return reference.standardize(x_NxF, self.mean_F, self.sd_F, self.clip)

  def __call__(self, texts) -> np.ndarray:
    key = tuple(texts)
    if key not in self._seen:
      self._seen[key] = self.standardize(self.raw(list(key)))
    return self._seen[key]


class FeatureSpace(_Standardized):
  """The featurizer's 28 statistics, standardized by a human reference; clip > 0 winsorizes
  them at ±clip sd, as loss.feature_clip does in training, so one degenerate text moves the
  divergences by a bounded amount (the table counts such texts in its Degenerate column)."""

  def __init__(self, human_texts: Sequence[str], tokenizer, window: int = 64,
               clip: float = 0.0):
    self.tokenizer, self.window, self.clip = tokenizer, window, clip
    ids = tokenizer.encode_batch(list(human_texts))
    counts = np.bincount(np.concatenate([np.asarray(r, np.int64) for r in ids] + [[]]).astype(
        np.int64), minlength=tokenizer.vocab_size).astype(np.float64)
    self.tables = features.build_tables(tokenizer, counts)
    self._featurize = jax.jit(lambda t, v: features.featurize_batch(t, v, self.tables))
    self._fit(human_texts)

  def raw(self, texts) -> np.ndarray:
    tokens, valid = _windows(texts, self.tokenizer, self.window)
    return np.asarray(self._featurize(tokens, valid), np.float64)

  def divergences(self, feats_NxF: np.ndarray, against_MxF: np.ndarray | None = None) -> dict:
    """Sinkhorn divergence and MMD² of the texts' features to the human ones (or `against`)."""
    y = self.human_NxF if against_MxF is None else against_MxF
    sink, mmd = _divergences(jnp.asarray(feats_NxF, jnp.float32), jnp.asarray(y, jnp.float32))
    return {"feature_sinkhorn": float(sink), "feature_mmd": float(mmd)}

  def gaps(self, feats_NxF: np.ndarray) -> dict:
    """Standardized mean gap of each feature (sample mean − human mean, in human sds)."""
    gap_F = feats_NxF.mean(0) - self.human_NxF.mean(0)
    return dict(zip(features.FEATURE_NAMES, map(float, gap_F)))


@jax.jit
def _mmd(x_NxE, y_MxE):
  return divergences.mmd(x_NxE, y_MxE)[0]


class EmbeddingSpace(_Standardized):
  """A frozen model's pooled hidden states of each text's first `window` tokens
  (losses/embedding.py: final layer by default, mean pooling), standardized per dimension by
  the human texts. Per dimension, not whitened: a few hundred human texts in hundreds of
  dimensions give a rank-deficient covariance. `embedding_mmd` is Deft's headline measure:
  the unbiased RBF-mixture MMD² (median bandwidth) between the two clouds."""

  def __init__(self, model, tokenizer, human_texts: Sequence[str], window: int = 64,
               layer: int = -1, pooling: str = "mean", name: str = ""):
    self.model, self.tokenizer, self.window, self.pooling = model, tokenizer, window, pooling
    self.layer = model.cfg.num_layers if layer < 0 else layer
    self.name = name or f"{model.cfg.model_type} layer {self.layer}, {pooling} pooling"
    self._fit(human_texts)

  def raw(self, texts) -> np.ndarray:
    tokens, valid = _windows(texts, self.tokenizer, self.window)
    return embedding.embed_bank(self.model, tokens, valid, self.layer, self.pooling)

  def divergences(self, x_NxE: np.ndarray, against_MxE: np.ndarray | None = None) -> dict:
    y = self.human_NxF if against_MxE is None else against_MxE
    return {"embedding_mmd": float(_mmd(jnp.asarray(x_NxE, jnp.float32),
                                        jnp.asarray(y, jnp.float32)))}


def mauve_scores(feats_NxF, human_NxF, emb_NxE=None, human_NxE=None) -> dict:
  """MAUVE on the statistics' features and, given them, on the embeddings (text_metrics.mauve:
  mauve-text's k-means with its defaults, num_buckets 'auto' = n / 10, seed 25); empty when
  mauve-text is not installed (`pip install -e '.[eval]'`)."""
  out = {}
  value = text_metrics.mauve(feats_NxF, human_NxF)
  if value is not None:
    out["mauve"] = value
    if emb_NxE is not None:
      out["embedding_mauve"] = text_metrics.mauve(emb_NxE, human_NxE)
  return out


@functools.partial(jax.jit, static_argnames="graphdef")
def _nll_per_row(graphdef, state, batch):
  logits = cross_entropy.forward(nnx.merge(graphdef, state), batch)
  one_row = lambda logits_TxV, row: cross_entropy.token_nll(  # noqa: E731
      logits_TxV[None], jax.tree.map(lambda x: x[None], row))
  return jax.vmap(one_row)(logits, batch)


def perplexity(model, tokenizer, texts: Sequence[str], *, seq_len: int = 128,
               batch_size: int = 16, per_piece: bool = False,
               max_pieces: int | None = None) -> dict:
  """exp(total NLL / predicted tokens) of the texts, each scored alone with EOS appended.

  A text longer than `seq_len` is scored in consecutive pieces (each piece's first token is
  context, as in training's packed rows). max_pieces: score only that many, taken round-robin
  over the texts (every text's first piece, then second pieces, ...), so long documents do not
  crowd out the others. per_piece: also each piece's NLL sum, token count and text index
  ("nll_per_piece", "tokens_per_piece", "doc_per_piece"), the units of a paired bootstrap
  clustered by document.
  """
  eos = tokenizer.eos_id
  per_text = [[p for i in range(0, len(ids), seq_len) for p in [ids[i:i + seq_len]]
               if len(p) > 1]
              for ids in (ids + [eos] for ids in tokenizer.encode_batch(list(texts)))]
  placed = [(i, t[j]) for j in range(max(map(len, per_text), default=0))
            for i, t in enumerate(per_text) if j < len(t)][:max_pieces]
  pieces = [p for _, p in placed]
  if not pieces:
    raise ValueError("no text has a token to predict")
  rows = -(-len(pieces) // batch_size) * batch_size
  batch = {k: np.zeros((rows, seq_len), np.int32) for k in ("tokens", "segment_ids",
                                                            "positions")}
  batch["loss_mask"] = np.zeros((rows, seq_len), np.float32)
  for r, p in enumerate(pieces):
    batch["tokens"][r, :len(p)], batch["segment_ids"][r, :len(p)] = p, 1
    batch["positions"][r, :len(p)] = np.arange(len(p))
    batch["loss_mask"][r, 1:len(p)] = 1.0
  graphdef, state = nnx.split(model)
  nll, count = [], []
  for start in range(0, rows, batch_size):
    n_B, c_B = _nll_per_row(graphdef, state,
                            {k: v[start:start + batch_size] for k, v in batch.items()})
    nll.append(np.asarray(n_B, np.float64))
    count.append(np.asarray(c_B, np.float64))
  nll_R, count_R = np.concatenate(nll)[:len(pieces)], np.concatenate(count)[:len(pieces)]
  out = {"perplexity": math.exp(min(nll_R.sum() / count_R.sum(), 50.0)),
         "ppl_tokens": int(count_R.sum())}
  if per_piece:
    out.update(nll_per_piece=nll_R, tokens_per_piece=count_R,
               doc_per_piece=np.asarray([i for i, _ in placed]))
  return out


def judge_accuracy(human_texts, texts, folds: int, seed: int) -> float:
  """The judge's cross-validated two-sample accuracy; fewer folds for very small sets."""
  folds = max(2, min(folds, len(human_texts), len(texts)))
  return judge.two_sample_accuracy(human_texts, texts, folds=folds, seed=seed)["accuracy"]


def evaluate(texts: Sequence[str], human_texts: Sequence[str], *, tokenizer=None,
             feature_space: FeatureSpace | None = None, model=None, window: int = 64,
             judge_folds: int = 5, seed: int = 0,
             embedding_space: EmbeddingSpace | None = None) -> dict:
  """The table's metrics of `texts` against `human_texts` (plus perplexity given a model, and
  embedding_mmd / embedding MAUVE given an embedding space)."""
  texts, human_texts = list(texts), list(human_texts)
  if not texts or not human_texts:
    raise ValueError("no texts to evaluate" if not texts else "no human reference texts")
  out = text_metrics.compute(texts, human_texts)
  space = feature_space or FeatureSpace(human_texts, tokenizer or fallback_tokenizer(
      human_texts), window)
  feats = space(texts)
  out.update(space.divergences(feats))
  out["judge_accuracy"] = judge_accuracy(human_texts, texts, judge_folds, seed)
  emb = None
  if embedding_space is not None:
    emb = embedding_space(texts)
    out.update(embedding_space.divergences(emb))
  out.update(mauve_scores(feats, space.human_NxF, emb,
                          None if emb is None else embedding_space.human_NxF))
  if model is not None:
    out.update(perplexity(model, tokenizer or space.tokenizer, human_texts))
  return out


def human_reference(human_texts: Sequence[str], feature_space: FeatureSpace, *,
                    judge_folds: int = 5, seed: int = 0,
                    other: Sequence[str] | None = None,
                    embedding_space: EmbeddingSpace | None = None) -> dict:
  """The human row: its own text metrics, and the comparative ones (W1, L2, slop ratio,
  divergences, judge) against `other` human texts (a second set as large as a run's samples),
  or, without one, between its two halves (even / odd texts) — the noise floor.

  Comparing the texts with themselves would say nothing (W1 = 0 by definition) or mislead: the
  judge, cross-validated on duplicates, learns each held-out text's copy in the other class.
  """
  human_texts = list(human_texts)
  a, b = (human_texts, list(other)) if other is not None else (human_texts[0::2],
                                                               human_texts[1::2])
  out = text_metrics.compute(human_texts, human_texts)
  half = text_metrics.compute(a, b)
  for key in ("sent_len_w1", "unigram_l2", "slop_ratio"):
    out[key] = half[key]
  out.update(feature_space.divergences(feature_space(a), feature_space(b)))
  out["judge_accuracy"] = judge_accuracy(b, a, judge_folds, seed)
  if embedding_space is not None:
    out.update(embedding_space.divergences(embedding_space(a), embedding_space(b)))
  return out
