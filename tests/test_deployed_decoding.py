"""The deployed decoding (T = 0.7, top-p = 0.9) that the table's DFT row samples and scores
with: log p under the tempered, truncated distribution against its definition in float64,
and the score-function gradient through it against exact enumeration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dft_jax.losses import divergences as D
from dft_jax.losses.dft import config as dft_config
from dft_jax.losses.dft import deployed_logp
from dft_jax.models import Decoder, ModelConfig


def nucleus_log_probs(logits_V: np.ndarray, temperature: float, top_p: float) -> np.ndarray:
  """Definition, float64: log softmax(logits / T) restricted to the smallest set of most
  likely tokens whose mass reaches top_p, renormalized; -inf outside it."""
  z = logits_V.astype(np.float64) / temperature
  p = np.exp(z - z.max())
  p /= p.sum()
  order = np.argsort(-p)
  above = np.concatenate([[0.0], np.cumsum(p[order])[:-1]])   # mass strictly above each
  keep = np.zeros_like(p, bool)
  keep[order[above < top_p]] = True
  q = np.where(keep, p, 0.0)
  with np.errstate(divide="ignore"):
    return np.log(q / q.sum())


def _layout(tokens_BxT):
  b, t = tokens_BxT.shape
  return (jnp.asarray(tokens_BxT), jnp.broadcast_to(jnp.arange(t), (b, t)),
          jnp.ones((b, t), jnp.int32))


@pytest.mark.parametrize("temperature,top_p", [(0.7, 0.9), (1.0, 0.5), (1.5, 1.0), (0.7, 1.0)])
def test_deployed_logp_equals_its_definition(temperature, top_p):
  cfg = ModelConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_layers=2,
                    num_heads=4, num_kv_heads=2, head_dim=8)
  model = Decoder(cfg, rngs=nnx.Rngs(3))
  # sharper logits than a fresh model's, so the nucleus leaves tokens out
  for layer in (model.lm_head_DxV,):
    layer.set_value(layer[...] * 25.0)
  rng = np.random.RandomState(0)
  b, p, c = 3, 4, 6
  tokens = rng.randint(0, 40, (b, p + c)).astype(np.int32)
  # continuations drawn token by token inside each position's nucleus (the definition's);
  # the last row's last token outside it
  for j in range(c):
    logits_BxV = np.asarray(model(*_layout(tokens)), np.float64)[:, p - 1 + j]
    for r in range(b):
      tokens[r, p + j] = rng.choice(40, p=np.exp(nucleus_log_probs(logits_BxV[r], temperature,
                                                                   top_p)))
  logits_BxTxV = np.asarray(model(*_layout(tokens)), np.float64)[:, p - 1:-1]
  ref_BxCxV = np.stack([[nucleus_log_probs(l, temperature, top_p) for l in row]
                        for row in logits_BxTxV])
  outside = np.isinf(ref_BxCxV[-1, -1])
  if top_p < 1.0:
    assert outside.any(), "the nucleus must leave tokens out for this check"
    tokens[-1, -1] = np.flatnonzero(outside)[0]
  sample = tokens[:, p:]
  valid = np.ones((b, c), bool)
  valid[0, 4:] = False   # after an EOS: not scored
  ours = deployed_logp(model, _layout(tokens), jnp.asarray(sample), jnp.asarray(valid),
                       cfg=dft_config(prompt_len=p, temperature=temperature, top_p=top_p))
  expected = (np.take_along_axis(ref_BxCxV, sample[..., None], -1)[..., 0] * valid).sum(1)
  np.testing.assert_allclose(np.asarray(ours)[:2], expected[:2], rtol=2e-5, atol=2e-5)
  if top_p < 1.0:
    assert np.asarray(ours)[2] == -np.inf
  else:
    np.testing.assert_allclose(np.asarray(ours)[2], expected[2], rtol=2e-5, atol=2e-5)


def test_score_function_gradient_at_the_deployed_decoding_matches_exact_enumeration():
  """One-token continuations from logits theta over K outcomes: samples from the tempered
  top-p nucleus q(theta), the advantage-weighted score through deployed_logp, averaged,
  must equal the exact gradient of MMD(q(theta), human) within sampling error."""
  k_out, m, reps, temperature, top_p = 8, 16, 3000, 0.7, 0.9
  rng = np.random.RandomState(0)
  phi = jnp.asarray(rng.randn(k_out, 2), jnp.float32)
  y = jnp.asarray(rng.randn(40, 2) * 0.5 + 1.0, jnp.float32)
  theta = jnp.asarray(rng.randn(k_out) * 1.5, jnp.float32)
  kernel = D.rbf_kernel(1.0)
  keep = np.isfinite(nucleus_log_probs(np.asarray(theta), temperature, top_p))
  assert 1 < keep.sum() < k_out

  def q_of(t):  # the sampling distribution, written directly from its definition
    p = jnp.where(keep, jax.nn.softmax(t / temperature), 0.0)
    return p / p.sum()

  def population(t):
    q = q_of(t)
    return q @ kernel(phi, phi) @ q - 2 * q @ kernel(phi, y).mean(1)

  exact = jax.grad(population)(theta)

  def logp_of(t, idx):
    model = lambda tokens, positions, segments: jnp.broadcast_to(t, (m, 2, k_out))
    tokens = jnp.stack([jnp.zeros_like(idx), idx], axis=1)
    return deployed_logp(model, (tokens, None, None), idx[:, None], jnp.ones((m, 1), bool),
                         cfg=dft_config(prompt_len=1, temperature=temperature, top_p=top_p))

  def estimate(key):
    idx = jax.random.choice(key, k_out, (m,), p=q_of(theta))
    advantage = D.kernel_advantage(kernel, phi[idx], y)
    return jax.grad(lambda t: jnp.mean(advantage * logp_of(t, idx)))(theta)

  draws = jax.vmap(estimate)(jax.random.split(jax.random.key(1), reps))
  mean, se = draws.mean(0), draws.std(0) / np.sqrt(reps)
  assert np.all(np.abs(np.asarray(mean - exact)) <= 4 * np.asarray(se) + 1e-6), (mean, exact)
  # and it is not the gradient of the untempered, untruncated law
  p_plain = lambda t: jax.nn.softmax(t)
  plain = jax.grad(lambda t: p_plain(t) @ kernel(phi, phi) @ p_plain(t)
                   - 2 * p_plain(t) @ kernel(phi, y).mean(1))(theta)
  assert np.any(np.abs(np.asarray(mean - plain)) > 6 * np.asarray(se))
