"""The human reference DFT compares model samples with, loaded once per run.

Two layers:
  ReferenceStats  the statistics bank of a corpus ("domain stats"): up to `max_windows` windows
                  of `window` tokens (documents' shorter final windows included), featurized
                  (features.py), with its mean and sd, the unigram counts behind the Zipf bins,
                  the featurizer version, the window and the tokenizer's fingerprint. Saved as
                  an .npz (`save_stats`, CLI `python -m dft_jax.stats`); loading it with another
                  tokenizer or featurizer version is an error, never a silent mismatch.
  Reference       what the loss holds on device: the lookup tables, the standardization, the
                  group mask and the bank as points of the configured feature space
                  ('stats', 'embedding' or 'both', embedding.py), plus the whitening of the
                  embedder when there is one. `build` makes it from the loss config.

Windows (`reference_windows`): consecutive windows of every document, its final shorter one
too. The final windows matter: a model's continuation stops at EOS where its document would
end, so a bank of full windows only would teach DFT that texts never end.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from dft_jax.data import corpora, files, sources
from dft_jax.data import tokenizer as tokenizer_lib
from dft_jax.losses import embedding, features


class StatsError(ValueError):
  """A stats file that does not belong to this tokenizer / featurizer, or no usable text."""


@dataclasses.dataclass
class ReferenceStats:
  bank_MxF: np.ndarray
  mean_F: np.ndarray
  sd_F: np.ndarray
  unigram_counts_V: np.ndarray
  window: int
  version: int
  fingerprint: str
  corpus: str

  def tables(self, tokenizer: tokenizer_lib.Tokenizer,
             vocab_size: int | None = None) -> features.Tables:
    return features.build_tables(tokenizer, self.unigram_counts_V, vocab_size)

  def standardize(self, raw_MxF, clip: float = 0.0):
    return standardize(raw_MxF, self.mean_F, self.sd_F, clip)


def standardize(raw_xF, mean_F, sd_F, clip: float = 0.0):
  """Raw statistics (any leading axes) in units of the reference's sd, about its mean: the one
  standardization the bank, the samples and every estimator use.

  clip > 0 winsorizes every coordinate to [-clip, clip] (loss.feature_clip): a degenerate
  sample (a repetition loop sits tens of sds out on a few statistics) then moves at most
  sqrt(F) * clip from the bank, so one sample cannot decide the divergence. NumPy and JAX
  arrays alike (their own `clip` method).
  """
  z = (raw_xF - mean_F) / sd_F
  return z.clip(-clip, clip) if clip > 0 else z


# --- windows and the statistics bank ---------------------------------------------------------


def reference_windows(ids, window: int, min_tokens: int) -> list[list[int]]:
  """Consecutive windows of `window` tokens of every document, its final shorter window too
  when it has at least `min_tokens` tokens."""
  return [d[i:i + window] for d in ids for i in range(0, len(d), window)
          if len(d) - i >= min(window, min_tokens)]


def reference_tokens(documents, tokenizer: tokenizer_lib.Tokenizer, *, window: int = 64,
                     max_windows: int = 1024, seed: int = 0, corpus: str = "",
                     min_tokens: int | None = None):
  """(tokens [M, window] int32, valid [M, window] bool, unigram counts [V]) of the reference
  windows: every document's (reference_windows; `min_tokens` defaults to window // 8, at
  least 4), a seeded subset of at most `max_windows`. The same windows feed the statistics
  bank and the embedding bank."""
  ids = tokenizer.encode_batch([documents[i] for i in range(len(documents))])
  counts = np.bincount(np.concatenate([np.asarray(d, np.int64) for d in ids if d] or
                                      [np.zeros(0, np.int64)]),
                       minlength=tokenizer.vocab_size).astype(np.float64)
  min_tokens = max(window // 8, 4) if min_tokens is None else min_tokens
  windows = reference_windows(ids, window, min_tokens)
  if not windows:
    raise StatsError(f"no document of {corpus or 'the corpus'} has {min(window, min_tokens)} "
                     "tokens")
  rng = np.random.RandomState(seed)
  if len(windows) > max_windows:
    windows = [windows[i] for i in sorted(rng.choice(len(windows), max_windows, replace=False))]
  tokens = np.zeros((len(windows), window), np.int32)
  valid = np.zeros((len(windows), window), bool)
  for r, w in enumerate(windows):
    tokens[r, :len(w)], valid[r, :len(w)] = w, True
  return tokens, valid, counts


def featurize_windows(tokens_NxT, valid_NxT, tables: features.Tables,
                      batch_size: int = 256) -> np.ndarray:
  """Raw statistics [M, F] of token windows, jitted in batches."""
  fn = jax.jit(lambda t, v: features.featurize_batch(t, v, tables))
  return np.concatenate([np.asarray(fn(tokens_NxT[i:i + batch_size],
                                       valid_NxT[i:i + batch_size]))
                         for i in range(0, len(tokens_NxT), batch_size)])


def standardization(bank_MxF: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(mean [F], sd [F]) of a bank; a constant feature gets sd 1 (its gap stays in raw units)."""
  sd = bank_MxF.std(0)
  return bank_MxF.mean(0), np.where(sd > 1e-6, sd, 1.0)


