r"""Benchmarks measured side by side in one run; each prints a ratio.

  python scripts/bench.py --parts ce_vs_hf_small,ce_vs_hf_medium,mfu_medium --json
  python scripts/bench.py --parts all --quick     # every part, few repetitions (smoke run)

Parts (A/B measurements alternate the two sides after warm-up and report medians):
  ce_vs_hf_small  our CE train step (jit, AdamW, fp32) vs a `transformers` Llama train step in
                  PyTorch CPU on the same config, weights and batch: tokens/s ratio (> 1: ours
                  faster). d=128, 4 layers, 4 heads (2 kv), MLP 384, vocab 4096, batch 16x128
  ce_vs_hf_medium the same at d=512, 8 layers, 8 heads, MLP 1408, vocab 8192, batch 8x256
  mfu_medium      model FLOPs per step (loop.flops_per_token: 6 x (non-embedding params + LM
                  head) + 12 x layers x seq x heads x head_dim per token) / step time / the
                  FLOP/s of a 2048^2 f32 matmul measured in the same run
  dft_over_ce     DFT train step time / CE train step time at the default DFT config
                  (experiments/dft.py) on the tiny model; dist_share: the share of that step
                  spent featurizing the samples and computing the divergence
  ott_vs_pot_4096 debiased Sinkhorn divergence of two n=4096 clouds in the feature dimension:
                  POT `empirical_sinkhorn_divergence` time / ott-jax time at the same absolute
                  epsilon, both run to the same accuracy against a float64 reference
  ott_vs_pot_curve the same for n = 256 ... 8192 (--ott_sizes), ott's online (low-memory)
                  geometry at the largest n
  decode_vs_hf    tokens/s of our jit'd KV-cache sampler vs `transformers` `generate` (greedy,
                  KV cache) on the same tiny model, batch and prompt
  data_pipeline   grain pipeline tokens/s on the embedded corpus vs the tokens/s a CPU train
                  step of the pretrain_tiny config consumes (> 1: the host is not the bottleneck)
  gpu_mfu_1b      bf16 MFU of a ~1B-parameter config vs a large bf16 matmul; skipped (and says
                  so) without a GPU
"""

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dft_jax import losses, sampling  # noqa: E402
from dft_jax.data import pipeline, sources  # noqa: E402
from dft_jax.models import ModelConfig  # noqa: E402
from dft_jax.train import loop, mesh as mesh_lib, optimizer  # noqa: E402
from dft_jax.train import state as state_lib, step as step_lib  # noqa: E402
from experiments import base as exp_base, pretrain_tiny  # noqa: E402

flags.DEFINE_list("parts", ["data_pipeline"], "Benchmark parts to run ('all': every part).")
flags.DEFINE_bool("json", False, "Print one JSON object as the last line.")
flags.DEFINE_integer("batches", 60, "Batches timed per measurement (data_pipeline, dft_over_ce).")
flags.DEFINE_integer("reps", 7, "Timed repetitions of each side of an A/B measurement.")
flags.DEFINE_bool("quick", False, "Few repetitions, small curve: checks that every part runs.")
flags.DEFINE_list("ott_sizes", ["256", "512", "1024", "2048", "4096", "8192"],
                  "Point-cloud sizes of ott_vs_pot_curve.")
FLAGS = flags.FLAGS

# the two configs of ce_vs_hf: (model preset, batch, seq_len)
CE_CONFIGS = {"small": ("tiny", 16, 128), "medium": ("medium", 8, 256)}


def _tiny_setup():
  config = pretrain_tiny.get_config()
  cfg = ModelConfig(**{k: v for k, v in config.model.to_dict().items()})
  workdir = os.path.join("/tmp", "dft_bench")
  os.makedirs(workdir, exist_ok=True)
  tok = loop.tokenizer_for(config, workdir)
  return config, cfg, tok


