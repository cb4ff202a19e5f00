"""Accelerator chips: peak dense bf16 FLOP/s, HBM capacity and bandwidth per chip, from the
vendors' public spec pages. The roofline estimates of `dft_jax.aot` divide by these.

  v4    cloud.google.com/tpu/docs/v4     275 TFLOP/s,  32 GiB, 1,228 GB/s
  v5e   cloud.google.com/tpu/docs/v5e    197 TFLOP/s,  16 GiB,   819 GB/s
  v5p   cloud.google.com/tpu/docs/v5p    459 TFLOP/s,  95 GiB, 2,765 GB/s
  v6e   cloud.google.com/tpu/docs/v6e    918 TFLOP/s,  32 GiB, 1,640 GB/s
  h100  nvidia.com/en-us/data-center/h100 (SXM)  989 TFLOP/s (dense), 80 GB, 3.35 TB/s
  h200  nvidia.com/en-us/data-center/h200 (SXM)  989 TFLOP/s (dense), 141 GB, 4.8 TB/s
"""

from __future__ import annotations

import dataclasses

GIB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class Chip:
  name: str
  bf16_flops: float      # peak dense bf16 FLOP/s
  hbm_bytes: int
  hbm_bandwidth: float   # bytes/s


CHIPS = {
    "v4": Chip("TPU v4", 275e12, 32 * GIB, 1228e9),
    "v5e": Chip("TPU v5e", 197e12, 16 * GIB, 819e9),
    "v5p": Chip("TPU v5p", 459e12, 95 * GIB, 2765e9),
    "v6e": Chip("TPU v6e", 918e12, 32 * GIB, 1640e9),
    "h100": Chip("NVIDIA H100 SXM", 989e12, 80 * 10 ** 9, 3.35e12),
    "h200": Chip("NVIDIA H200 SXM", 989e12, 141 * 10 ** 9, 4.8e12),
}


def for_topology(topology: str) -> Chip:
  """The chip of a topology name such as 'v5p:4x4x4' (the part before the colon)."""
  kind = topology.split(":")[0].lower()
  if kind not in CHIPS:
    raise ValueError(f"no chip specs for {kind!r} (topology {topology!r}); known: "
                     f"{', '.join(CHIPS)}")
  return CHIPS[kind]
