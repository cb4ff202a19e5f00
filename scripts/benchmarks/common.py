"""What every benchmark part shares: its options, A/B alternation, the machine's load."""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np


@dataclasses.dataclass(frozen=True)
class Options:
  """The CLI's measurement settings, passed to every part (parts read no flags)."""
  batches: int = 60        # batches timed per measurement (data_pipeline, dft_over_ce)
  reps: int = 7            # timed repetitions of each side of an A/B measurement
  ott_sizes: tuple = (256, 512, 1024, 2048, 4096, 8192)  # point-cloud sizes of the OT curve


def alternate(fns: dict, reps: int, warmup: int = 2, block: int = 1) -> dict:
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


def load_average() -> str:
  """The 1/5/15-minute load averages, printed beside every timing."""
  return "load average %.2f %.2f %.2f" % os.getloadavg()
