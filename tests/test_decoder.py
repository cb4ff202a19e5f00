"""Decoder invariants that need no reference model: cache, packing, dtypes, remat, sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dft_jax import sampling
from dft_jax.models import Decoder, ModelConfig

V = 61


def _config(**kw):
  base = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_layers=3, num_heads=4,
              num_kv_heads=2, head_dim=12, qkv_bias=True, qk_norm=True,
              sliding_windows=(None, 5, None), rope_theta=1000.0)
  return ModelConfig(**{**base, **kw})


def _model(cfg, seed=0):
  model = Decoder(cfg, rngs=nnx.Rngs(seed))
  # non-trivial norms and biases, so that every path is exercised
  for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    key = jax.random.fold_in(jax.random.key(seed + 1), hash(path) % (2**31))
    noise = jax.random.normal(key, var.shape, var.dtype)
    var.set_value(var[...] + (0.1 if path[-1] == "scale" else 0.02) * noise)
  return model


@nnx.jit
def forward(model, ids, positions=None, segments=None, cache=None):
  return model(ids, positions, segments, cache=cache)


def _ids(b, t, seed=0):
  return jnp.asarray(np.random.RandomState(seed).randint(0, V, size=(b, t)), jnp.int32)


@pytest.mark.parametrize("prefill", [1, 7])
def test_kv_cache_decoding_equals_full_forward(prefill):
  model = _model(_config())
  ids = _ids(2, 20)
  full = np.asarray(forward(model, ids))
  logits, cache = forward(model, ids[:, :prefill], cache=model.init_cache(2, 24))
  steps = [np.asarray(logits)]
  for t in range(prefill, 20):
    logits, cache = forward(model, ids[:, t:t + 1], cache=cache)
    steps.append(np.asarray(logits))
  np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5, rtol=0)
  assert int(cache.index) == 20


def test_kv_cache_holds_each_layers_keys_at_their_slots():
  """Token-by-token decoding leaves every layer's own [B, K, S, H] array holding what one
  prefill of the whole sequence writes there, and the slots after it untouched."""
  cfg = _config()
  model = _model(cfg)
  ids = _ids(2, 9)
  _, prefilled = forward(model, ids, cache=model.init_cache(2, 12))
  _, stepped = forward(model, ids[:, :1], cache=model.init_cache(2, 12))
  for t in range(1, 9):
    _, stepped = forward(model, ids[:, t:t + 1], cache=stepped)
  assert len(stepped.k_BxKxSxH) == len(stepped.v_BxKxSxH) == cfg.num_layers
  for layer in range(cfg.num_layers):
    for a, b in ((stepped.k_BxKxSxH[layer], prefilled.k_BxKxSxH[layer]),
                 (stepped.v_BxKxSxH[layer], prefilled.v_BxKxSxH[layer])):
      assert a.shape == (2, cfg.num_kv_heads, 12, cfg.head_dim)
      np.testing.assert_allclose(np.asarray(a[:, :, :9]), np.asarray(b[:, :, :9]), atol=1e-5,
                                 rtol=0)
      assert not np.any(np.asarray(a[:, :, 9:]))
  # layers hold different keys: no layer wrote into another's array
  assert not np.allclose(np.asarray(stepped.k_BxKxSxH[0]), np.asarray(stepped.k_BxKxSxH[1]))


def test_packed_row_equals_each_document_alone():
  model = _model(_config())
  lengths = (7, 5, 8)
  docs = [_ids(1, n, seed=i) for i, n in enumerate(lengths)]
  packed = jnp.concatenate(docs, axis=1)
  segments = jnp.concatenate([jnp.full((1, n), i + 1, jnp.int32) for i, n in enumerate(lengths)],
                             axis=1)
  logits = np.asarray(forward(model, packed, segments=segments))
  start = 0
  for doc, n in zip(docs, lengths):
    np.testing.assert_allclose(logits[:, start:start + n], np.asarray(forward(model, doc)), atol=1e-5,
                               rtol=0)
    start += n


def test_explicit_positions_match_derived_positions():
  model = _model(_config())
  segments = jnp.asarray([[1, 1, 1, 2, 2, 3]], jnp.int32)
  ids = _ids(1, 6)
  derived = forward(model, ids, segments=segments)
  explicit = forward(model, ids, jnp.asarray([[0, 1, 2, 0, 1, 0]]), segments)
  np.testing.assert_array_equal(np.asarray(derived), np.asarray(explicit))


# Documented in README ("Numerics"): bf16 compute stays within these bounds of fp32.
BF16_MAX_ABS_OVER_SCALE = 0.05
BF16_MIN_TOP1_AGREEMENT = 0.9


@pytest.mark.parametrize("param_dtype", ["float32", "bfloat16"])
def test_bf16_compute_stays_near_fp32(param_dtype):
  cfg = _config()
  model = _model(cfg)
  ids = _ids(4, 32)
  ref = np.asarray(forward(model, ids))
  state = nnx.state(model)
  low = nnx.merge(nnx.graphdef(Decoder(cfg.replace(dtype="bfloat16", param_dtype=param_dtype),
                                       rngs=nnx.Rngs(0))),
                  jax.tree.map(lambda x: x.astype(param_dtype), state))
  out = np.asarray(forward(low, ids))
  assert out.dtype == np.float32
  err = np.abs(out - ref).max() / np.abs(ref).max()
  assert 0 < err < BF16_MAX_ABS_OVER_SCALE, err
  agree = (out.argmax(-1) == ref.argmax(-1)).mean()
  assert agree >= BF16_MIN_TOP1_AGREEMENT, agree


def test_remat_changes_neither_logits_nor_gradients():
  ids = _ids(2, 16)

  def loss_and_grads(policy):
    model = _model(_config(remat_policy=policy))
    def loss(m):
      return jax.nn.log_softmax(m(ids)).mean()
    return nnx.jit(nnx.value_and_grad(loss))(model)

  (l0, g0), (l1, g1) = loss_and_grads("none"), loss_and_grads("full")
  np.testing.assert_allclose(l0, l1, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)


def test_tied_model_has_no_separate_head():
  tied = Decoder(_config(tie_word_embeddings=True), rngs=nnx.Rngs(0))
  untied = Decoder(_config(), rngs=nnx.Rngs(0))
  count = lambda m: sum(x.size for x in jax.tree.leaves(nnx.state(m, nnx.Param)))
  assert count(untied) - count(tied) == 32 * V
  assert count(untied) == _config().num_params


def test_every_parameter_has_logical_axis_names():
  model = Decoder(_config(qkv_bias=True, o_bias=True, mlp_bias=True), rngs=nnx.Rngs(0))
  for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    names = var.get_metadata().get("out_sharding")
    assert names is not None and len(names) == var.ndim, path


# --- sampling -------------------------------------------------------------------------------


def _sample_by_recomputation(model, prompt, steps, rng, temperature, top_k, top_p):
  """Reference: no cache, the whole sequence recomputed for every token."""
  seq = prompt
  for i in range(steps):
    logits = forward(model, seq)[:, -1]
    token = sampling.choose(logits, rng, i, temperature, top_k, top_p)
    seq = jnp.concatenate([seq, token[:, None]], axis=1)
  return np.asarray(seq[:, prompt.shape[1]:])


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.0, 0, 1.0), (1.0, 0, 1.0),
                                                     (0.8, 10, 1.0), (1.2, 0, 0.9)])
def test_cached_sampling_equals_recomputation(temperature, top_k, top_p):
  model = _model(_config())
  prompt, rng = _ids(3, 5), jax.random.key(7)
  cached = sampling.generate(model, prompt, max_new_tokens=12, rng=rng,
                             temperature=temperature, top_k=top_k, top_p=top_p)
  ref = _sample_by_recomputation(model, prompt, 12, rng, temperature, top_k, top_p)
  np.testing.assert_array_equal(np.asarray(cached.tokens_BxC), ref)
  assert bool(cached.valid_BxC.all())


def test_left_padded_prompts_decode_as_if_alone():
  model = _model(_config())
  short, long = _ids(1, 3, seed=1), _ids(1, 6, seed=2)
  batch = jnp.concatenate([jnp.pad(short, ((0, 0), (3, 0))), long], axis=0)
  mask = jnp.asarray([[0, 0, 0, 1, 1, 1], [1] * 6])
  together = sampling.generate(model, batch, prompt_mask_BxP=mask, max_new_tokens=8)
  for row, prompt in enumerate((short, long)):
    alone = sampling.generate(model, prompt, max_new_tokens=8)
    np.testing.assert_array_equal(np.asarray(together.tokens_BxC[row]),
                                  np.asarray(alone.tokens_BxC[0]))


def test_generation_stops_at_eos_and_pads():
  model = _model(_config())
  prompt = _ids(2, 4)
  free = np.asarray(sampling.generate(model, prompt, max_new_tokens=10).tokens_BxC)
  eos = int(free[0, 3])
  out = sampling.generate(model, prompt, max_new_tokens=10, eos_id=eos, pad_id=V - 1)
  tokens, valid = np.asarray(out.tokens_BxC), np.asarray(out.valid_BxC)
  first = int(np.argmax(free[0] == eos))
  np.testing.assert_array_equal(tokens[0, :first + 1], free[0, :first + 1])
  assert (tokens[0, first + 1:] == V - 1).all()
  assert valid[0, :first + 1].all() and not valid[0, first + 1:].any()


def test_top_k_and_top_p_filters_match_their_definitions():
  logits = jnp.asarray(np.random.RandomState(0).randn(4, 50) * 2, jnp.float32)
  top_k = np.asarray(sampling.filter_logits(logits, 1.0, 7, 1.0))
  assert (np.isfinite(top_k).sum(-1) == 7).all()
  p = 0.8
  kept = np.isfinite(np.asarray(sampling.filter_logits(logits, 1.0, 0, p)))
  for row, keep in zip(np.asarray(logits), kept):
    probs = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
    order = np.argsort(-probs)
    need = int(np.searchsorted(np.cumsum(probs[order]), p) + 1)  # smallest set with mass >= p
    assert set(np.flatnonzero(keep)) == set(order[:need])


def _nucleus_by_sorting(logits_BxV, top_p):
  """The definition, in float64: sort descending, keep while the mass strictly before is
  < top_p. Also returns each token's mass-before, to spot float32 ties at the boundary."""
  keep = np.zeros(logits_BxV.shape, bool)
  before_BxV = np.zeros(logits_BxV.shape)
  for row, out, mass in zip(logits_BxV.astype(np.float64), keep, before_BxV):
    p = np.exp(row - row.max())
    p /= p.sum()
    order = np.argsort(-row, kind="stable")
    before = np.cumsum(p[order]) - p[order]
    out[order[before < top_p]] = True
    mass[order] = before
  return keep, before_BxV


