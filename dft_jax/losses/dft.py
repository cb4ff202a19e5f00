"""The DFT objective: CE on the human batch + lambda_t * D(law of phi(samples),
law of phi(human windows)).

Estimators of how D reaches the parameters:
  score_function  (default) prompts cut from the human batch, G-token continuations sampled
                  with the KV-cache decoder (no gradient), featurized; surrogate
                  lambda * mean_i sg(c_i - b_i) * log p(x_i | prompt_i), c_i the first variation
                  of D at sample i, b_i a leave-one-out baseline (for MMD / energy computed
                  without sample i, so the estimate is unbiased; for Sinkhorn the mean of the
                  other c_j: consistent, bias shrinking with the number of samples).
  straight_through Gumbel-softmax straight-through rollouts (hard tokens forward, soft
                  gradients back through the KV-cache decode), the differentiable statistics
                  features.SOFT_FEATURES of them, D differentiated with respect to the feature
                  points (ott's implicit gradients for Sinkhorn). Biased, memory-heavy: an
                  ablation.
  expected        no sampling: the expected Zipf-bin mass of each human row under the model's
                  teacher-forced predictive distributions, compared with the bank's bin-mass
                  columns; D differentiated through the features (ott's implicit gradients).
                  Cheapest; sees no free-running behaviour; only the word_frequency bins.
Feature space (loss.features, embedding.py): 'stats' (the 28 statistics), 'embedding' (the
frozen starting model's pooled hidden states of each window, whitened by the reference bank),
or 'both' (concatenated); every space scaled to the statistics' expected squared norm on the
bank, so lambda means the same in each (embedding.space_scales); the last two with the
score-function estimator, whose samples need no gradient through the embedder.
Optional GDC-style anchor: kl_beta * KL(p_theta || p_theta0) on the samples, p_theta0 the
starting model kept in the train state, estimated with the same score-function surrogate.
Schedule: joint (every step) or alternate (the distribution term every `every` steps), with a
linear lambda warm-up.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dft_jax import sampling
from dft_jax import stats as stats_lib
from dft_jax.losses import cross_entropy, divergences, embedding, features
from dft_jax.data import corpora, pipeline, sources
from dft_jax.models.decoder import KVCache

ESTIMATORS = ("score_function", "straight_through", "expected")


def _lambda(cfg, step):
  warm = jnp.minimum(1.0, (jnp.asarray(step, jnp.float32) + 1.0) / max(cfg.lam_warmup_steps, 1))
  return cfg.lam * warm


def _group_gaps(feats_NxF):
  """Mean |standardized gap| of the samples from the reference, per feature group."""
  gap_F = jnp.abs(feats_NxF.mean(0))
  out = {}
  for group in features.GROUPS:
    idx = np.asarray([features.FEATURE_NAMES.index(n) for n in features.GROUPS[group]])
    out[f"gap_{group}"] = gap_F[idx].mean()
  return out


def _combine(space, stats_NxF, z_NxE, stats_width):
  """The points compared in feature space `space`, scaled by embedding.space_scales."""
  s_stats, s_emb = embedding.space_scales(space, stats_width, z_NxE.shape[1])
  if space == "embedding":
    return z_NxE * s_emb
  return jnp.concatenate([stats_NxF * s_stats, z_NxE * s_emb], axis=1)


def _embedding_reference(loss_cfg, model_cfg, context, tok) -> dict:
  """The whitened embedding bank of the reference windows, embedded by the starting model
  (cached under $DFT_JAX_DATA/embeddings by corpus, tokenizer, window and model fingerprint)."""
  if context.starting_model is None:
    raise ValueError("loss.features with embeddings needs the starting model (losses.Context"
                     ".starting_model)")
  layer = loss_cfg.get("embedding_layer", -1)
  layer = model_cfg.num_layers if layer < 0 else layer
  pooling = loss_cfg.get("embedding_pooling", "mean")
  corpus = loss_cfg.stats_corpus or context.corpus
  docs = context.reference_documents
  if docs is None:
    docs = sources.documents(corpus, "train", context.data_dir)
  tokens, valid, _ = stats_lib.reference_tokens(docs, tok, window=loss_cfg.gen_len,
                                                corpus=corpus)
  model = context.starting_model()
  key = embedding.fingerprint(model, layer, pooling)
  name = (corpus or "documents").replace("/", "_").replace(",", "+").strip("_")
  path = os.path.join(corpora.data_root(context.data_dir), "embeddings",
                      f"{name}-{tok.fingerprint}-w{loss_cfg.gen_len}-{key}.npz")
  bank_NxE = embedding.cached_bank(path if jax.process_index() == 0 else None, model, tokens,
                                   valid, layer, pooling, key=key)
  mu_E, w_ExE = embedding.whitening(bank_NxE)
  return {"layer": layer, "pooling": pooling, "tokens_NxT": tokens, "valid_NxT": valid,
          "mu_E": jnp.asarray(mu_E, jnp.float32), "w_ExE": jnp.asarray(w_ExE, jnp.float32),
          "bank_NxE": jnp.asarray((bank_NxE - mu_E) @ w_ExE, jnp.float32)}


def make(loss_cfg, model_cfg, context):
  if loss_cfg.estimator == "expected" and \
      "word_frequency" not in loss_cfg.groups:
    raise ValueError("estimator 'expected' compares Zipf-bin mass only; keep 'word_frequency' "
                     "in loss.groups")
  if loss_cfg.estimator not in ESTIMATORS:
    raise ValueError(f"unknown loss.estimator {loss_cfg.estimator!r}; available: "
                     f"{', '.join(ESTIMATORS)}")
  if loss_cfg.temperature <= 0:
    raise ValueError(f"loss.temperature must be > 0 (samples need a density), got "
                     f"{loss_cfg.temperature}")
  if not 0 < loss_cfg.top_p <= 1:
    raise ValueError(f"loss.top_p must be in (0, 1], got {loss_cfg.top_p}")
  if loss_cfg.kl_beta > 0 and loss_cfg.estimator != "score_function":
    raise ValueError("loss.kl_beta needs estimator='score_function' (the KL is estimated on "
                     "its samples)")
  if loss_cfg.mode not in ("joint", "alternate"):
    raise ValueError(f"loss.mode must be 'joint' or 'alternate', got {loss_cfg.mode!r}")
  space = loss_cfg.get("features", "stats")
  if space not in embedding.FEATURE_SPACES:
    raise ValueError(f"unknown loss.features {space!r}; available: "
                     f"{', '.join(embedding.FEATURE_SPACES)}")
  if space != "stats" and loss_cfg.estimator != "score_function":
    raise ValueError(f"loss.features={space!r} needs estimator='score_function' (the "
                     "embedder is a frozen model; the other estimators differentiate features)")
  tok = context.tokenizer
  if tok is None:
    raise ValueError("loss.name='dft' needs the run's tokenizer")
  if loss_cfg.stats_file:
    ref = stats_lib.load(loss_cfg.stats_file, tok)
  else:
    ref = stats_lib.for_corpus(loss_cfg.stats_corpus or context.corpus, tok,
                               window=loss_cfg.gen_len, data_dir=context.data_dir)
  if ref.window != loss_cfg.gen_len:
    raise ValueError(f"stats window {ref.window} != loss.gen_len {loss_cfg.gen_len}; the "
                     "featurized continuations must be as long as the reference windows")
  tables = ref.tables(tok, model_cfg.vocab_size)
  emb = None
  if space != "stats":
    emb = _embedding_reference(loss_cfg, model_cfg, context, tok)
  mask_F = jnp.asarray(features.group_mask(loss_cfg.groups))
  mean_F, sd_F = jnp.asarray(ref.mean_F), jnp.asarray(ref.sd_F)
  std_bank_NxF = jnp.asarray(ref.standardize(ref.bank_NxF))
  bank_NxF = std_bank_NxF * mask_F[None]
  stats_width = int(mask_F.sum())
  if space == "embedding":
    bank_NxF = _combine(space, None, emb["bank_NxE"], stats_width)
  elif space == "both":  # the statistics of the embedded windows themselves, row for row
    raw_NxF = features.featurize_batch(jnp.asarray(emb["tokens_NxT"]),
                                       jnp.asarray(emb["valid_NxT"]), tables)
    bank_NxF = _combine(space, (raw_NxF - mean_F[None]) / sd_F[None] * mask_F[None],
                        emb["bank_NxE"], stats_width)
  divergence = divergences.make(loss_cfg.divergence, epsilon=loss_cfg.epsilon,
                                threshold=loss_cfg.sinkhorn_threshold,
                                max_iterations=loss_cfg.sinkhorn_iterations,
                                implicit_diff=loss_cfg.get("sinkhorn_implicit_diff", True)) \
      if loss_cfg.divergence == "sinkhorn" else divergences.make(loss_cfg.divergence)
  eos = pipeline.special_ids(tok, pipeline.PipelineConfig(2, 1))[1]
  rank_onehot_VxK = jnp.asarray(
      np.eye(features.NUM_RANK_BINS, dtype=np.float32)[tables.rank_bin])
  n_p, n_g, n_d = loss_cfg.prompt_len, loss_cfg.gen_len, loss_cfg.dist_batch
  top_p = loss_cfg.top_p

  def sample_logp(model, full, segments, positions, tokens_BxG, valid_BxG):
    """log p of each continuation under the distribution it was drawn from: tempered and
    truncated to the top-p nucleus (the deployed decoding)."""
    logits_BxGxV = model(full, positions, segments)[:, n_p - 1:-1]
    b, g, v = logits_BxGxV.shape
    filtered = sampling.filter_logits(logits_BxGxV.reshape(b * g, v), loss_cfg.temperature, 0,
                                      top_p).reshape(b, g, v)
    logp_BxG = jnp.take_along_axis(jax.nn.log_softmax(filtered), tokens_BxG[..., None],
                                   axis=-1)[..., 0]
    logp_BxG = jnp.where(valid_BxG, logp_BxG, 0.0)  # -inf outside the nucleus past EOS
    return jnp.sum(logp_BxG * valid_BxG, axis=1)

  def score_function(model, batch, rng, anchor):
    """(surrogate for D, surrogate for the KL anchor or 0, metrics)."""
    graph, state = nnx.split(model)
    frozen = nnx.merge(graph, jax.lax.stop_gradient(state))
    prompts_BxP = batch["tokens"][:n_d, :n_p]
    # only the prompt's last document: earlier tokens become left padding
    seg_BxP = batch["segment_ids"][:n_d, :n_p]
    prompt_mask_BxP = (seg_BxP == seg_BxP[:, -1:]) & (seg_BxP != 0)
    samples = sampling.decode(frozen, prompts_BxP, prompt_mask_BxP, rng,
                              max_new_tokens=n_g, temperature=loss_cfg.temperature,
                              top_p=top_p, eos_ids=(eos,), pad_id=eos)
    tokens_BxG = jax.lax.stop_gradient(samples.tokens_BxG)
    valid_BxG = samples.valid_BxG
    text_BxG = valid_BxG & (tokens_BxG != eos)  # reference windows hold no EOS
    feats = ((features.featurize_batch(tokens_BxG, text_BxG, tables) - mean_F[None])
             / sd_F[None] * mask_F[None])
    points = feats
    if emb is not None:
      z_BxE = embedding.embed(anchor, tokens_BxG, text_BxG, emb["layer"], emb["pooling"])
      z_BxE = jax.lax.stop_gradient((z_BxE - emb["mu_E"][None]) @ emb["w_ExE"])
      points = _combine(space, feats, z_BxE, stats_width)
    value, _, advantage_B = divergence(points, bank_NxF)
    advantage_B = jax.lax.stop_gradient(advantage_B)
    seg_P, pos_P, next_B = sampling.prompt_layout(prompt_mask_BxP)
    full = jnp.concatenate([prompts_BxP, tokens_BxG], axis=1)
    segments = jnp.concatenate([seg_P, jnp.ones_like(tokens_BxG)], axis=1)
    positions = jnp.concatenate([pos_P, next_B[:, None] + jnp.arange(n_g)[None]], axis=1)
    logp_B = sample_logp(model, full, segments, positions, tokens_BxG, valid_BxG)
    metrics = {"dist": value, "sample_len": valid_BxG.sum(1).mean(), **_group_gaps(feats)}
    kl_term = jnp.zeros(())
    if loss_cfg.kl_beta > 0:  # KL(p_theta || p_theta0) on the samples, same estimator
      logp0_B = sample_logp(anchor, full, segments, positions, tokens_BxG, valid_BxG)
      kl_B = jax.lax.stop_gradient(logp_B - logp0_B)
      kl_term = jnp.mean(divergences.loo_advantage(kl_B) * logp_B)
      metrics["kl"] = kl_B.mean()
    return jnp.mean(advantage_B * logp_B), kl_term, metrics

  soft_cols = features.SOFT_COLUMNS
  soft_bank = std_bank_NxF[:, soft_cols]

  def straight_through(model, batch, rng):
    prompts_BxP = batch["tokens"][:n_d, :n_p]
    cache = KVCache.zeros(model.cfg, n_d, n_p + n_g)
    logits, cache = model(prompts_BxP, cache=cache)

    def step(carry, i):
      last_BxV, cache = carry
      gumbel = jax.random.gumbel(jax.random.fold_in(rng, i), last_BxV.shape)
      soft = jax.nn.softmax((last_BxV + gumbel) / loss_cfg.temperature, axis=-1)
      hard = jax.nn.one_hot(jnp.argmax(soft, axis=-1), soft.shape[-1])
      y_BxV = hard + soft - jax.lax.stop_gradient(soft)
      pos = jnp.full((n_d, 1), n_p, jnp.int32) + i
      out, cache = model(jnp.zeros((n_d, 1), jnp.int32), pos, jnp.ones((n_d, 1), jnp.int32),
                         cache=cache, soft_tokens_BxTxV=y_BxV[:, None])
      return (out[:, -1], cache), y_BxV

    _, y_GxBxV = jax.lax.scan(step, (logits[:, -1], cache), jnp.arange(n_g))
    feats = jax.vmap(lambda y: features.soft_featurize(y, tables))(y_GxBxV.swapaxes(0, 1))
    mask = mask_F[None, soft_cols]
    feats = (feats - mean_F[None, soft_cols]) / sd_F[None, soft_cols] * mask
    value, _, _ = divergence(feats, soft_bank * mask)
    return value, jnp.zeros(()), {"dist": value}

  def expected(logits_BxTxV, batch):
    probs = jax.nn.softmax(logits_BxTxV[:, :-1].astype(jnp.float32), axis=-1)
    w_BxT = batch["loss_mask"][:, 1:].astype(jnp.float32)
    mass_BxK = jnp.einsum("btv,vk,bt->bk", probs, rank_onehot_VxK, w_BxT)
    mass_BxK = mass_BxK / jnp.maximum(w_BxT.sum(1, keepdims=True), 1.0)
    k = features.NUM_RANK_BINS
    x = (mass_BxK - mean_F[None, :k]) / sd_F[None, :k]
    value, _, _ = divergence(x, std_bank_NxF[:, :k])
    return value, jnp.zeros(()), {"dist": value}

  def loss_fn(model, batch, rng, step, anchor=None):
    logits = cross_entropy.forward(model, batch)
    ce, metrics = cross_entropy.mean_nll(logits, batch)
    lam = _lambda(loss_cfg, step)
    if loss_cfg.estimator == "score_function":
      term_fn = lambda: score_function(model, batch, rng, anchor)
    elif loss_cfg.estimator == "straight_through":
      term_fn = lambda: straight_through(model, batch, rng)
    else:
      term_fn = lambda: expected(logits, batch)
    if loss_cfg.mode == "alternate":  # skip the sampling entirely on CE-only steps
      shapes = jax.eval_shape(term_fn)
      zeros = lambda: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
      term, kl_term, dist_metrics = jax.lax.cond(step % loss_cfg.every == 0, term_fn, zeros)
    else:
      term, kl_term, dist_metrics = term_fn()
    loss = loss_cfg.ce_weight * ce + lam * term + loss_cfg.kl_beta * kl_term
    return loss, {**metrics, **dist_metrics, "lambda": lam}

  return loss_fn
