"""Ahead-of-time compiles of a run's own jitted steps for a TPU slice on any host (MaxText's
train_compile idea): the devices of `jax.experimental.topologies`, the state and batch as
abstract arrays carrying their shardings, `jit(step).lower(...).compile()`; then what the
compiler says of each step per chip (bytes, FLOPs) and a roofline estimate of its time.

FLOPs are counted twice, because XLA's cost analysis counts the body of a loop once (the
fused head's scan, the decode loop of the DFT step): `xla_flops` is its figure, `flops` walks
the step's jaxpr and multiplies loop bodies by their trip counts (shard_map bodies by their
shards, Pallas kernels by their grid, dense: a causal kernel skips about half of it).
"""

from __future__ import annotations

import dataclasses
import math
import re
import time

import jax
import jax.numpy as jnp
import numpy as np

from dft_jax.models.config import ModelConfig
from dft_jax.train import chips as chips_lib
from dft_jax.train import loop
from dft_jax.train import mesh as mesh_lib
from dft_jax.train.state import TrainState

BATCH_FIELDS = {"tokens": jnp.int32, "segment_ids": jnp.int32, "positions": jnp.int32,
                "loss_mask": jnp.float32}


def topology_devices(topology: str) -> list:
  """The devices of a TPU topology such as 'v5p:4x4x4' (libtpu; no TPU needed)."""
  from jax.experimental import topologies
  try:
    return list(topologies.get_topology_desc(platform="tpu", topology_name=topology).devices)
  except Exception as e:  # libtpu raises its own status errors
    raise ValueError(f"topology {topology!r} cannot be resolved: {str(e).splitlines()[0]} "
                     "(is libtpu installed? pip install 'jax[tpu]==<your jax version>')") from None


def abstract_batch(mesh, rows: int, seq_len: int) -> dict:
  """The train batch as ShapeDtypeStructs with the batch sharding."""
  sharding = mesh_lib.batch_sharding(mesh)
  return {k: jax.ShapeDtypeStruct((rows, seq_len), dt, sharding=sharding)
          for k, dt in BATCH_FIELDS.items()}


def _subjaxprs(params: dict):
  for value in params.values():
    for v in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(v, jax.extend.core.ClosedJaxpr):
        yield v.jaxpr
      elif isinstance(v, jax.extend.core.Jaxpr):
        yield v


def jaxpr_flops(jaxpr) -> float:
  """Matmul FLOPs (2 per multiply-add) of a jaxpr, loop bodies times their trip counts, the
  larger branch of a cond, shard_map bodies times their shards, Pallas bodies times their
  grid. Elementwise work is left out (it is bandwidth, not FLOPs, on these chips)."""
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      (contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[i] for i in contract)
      continue
    subs = [jaxpr_flops(j) for j in _subjaxprs(eqn.params)]
    if not subs:
      continue
    if name == "cond":
      total += max(subs)
      continue
    times = 1
    if name == "scan":
      times = eqn.params["length"]
    elif name == "shard_map":
      mesh, manual = eqn.params["mesh"], eqn.params.get("manual_axes", ())
      times = math.prod(mesh.shape[a] for a in manual) if manual else 1
    elif name == "pallas_call":
      times = math.prod(eqn.params["grid_mapping"].grid)
    total += times * sum(subs)
  return total


def analytic_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
  """The loop's model FLOPs per token (6N + causal-dense attention 12 L T N H), plus one more
  forward of the blocks (2 N_blocks + 4 L T N H) when every block is recomputed (remat
  'full'; the fused head forms its gradient in its one pass): what a training step costs."""
  flops = loop.flops_per_token(cfg, seq_len)
  if cfg.remat_policy == "full":
    embed = cfg.vocab_size * cfg.hidden_size
    block_params = cfg.num_params - embed * (1 if cfg.tie_word_embeddings else 2)
    flops += 2 * block_params + 4 * cfg.num_layers * seq_len * cfg.num_heads * cfg.head_dim
  return float(flops)


