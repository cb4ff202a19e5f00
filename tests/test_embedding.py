"""Embedding features (losses/embedding.py): hidden states equal transformers', the bank equals
a direct computation, whitening gives identity covariance, a bank of another model is refused,
and DFT runs with features = embedding / both."""

import hf_reference as ref
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import dft_setup as S
from dft_jax import losses
from dft_jax.losses import embedding
from dft_jax.models import Decoder, from_pretrained


def test_hidden_states_match_transformers(hf_checkpoint):
  path, hf_model = hf_checkpoint("llama2")
  model = from_pretrained(path, dtype=jnp.float32)
  ids = np.random.RandomState(0).randint(0, ref.COMMON["vocab_size"], size=(2, 12))
  with torch.no_grad():
    theirs = hf_model(torch.as_tensor(ids), output_hidden_states=True).hidden_states
  n = model.cfg.num_layers
  for layer in range(n + 1):  # HF: embeddings, then after each block; the last one normed
    ours = np.asarray(model(jnp.asarray(ids), hidden_layer=layer))
    np.testing.assert_allclose(ours, theirs[layer].numpy(), rtol=0, atol=1e-4)
  with pytest.raises(ValueError, match="hidden_layer must be in"):
    model(jnp.asarray(ids), hidden_layer=n + 1)


def _windows(seed=0, n=24, t=10):
  rng = np.random.RandomState(seed)
  tokens = rng.randint(0, S.MODEL.vocab_size, size=(n, t)).astype(np.int32)
  lengths = rng.randint(1, t + 1, size=n)
  valid = np.arange(t)[None] < lengths[:, None]
  return np.where(valid, tokens, 0), valid


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_bank_equals_each_window_embedded_alone(pooling):
  model = Decoder(S.MODEL, rngs=nnx.Rngs(0))
  tokens, valid = _windows()
  bank = embedding.embed_bank(model, tokens, valid, layer=1, pooling=pooling, batch_size=16)
  for i in range(len(tokens)):
    alone = np.asarray(model(jnp.asarray(tokens[i:i + 1, :valid[i].sum()]), hidden_layer=1))[0]
    expected = alone.mean(0) if pooling == "mean" else alone[-1]
    np.testing.assert_allclose(bank[i], expected, rtol=0, atol=1e-5)


def test_whitening_gives_identity_covariance_on_the_bank():
  rng = np.random.default_rng(0)
  q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
  mix = q @ np.diag(np.linspace(0.5, 5.0, 16)) @ q.T   # correlated, scales 0.5-5
  bank = rng.normal(size=(500, 16)) @ mix + 3.0
  mu, w = embedding.whitening(bank)
  z = (bank - mu) @ w
  np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-8)
  np.testing.assert_allclose(np.cov(z, rowvar=False, ddof=0), np.eye(16), atol=1e-4)
  np.testing.assert_allclose(w, w.T, atol=1e-10)  # ZCA: the symmetric inverse square root


@pytest.mark.parametrize("space", ["stats", "embedding", "both"])
def test_every_space_has_the_statistics_squared_norm_on_the_bank(space):
  """So that lambda (and the Sinkhorn cost scale) transfers between feature spaces."""
  rng = np.random.default_rng(1)
  stats_NxS = rng.normal(size=(4000, 28))           # standardized statistics
  z_NxE = rng.normal(size=(4000, 96))               # whitened embeddings
  s_stats, s_emb = embedding.space_scales(space, 28, 96)
  norm2 = ((stats_NxS * s_stats) ** 2).sum(1).mean() + ((z_NxE * s_emb) ** 2).sum(1).mean()
  np.testing.assert_allclose(norm2, 28.0, rtol=0.03)
  if space == "both":  # half each
    np.testing.assert_allclose(((z_NxE * s_emb) ** 2).sum(1).mean(), 14.0, rtol=0.03)


def test_a_bank_of_another_model_is_refused(tmp_path):
  tokens, valid = _windows(n=8)
  path = str(tmp_path / "bank.npz")
  a, b = Decoder(S.MODEL, rngs=nnx.Rngs(0)), Decoder(S.MODEL, rngs=nnx.Rngs(1))
  first = embedding.cached_bank(path, a, tokens, valid, 2, "mean", log=lambda _: None)
  np.testing.assert_array_equal(embedding.cached_bank(path, a, tokens, valid, 2, "mean"), first)
  with pytest.raises(embedding.EmbeddingError, match="another model") as e:
    embedding.cached_bank(path, b, tokens, valid, 2, "mean")
  assert "\n" not in str(e.value)
  with pytest.raises(embedding.EmbeddingError):   # same model, another layer
    embedding.cached_bank(path, a, tokens, valid, 1, "mean")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  return S.reference(tmp_path_factory.mktemp("stats"))


@pytest.mark.parametrize("space", ["embedding", "both"])
def test_dft_loss_with_embedding_features_is_finite(reference, tmp_path, monkeypatch, space):
  monkeypatch.setenv("DFT_JAX_DATA", str(tmp_path))
  tok, docs, path = reference
  start = Decoder(S.MODEL, rngs=nnx.Rngs(0))
  context = losses.Context(tok, starting_model=lambda: start, reference_documents=docs)
  cfg = S.loss_config(path, features=space, ce_weight=1.0)
  assert losses.needs_anchor(cfg)
  loss_fn = losses.make(cfg, S.MODEL, context)
  batch = jax.tree.map(jnp.asarray, S.batch(tok, docs))
  model = Decoder(S.MODEL, rngs=nnx.Rngs(0))
  loss, metrics = loss_fn(model, batch, jax.random.key(0), jnp.asarray(3), anchor=start)
  assert np.isfinite(float(loss)) and float(metrics["dist"]) > 0
  grads = nnx.grad(lambda m: loss_fn(m, batch, jax.random.key(0), jnp.asarray(3),
                                     anchor=start)[0])(model)
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
  with pytest.raises(ValueError, match="needs estimator='score_function'"):
    losses.make(S.loss_config(path, features=space, estimator="expected",
                              groups=("word_frequency",)), S.MODEL, context)


def test_unknown_feature_space(reference):
  tok, _, path = reference
  with pytest.raises(ValueError, match="unknown loss.features 'pixels'"):
    losses.make(S.loss_config(path, features="pixels"), S.MODEL, losses.Context(tok))