def _pipeline_tokens_per_s(config, tok, batches, worker_count=0):
  docs = sources.documents(config.data.corpus, "train")
  data_cfg = pipeline.PipelineConfig(seq_len=config.seq_len, batch_size=config.batch_size,
                                     worker_count=worker_count)
  it = iter(pipeline.make_dataset(docs, tok, data_cfg))
  next(it)
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * config.batch_size * config.seq_len / (time.perf_counter() - start)


def _time_step(config, cfg, tok, batches):
  """Seconds per train step (median of `batches` timed steps after warm-up)."""
  optim = ml_collections.ConfigDict(config.optim.to_dict())
  optim.total_steps = config.total_steps
  tx, lr = optimizer.make(optim)
  mesh = mesh_lib.make_mesh((-1, 1, 1))
  state, shardings = state_lib.create(cfg, tx, mesh)
  step = step_lib.jit_train_step(
      mesh, shardings, graphdef=state_lib.graphdef(cfg),
      loss_fn=losses.make(config.loss, cfg, losses.Context(tok, config.data.corpus)),
      tx=tx, lr_schedule=lr)
  docs = sources.documents(config.data.corpus, "train")
  data_cfg = pipeline.PipelineConfig(seq_len=config.seq_len, batch_size=config.batch_size)
  batch = pipeline.to_global(next(iter(pipeline.make_dataset(docs, tok, data_cfg))),
                             mesh_lib.batch_sharding(mesh))
  times = []
  with jax.set_mesh(mesh):
    for i in range(batches + 3):
      start = time.perf_counter()
      state, metrics = step(state, batch)
      jax.block_until_ready(metrics)
      if i >= 3:
        times.append(time.perf_counter() - start)
  return float(np.median(times))