def compute_stats(documents, tokenizer: tokenizer_lib.Tokenizer, *, window: int = 64,
                  max_windows: int = 1024, seed: int = 0, corpus: str = "",
                  min_tokens: int | None = None) -> ReferenceStats:
  """The featurized bank of the reference windows (reference_tokens), its mean and sd."""
  tokens, valid, counts = reference_tokens(documents, tokenizer, window=window,
                                           max_windows=max_windows, seed=seed, corpus=corpus,
                                           min_tokens=min_tokens)
  bank = featurize_windows(tokens, valid, features.build_tables(tokenizer, counts))
  mean, sd = standardization(bank)
  return ReferenceStats(bank, mean, sd, counts, window, features.VERSION,
                        tokenizer.fingerprint, corpus)


def save_stats(stats: ReferenceStats, path: str) -> None:
  meta = dict(window=stats.window, version=stats.version, fingerprint=stats.fingerprint,
              corpus=stats.corpus, feature_names=list(features.FEATURE_NAMES))
  files.savez(path, bank=stats.bank_MxF, mean=stats.mean_F, sd=stats.sd_F,
              unigram_counts=stats.unigram_counts_V, meta=json.dumps(meta))


def load_stats(path: str, tokenizer: tokenizer_lib.Tokenizer | None = None) -> ReferenceStats:
  if not os.path.isfile(path):
    raise StatsError(f"stats file not found: {path}")
  with np.load(path) as f:
    meta = json.loads(str(f["meta"]))
    stats = ReferenceStats(f["bank"], f["mean"], f["sd"], f["unigram_counts"], meta["window"],
                           meta["version"], meta["fingerprint"], meta["corpus"])
  if stats.version != features.VERSION:
    raise StatsError(f"{path} was made by featurizer version {stats.version}; this is version "
                     f"{features.VERSION}: recompute it")
  if tokenizer is not None and tokenizer.fingerprint != stats.fingerprint:
    raise StatsError(f"{path} was made with tokenizer {stats.fingerprint}, not this one "
                     f"({tokenizer.fingerprint}): recompute it with this tokenizer")
  return stats


def _cache_name(corpus: str) -> str:
  return (corpus or "documents").replace("/", "_").replace(",", "+").strip("_")


def stats_for_corpus(corpus: str, tokenizer: tokenizer_lib.Tokenizer, *, window: int,
                     data_dir: str | None = None, max_windows: int = 1024) -> ReferenceStats:
  """The stats of a corpus's train split for this tokenizer: cached under the data root
  ($DFT_JAX_DATA/stats), made on first use."""
  path = os.path.join(corpora.data_root(data_dir), "stats",
                      f"{_cache_name(corpus)}-{tokenizer.fingerprint}-w{window}"
                      f"-v{features.VERSION}.npz")
  if not os.path.isfile(path):
    docs = sources.documents(corpus, "train", data_dir)
    save_stats(compute_stats(docs, tokenizer, window=window, max_windows=max_windows,
                             corpus=corpus), path)
  return load_stats(path, tokenizer)


