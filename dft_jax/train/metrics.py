"""Metrics: `metrics.jsonl` (one JSON object per logged step) and TensorBoard event files."""

from __future__ import annotations

import json
import math
import os

import jax
from tensorboardX import SummaryWriter


class MetricsWriter:
  """Writes from process 0 only. On resume, rows past the restored step are dropped, so a
  resumed run's file equals an uninterrupted run's."""

  def __init__(self, workdir: str, resume_step: int = 0):
    self.active = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.tb = None
    if not self.active:
      return
    if os.path.exists(self.path):
      with open(self.path) as f:
        rows = [line for line in f if line.strip()]
      keep = [r for r in rows if json.loads(r)["step"] <= resume_step]
      with open(self.path, "w") as f:
        f.writelines(keep)
    self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, metrics: dict) -> None:
    if not self.active:
      return
    row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    for k, v in row.items():
      if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
        self.tb.add_scalar(k, v, step)

  def close(self) -> None:
    if self.tb is not None:
      self.tb.close()


def _plain(v):
  v = v.item() if hasattr(v, "item") else v
  return float(v) if isinstance(v, float) or hasattr(v, "__float__") and not isinstance(v, int) \
      else v
