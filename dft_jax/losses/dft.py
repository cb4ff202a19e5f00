"""The DFT objective: CE on the human batch + lambda_t * D(law of phi(samples), law of
phi(human windows)), D a divergence between point clouds (divergences.py), phi a feature map
(reference.Reference: the 28 statistics of features.py, the frozen starting model's whitened
embeddings, or both).

Read top-down: the config (`config`, `validate`), then one function per estimator of how D
reaches the parameters, then `loss`, the value the train step differentiates, and `make`,
which only wires a config to them.

  score_function  (default) prompts cut from the human batch (each inside its last document),
                  C-token continuations sampled with the KV-cache decoder at the deployed
                  temperature / top-p (no gradient), featurized; surrogate
                  mean_i sg(c_i - b_i) * log p(x_i | prompt_i), c_i the first variation of D at
                  sample i, b_i a leave-one-out baseline (for MMD / energy computed without
                  sample i, so the estimate is unbiased; for Sinkhorn the mean of the other c_j:
                  consistent, bias shrinking with the number of samples). log p is under the
                  tempered, truncated distribution the samples were drawn from.
  straight_through Gumbel-softmax straight-through rollouts (hard tokens forward, soft
                  gradients back through the KV-cache decode), the differentiable statistics
                  features.SOFT_FEATURES of them, D differentiated with respect to the feature
                  points (ott's implicit gradients for Sinkhorn). Biased, memory-heavy: an
                  ablation.
  expected        no sampling: the expected Zipf-bin mass of each human row under the model's
                  teacher-forced predictive distributions, compared with the bank's bin-mass
                  columns; D differentiated through the features. Cheapest; sees no
                  free-running behaviour; only the word_frequency bins.

Optional GDC-style anchor: kl_beta * KL(p_theta || p_theta0) on the samples, p_theta0 the
starting model kept in the train state, estimated with the same score-function surrogate.
Schedule: joint (every step) or alternate (the distribution term every `every` steps), with a
linear lambda warm-up.

Logged: `loss` (what is differentiated: CE + lambda * surrogate), `objective` (CE + lambda * D
+ kl_beta * KL, the value being optimized; equal to `loss` for the pathwise estimators),
`dist` (D), `gap_<group>` (mean |standardized gap| of the samples per feature group, before
the group mask, so a left-out group shows its real gap).

Shapes: B rows of the batch, P prompt length, C continuation length, T sequence length,
V vocabulary, F statistics, E embedding width, X points' width, M bank rows, R Zipf rank bins.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx, struct

from dft_jax import sampling
from dft_jax.losses import cross_entropy, divergences, embedding, features, sinkhorn_fast
from dft_jax.losses import reference as reference_lib
from dft_jax.models.decoder import KVCache

ESTIMATORS = ("score_function", "straight_through", "expected")


def config(**overrides) -> ml_collections.ConfigDict:
  """Every field of `config.loss` for name='dft', with its default (the one definition)."""
  cfg = ml_collections.ConfigDict(dict(
      name="dft",
      estimator="score_function",    # score_function | straight_through | expected
      divergence="sinkhorn",         # sinkhorn | mmd | energy
      lam=0.002,                     # weight of the distribution term
      lam_warmup_steps=10,
      mode="joint",                  # joint | alternate (distribution term every `every` steps)
      every=4,
      ce_weight=1.0,
      kl_beta=0.0,                   # > 0: KL anchor to the starting model (score_function)
      dist_batch=16,                 # samples per step (prompts cut from the batch)
      prompt_len=16,
      gen_len=64,                    # continuation length = the reference window length
      temperature=1.0,               # the decoding DFT samples with (and is evaluated at)
      top_p=1.0,
      epsilon=0.05,                  # Sinkhorn epsilon, relative to the mean cost
      sinkhorn_threshold=1e-3,
      sinkhorn_iterations=200,
      sinkhorn_implicit_diff=True,   # False: differentiate through the unrolled iterations
      sinkhorn_solver="ott",         # ott (plain sinkdiv) | value_kernel | static_bank |
                                     # static_bank_kernel: the speed-ups of sinkhorn_fast.py
      groups=tuple(features.GROUPS),
      feature_clip=0.0,              # > 0: standardized statistics clipped to ±feature_clip
      features="stats",              # stats | embedding | both (losses/embedding.py)
      embedding_layer=-1,            # hidden state after this many blocks; -1 = final norm
      embedding_pooling="mean",      # mean | last (token of the window)
      stats_file="",                 # "" = computed for stats_corpus (default: data.corpus)
      stats_corpus="",
  ))
  cfg.update(overrides)
  return cfg


def validate(cfg) -> None:
  """One clear error for a loss config the estimators cannot run."""
  missing = sorted(set(config()) - set(cfg))
  if missing:
    raise ValueError(f"loss config lacks {', '.join(missing)}: build it with "
                     "dft_jax.losses.dft.config(**overrides)")
  checks = [
      (cfg.estimator in ESTIMATORS,
       f"unknown loss.estimator {cfg.estimator!r}; available: {', '.join(ESTIMATORS)}"),
      (cfg.estimator != "expected" or "word_frequency" in cfg.groups,
       "estimator 'expected' compares Zipf-bin mass only; keep 'word_frequency' in loss.groups"),
      (cfg.temperature > 0,
       f"loss.temperature must be > 0 (samples need a density), got {cfg.temperature}"),
      (0 < cfg.top_p <= 1, f"loss.top_p must be in (0, 1], got {cfg.top_p}"),
      (cfg.kl_beta <= 0 or cfg.estimator == "score_function",
       "loss.kl_beta needs estimator='score_function' (the KL is estimated on its samples)"),
      (cfg.mode in ("joint", "alternate"),
       f"loss.mode must be 'joint' or 'alternate', got {cfg.mode!r}"),
      (cfg.feature_clip >= 0, f"loss.feature_clip must be >= 0 (0 = off), got "
                              f"{cfg.feature_clip}"),
      (cfg.features in embedding.FEATURE_SPACES,
       f"unknown loss.features {cfg.features!r}; available: "
       f"{', '.join(embedding.FEATURE_SPACES)}"),
      (cfg.sinkhorn_solver in sinkhorn_fast.SOLVERS,
       f"unknown loss.sinkhorn_solver {cfg.sinkhorn_solver!r}; available: "
       f"{', '.join(sinkhorn_fast.SOLVERS)}"),
      (cfg.sinkhorn_solver == "ott" or cfg.divergence == "sinkhorn",
       f"loss.sinkhorn_solver={cfg.sinkhorn_solver!r} is for divergence='sinkhorn'"),
      (cfg.sinkhorn_solver == "ott" or cfg.estimator == "score_function",
       f"loss.sinkhorn_solver={cfg.sinkhorn_solver!r} needs estimator='score_function' (the "
       "others differentiate the value, or compare column subsets of the bank)"),
      (cfg.features == "stats" or cfg.estimator == "score_function",
       f"loss.features={cfg.features!r} needs estimator='score_function' (the embedder is a "
       "frozen model; the other estimators differentiate features)"),
  ]
  for ok, message in checks:
    if not ok:
      raise ValueError(message)


def make_divergence(cfg, bank_MxX=None):
  """fn(x, y) -> (D, advantage per sample) for loss.divergence; Sinkhorn through ott's plain
  divergence, or the speed-up loss.sinkhorn_solver names (sinkhorn_fast.py; the static-bank
  ones bound to the fixed bank `bank_MxX`, its self-transport solved here, once)."""
  if cfg.divergence != "sinkhorn":
    return divergences.make(cfg.divergence)
  kwargs = dict(epsilon=cfg.epsilon, threshold=cfg.sinkhorn_threshold,
                max_iterations=cfg.sinkhorn_iterations, implicit_diff=cfg.sinkhorn_implicit_diff)
  if cfg.sinkhorn_solver == "ott":
    return divergences.make("sinkhorn", **kwargs)
  return sinkhorn_fast.make(cfg.sinkhorn_solver, bank_MxX, **kwargs)


def traced(bank_MxX):
  """The bank as a value the step computes with, not a constant: closed over as a constant,
  XLA folds the divergence's bank-only terms (the M x M self-cost) into the step while
  compiling it, slowly (BENCHMARKS.md, "Simplicity, measured")."""
  return jax.lax.optimization_barrier(bank_MxX)


def group_gaps(std_BxF) -> dict:
  """Mean |standardized gap| of the samples from the reference mean, per feature group."""
  gap_F = jnp.abs(std_BxF.mean(0))
  return {f"gap_{group}": gap_F[np.asarray([features.FEATURE_NAMES.index(n) for n in names])]
          .mean() for group, names in features.GROUPS.items()}


# --- estimators: each returns a Term ---------------------------------------------------------


@struct.dataclass
class Term:
  """What an estimator gives `loss`: the surrogate differentiated (times lambda), D's value,
  the KL anchor's surrogate (times kl_beta) and value (zeros without the anchor), and what
  else it logs (sample length, per-group gaps)."""
  surrogate: jax.Array
  value: jax.Array
  kl_surrogate: jax.Array
  kl: jax.Array
  metrics: dict


def deployed_logp(model, rows, sample_BxC, valid_BxC, *, cfg):
  """Sum of log p of each continuation (the last C tokens of `rows` = (tokens, positions,
  segments) [B, T]) under the distribution it was drawn from: tempered and truncated to the
  top-p nucleus (the deployed decoding, cfg.temperature and cfg.top_p)."""
  logits_BxCxV = model(*rows)[:, cfg.prompt_len - 1:-1]
  b, c, v = logits_BxCxV.shape
  filtered = sampling.filter_logits(logits_BxCxV.reshape(b * c, v), cfg.temperature, 0,
                                    cfg.top_p).reshape(b, c, v)
  logp_BxC = jnp.take_along_axis(jax.nn.log_softmax(filtered), sample_BxC[..., None],
                                 axis=-1)[..., 0]
  logp_BxC = jnp.where(valid_BxC, logp_BxC, 0.0)  # -inf outside the nucleus past EOS
  return jnp.sum(logp_BxC * valid_BxC, axis=1)


def last_document_prompts(batch, rows: int, prompt_len: int):
  """(prompts [rows, P], mask [rows, P]): `rows` prompts of P tokens, only each prompt's last
  document kept (earlier tokens become left padding). They are the batch rows' first P
  tokens, then (when `rows` exceeds the batch) their next P tokens, and so on: dist_batch is
  the number of samples per step whatever the batch size (it was capped at the batch size)."""
  tokens_BxT, seg_BxT = batch["tokens"], batch["segment_ids"]
  (b, t), cuts = tokens_BxT.shape, -(-rows // tokens_BxT.shape[0])
  if cuts * prompt_len > t:
    raise ValueError(f"loss.dist_batch={rows} needs {cuts} prompts of loss.prompt_len="
                     f"{prompt_len} tokens from each of the batch's {b} rows of {t} tokens")
  cut = lambda x: jnp.concatenate(  # noqa: E731
      [x[:, k * prompt_len:(k + 1) * prompt_len] for k in range(cuts)], axis=0)[:rows]
  seg_BxP = cut(seg_BxT)
  mask_BxP = (seg_BxP == seg_BxP[:, -1:]) & (seg_BxP != 0)
  return cut(tokens_BxT), mask_BxP


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity, as a function is
class Objective:
  """One run's DFT objective: the loss config, the reference (loaded once), the divergence and
  the EOS id. Called as the loss: (model, batch, rng, step, anchor=None) -> (loss, metrics)."""
  cfg: ml_collections.ConfigDict
  ref: reference_lib.Reference
  divergence: Callable
  eos: int

  def __call__(self, model, batch, rng, step, anchor=None):
    return loss(model, batch, rng, step, anchor, objective=self)


def score_function(model, anchor, batch, rng, *, objective: Objective) -> Term:
  """The score-function (REINFORCE) surrogate of D, with its leave-one-out baseline."""
  cfg, ref, divergence, eos = (objective.cfg, objective.ref, objective.divergence,
                               objective.eos)
  n_p, n_c = cfg.prompt_len, cfg.gen_len
  graph, state = nnx.split(model)
  frozen = nnx.merge(graph, jax.lax.stop_gradient(state))
  prompts_BxP, prompt_mask_BxP = last_document_prompts(batch, cfg.dist_batch, n_p)
  samples = sampling.decode(frozen, prompts_BxP, prompt_mask_BxP, rng, max_new_tokens=n_c,
                            temperature=cfg.temperature, top_p=cfg.top_p, eos_ids=(eos,),
                            pad_id=eos)
  sample_BxC, valid_BxC = jax.lax.stop_gradient(samples.tokens_BxC), samples.valid_BxC
  text_BxC = valid_BxC & (sample_BxC != eos)  # reference windows hold no EOS
  std_BxF = ref.standardize(features.featurize_batch(sample_BxC, text_BxC, ref.tables))
  z_BxE = None
  if ref.embedder is not None:
    z_BxE = jax.lax.stop_gradient(ref.embedder(anchor, sample_BxC, text_BxC))
  value, advantage_B = divergence(ref.points(std_BxF, z_BxE), traced(ref.bank_MxX))
  advantage_B = jax.lax.stop_gradient(advantage_B)

  seg_BxP, pos_BxP, next_B = sampling.prompt_layout(prompt_mask_BxP)
  rows = (jnp.concatenate([prompts_BxP, sample_BxC], axis=1),
          jnp.concatenate([pos_BxP, next_B[:, None] + jnp.arange(n_c)[None]], 1),
          jnp.concatenate([seg_BxP, jnp.ones_like(sample_BxC)], axis=1))
  logp = functools.partial(deployed_logp, rows=rows, sample_BxC=sample_BxC,
                           valid_BxC=valid_BxC, cfg=cfg)
  logp_B = logp(model)
  kl_surrogate = kl = jnp.zeros(())
  if cfg.kl_beta > 0:  # KL(p_theta || p_theta0) on the samples, same estimator
    kl_B = jax.lax.stop_gradient(logp_B - logp(anchor))
    kl_surrogate, kl = jnp.mean(divergences.loo_advantage(kl_B) * logp_B), kl_B.mean()
  metrics = {"sample_len": valid_BxC.sum(1).mean(), **group_gaps(std_BxF)}
  return Term(jnp.mean(advantage_B * logp_B), value, kl_surrogate, kl, metrics)


def straight_through(model, batch, rng, *, objective: Objective) -> Term:
  """D of Gumbel-softmax straight-through rollouts' differentiable statistics."""
  cfg, ref, divergence = objective.cfg, objective.ref, objective.divergence
  n_p, n_c, n_d = cfg.prompt_len, cfg.gen_len, cfg.dist_batch
  prompts_BxP, prompt_mask_BxP = last_document_prompts(batch, n_d, n_p)
  seg_BxP, pos_BxP, next_B = sampling.prompt_layout(prompt_mask_BxP)
  cache = KVCache.zeros(model.cfg, n_d, n_p + n_c)
  logits_BxPxV, cache = model(prompts_BxP, pos_BxP, seg_BxP, cache=cache)

  def step(carry, i):
    last_BxV, cache = carry
    gumbel = jax.random.gumbel(jax.random.fold_in(rng, i), last_BxV.shape)
    soft_BxV = jax.nn.softmax((last_BxV + gumbel) / cfg.temperature, axis=-1)
    hard_BxV = jax.nn.one_hot(jnp.argmax(soft_BxV, axis=-1), soft_BxV.shape[-1])
    y_BxV = hard_BxV + soft_BxV - jax.lax.stop_gradient(soft_BxV)
    pos_Bx1 = (next_B + i)[:, None]
    out, cache = model(jnp.zeros((n_d, 1), jnp.int32), pos_Bx1, jnp.ones_like(pos_Bx1),
                       cache=cache, soft_tokens_BxTxV=y_BxV[:, None])
    return (out[:, -1], cache), y_BxV

  _, y_CxBxV = jax.lax.scan(step, (logits_BxPxV[:, -1], cache), jnp.arange(n_c))
  soft_BxF = jax.vmap(lambda y: features.soft_featurize(y, ref.tables))(y_CxBxV.swapaxes(0, 1))
  cols = features.SOFT_COLUMNS
  mask = ref.mask_F[None, cols]
  x_BxF = ref.standardize(soft_BxF, cols) * mask
  value, _ = divergence(x_BxF, traced(ref.std_bank_MxF[:, cols] * mask))
  return Term(value, value, jnp.zeros(()), jnp.zeros(()), {})