# --- the loss's reference ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Embedder:
  """The frozen starting model's feature map: hidden state after `layer` blocks, pooled, then
  whitened z = (e - mu) W by the reference bank (embedding.py)."""
  layer: int
  pooling: str
  mu_E: jax.Array
  w_ExE: jax.Array

  def __call__(self, model, tokens_BxT, valid_BxT):
    e_BxE = embedding.embed(model, tokens_BxT, valid_BxT, self.layer, self.pooling)
    return (e_BxE - self.mu_E[None]) @ self.w_ExE


def space_points(space: str, mask_F, std_BxF, z_BxE=None):
  """Points of a feature space: masked standardized statistics and/or whitened embeddings,
  each scaled by embedding.space_scales so lambda means the same in every space."""
  if space == "stats":
    return std_BxF * mask_F[None]
  stats_width = int(np.asarray(mask_F).sum())
  s_stats, s_emb = embedding.space_scales(space, stats_width, z_BxE.shape[1])
  if space == "embedding":
    return z_BxE * s_emb
  return jnp.concatenate([std_BxF * mask_F[None] * s_stats, z_BxE * s_emb], axis=1)


@dataclasses.dataclass(frozen=True)
class Reference:
  """The loss's view of the reference (numpy tables become jit constants)."""
  space: str                    # stats | embedding | both
  tables: features.Tables
  mean_F: jax.Array             # standardization of the raw statistics
  sd_F: jax.Array
  mask_F: jax.Array             # 1 on the statistics of loss.groups
  std_bank_MxF: jax.Array       # standardized statistics bank, unmasked (pathwise estimators)
  bank_MxX: jax.Array           # the bank as points of `space` (X = its width)
  embedder: Embedder | None     # for 'embedding' and 'both'
  clip: float = 0.0             # loss.feature_clip: standardized statistics within ±clip

  def standardize(self, raw_BxF, cols=None):
    """Raw statistics [B, F], or the columns `cols` of them, standardized (and clipped)."""
    if cols is None:
      return standardize(raw_BxF, self.mean_F[None], self.sd_F[None], self.clip)
    return standardize(raw_BxF, self.mean_F[None, cols], self.sd_F[None, cols], self.clip)

  def points(self, std_BxF, z_BxE=None):
    """The samples as points of `space` (space_points)."""
    return space_points(self.space, self.mask_F, std_BxF, z_BxE)


def _embedding_bank(loss_cfg, model_cfg, context, tok):
  """(Embedder, the windows' tokens [M, T] and valid mask [M, T], their whitened z [M, E]):
  the reference windows embedded by the starting model, cached under
  $DFT_JAX_DATA/embeddings by corpus, tokenizer, window and model fingerprint."""
  if context.starting_model is None:
    raise ValueError("loss.features with embeddings needs the starting model (losses.Context"
                     ".starting_model)")
  layer = loss_cfg.embedding_layer
  layer = model_cfg.num_layers if layer < 0 else layer
  corpus = loss_cfg.stats_corpus or context.corpus
  docs = context.reference_documents
  if docs is None:
    docs = sources.documents(corpus, "train", context.data_dir)
  tokens, valid, _ = reference_tokens(docs, tok, window=loss_cfg.gen_len, corpus=corpus)
  model = context.starting_model()
  key = embedding.fingerprint(model, layer, loss_cfg.embedding_pooling)
  path = os.path.join(corpora.data_root(context.data_dir), "embeddings",
                      f"{_cache_name(corpus)}-{tok.fingerprint}-w{loss_cfg.gen_len}-{key}.npz")
  bank_MxE = embedding.cached_bank(path if jax.process_index() == 0 else None, model, tokens,
                                   valid, layer, loss_cfg.embedding_pooling, key=key)
  mu_E, w_ExE = embedding.whitening(bank_MxE)
  embedder = Embedder(layer, loss_cfg.embedding_pooling, jnp.asarray(mu_E, jnp.float32),
                      jnp.asarray(w_ExE, jnp.float32))
  return embedder, tokens, valid, jnp.asarray((bank_MxE - mu_E) @ w_ExE, jnp.float32)


