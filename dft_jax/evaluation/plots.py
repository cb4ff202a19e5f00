"""The table's figures as PNG files (matplotlib, headless)."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def sentence_lengths(human: Sequence[int], runs: Mapping[str, Sequence[int]], path: str) -> str:
  """Histograms of sentence lengths (words): the human texts against each row's samples."""
  all_lengths = np.concatenate([np.asarray(human, float)] +
                               [np.asarray(v, float) for v in runs.values()] + [[1.0]])
  bins = np.arange(0, min(np.percentile(all_lengths, 99), 120) + 3, 2)
  fig, ax = plt.subplots(figsize=(7, 4))
  ax.hist(human, bins=bins, density=True, color="0.6", label="human")
  for label, lengths in runs.items():
    ax.hist(lengths, bins=bins, density=True, histtype="step", linewidth=1.8, label=label)
  ax.set_xlabel("sentence length (words)")
  ax.set_ylabel("density")
  ax.set_title("Sentence lengths: human vs runs")
  ax.legend()
  return _save(fig, path)


def feature_gaps(gaps: Mapping[str, Mapping[str, float]], path: str) -> str:
  """Per-feature standardized gap (run mean − human mean, in human sds), one bar per row."""
  names = list(next(iter(gaps.values())))
  y = np.arange(len(names))
  height = 0.8 / max(len(gaps), 1)
  fig, ax = plt.subplots(figsize=(7, 0.28 * len(names) + 1.5))
  for i, (label, g) in enumerate(gaps.items()):
    ax.barh(y + i * height, [g[n] for n in names], height=height, label=label)
  ax.axvline(0.0, color="k", linewidth=0.8)
  ax.set_yticks(y + 0.4 - height / 2, names, fontsize=8)
  ax.invert_yaxis()
  ax.set_xlabel("standardized gap to human (sd)")
  ax.set_title("Featurizer statistics: distance from the human reference")
  ax.legend(fontsize=8)
  return _save(fig, path)


def training_curves(curves: Mapping[str, Sequence[dict]], path: str) -> str:
  """Training CE (and validation loss where logged) against the step, one line per run."""
  fig, ax = plt.subplots(figsize=(7, 4))
  for label, rows in curves.items():
    train = [(r["step"], r["ce"]) for r in rows if "ce" in r]
    if train:
      line, = ax.plot(*zip(*train), linewidth=1.2, label=f"{label} train CE")
      val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
      if val:
        ax.plot(*zip(*val), "o--", color=line.get_color(), label=f"{label} validation")
  ax.set_xlabel("step")
  ax.set_ylabel("cross-entropy (nats/token)")
  ax.set_title("Training curves")
  ax.legend(fontsize=8)
  return _save(fig, path)