def expected(logits_BxTxV, batch, *, objective: Objective) -> Term:
  """D of the expected Zipf-bin mass of the human rows under the teacher-forced model."""
  ref, divergence = objective.ref, objective.divergence
  probs_BxTxV = jax.nn.softmax(logits_BxTxV[:, :-1].astype(jnp.float32), axis=-1)
  rank_onehot_VxR = jnp.asarray(
      np.eye(features.NUM_RANK_BINS, dtype=np.float32)[ref.tables.rank_bin])
  w_BxT = batch["loss_mask"][:, 1:].astype(jnp.float32)
  mass_BxR = jnp.einsum("btv,vr,bt->br", probs_BxTxV, rank_onehot_VxR, w_BxT)
  mass_BxR = mass_BxR / jnp.maximum(w_BxT.sum(1, keepdims=True), 1.0)
  cols = features.RANK_BIN_COLUMNS
  x_BxR = ref.standardize(mass_BxR, cols)
  value, _ = divergence(x_BxR, traced(ref.std_bank_MxF[:, cols]))
  return Term(value, value, jnp.zeros(()), jnp.zeros(()), {})


# --- the loss ----------------------------------------------------------------------------------


def lambda_at(cfg, step):
  """lambda after a linear warm-up over lam_warmup_steps."""
  warm = jnp.minimum(1.0, (jnp.asarray(step, jnp.float32) + 1.0) / max(cfg.lam_warmup_steps, 1))
  return cfg.lam * warm


