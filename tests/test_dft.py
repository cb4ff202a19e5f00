"""The DFT objective: unbiased score-function estimates, the right direction on a language
model, reference statistics bound to their tokenizer, sharded = single-device."""

import json
import os
import re
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import dft_setup as S
import train_utils as tu
from dft_jax import losses
from dft_jax.losses import reference as reference_lib
from dft_jax.data import tokenizer as tokenizer_lib
from dft_jax.losses import divergences as D
from dft_jax.losses import features
from dft_jax.train import setup as setup_lib, state as state_lib

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("name", ["mmd", "energy"])
def test_score_function_estimate_matches_the_exact_gradient(name):
  """A categorical model over K outcomes with fixed feature vectors: D(theta) is exact by
  enumeration, and the averaged estimate must match its gradient within sampling error."""
  k_out, m, reps = 6, 16, 4000
  rng = np.random.RandomState(0)
  phi = jnp.asarray(rng.randn(k_out, 2), jnp.float32)
  y = jnp.asarray(rng.randn(40, 2) * 0.5 + 1.0, jnp.float32)
  theta = jnp.asarray(rng.randn(k_out) * 0.5, jnp.float32)
  kernel = D.rbf_kernel(1.0) if name == "mmd" else D._energy_kernel

  def population(t):
    p = jax.nn.softmax(t)
    return p @ kernel(phi, phi) @ p - 2 * p @ kernel(phi, y).mean(1)

  exact = jax.grad(population)(theta)

  def estimate(key):
    idx = jax.random.categorical(key, theta, shape=(m,))
    advantage = D.kernel_advantage(kernel, phi[idx], y)
    score = jax.nn.one_hot(idx, k_out) - jax.nn.softmax(theta)[None]  # grad of log p(x_i)
    return jnp.mean(advantage[:, None] * score, 0)

  draws = jax.vmap(estimate)(jax.random.split(jax.random.key(1), reps))
  mean, se = draws.mean(0), draws.std(0) / np.sqrt(reps)
  assert np.all(np.abs(np.asarray(mean - exact)) <= 4 * np.asarray(se) + 1e-7), (mean, exact)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  return S.reference(tmp_path_factory.mktemp("stats"))


OPTIM = ml_collections.ConfigDict(dict(
    lr=1e-2, warmup_steps=0, decay="constant", min_lr_ratio=1.0, total_steps=100,
    clip_norm=1.0, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.0))


def _setup(loss_cfg):
  return setup_lib.build(S.MODEL, OPTIM, mesh_shape=(1, 1, 1), devices=jax.devices()[:1],
                         with_anchor=losses.needs_anchor(loss_cfg))


def _train(loss_cfg, tok, docs, steps):
  setup = _setup(loss_cfg)
  mesh, state = setup.mesh, setup.init_state(seed=0)
  step = setup.train_step(setup.loss_fn(loss_cfg, state, tok, reference_documents=docs))
  batch = S.batch(tok, docs)
  dot = tok.token_id("Ġ.")
  model = lambda s: state_lib.model_of(s, state_lib.graphdef(S.MODEL))
  p_end = lambda s: float(jax.nn.softmax(model(s)(jnp.asarray(batch["tokens"])))[..., dot].mean())
  history = [(p_end(state), None)]
  for _ in range(steps):
    with jax.set_mesh(mesh):
      state, metrics = step(state, batch)
    history.append((p_end(state), float(metrics.get("dist", np.nan))))
  return history


@pytest.mark.parametrize("divergence,space,static", [
    ("mmd", "stats", False), ("sinkhorn", "stats", False), ("sinkhorn", "stats", True),
    ("sinkhorn", "stats", "kernel"), ("sinkhorn", "both", False)])
def test_dft_alone_teaches_a_model_to_end_sentences(reference, divergence, space, static,
                                                    tmp_path, monkeypatch):
  """The reference has 2-4 word sentences; a fresh model ends one about every 30 tokens. With
  CE switched off, the distribution term alone must raise P('.') — also when the statistics
  share the cost with the starting model's embeddings ('both'), and with the bank's
  self-transport solved once (sinkhorn_solver static_bank), in the log or the kernel domain."""
  monkeypatch.setenv("DFT_JAX_DATA", str(tmp_path))   # the embedding bank's cache
  tok, docs, path = reference
  history = _train(S.loss_config(path, divergence=divergence, features=space,
                                 sinkhorn_solver={False: "ott", True: "static_bank",
                                                  "kernel": "static_bank_kernel"}[static]),
                   tok, docs, steps=16)
  (p0, _), (p_end, _) = history[0], history[-1]
  assert p0 < 0.05 and p_end > 2 * p0, history