def dft_over_ce(batches):
  from experiments import dft as dft_exp
  from dft_jax import stats as stats_lib
  from dft_jax.losses import divergences, features
  config = dft_exp.get_config()
  cfg = ModelConfig(**config.model.to_dict())
  workdir = os.path.join("/tmp", "dft_bench")
  os.makedirs(workdir, exist_ok=True)
  tok = loop.tokenizer_for(config, workdir)
  n = max(batches // 4, 8)
  dft_s = _time_step(config, cfg, tok, n)
  config.loss = ml_collections.ConfigDict({"name": "ce"})
  ce_s = _time_step(config, cfg, tok, n)
  # the featurizer + divergence alone, on samples of the DFT step's shape
  loss = dft_exp.dft_loss()
  ref = stats_lib.for_corpus(config.data.corpus, tok, window=loss.gen_len)
  tables = ref.tables(tok, cfg.vocab_size)
  bank = jax.numpy.asarray(ref.standardize(ref.bank_NxF))
  div = divergences.make(loss.divergence, epsilon=loss.epsilon,
                         threshold=loss.sinkhorn_threshold,
                         max_iterations=loss.sinkhorn_iterations)
  tokens = np.random.RandomState(0).randint(0, cfg.vocab_size, (loss.dist_batch, loss.gen_len))
  fn = jax.jit(lambda t: div(features.featurize_batch(t, jax.numpy.ones(t.shape, bool), tables),
                             bank))
  jax.block_until_ready(fn(tokens))
  times = []
  for _ in range(n):
    start = time.perf_counter()
    jax.block_until_ready(fn(tokens))
    times.append(time.perf_counter() - start)
  dist_s = float(np.median(times))
  print(f"dft_over_ce: DFT step {dft_s * 1e3:.1f} ms vs CE step {ce_s * 1e3:.1f} ms: "
        f"{dft_s / ce_s:.2f}x; featurizer + {loss.divergence} {dist_s * 1e3:.1f} ms = "
        f"{100 * dist_s / dft_s:.1f}% of the DFT step (dist_batch {loss.dist_batch}, prompt "
        f"{loss.prompt_len}, continuation {loss.gen_len}, bank {len(ref.bank_NxF)})")
  return {"dft_step_s": dft_s, "ce_step_s": ce_s, "dft_over_ce": dft_s / ce_s,
          "dist_share": dist_s / dft_s}


def _alternate(fns: dict, reps: int, warmup: int = 2, block: int = 1) -> dict:
  """Median seconds of each callable, run round-robin after `warmup` rounds, so that machine
  load drifts hit every side alike. block > 1: each turn runs a side `block` times and times
  all but the first, which absorbs the switch-over (the other runtime's threads and memory
  settling; measured at +0.5 s on the medium config): steady-state steps, as in training."""
  times = {name: [] for name in fns}
  for i in range(warmup + reps):
    for name, fn in fns.items():
      for j in range(block):
        start = time.perf_counter()
        fn()
        if i >= warmup and (j > 0 or block == 1):
          times[name].append(time.perf_counter() - start)
  return {name: float(np.median(t)) for name, t in times.items()}


def _load() -> str:
  return "load average %.2f %.2f %.2f" % os.getloadavg()


def _ce_step(cfg, batch_size, seq_len, seed=0):
  """(run_one_step, model, tokens_BxT): our jitted CE train step (constant lr 1e-3, AdamW
  b=(0.9, 0.95), weight decay 0.1 on matrices, clip 1.0), state donated, on a fixed random
  batch of whole rows."""
  optim = ml_collections.ConfigDict(dict(
      lr=1e-3, warmup_steps=0, decay="constant", min_lr_ratio=1.0, b1=0.9, b2=0.95, eps=1e-8,
      weight_decay=0.1, clip_norm=1.0, total_steps=1))
  tx, lr = optimizer.make(optim)
  mesh = mesh_lib.make_mesh((-1, 1, 1))
  state, shardings = state_lib.create(cfg, tx, mesh, seed=seed)
  graph = state_lib.graphdef(cfg)
  model = state_lib.model_of(jax.tree.map(np.asarray, state), graph)  # a host copy
  step = step_lib.jit_train_step(mesh, shardings, graphdef=graph,
                                 loss_fn=losses.make(ml_collections.ConfigDict({"name": "ce"}),
                                                     cfg, None),
                                 tx=tx, lr_schedule=lr)
  tokens = np.random.RandomState(seed).randint(0, cfg.vocab_size, (batch_size, seq_len))
  batch = {"tokens": tokens.astype(np.int32),
           "positions": np.broadcast_to(np.arange(seq_len, dtype=np.int32), tokens.shape),
           "segment_ids": np.ones(tokens.shape, np.int32),
           "loss_mask": np.ones(tokens.shape, np.int32)}
  batch = pipeline.to_global(batch, mesh_lib.batch_sharding(mesh))
  box = {"state": state}

  def run():
    with jax.set_mesh(mesh):
      box["state"], metrics = step(box["state"], batch)
    return float(jax.block_until_ready(metrics)["loss"])

  return run, model, tokens


def _hf_step(model, tokens):
  """The same model as a `transformers` Llama, trained by the same step in PyTorch: loss,
  backward, clip 1.0, AdamW (decay on matrices only, as ours)."""
  import torch
  from dft_jax.models import hf_io
  torch.set_num_threads(os.cpu_count())  # = XLA's CPU thread pool
  hf = hf_io.to_transformers(model).train()
  params = list(hf.parameters())
  opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
                           {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
                          lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
  ids = torch.from_numpy(tokens.astype(np.int64))

  def run():
    loss = hf(input_ids=ids, labels=ids).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss)

  return run


def _ce_vs_hf(name, reps):
  preset, batch_size, seq_len = CE_CONFIGS[name]
  cfg = ModelConfig(**exp_base.MODELS[preset])
  ours, model, tokens = _ce_step(cfg, batch_size, seq_len)
  theirs = _hf_step(model, tokens)
  loss_ours, loss_theirs = ours(), theirs()  # first steps: same weights, same batch
  t = _alternate({"ours": ours, "hf": theirs}, reps, warmup=1, block=3)
  tokens_n = batch_size * seq_len
  ratio = t["hf"] / t["ours"]
  print(f"ce_vs_hf_{name}: ours {tokens_n / t['ours']:,.0f} tok/s ({t['ours'] * 1e3:.0f} ms) vs "
        f"HF PyTorch {tokens_n / t['hf']:,.0f} tok/s ({t['hf'] * 1e3:.0f} ms): {ratio:.2f}x "
        f"(d={cfg.hidden_size}, {cfg.num_layers} layers, batch {batch_size}x{seq_len}; first-step "
        f"loss {loss_ours:.4f} vs {loss_theirs:.4f}; {_load()})")
  return {f"ce_vs_hf_{name}": ratio, f"ce_{name}_step_s": t["ours"],
          f"hf_{name}_step_s": t["hf"]}


def ce_vs_hf_small(batches):
  del batches
  return _ce_vs_hf("small", FLAGS.reps)


def ce_vs_hf_medium(batches):
  del batches
  return _ce_vs_hf("medium", FLAGS.reps)


def _step_vs_matmul(cfg, batch_size, seq_len, n, dtype):
  """(model FLOPs per CE step, {"step", "matmul"} seconds alternated, n x n matmul FLOP/s)."""
  ours, _, _ = _ce_step(cfg, batch_size, seq_len)
  x = jax.numpy.ones((n, n), dtype)
  matmul = jax.jit(lambda a: a @ a)
  t = _alternate({"step": ours, "matmul": lambda: matmul(x).block_until_ready()}, FLAGS.reps)
  return loop.flops_per_token(cfg, seq_len) * batch_size * seq_len, t, 2 * n**3 / t["matmul"]


def mfu_medium(batches):
  del batches
  preset, batch_size, seq_len = CE_CONFIGS["medium"]
  cfg = ModelConfig(**exp_base.MODELS[preset])
  flops, t, peak = _step_vs_matmul(cfg, batch_size, seq_len, 2048, jax.numpy.float32)
  n, mfu = 2048, flops / t["step"] / peak
  print(f"mfu_medium: {flops / 1e9:.1f} GFLOP per step / {t['step']:.3f} s = "
        f"{flops / t['step'] / 1e9:.1f} GFLOP/s vs {n}^2 f32 matmul {peak / 1e9:.1f} GFLOP/s: "
        f"MFU {mfu:.2f} ({_load()})")
  return {"mfu_medium": mfu, "medium_step_gflops": flops / t["step"] / 1e9,
          "matmul_peak_gflops": peak / 1e9}


def decode_vs_hf(batches):
  """Greedy decoding of 64 tokens after 16-token prompts, batch 16, tiny model; no EOS, so
  both decode every token."""
  del batches
  import torch
  from dft_jax.models import Decoder, hf_io
  from flax import nnx
  torch.set_num_threads(os.cpu_count())
  cfg = ModelConfig(**exp_base.MODELS["tiny"])
  model = Decoder(cfg, rngs=nnx.Rngs(0))
  hf = hf_io.to_transformers(model).eval()
  batch, prompt_len, new = 16, 16, 64
  prompt = np.random.RandomState(0).randint(0, cfg.vocab_size, (batch, prompt_len))
  ids = torch.from_numpy(prompt.astype(np.int64))

  def ours():
    return np.asarray(sampling.generate(model, prompt, max_new_tokens=new).tokens_BxG)

  def theirs():
    with torch.no_grad():
      out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                        min_new_tokens=new, do_sample=False, use_cache=True, pad_token_id=0)
    return out[:, prompt_len:].numpy()

  same = float(np.mean(ours() == theirs()))
  t = _alternate({"ours": ours, "hf": theirs}, FLAGS.reps)
  ratio = t["hf"] / t["ours"]
  n = batch * new
  print(f"decode_vs_hf: ours {n / t['ours']:,.0f} tok/s ({t['ours'] * 1e3:.1f} ms) vs HF generate "
        f"{n / t['hf']:,.0f} tok/s ({t['hf'] * 1e3:.1f} ms): {ratio:.2f}x (batch {batch}, prompt "
        f"{prompt_len}, {new} new tokens, greedy; {100 * same:.0f}% same tokens; {_load()})")
  return {"decode_vs_hf": ratio, "decode_tokens_per_s": n / t["ours"],
          "hf_generate_tokens_per_s": n / t["hf"]}