def loss(model, batch, rng, step, anchor, *, objective: Objective):
  """(CE + lambda * estimator term + kl_beta * KL surrogate, metrics): the value the train
  step differentiates, with `objective` (the value being optimized) among the metrics."""
  cfg = objective.cfg
  if cfg.estimator == "expected":  # it reads the logits: CE from the same ones
    logits_BxTxV = cross_entropy.forward(model, batch)
    ce, metrics = cross_entropy.mean_nll(logits_BxTxV, batch)
    term_fn = lambda: expected(logits_BxTxV, batch, objective=objective)
  else:
    ce, metrics = cross_entropy.model_mean_nll(model, batch)
    if cfg.estimator == "score_function":
      term_fn = lambda: score_function(model, anchor, batch, rng, objective=objective)
    else:
      term_fn = lambda: straight_through(model, batch, rng, objective=objective)
  if cfg.mode == "alternate":  # skip the sampling entirely on CE-only steps
    shapes = jax.eval_shape(term_fn)
    zeros = lambda: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    term = jax.lax.cond(step % cfg.every == 0, term_fn, zeros)
  else:
    term = term_fn()
  lam = lambda_at(cfg, step)
  objective = cfg.ce_weight * ce + lam * term.value + cfg.kl_beta * term.kl
  total = cfg.ce_weight * ce + lam * term.surrogate + cfg.kl_beta * term.kl_surrogate
  kl = {"kl": term.kl} if cfg.kl_beta > 0 else {}
  return total, {**metrics, "dist": term.value, **term.metrics, **kl, "lambda": lam,
                 "objective": objective}


def make(loss_cfg, model_cfg, context) -> Objective:
  """The objective of this run: `loss` with its reference (loaded once), divergence and EOS."""
  validate(loss_cfg)
  if context.tokenizer is None and context.reference is None:
    raise ValueError("loss.name='dft' needs the run's tokenizer")
  ref = context.reference or reference_lib.build(loss_cfg, model_cfg, context)
  return Objective(loss_cfg, ref, make_divergence(loss_cfg, ref.bank_MxX), context.eos())
