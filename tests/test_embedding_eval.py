"""Evaluation in an embedding space: embedding MMD² against an independent numpy computation on
a tiny model, MAUVE against mauve-text called directly, the human row's floor."""

import numpy as np
import pytest
from flax import nnx

import dft_setup as S
from dft_jax.evaluation import report, text_metrics
from dft_jax.models import Decoder

HUMAN = [" ".join(f"w{(i * 7 + j) % 28}" for j in range(5 + i % 7)) + " ." for i in range(40)]
MODEL = ["w1 w1 w1 w1 w1 w1 w1 w1 ." if i % 2 else "w2 w3 w2 w3 w2 w3 ." for i in range(40)]


def _numpy_mmd2(x, y):
  """Unbiased MMD² with the RBF mixture at 0.25..4 x the median pooled squared distance."""
  pooled = np.concatenate([x, y])
  d2 = lambda a, b: ((a[:, None] - b[None]) ** 2).sum(-1)  # noqa: E731
  h = np.median(d2(pooled, pooled))
  k = lambda a, b: sum(np.exp(-d2(a, b) / (s * h)) for s in (0.25, 0.5, 1, 2, 4)) / 5  # noqa
  m, n = len(x), len(y)
  kxx, kyy = k(x, x), k(y, y)
  return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) /
          (n * (n - 1)) - 2 * k(x, y).mean())


@pytest.fixture(scope="module")
def space():
  model = Decoder(S.MODEL, rngs=nnx.Rngs(0))
  return report.EmbeddingSpace(model, S.tokenizer(), HUMAN, window=12, layer=1)


def test_embedding_mmd_equals_a_direct_computation(space):
  tok = S.tokenizer()

  def direct(texts):  # each text's first 12 tokens, alone, mean of layer-1 hidden states
    import jax.numpy as jnp
    rows = []
    for t in texts:
      ids = tok.encode(t)[:12]
      rows.append(np.asarray(space.model(jnp.asarray([ids]), hidden_layer=1))[0].mean(0))
    return np.asarray(rows, np.float64)
  human, model = direct(HUMAN), direct(MODEL)
  mean, sd = human.mean(0), human.std(0)
  z = lambda x: (x - mean) / np.where(sd > 1e-6, sd, 1.0)  # noqa: E731
  np.testing.assert_allclose(space.human_NxF, z(human), atol=2e-4)
  got = space.divergences(space(MODEL))["embedding_mmd"]
  assert got == pytest.approx(_numpy_mmd2(z(model), z(human)), abs=2e-4)
  assert got > 0.1   # degenerate repetitions sit far from the human cloud


def test_human_row_gets_the_embedding_floor(space):
  fs = report.FeatureSpace(HUMAN, S.tokenizer(), 12)
  row = report.human_reference(HUMAN[:20], fs, other=HUMAN[20:], embedding_space=space)
  want = space.divergences(space(HUMAN[:20]), space(HUMAN[20:]))["embedding_mmd"]
  assert row["embedding_mmd"] == pytest.approx(want)
  out = report.evaluate(MODEL, HUMAN, feature_space=fs, embedding_space=space)
  assert out["embedding_mmd"] == pytest.approx(space.divergences(space(MODEL))["embedding_mmd"])


def test_mauve_equals_the_package_on_the_same_features():
  import mauve  # mauve-text, installed by the test extra
  rng = np.random.default_rng(0)
  human, model = rng.normal(size=(200, 6)), rng.normal(size=(200, 6)) + 1.5
  want = mauve.compute_mauve(p_features=human, q_features=model, seed=25, verbose=False).mauve
  assert text_metrics.mauve(model, human) == pytest.approx(want, abs=1e-9)
  same = text_metrics.mauve(rng.normal(size=(200, 6)), rng.normal(size=(200, 6)))
  assert same > 0.9 and text_metrics.mauve(model, human) < 0.2   # same law: ~1
  scores = report.mauve_scores(model, human, model[:, :4], human[:, :4])
  assert set(scores) == {"mauve", "embedding_mauve"}
  assert scores["mauve"] == pytest.approx(want, abs=1e-9)
