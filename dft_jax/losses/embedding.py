"""Embedding features: a frozen model's hidden states of a text window, pooled and whitened.

The learned feature space of EBFT ("Matching Features, Not Tokens", Jelassi et al. 2026) and
of Deft's embedding MMD, beside the featurizer's 28 interpretable statistics (features.py):

  h_i    = hidden state after `layer` blocks of the frozen model, for each token of window i
           (the window fed alone, as the reference windows are; padding masked)
  e_i    = mean of h_i over the window's tokens (pooling 'mean') or its last token ('last')
  z_i    = W (e_i - mu),  mu and W = Sigma^{-1/2} (ZCA, ridge `ridge` * mean eigenvalue) from
           the reference bank, so the bank's z have zero mean and identity covariance

The bank is the embedded reference windows, computed once with the *starting* model and cached
under $DFT_JAX_DATA/embeddings/ with that model's fingerprint (`fingerprint`): a bank made by
another model, layer or pooling is refused with one line. Scale (`space_scales`): z is
multiplied by sqrt(S / D), S the number of active statistics and D the embedding width, so the
embedding space has the statistics' expected squared norm S on the bank and lambda transfers
between spaces; 'both' concatenates the standardized statistics and z, each block scaled to
half of that norm, so neither dominates the cost.
"""

from __future__ import annotations

import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

POOLINGS = ("mean", "last")
FEATURE_SPACES = ("stats", "embedding", "both")


class EmbeddingError(ValueError):
  """A bank that does not belong to this model, layer or pooling."""


def pool(hidden_BxTxD, valid_BxT, pooling: str):
  """[B, D]: mean over valid positions, or the last valid position (valid is a prefix)."""
  if pooling == "mean":
    w_BxT = valid_BxT.astype(jnp.float32)
    return jnp.einsum("btd,bt->bd", hidden_BxTxD, w_BxT) / jnp.maximum(
        w_BxT.sum(1), 1.0)[:, None]
  if pooling == "last":
    last_B = jnp.maximum(valid_BxT.sum(1) - 1, 0)
    return jnp.take_along_axis(hidden_BxTxD, last_B[:, None, None], axis=1)[:, 0]
  raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def embed(model, tokens_BxT, valid_BxT, layer: int, pooling: str):
  """Pooled hidden states [B, D] of each window, fed alone (segment 1 on valid tokens)."""
  segments_BxT = valid_BxT.astype(jnp.int32)
  hidden = model(tokens_BxT, None, segments_BxT, hidden_layer=layer)
  return pool(hidden, valid_BxT, pooling)


def whitening(bank_MxE: np.ndarray, ridge: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
  """(mu [D], W [D, D]) with W = (Sigma + ridge * mean eigenvalue * I)^{-1/2}, symmetric (ZCA);
  Sigma the bank's covariance (ddof 0)."""
  x = np.asarray(bank_MxE, np.float64)
  mu = x.mean(0)
  sigma = np.cov(x - mu, rowvar=False, ddof=0)
  eigval, eigvec = np.linalg.eigh(sigma)
  eigval = np.maximum(eigval, 0.0) + ridge * max(float(eigval.mean()), 1e-30)
  return mu, (eigvec / np.sqrt(eigval)) @ eigvec.T


def _host_copy(x) -> np.ndarray:
  """The whole of a global array on this host, also where its shards live on other processes
  (FSDP / tensor parallel across hosts): every process must call it, in the same order."""
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def fingerprint(model, layer: int, pooling: str) -> str:
  """sha256 of the model's config, every parameter's bytes, the layer and the pooling: the
  same on every process and for every mesh (parameters gathered one at a time)."""
  h = hashlib.sha256(json.dumps({"layer": layer, "pooling": pooling}).encode())
  h.update(repr(model.cfg).encode())
  for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0],
                           key=lambda x: jax.tree_util.keystr(x[0])):
    h.update(jax.tree_util.keystr(path).encode())
    h.update(_host_copy(leaf).tobytes())
  return h.hexdigest()[:16]


def embed_bank(model, tokens_NxT: np.ndarray, valid_NxT: np.ndarray, layer: int,
               pooling: str, batch_size: int = 64) -> np.ndarray:
  """[M, E] float32 embeddings of the reference windows, in batches of `batch_size`."""
  graph, state = nnx.split(model)  # an argument, not a constant: it may span other hosts
  fn = jax.jit(lambda s, t, v: embed(nnx.merge(graph, s), t, v, layer, pooling))
  out = []
  for i in range(0, len(tokens_NxT), batch_size):
    t, v = tokens_NxT[i:i + batch_size], valid_NxT[i:i + batch_size]
    pad = batch_size - len(t)  # one compiled shape for every batch
    t = np.concatenate([t, np.zeros((pad,) + t.shape[1:], t.dtype)])
    v = np.concatenate([v, np.repeat(v[-1:], pad, 0)])
    out.append(_host_copy(fn(state, jnp.asarray(t), jnp.asarray(v)))[:batch_size - pad])
  return np.concatenate(out).astype(np.float32)


def cached_bank(path: str | None, model, tokens_NxT, valid_NxT, layer: int, pooling: str,
                key: str | None = None, log=print) -> np.ndarray:
  """The embedded bank from `path` if it was made by this model (same fingerprint), else
  computed and saved there; a file of another model is refused (EmbeddingError)."""
  key = key or fingerprint(model, layer, pooling)
  if path and os.path.isfile(path):
    with np.load(path) as f:
      found = str(f["fingerprint"])
      if found != key:
        raise EmbeddingError(f"{path} holds an embedding bank of another model, layer or "
                             f"pooling (fingerprint {found}, this one {key}); delete it or use "
                             "the run it belongs to")
      return f["bank"]
  bank = embed_bank(model, tokens_NxT, valid_NxT, layer, pooling)
  if path:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, bank=bank, fingerprint=key)
    os.replace(tmp, path)
    log(f"embedding bank: {bank.shape[0]} windows x {bank.shape[1]} dims (layer {layer}, "
        f"{pooling} pooling) saved to {path}")
  return bank


def space_scales(space: str, stats_width: int, embedding_width: int) -> tuple[float, float]:
  """(multiplier of the standardized statistics, of the whitened embeddings) in `space`.

  Every space gets the expected squared norm on the bank that the statistics alone have
  (`stats_width`, the number of active statistics): the squared-Euclidean cost, and with it
  the Sinkhorn divergence and the lambda that weights it, then mean the same in each space.
  'both' gives each block half of that norm, so neither dominates the cost."""
  if space == "stats":
    return 1.0, 0.0
  if space == "embedding":
    return 0.0, float(np.sqrt(stats_width / embedding_width))
  if space == "both":
    return float(np.sqrt(0.5)), float(np.sqrt(0.5 * stats_width / embedding_width))
  raise ValueError(f"unknown feature space {space!r}; available: {', '.join(FEATURE_SPACES)}")
