"""Ahead-of-time compiles for a TPU slice on this CPU host (libtpu, no TPU): the run's own
steps compile, fit, and stay within stated per-chip bounds (a memory-regression guard), the
FLOP count follows the analytic one, and a step that cannot fit is one line and exit 1."""

import json
import os
import subprocess
import sys

import pytest

from dft_jax.models.config import ModelConfig, platform_numerics
from dft_jax.train import aot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# tiny's layers with a 32 K vocabulary, so that [B, T, V] float32 logits per chip (4 rows x
# 256 x 32768 x 4 B = 128 MiB) would dwarf everything the steps hold today
VOCAB, SEQ, ROWS = 32768, 256, 4
LOGITS_BYTES = ROWS * SEQ * VOCAB * 4
# per-chip peak bounds, MiB: measured 45.9 (CE) and 103.0 (DFT) with scanned layers and
# row-sharded activations (BENCHMARKS.md, pod scale), plus ~30%; a step that materializes
# the [B, T, V] logits passes them
PEAK_MIB = {"ce": 60, "dft": 135}


def _aot(*args):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  done = subprocess.run([sys.executable, "-m", "dft_jax.aot", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900)
  return done.returncode, [l for l in done.stdout.splitlines() if l.strip()], done.stderr


@pytest.fixture(scope="module")
def tiny_v5e():
  code, lines, err = _aot("--config=experiments/dft.py:model=tiny",
                          f"--config.model.vocab_size={VOCAB}", "--topology=v5e:2x2",
                          f"--seq_len={SEQ}", f"--rows_per_chip={ROWS}", "--json")
  assert code == 0, err[-3000:]
  return json.loads(lines[-1])


def test_tiny_steps_compile_for_v5e_within_their_memory_bounds(tiny_v5e):
  assert tiny_v5e["topology"] == "v5e:2x2" and tiny_v5e["chips"] == 4
  assert tiny_v5e["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1}
  for name, bound in PEAK_MIB.items():
    step = tiny_v5e["steps"][name]
    assert step["fits"] and step["hbm_bytes"] == 16 * 2**30
    assert step["peak_bytes"] <= bound * 2**20, (name, step["peak_bytes"] / 2**20)
    assert bound * 2**20 < step["peak_bytes"] + LOGITS_BYTES  # the logits would not pass
  assert tiny_v5e["steps"]["dft"]["dist_batch"] == 16


def test_compiled_flops_follow_the_analytic_count(tiny_v5e):
  """The jaxpr count (loops times their trip counts) of the CE step against 6N + attention
  + the recomputed forward; XLA's own count sees each loop body once, so it is lower."""
  ce = tiny_v5e["steps"]["ce"]
  assert 0.8 <= ce["flops_per_token"] / ce["analytic_flops_per_token"] <= 1.25
  assert ce["xla_flops"] < ce["flops"]
  dft = tiny_v5e["steps"]["dft"]
  assert dft["flops"] > ce["flops"]  # the decode and the sample scoring come on top
  assert 0 < ce["est_mfu"] < 1 and ce["est_step_s"] > 0


def test_a_step_that_cannot_fit_is_one_line_and_exit_1():
  code, lines, err = _aot("--config=experiments/sft.py:model=tiny", "--topology=v5e:2x2",
                          "--config.model.hidden_size=1024", "--config.model.head_dim=256",
                          "--seq_len=2048", "--rows_per_chip=1024", "--steps=ce")
  assert code == 1, err[-3000:]
  failures = [l for l in lines if "does not fit" in l]
  assert len(failures) == 1 and failures[0].startswith("does not fit on v5e:2x2 (16 GiB")
  assert "ce needs" in failures[0] and "no standard fsdp/tensor mesh" in failures[0]


def test_jaxpr_flops_counts_loop_bodies_times_their_trip_counts():
  import jax
  import jax.numpy as jnp
  x = jnp.ones((8, 16))
  w = jnp.ones((16, 16))
  scanned = lambda x: jax.lax.scan(lambda c, _: (c @ w, None), x, None, length=5)[0]
  cond = lambda x: jax.lax.cond(x.sum() > 0, lambda: x @ w @ w, lambda: x @ w)
  assert aot.jaxpr_flops(jax.make_jaxpr(scanned)(x).jaxpr) == 5 * 2 * 8 * 16 * 16
  assert aot.jaxpr_flops(jax.make_jaxpr(cond)(x).jaxpr) == 2 * 2 * 8 * 16 * 16


def test_analytic_flops_count_a_full_recompute_as_one_more_forward():
  cfg = ModelConfig(vocab_size=100, hidden_size=8, intermediate_size=16, num_layers=2,
                    num_heads=2, num_kv_heads=1, head_dim=4)
  none, full = (aot.analytic_flops_per_token(cfg.replace(remat_policy=p), 32)
                for p in ("none", "full"))
  blocks = cfg.num_params - 100 * 8 * 2
  attention = 2 * 32 * 2 * 4
  assert full - none == 2 * blocks + 4 * attention


def test_auto_numerics_by_platform():
  auto = dict(dtype="auto", remat_policy="auto", attention_impl="auto", layer_loop="auto",
              lora_rank=0)
  assert platform_numerics(auto, "tpu") == dict(dtype="bfloat16", remat_policy="full",
                                                attention_impl="splash", layer_loop="scan",
                                                lora_rank=0)
  assert platform_numerics(auto, "cuda")["attention_impl"] == "cudnn"
  assert platform_numerics(auto, "cpu") == dict(dtype="float32", remat_policy="none",
                                                attention_impl="xla", layer_loop="unrolled",
                                                lora_rank=0)
  assert platform_numerics({**auto, "dtype": "float32"}, "tpu")["dtype"] == "float32"


def test_a_bad_topology_or_mesh_is_one_line():
  for args, what in ((["--topology=v9z:2x2"], "v9z"), (["--topology=v5e:2x2", "--mesh=fsdp:3"],
                                                       "mesh_shape")):
    code, lines, err = _aot("--config=experiments/sft.py:model=tiny", "--steps=ce", *args)
    last = err.strip().splitlines()[-1]
    assert code == 1 and last.startswith("aot: error:") and what in last, err[-2000:]