def test_alternate_mode_skips_the_distribution_term_between_steps(reference):
  tok, docs, path = reference
  loss_fn = losses.make(S.loss_config(path, mode="alternate", every=2, ce_weight=1.0),
                        S.MODEL, losses.Context(tok))
  from flax import nnx
  from dft_jax.models import Decoder
  model = Decoder(S.MODEL, rngs=nnx.Rngs(0))
  batch = jax.tree.map(jnp.asarray, S.batch(tok, docs))
  on = loss_fn(model, batch, jax.random.key(0), jnp.asarray(4))[1]
  off = loss_fn(model, batch, jax.random.key(0), jnp.asarray(5))[1]
  assert float(on["dist"]) > 0 and float(off["dist"]) == 0.0
  assert float(on["ce"]) == float(off["ce"])


def test_stats_file_is_bound_to_its_tokenizer_and_version(reference, tmp_path):
  tok, _, path = reference
  stats = reference_lib.load_stats(path, tok)
  assert stats.bank_MxF.shape == (256, len(features.FEATURE_NAMES)) and stats.window == 16
  other = tokenizer_lib.train_byte_level_bpe(["some other text"] * 3, vocab_size=270)
  with pytest.raises(reference_lib.StatsError, match="made with tokenizer .* not this one"):
    reference_lib.load_stats(path, other)
  old = tmp_path / "old.npz"
  with np.load(path) as f:
    meta = json.loads(str(f["meta"]))
    meta["version"] = features.VERSION + 1
    np.savez(old, **{k: f[k] for k in ("bank", "mean", "sd", "unigram_counts")},
             meta=json.dumps(meta))
  with pytest.raises(reference_lib.StatsError, match="featurizer version"):
    reference_lib.load_stats(str(old), tok)
  with pytest.raises(ValueError, match="stats window 16 != loss.gen_len 32"):
    losses.make(S.loss_config(path, gen_len=32), S.MODEL, losses.Context(tok))


def test_stats_cli(reference, tmp_path):
  tok, docs, _ = reference
  text_dir = tmp_path / "texts"
  text_dir.mkdir()
  for i, d in enumerate(docs[:40]):
    (text_dir / f"{i}.txt").write_text(d)
  tok.save(str(tmp_path / "tok.json"))
  out = tmp_path / "s.npz"
  done = tu.run([sys.executable, "-m", "dft_jax.stats", "--corpus", str(text_dir),
                 "--tokenizer", str(tmp_path / "tok.json"), "--out", str(out), "--window", "16",
                 "--data_dir", str(tmp_path / "data")])
  assert done.returncode == 0, done.stderr[-2000:]
  assert reference_lib.load_stats(str(out), tok).fingerprint == tok.fingerprint
  done = tu.run([sys.executable, "-m", "dft_jax.stats", "--corpus", str(text_dir),
                 "--tokenizer", str(tmp_path / "tok.json"), "--out", str(out), "--window",
                 "4096", "--data_dir", str(tmp_path / "data")])
  assert done.returncode == 1
  assert done.stderr.strip().splitlines()[-1].startswith("stats: error: no document")


@pytest.mark.parametrize("loss", ["dft-mmd", "dft-sinkhorn"])
def test_sharded_dft_step_equals_single_device_step(loss):
  done = tu.run([sys.executable, os.path.join(HERE, "sharded_step.py"), "--meshes",
                 "1,1,1;8,1,1;2,2,2", "--loss", loss], devices=8)
  assert done.returncode == 0, done.stderr[-3000:]
  results = json.loads([l for l in done.stdout.splitlines() if l.startswith("RESULT ")][-1][7:])
  single = results.pop("1,1,1")
  assert single["dist"] > 0
  for mesh, result in results.items():
    assert abs(result["dist"] - single["dist"]) <= 1e-4 * single["dist"], mesh
    # CE to 1e-5; the distribution term to 1e-3 of itself: the score-function surrogate is a
    # mean of advantage x log p products that cancel (zero-mean advantages), so float32 sums
    # in another order move its value by ~1e-4 of it (the gradient, below, agrees to ~1e-6)
    term = single["loss"] - single["ce"]
    assert abs(result["loss"] - single["loss"]) <= 1e-5 * abs(single["ce"]) + 1e-3 * abs(term), \
        mesh
    for x, y in zip(result["params"], single["params"]):
      x, y = np.asarray(x), np.asarray(y)
      assert np.linalg.norm(x - y) <= 1e-5 * np.linalg.norm(y), mesh