OT_DIM = 28        # = len(features.FEATURE_NAMES): the DFT feature dimension
OT_REL_EPS = 0.05  # epsilon = 0.05 x the mean cost, the DFT default (experiments/dft.py)
OT_TOL = 1e-4      # relative error of the divergence both solvers must reach
OTT_THRESHOLDS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
POT_THRESHOLDS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def _ot_clouds(n):
  """Two Gaussian clouds in the feature dimension (shifted, rescaled), float32, and the
  absolute epsilon: OT_REL_EPS x the mean squared distance between them (closed form)."""
  rs = np.random.RandomState(n)
  x = rs.randn(n, OT_DIM).astype(np.float32)
  y = (1.1 * rs.randn(n, OT_DIM) + 0.3).astype(np.float32)
  mean_cost = (np.mean(np.sum(x.astype(np.float64) ** 2, 1)) + np.mean(np.sum(y ** 2.0, 1))
               - 2 * x.mean(0).astype(np.float64) @ y.mean(0))
  return x, y, float(OT_REL_EPS * mean_cost)


def _ott_fn(eps, threshold, batch_size=None):
  """ott-jax debiased Sinkhorn divergence, jit: point clouds (squared Euclidean), log domain,
  float32, convergence checked every iteration (inner_iterations=1: stops as soon as the
  marginal error is under `threshold`); batch_size: the online (low-memory) geometry that
  recomputes cost blocks instead of storing n x n matrices."""
  from ott.tools import sinkhorn_divergence
  if batch_size is not None:
    _patch_ott_online()
  solve = dict(threshold=threshold, inner_iterations=1, max_iterations=2000)

  def fn(x, y):
    with jax.numpy_rank_promotion("allow"):
      return sinkhorn_divergence.sinkdiv(x, y, epsilon=eps, batch_size=batch_size,
                                         solve_kwargs=solve)[0]
  return jax.jit(fn)