@pytest.mark.parametrize("scale,top_p", [(0.3, 0.9), (1.5, 0.9), (4.0, 0.5), (8.0, 0.99)])
def test_top_p_bisection_equals_the_sorted_definition(scale, top_p):
  # flat rows (many tokens in the nucleus) to peaked ones (one or two), 49k-wide as SmolLM2's
  logits = np.random.RandomState(1).randn(8, 49152).astype(np.float32) * scale
  kept = np.isfinite(np.asarray(sampling.filter_logits(jnp.asarray(logits), 1.0, 0, top_p)))
  want, before = _nucleus_by_sorting(logits, top_p)
  # identical but for tokens whose mass-before is top_p to float32 summation accuracy
  differ = kept != want
  assert differ.sum() <= 2 and np.all(np.abs(before[differ] - top_p) < 1e-5), before[differ]
  assert kept.sum(-1).min() >= 1 and (kept & ~want).sum() + (want & ~kept).sum() < 1e-4 * \
      kept.size


def test_inverse_cdf_sampler_draws_the_softmax_and_never_a_removed_token():
  v = 203  # not a multiple of the sampler's block: padding must never be drawn
  logits = jax.random.normal(jax.random.key(0), (1, v)) * 2.0
  logits = logits.at[0, ::3].set(-jnp.inf)  # removed entries (as top-k / top-p leave them)
  draw = jax.jit(jax.vmap(lambda r: sampling.sample_categorical(jax.random.key(r), logits)[0]))
  tokens = np.asarray(draw(jnp.arange(60000)))
  assert tokens.min() >= 0 and tokens.max() < v and np.all(tokens % 3 != 0)
  freq = np.bincount(tokens, minlength=v) / len(tokens)
  np.testing.assert_allclose(freq, np.asarray(jax.nn.softmax(logits[0])), atol=0.006)
  x = jnp.asarray([[1.0, 3.0, 3.0, 0.0], [5.0, 5.0, 5.0, 5.0]])
  np.testing.assert_array_equal(sampling.argmax(x), jnp.argmax(x, axis=-1))


