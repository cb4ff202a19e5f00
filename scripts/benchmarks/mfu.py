"""MFU: model FLOPs per CE step / step time / the FLOP/s of a large matmul in the same run."""

from __future__ import annotations

import jax

from benchmarks.ce import CE_CONFIGS
from benchmarks.common import Options, alternate, load_average
from benchmarks.train_step import ce_step
from dft_jax.models import ModelConfig
from dft_jax.train import loop
from experiments import base as exp_base


def _step_vs_matmul(cfg, batch_size, seq_len, n, dtype, reps):
  """(model FLOPs per CE step, {"step", "matmul"} seconds alternated, n x n matmul FLOP/s)."""
  ours, _, _ = ce_step(cfg, batch_size, seq_len)
  x = jax.numpy.ones((n, n), dtype)
  matmul = jax.jit(lambda a: a @ a)
  t = alternate({"step": ours, "matmul": lambda: matmul(x).block_until_ready()}, reps)
  return loop.flops_per_token(cfg, seq_len) * batch_size * seq_len, t, 2 * n**3 / t["matmul"]


def mfu_medium(opts: Options) -> dict:
  """f32 MFU of the medium CE config on this machine vs a 2048^2 f32 matmul."""
  preset, batch_size, seq_len = CE_CONFIGS["medium"]
  cfg = ModelConfig(**exp_base.MODELS[preset])
  flops, t, peak = _step_vs_matmul(cfg, batch_size, seq_len, 2048, jax.numpy.float32,
                                   opts.reps)
  n, mfu = 2048, flops / t["step"] / peak
  print(f"mfu_medium: {flops / 1e9:.1f} GFLOP per step / {t['step']:.3f} s = "
        f"{flops / t['step'] / 1e9:.1f} GFLOP/s vs {n}^2 f32 matmul {peak / 1e9:.1f} GFLOP/s: "
        f"MFU {mfu:.2f} ({load_average()})")
  return {"mfu_medium": mfu, "medium_step_gflops": flops / t["step"] / 1e9,
          "matmul_peak_gflops": peak / 1e9}


def gpu_mfu_1b(opts: Options) -> dict:
  """bf16 MFU of a ~1.1B-parameter Llama config (d 2048, 16 layers, 16 heads, MLP 5632,
  vocab 32000; batch 8 x 2048, remat of dots) vs an 8192^2 bf16 matmul, on one GPU."""
  if jax.default_backend() != "gpu":
    print(f"gpu_mfu_1b: skipped: no GPU (backend {jax.default_backend()})")
    return {"gpu_mfu_1b": None, "gpu_mfu_1b_skipped": "no GPU"}
  cfg = ModelConfig(model_type="llama", vocab_size=32000, hidden_size=2048,
                    intermediate_size=5632, num_layers=16, num_heads=16, num_kv_heads=16,
                    head_dim=128, dtype="bfloat16", param_dtype="float32",
                    remat_policy="dots_with_no_batch_dims")
  flops, t, peak = _step_vs_matmul(cfg, 8, 2048, 8192, jax.numpy.bfloat16, opts.reps)
  mfu = flops / t["step"] / peak
  print(f"gpu_mfu_1b: {cfg.num_params / 1e9:.2f}B params, {flops / t['step'] / 1e12:.1f} TFLOP/s "
        f"vs bf16 matmul {peak / 1e12:.1f} TFLOP/s: MFU {mfu:.2f} ({jax.devices()[0].device_kind})")
  return {"gpu_mfu_1b": mfu, "gpu_1b_tflops": flops / t["step"] / 1e12,
          "gpu_bf16_matmul_tflops": peak / 1e12}
