"""The accelerator attention kernels against the textbook attention: the Pallas splash kernel
(TPU) run by the Pallas interpreter on CPU, and jax.nn.dot_product_attention (GPU's cuDNN
path; XLA's on CPU). Values and gradients; causal, sliding window, packed segments, GQA."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dft_jax.models import attention
from dft_jax.models.config import ModelConfig
from dft_jax.models.decoder import Decoder
from test_attention import _inputs, _mask, _reference, assert_same_attention


def _heads_major(x_BxSxKxH):
  return x_BxSxKxH.transpose(0, 2, 1, 3)


def _segments(t):
  """Three packed documents per row, the rows cut differently."""
  cuts = [[0] * 40 + [1] * 150 + [2] * (t - 190), [0] * 100 + [1] * 28 + [2] * (t - 128)]
  return jnp.asarray(np.asarray(cuts) + 1, jnp.int32)


@pytest.mark.parametrize("window,n,kv", [(None, 4, 2), (48, 4, 2), (None, 2, 2),
                                         (32, 4, 1)])
def test_splash_kernel_equals_textbook_attention_and_its_gradients(window, n, kv):
  t = 256
  q, k, v = _inputs(b=2, t=t, n=n, kv=kv, h=32)
  segments = _segments(t)
  mask = _mask(t, window, segments)
  ours = lambda q, k, v: attention.splash_attend(q, _heads_major(k), _heads_major(v), segments,
                                                 window=window, interpret=True)
  assert_same_attention(ours, lambda q, k, v: _reference(q, k, v, mask), q, k, v,
                        grad_atol=3e-5)


def test_splash_kernel_only_takes_whole_blocks():
  assert attention.splash_fits(256) and attention.splash_fits(2048)
  assert not attention.splash_fits(80) and not attention.splash_fits(200)


@pytest.mark.parametrize("window", [None, 5])
def test_dot_product_attention_path_equals_textbook_attention_and_its_gradients(window):
  q, k, v = _inputs(b=2, t=37, n=4, kv=2, h=8)
  segments = jnp.asarray(np.repeat([[1, 2, 3]], 2, 0).repeat([12, 20, 5], axis=1), jnp.int32)
  mask = _mask(37, window, segments)
  ours = lambda q, k, v: attention.dot_product_attend(q, _heads_major(k), _heads_major(v), mask)
  assert_same_attention(ours, lambda q, k, v: _reference(q, k, v, mask), q, k, v,
                        grad_atol=3e-5)


@pytest.mark.parametrize("impl", ["splash_interpret", "cudnn"])
def test_decoder_logits_are_the_same_with_each_kernel(impl):
  """A packed 128-token batch through a sliding-window GQA decoder: the kernel seam changes
  no logit (and decoding with a cache keeps the blockwise path)."""
  cfg = ModelConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_layers=2,
                    num_heads=4, num_kv_heads=2, head_dim=16, model_type="mistral",
                    sliding_windows=(40, 40), attention_impl="xla")
  tokens = jnp.asarray(np.random.RandomState(0).randint(0, 97, (2, 128)), jnp.int32)
  segments = jnp.asarray(np.repeat([[1, 2]], 2, 0).repeat([70, 58], axis=1), jnp.int32)
  model = Decoder(cfg, rngs=nnx.Rngs(0))
  reference = model(tokens, segment_ids_BxT=segments)
  other = Decoder(cfg.replace(attention_impl=impl), rngs=nnx.Rngs(0))
  np.testing.assert_allclose(other(tokens, segment_ids_BxT=segments), reference, atol=2e-5,
                             rtol=0)