@pytest.mark.parametrize("estimator", ["expected", "straight_through"])
def test_pathwise_estimators_lower_their_divergence(reference, estimator):
  tok, docs, path = reference
  groups = ("word_frequency", "sentence_length", "punctuation")
  history = _train(S.loss_config(path, estimator=estimator, divergence="sinkhorn",
                                 groups=groups), tok, docs, steps=10)
  dists = [d for _, d in history[1:]]
  assert np.isfinite(dists).all() and dists[-1] < 0.8 * dists[0], dists


def test_kl_anchor_starts_at_zero_and_keeps_the_starting_params(reference):
  tok, docs, path = reference
  loss_cfg = S.loss_config(path, kl_beta=0.5, ce_weight=1.0)
  assert losses.needs_anchor(loss_cfg)
  setup = _setup(loss_cfg)
  mesh, state = setup.mesh, setup.init_state(seed=0)
  start = jax.tree.map(np.asarray, state.params)
  step = setup.train_step(setup.loss_fn(loss_cfg, state, tok))
  batch = S.batch(tok, docs)
  kls = []
  for _ in range(6):
    with jax.set_mesh(mesh):
      state, metrics = step(state, batch)
    kls.append(float(metrics["kl"]))
  assert abs(kls[0]) < 1e-5 and all(np.isfinite(kls)) and max(kls[1:]) > 1e-3, kls
  for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(state.anchor)):
    np.testing.assert_array_equal(a, np.asarray(b))
  assert any(np.abs(np.asarray(a) - b).max() > 0
             for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(start)))
  with pytest.raises(ValueError, match="kl_beta needs estimator='score_function'"):
    losses.make(S.loss_config(path, kl_beta=0.5, estimator="expected",
                              groups=tuple(features.GROUPS)), S.MODEL, losses.Context(tok))


def test_reference_bank_keeps_document_endings():
  ids = [list(range(40)), list(range(10)), list(range(3))]
  windows = reference_lib.reference_windows(ids, window=16, min_tokens=4)
  # doc 0: 16 + 16 + its final 8; doc 1: one short final window; doc 2: too short
  assert [len(w) for w in windows] == [16, 16, 8, 10]
  tok = S.tokenizer()
  docs = ["Short one.", "Another short text here."] * 4
  stats = reference_lib.compute_stats(docs, tok, window=64, min_tokens=2)  # no doc has 64 tokens
  assert len(stats.bank_MxF) == len(docs) and np.isfinite(stats.bank_MxF).all()


def test_dist_batch_is_the_number_of_samples_whatever_the_batch_size():
  """dist_batch prompts from a smaller batch: each row's first P tokens, then its next P
  (a prompt keeps only its last document); it used to be capped at the batch's rows."""
  from dft_jax.losses import dft
  tokens = jnp.arange(2 * 8).reshape(2, 8)
  segments = jnp.asarray([[1, 1, 1, 2, 2, 2, 2, 2], [1, 1, 1, 1, 1, 1, 0, 0]])
  batch = {"tokens": tokens, "segment_ids": segments}
  prompts, mask = dft.last_document_prompts(batch, 5, 2)
  np.testing.assert_array_equal(prompts, [[0, 1], [8, 9], [2, 3], [10, 11], [4, 5]])
  np.testing.assert_array_equal(mask, [[1, 1], [1, 1], [0, 1], [1, 1], [1, 1]])
  first, _ = dft.last_document_prompts(batch, 2, 2)  # within the batch: as before
  np.testing.assert_array_equal(first, tokens[:, :2])
  with pytest.raises(ValueError, match=r"loss.dist_batch=9 needs 5 prompts of "
                     r"loss.prompt_len=2 tokens from each of the batch's 2 rows of 8 tokens"):
    dft.last_document_prompts(batch, 9, 2)


def test_compiled_step_does_not_fold_the_banks_self_cost(reference):
  """The bank enters the train step through dft.traced: closed over as a constant, XLA
  folded its M x M self-cost while compiling. The compiled step holds the bank but no [M, M]
  constant (it held one before traced)."""
  tok, docs, path = reference
  loss_cfg = S.loss_config(path, divergence="sinkhorn", every=1, ce_weight=1.0)
  setup = _setup(loss_cfg)
  state = setup.init_state(seed=0)
  loss_fn = setup.loss_fn(loss_cfg, state, tok, reference_documents=docs)
  m, x = loss_fn.ref.bank_MxX.shape
  with jax.set_mesh(setup.mesh):
    hlo = setup.train_step(loss_fn).lower(state, S.batch(tok, docs)).compile().as_text()
  shapes = set(re.findall(r"(f32\[[\d,]+\])\S* constant\(", hlo))
  assert f"f32[{m},{x}]" in shapes and f"f32[{m},{m}]" not in shapes, shapes