def build(loss_cfg, model_cfg, context) -> Reference:
  """The reference of loss config `loss_cfg`: its stats file, or the cached stats of its corpus
  (stats_corpus, default the run's), and for embedding spaces the starting model's bank."""
  tok = context.tokenizer
  if loss_cfg.stats_file:
    stats = load_stats(loss_cfg.stats_file, tok)
  else:
    stats = stats_for_corpus(loss_cfg.stats_corpus or context.corpus, tok,
                             window=loss_cfg.gen_len, data_dir=context.data_dir)
  if stats.window != loss_cfg.gen_len:
    raise ValueError(f"stats window {stats.window} != loss.gen_len {loss_cfg.gen_len}; the "
                     "featurized continuations must be as long as the reference windows")
  tables = stats.tables(tok, model_cfg.vocab_size)
  mean_F, sd_F = jnp.asarray(stats.mean_F), jnp.asarray(stats.sd_F)
  mask_F = jnp.asarray(features.group_mask(loss_cfg.groups))
  clip = float(loss_cfg.feature_clip)
  std_bank_MxF = jnp.asarray(stats.standardize(stats.bank_MxF, clip))
  embedder, std_MxF, z_MxE = None, std_bank_MxF, None
  if loss_cfg.features != "stats":
    embedder, tokens, valid, z_MxE = _embedding_bank(loss_cfg, model_cfg, context, tok)
    std_MxF = None
    if loss_cfg.features == "both":  # the statistics of the embedded windows, row for row
      raw_MxF = features.featurize_batch(jnp.asarray(tokens), jnp.asarray(valid), tables)
      std_MxF = standardize(raw_MxF, mean_F[None], sd_F[None], clip)
  return Reference(loss_cfg.features, tables, mean_F, sd_F, mask_F, std_bank_MxF,
                   space_points(loss_cfg.features, mask_F, std_MxF, z_MxE), embedder, clip)


def placeholder(loss_cfg, model_cfg, *, bank_rows: int = 1024, seed: int = 0) -> Reference:
  """A Reference of the right shapes and dtypes with random contents (lookup tables over the
  model's vocabulary, a bank of `bank_rows` points, an identity whitening): what an
  ahead-of-time compile of the DFT step needs when the model's tokenizer and corpus are not
  at hand. Never for training: its statistics mean nothing."""
  rng = np.random.RandomState(seed)
  v, f = model_cfg.vocab_size, len(features.FEATURE_NAMES)
  tables = features.Tables(rng.rand(v) < 0.5, rng.rand(v) < 0.8,
                           rng.rand(v, len(features.PUNCT_CLASSES)) < 0.01,
                           rng.randint(0, features.NUM_RANK_BINS, v).astype(np.int32))
  mask_F = jnp.asarray(features.group_mask(loss_cfg.groups))
  std_bank_MxF = jnp.asarray(rng.randn(bank_rows, f), jnp.float32)
  embedder, z_MxE = None, None
  if loss_cfg.features != "stats":
    e = model_cfg.hidden_size
    layer = model_cfg.num_layers if loss_cfg.embedding_layer < 0 else loss_cfg.embedding_layer
    embedder = Embedder(layer, loss_cfg.embedding_pooling, jnp.zeros(e), jnp.eye(e))
    z_MxE = jnp.asarray(rng.randn(bank_rows, e), jnp.float32)
  return Reference(loss_cfg.features, tables, jnp.zeros(f), jnp.ones(f), mask_F, std_bank_MxF,
                   space_points(loss_cfg.features, mask_F, std_bank_MxF, z_MxE), embedder,
                   float(loss_cfg.feature_clip))