def _patch_ott_online():
  """ott 0.6's online geometry calls jax.interpreters.batching.is_vmappable, which jax 0.10
  moved to jax._src; alias it back (only the benchmark uses the online mode)."""
  from jax.interpreters import batching
  if not hasattr(batching, "is_vmappable"):
    from jax._src.interpreters import batching as src_batching
    batching.is_vmappable = src_batching.is_vmappable


def _ott_reference(x, y, eps):
  with jax.enable_x64(True):
    fn = _ott_fn(eps, 1e-7)
    return float(fn(jax.numpy.asarray(x, jax.numpy.float64), jax.numpy.asarray(y, jax.numpy.float64)))


def _pot_fn(eps, threshold, dtype=np.float32):
  import ot

  def fn(x, y):
    return float(ot.bregman.empirical_sinkhorn_divergence(
        x.astype(dtype), y.astype(dtype), eps, stopThr=threshold, numIterMax=100000, warn=False))
  return fn


def _cheapest(make, thresholds, reference, x, y):
  """(threshold, relative error) of the loosest threshold whose result is within OT_TOL of
  the reference: the cheapest run at the required accuracy."""
  for thr in thresholds:
    err = abs(float(make(thr)(x, y)) - reference) / abs(reference)
    if err <= OT_TOL:
      return thr, err
  raise RuntimeError(f"no threshold in {thresholds} reaches relative error {OT_TOL}")