@dataclasses.dataclass
class StepReport:
  """One compiled step on one topology; bytes per chip, FLOPs over the whole slice."""
  compile_s: float
  argument_bytes: int
  output_bytes: int
  alias_bytes: int
  temp_bytes: int
  code_bytes: int
  peak_bytes: int
  hbm_bytes: int
  fits: bool
  flops: float              # jaxpr count, loops times their trip counts, whole slice
  xla_flops: float          # XLA's cost analysis, whole slice (loop bodies once)
  bytes_accessed: float     # XLA's, per chip (loop bodies once: a lower bound)
  tokens: int               # CE tokens per step
  flops_per_token: float
  analytic_flops_per_token: float
  est_step_s: float
  est_mfu: float
  dist_batch: int = 0       # DFT prompts per step (0: a CE step)

  def line(self, name: str) -> str:
    g = lambda b: f"{b / chips_lib.GIB:.2f} GiB"  # noqa: E731
    return (f"{name}: peak {g(self.peak_bytes)} of {g(self.hbm_bytes)} HBM per chip "
            f"({'fits' if self.fits else 'DOES NOT FIT'}; arguments {g(self.argument_bytes)}, "
            f"temporaries {g(self.temp_bytes)}, outputs {g(self.output_bytes)}, code "
            f"{g(self.code_bytes)}) | {self.flops:.3e} FLOPs/step, "
            f"{self.flops_per_token:.3e}/token (analytic {self.analytic_flops_per_token:.3e}; "
            f"XLA {self.xla_flops / self.tokens:.3e}) | roofline estimate "
            f"{1e3 * self.est_step_s:.1f} ms/step, MFU {100 * self.est_mfu:.1f}% | "
            f"compiled in {self.compile_s:.0f} s")


class OutOfMemory:
  """A step the TPU compiler refused for HBM: its message says what the step needs."""

  def __init__(self, message: str):
    self.message = message.splitlines()[0]
    needed = re.findall(r"\(([\d.]+)([KMGT])\)", self.message)
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    self.needed_bytes = int(float(needed[0][0]) * scale[needed[0][1]]) if needed else 0


def compile_step(step_fn, state: TrainState, batch: dict, mesh):
  """(compiled or OutOfMemory, jaxpr FLOPs, seconds) of a jitted `step_fn(state, batch)` on
  `mesh`. The TPU compiler itself rejects a step whose temporaries exceed HBM."""
  start = time.perf_counter()
  with jax.set_mesh(mesh):
    flops = jaxpr_flops(jax.make_jaxpr(step_fn)(state, batch).jaxpr)
    try:
      compiled = step_fn.lower(state, batch).compile()
    except jax.errors.JaxRuntimeError as e:
      if "RESOURCE_EXHAUSTED" not in str(e):
        raise
      compiled = OutOfMemory(str(e))
  return compiled, flops, time.perf_counter() - start


def report(compiled, flops: float, seconds: float, *, chips: int, chip: chips_lib.Chip,
           tokens: int, model_cfg: ModelConfig, seq_len: int) -> StepReport:
  """The compiler's figures of one step and a roofline estimate: time = max(FLOPs / peak,
  bytes accessed / HBM bandwidth) per chip; MFU = model FLOPs (6N + attention of the CE
  tokens) / (time x chips x peak)."""
  analytic = analytic_flops_per_token(model_cfg, seq_len)
  if isinstance(compiled, OutOfMemory):  # the compiler's figure: temporaries alone
    return StepReport(seconds, 0, 0, 0, compiled.needed_bytes, 0, compiled.needed_bytes,
                      chip.hbm_bytes, False, flops, 0.0, 0.0, tokens, flops / tokens, analytic,
                      float("nan"), float("nan"))
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
          + mem.temp_size_in_bytes + mem.generated_code_size_in_bytes)
  bytes_accessed = float(cost.get("bytes accessed", 0.0))
  est = max(flops / chips / chip.bf16_flops, bytes_accessed / chip.hbm_bandwidth)
  model_flops = loop.flops_per_token(model_cfg, seq_len)
  return StepReport(
      compile_s=seconds, argument_bytes=mem.argument_size_in_bytes,
      output_bytes=mem.output_size_in_bytes, alias_bytes=mem.alias_size_in_bytes,
      temp_bytes=mem.temp_size_in_bytes, code_bytes=mem.generated_code_size_in_bytes,
      peak_bytes=peak, hbm_bytes=chip.hbm_bytes, fits=peak <= chip.hbm_bytes, flops=flops,
      xla_flops=float(cost.get("flops", 0.0)) * chips, bytes_accessed=bytes_accessed,
      tokens=tokens, flops_per_token=flops / tokens, analytic_flops_per_token=analytic,
      est_step_s=est, est_mfu=model_flops * tokens / (est * chips * chip.bf16_flops))


def state_bytes(abstract: TrainState) -> int:
  return sum(math.prod(a.shape) * np.dtype(a.dtype).itemsize for a in jax.tree.leaves(abstract))


def candidate_meshes(chips: int) -> list[tuple[int, int, int]]:
  """The standard splits to try when a step does not fit: all-FSDP, then FSDP x tensor."""
  return [(1, chips // t, t) for t in (1, 2, 4, 8, 16) if chips % t == 0 and t <= chips]