def test_lora_starts_as_the_base_and_merges_exactly():
  from dft_jax.models.decoder import merge_lora
  cfg = _config(lora_rank=3, lora_targets=("q", "k", "v", "o", "gate", "up", "down"))
  model = Decoder(cfg, rngs=nnx.Rngs(0))
  ids = _ids(2, 9)
  adapters = nnx.to_flat_state(nnx.state(model, nnx.LoRAParam))
  assert len(adapters) == 2 * 7 * 3  # (A, B) x 7 targets x 3 layers
  for path, var in adapters:  # B = 0 at init, so the adapted model starts as the base
    assert (path[-1].endswith("_lora_b")) == (not np.abs(np.asarray(var[...])).any())
  base = merge_lora(model)
  for path, var in adapters:
    var.set_value(var[...] + 0.05)
  adapted = np.asarray(forward(model, ids))
  assert np.abs(adapted - np.asarray(forward(base, ids))).max() > 1e-3
  np.testing.assert_allclose(np.asarray(forward(merge_lora(model), ids)), adapted, atol=1e-5)


@pytest.mark.parametrize("remat", ["none", "full"])
@pytest.mark.parametrize("lora", [0, 4])
def test_scanned_layers_equal_unrolled_layers_and_their_gradients(remat, lora):
  """layer_loop='scan' (one lax.scan over the stacked blocks) computes the same logits,
  hidden states and parameter gradients as the unrolled loop, LoRA adapters included."""
  cfg = _config(remat_policy=remat, lora_rank=lora, sliding_windows=(7, 7, 7))
  tokens = jnp.asarray(np.random.RandomState(0).randint(0, cfg.vocab_size, (2, 24)), jnp.int32)
  unrolled = _model(cfg)
  scanned = _model(cfg.replace(layer_loop="scan"))
  assert "scan" in str(jax.make_jaxpr(lambda t: scanned(t))(tokens))
  assert "scan" not in str(jax.make_jaxpr(lambda t: unrolled(t))(tokens))
  np.testing.assert_allclose(scanned(tokens), unrolled(tokens), atol=1e-5, rtol=0)
  np.testing.assert_allclose(scanned(tokens, hidden_layer=cfg.num_layers),
                             unrolled(tokens, hidden_layer=cfg.num_layers), atol=1e-5, rtol=0)

  def grads(model):
    graph, params, rest = nnx.split(model, nnx.Param, ...)
    loss = lambda p: jnp.sum(nnx.merge(graph, p, rest)(tokens)[:, :, :7] ** 2)
    return jax.grad(loss)(params)

  for g_s, g_u in zip(jax.tree.leaves(grads(scanned)), jax.tree.leaves(grads(unrolled))):
    np.testing.assert_allclose(g_s, g_u, atol=2e-4, rtol=1e-4)