def _ott_vs_pot(n, reps, online=False):
  x, y, eps = _ot_clouds(n)
  ref_ott, ref_pot = _ott_reference(x, y, eps), _pot_fn(eps, 1e-8, np.float64)(x, y)
  ott_thr, ott_err = _cheapest(lambda t: _ott_fn(eps, t), OTT_THRESHOLDS, ref_ott, x, y)
  pot_thr, pot_err = _cheapest(lambda t: _pot_fn(eps, t), POT_THRESHOLDS, ref_pot, x, y)
  xj, yj = jax.numpy.asarray(x), jax.numpy.asarray(y)
  fns = {"ott": lambda f=_ott_fn(eps, ott_thr): f(xj, yj).block_until_ready(),
         "pot": lambda f=_pot_fn(eps, pot_thr): f(x, y)}
  if online:
    online_fn = _ott_fn(eps, ott_thr, batch_size=1024)
    fns["ott_online"] = lambda: online_fn(xj, yj).block_until_ready()
  t = _alternate(fns, reps, warmup=1)
  out = {f"ott_vs_pot_{n}": t["pot"] / t["ott"], f"ott_{n}_s": t["ott"], f"pot_{n}_s": t["pot"]}
  line = (f"ott_vs_pot_{n}: ott {t['ott']:.3f} s (threshold {ott_thr:g}, rel. err {ott_err:.1e}) "
          f"vs POT {t['pot']:.3f} s (stopThr {pot_thr:g}, rel. err {pot_err:.1e}): "
          f"{t['pot'] / t['ott']:.2f}x")
  if online:
    out[f"ott_online_{n}_s"] = t["ott_online"]
    out[f"ott_online_vs_pot_{n}"] = t["pot"] / t["ott_online"]
    line += f"; ott online (batch 1024) {t['ott_online']:.3f} s: {t['pot'] / t['ott_online']:.2f}x"
  print(line + f" (eps {eps:.3f} = {OT_REL_EPS} x mean cost, dim {OT_DIM}; {_load()})")
  return out


def ott_vs_pot_4096(batches):
  del batches
  return _ott_vs_pot(4096, FLAGS.reps)


