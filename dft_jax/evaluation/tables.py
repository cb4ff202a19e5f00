"""The paper table: runs grouped by row, mean ± sd over seeds, a human row, and the article's
reported figures beside ours, labelled "reported" (they are unsourced: never targets)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# (metric key, Markdown header, LaTeX header)
COLUMNS = (
    ("perplexity", "PPL ↓", r"PPL $\downarrow$"),
    ("diversity", "Diversity ↑", r"Div. $\uparrow$"),
    ("distinct_2", "Distinct-2 ↑", r"Dist-2 $\uparrow$"),
    ("self_bleu4", "Self-BLEU-4 ↓", r"S-BLEU $\downarrow$"),
    ("compression_ratio", "Compression ↓", r"gzip $\downarrow$"),
    ("degenerate", "Degenerate ↓", r"Degen. $\downarrow$"),
    ("zipf", "Zipf", "Zipf"),
    ("sent_len_mean", "Sent. len.", "SL mean"),
    ("sent_len_var", "Sent. len. var.", "SL var"),
    ("sent_len_w1", "Sent. len. W1 ↓", r"SL $W_1$ $\downarrow$"),
    ("unigram_l2", "Unigram L2 ↓", r"Uni $L_2$ $\downarrow$"),
    ("slop_ratio", "Slop ratio ↓", r"Slop $\downarrow$"),
    ("feature_sinkhorn", "Feature Sinkhorn ↓", r"$S_\varepsilon$ $\downarrow$"),
    ("feature_mmd", "Feature MMD² ↓", r"MMD$^2$ $\downarrow$"),
    ("embedding_mmd", "Emb. MMD² ↓", r"Emb. MMD$^2$ $\downarrow$"),
    ("mauve", "MAUVE ↑", r"MAUVE $\uparrow$"),
    ("embedding_mauve", "Emb. MAUVE ↑", r"Emb. MAUVE $\uparrow$"),
    ("judge_accuracy", "Judge acc. (proxy, 0.5 best)", "Judge acc."),
    ("win_rate", "Win rate vs SFT (proxy)", "Win vs SFT"),
)

# The article's figures (the blog post the method comes from; unsourced): SFT -> DFT, and the human sentence-length variance.
REPORTED = {
    "SFT": {"perplexity": 12.4, "diversity": 0.62, "sent_len_var": 4.2, "win_rate": 0.50},
    "DFT": {"perplexity": 11.8, "diversity": 0.71, "sent_len_var": 6.8, "win_rate": 0.68},
    "human": {"sent_len_var": 7.1},
}


def aggregate(results: Sequence[dict]) -> dict[str, dict[str, tuple[float, float, int]]]:
  """[{"row", metric: value, ...}] -> {row: {metric: (mean, sd over runs (ddof 1), n)}},
  rows in first-seen order."""
  rows: dict[str, dict[str, list[float]]] = {}
  for r in results:
    row = rows.setdefault(r["row"], {})
    for key, value in r.items():
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        row.setdefault(key, []).append(float(value))
  return {row: {k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else math.nan,
                    len(v)) for k, v in metrics.items()}
          for row, metrics in rows.items()}


def _cell(stat, latex: bool = False) -> str:
  if stat is None:
    return "–" if not latex else "--"
  mean, sd, n = stat
  digits = 3 if abs(mean) < 10 else 1
  pm = r" $\pm$ " if latex else " ± "
  return f"{mean:.{digits}f}" + (f"{pm}{sd:.{digits}f}" if n > 1 and not math.isnan(sd) else "")


def _rows(table, reported: bool):
  out = [(row, {k: v for k, v in m.items()}) for row, m in table.items()]
  if reported:
    out += [(f"{row} (reported)", {k: (v, math.nan, 1) for k, v in m.items()})
            for row, m in REPORTED.items()]
  return out


def _columns(table, reported: bool):
  present = {k for _, m in _rows(table, reported) for k in m}
  return [c for c in COLUMNS if c[0] in present]


def markdown(table: dict, *, reported: bool = True, caption: str = "") -> str:
  cols = _columns(table, reported)
  lines = ([caption, ""] if caption else []) + [
      "| run | seeds | " + " | ".join(c[1] for c in cols) + " |",
      "|---|---|" + "---|" * len(cols)]
  for row, m in _rows(table, reported):
    n = max((s[2] for s in m.values()), default=0)
    seeds = "" if row.endswith("(reported)") or row == "human" else str(n)
    lines.append(f"| {row} | {seeds} | " + " | ".join(_cell(m.get(c[0])) for c in cols) + " |")
  return "\n".join(lines) + "\n"


def latex(table: dict, *, reported: bool = True, caption: str = "") -> str:
  cols = _columns(table, reported)
  lines = [r"\begin{table}[t]", r"\centering", r"\small",
           r"\begin{tabular}{l" + "r" * len(cols) + "}", r"\toprule",
           "Run & " + " & ".join(c[2] for c in cols) + r" \\", r"\midrule"]
  for row, m in _rows(table, reported):
    name = row.replace("_", r"\_")
    lines.append(f"{name} & " + " & ".join(_cell(m.get(c[0]), True) for c in cols) + r" \\")
  lines += [r"\bottomrule", r"\end{tabular}"]
  if caption:
    lines.append(r"\caption{" + caption.replace("_", r"\_").replace("±", r"$\pm$") + "}")
  lines.append(r"\end{table}")
  return "\n".join(lines) + "\n"