def ott_vs_pot_curve(batches):
  del batches
  sizes = [int(n) for n in FLAGS.ott_sizes]
  out = {}
  for n in sizes:
    out.update(_ott_vs_pot(n, max(FLAGS.reps // 2, 1) if n >= 4096 else FLAGS.reps,
                           online=n == max(sizes)))
  return out


def gpu_mfu_1b(batches):
  """bf16 MFU of a ~1.1B-parameter Llama config (d 2048, 16 layers, 16 heads, MLP 5632,
  vocab 32000; batch 8 x 2048, remat of dots) vs an 8192^2 bf16 matmul, on one GPU."""
  del batches
  if jax.default_backend() != "gpu":
    print(f"gpu_mfu_1b: skipped: no GPU (backend {jax.default_backend()})")
    return {"gpu_mfu_1b": None, "gpu_mfu_1b_skipped": "no GPU"}
  cfg = ModelConfig(model_type="llama", vocab_size=32000, hidden_size=2048,
                    intermediate_size=5632, num_layers=16, num_heads=16, num_kv_heads=16,
                    head_dim=128, dtype="bfloat16", param_dtype="float32",
                    remat_policy="dots_with_no_batch_dims")
  flops, t, peak = _step_vs_matmul(cfg, 8, 2048, 8192, jax.numpy.bfloat16)
  mfu = flops / t["step"] / peak
  print(f"gpu_mfu_1b: {cfg.num_params / 1e9:.2f}B params, {flops / t['step'] / 1e12:.1f} TFLOP/s "
        f"vs bf16 matmul {peak / 1e12:.1f} TFLOP/s: MFU {mfu:.2f} ({jax.devices()[0].device_kind})")
  return {"gpu_mfu_1b": mfu, "gpu_1b_tflops": flops / t["step"] / 1e12,
          "gpu_bf16_matmul_tflops": peak / 1e12}


def _train_step_tokens_per_s(config, cfg, tok, batches):
  return config.batch_size * config.seq_len / _time_step(config, cfg, tok, batches)


def data_pipeline(batches):
  config, cfg, tok = _tiny_setup()
  step_tps = _train_step_tokens_per_s(config, cfg, tok, max(batches // 3, 10))
  data_tps = _pipeline_tokens_per_s(config, tok, batches)
  print(f"data_pipeline: pipeline {data_tps:,.0f} tok/s (1 process, no workers) vs train step "
        f"{step_tps:,.0f} tok/s ({config.model.hidden_size}d x {config.model.num_layers} "
        f"layers, batch {config.batch_size}x{config.seq_len}): ratio {data_tps / step_tps:.1f}x")
  return {"pipeline_tokens_per_s": data_tps, "train_step_tokens_per_s": step_tps,
          "data_pipeline": data_tps / step_tps}


def _top_p_by_sorting(logits_BxV, top_p):
  """The nucleus filter as it was before bisection: a full descending sort per row."""
  sorted_BxV = jnp.sort(logits_BxV, axis=-1)[:, ::-1]
  probs_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
  keep_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV < top_p
  threshold_Bx1 = jnp.min(jnp.where(keep_BxV, sorted_BxV, jnp.inf), axis=-1, keepdims=True)
  return jnp.where(logits_BxV < threshold_Bx1, -jnp.inf, logits_BxV)


def top_p_vs_sort(batches):
  """Top-p (0.9, T=0.7) filtering of [64, 49152] logits (one decoding step of the demo's
  SmolLM2 at batch 64): the library's bisection against the full sort, alternated."""
  del batches
  logits = jax.random.normal(jax.random.key(0), (64, 49152)) * 3.0
  ours = jax.jit(lambda x: sampling.filter_logits(x, 0.7, 0, 0.9))
  sort = jax.jit(lambda x: _top_p_by_sorting(x / 0.7, 0.9))
  same = np.mean(np.isfinite(ours(logits)) == np.isfinite(sort(logits)))
  t = _alternate({"ours": lambda: ours(logits).block_until_ready(),
                  "sort": lambda: sort(logits).block_until_ready()}, reps=FLAGS.reps * 5)
  print(f"top-p filter [64, 49152]: bisection {1e3 * t['ours']:.1f} ms, sort "
        f"{1e3 * t['sort']:.1f} ms: {t['sort'] / t['ours']:.2f}x; same nucleus on "
        f"{100 * same:.4f}% of entries")
  return {"top_p_ms": 1e3 * t["ours"], "top_p_sort_ms": 1e3 * t["sort"],
          "top_p_vs_sort": t["sort"] / t["ours"]}


PARTS = {"ce_vs_hf_small": ce_vs_hf_small, "ce_vs_hf_medium": ce_vs_hf_medium,
         "mfu_medium": mfu_medium, "dft_over_ce": dft_over_ce,
         "ott_vs_pot_4096": ott_vs_pot_4096, "ott_vs_pot_curve": ott_vs_pot_curve,
         "decode_vs_hf": decode_vs_hf, "data_pipeline": data_pipeline, "gpu_mfu_1b": gpu_mfu_1b,
         "top_p_vs_sort": top_p_vs_sort}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  if FLAGS.parts == ["all"]:
    FLAGS.parts = list(PARTS)
  if FLAGS.quick:  # every part runs, nothing is measured seriously
    FLAGS.reps, FLAGS.batches, FLAGS.ott_sizes = 2, 12, ["256", "1024"]
  unknown = [p for p in FLAGS.parts if p not in PARTS]
  if unknown:
    sys.exit(f"bench: error: unknown part(s) {unknown}; available: {sorted(PARTS)}")
  results = {"cpu_cores": os.cpu_count(), "devices": str(jax.devices()[0].device_kind),
             "load_before": os.getloadavg()[0]}
  for part in FLAGS.parts:
    results.update(PARTS[part](FLAGS.batches))
  results["load_after"] = os.getloadavg()[0]
  if FLAGS.json:
    print(json.dumps(results))


if __name__ == "__main__":
  app.run(main)
