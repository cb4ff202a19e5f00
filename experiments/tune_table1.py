"""Tuning the table's rows on the validation split, every row by the same rule.

  python scripts/reproduce_table.py --sweep experiments/tune_table1.py:domain=narrative \
      --root runs/tune_narrative --split validation --decodings 0.7:0.9 --num_prompts 256
  python -m experiments.tune_table1 runs/tune_narrative/table/results.json     # the choices
  (several results.json of one grid, each table scored against the same SFT run, are read as one)

The rule, fixed before any run: for each tuned row (DFT in each feature space, EBFT-style), of
its λ on the grid whose perplexity is within +3% of SFT's (the point ratio), the λ that closes
most of the SFT -> human feature-divergence gap (the gap-closed point value). The clip of the
standardized statistics (loss.feature_clip) and the samples per step (loss.dist_batch, the
second knob) are chosen by the same rule among the DFT (stats) runs. The token-level rivals
have no λ; each is tuned by the same rule over its own knob: MixCE's forward-CE weight η,
TaiLr's threshold γ, DyFT's learning rate. A row none of whose values
qualifies is said as such and takes its value of lowest perplexity (the nearest to qualifying).
The table itself is then read on the test split with the chosen values (experiments/table1.py's
arguments lam, lam_embedding, lam_both, lam_ebft, clip, samples, eta, gamma, lr_dyft).

Arguments: as table1 (domain, model, steps, lr), plus
  rows      ":"-separated of stats, embedding, both, ebft, mixce, tailr, dyft (default "stats")
  lams      ":"-separated grid of λ                                (default "0.001:0.003")
  clips     ":"-separated clips for the stats row (0 = off; the others use the first) (default "5")
  samples   ":"-separated samples per step (loss.dist_batch) for the stats row, the second knob
            (0 = the deployed 8; the others use the first)              (default "0")
  etas      MixCE's grid of η (1 is plain CE)                      (default "0.5:0.9")
  gammas    TaiLr's grid of γ (0 is plain CE)                      (default "0.001:0.01")
  dyft_lrs  DyFT's grid of learning rates                          (default "5e-06:1.5e-05")
"""

from __future__ import annotations

import itertools
import json
import re
import sys

from dft_jax import sweeps
from experiments import table1

ROWS = ("stats", "embedding", "both", "ebft", "mixce", "tailr", "dyft")
# The token-level rivals' knobs: row -> (baselines.py / table1 argument, symbol, grid argument).
KNOBS = {"mixce": ("eta", "η", "etas"), "tailr": ("gamma", "γ", "gammas"),
         "dyft": ("lr", "lr", "dyft_lrs")}
PPL_TOLERANCE = 0.03
_LABEL = re.compile(r"^(?P<row>\w+) \((?P<knob>λ|η|γ|lr)=(?P<value>[^,)]+)"
                    r"(, clip=(?P<clip>[^,)]+))?(, samples=(?P<samples>[^)]+))?\)$")


def _split_own(arg: str | None) -> tuple[dict, str]:
  """(this file's own arguments, the rest for table1)."""
  own = dict(rows="stats", lams="0.001:0.003", clips="5", samples="0", etas="0.5:0.9",
             gammas="0.001:0.01", dyft_lrs="5e-06:1.5e-05")
  kept = []
  for item in filter(None, (arg or "").split(",")):
    key = item.partition("=")[0]
    if key in own:
      own[key] = item.partition("=")[2]
    else:
      kept.append(item)
  for row in own["rows"].split(":"):
    if row not in ROWS:
      raise ValueError(f"tune_table1: unknown row {row!r}; rows: {', '.join(ROWS)}")
  return own, ",".join(kept)


def label(row: str, lam: float, clip: float, samples: int = 0) -> str:
  """The tuning table's row; samples (per step) only when not the deployed (0)."""
  return f"{row} (λ={lam:g}, clip={clip:g}" + (f", samples={samples})" if samples else ")")


def _rival_runs(row: str, grid: str, a) -> list[dict]:
  """One run per value of a token-level rival's knob, from `base` like the table's runs."""
  knob, symbol, _ = KNOBS[row]
  runs = []
  for value in (float(x) for x in grid.split(":")):
    args = dict(loss=row, domain=a.domain, model=a.model, steps=a.steps, lr=a.lr)
    args[knob] = value
    runs.append(sweeps.run(f"{row}_{knob}{value:g}_s0",
                           "experiments/baselines.py:" + sweeps.arg_string(**args),
                           row=f"{row} ({symbol}={value:g})", seed=0, init_from="{base}"))
  return runs


def get_sweep(arg=None):
  own, rest = _split_own(arg)
  a = table1._arg(rest)
  runs = [r for r in table1.get_sweep(rest) if r["name"] in ("base", "sft_s0")]
  clips = [float(c) for c in own["clips"].split(":")]
  counts = [int(n) for n in own["samples"].split(":")]
  for row in own["rows"].split(":"):
    if row in KNOBS:
      runs += _rival_runs(row, own[KNOBS[row][2]], a)
      continue
    grid = itertools.product((float(x) for x in own["lams"].split(":")),
                             clips if row == "stats" else clips[:1],
                             counts if row == "stats" else counts[:1])
    for lam, clip, samples in grid:
      a.lam, a.clip, a.samples = lam, clip, samples
      if row == "ebft":
        config = f"experiments/baselines.py:loss=ebft,{table1._dft_arg(a, clipped=False)}"
      else:
        config = f"experiments/dft.py:{table1._dft_arg(a)}" + (
            f",features={row}" if row != "stats" else "")
      name = f"{row}_lam{lam:g}_clip{clip:g}" + (f"_n{samples}" if samples else "")
      runs.append(sweeps.run(f"{name}_s0", config, row=label(row, lam, clip, samples), seed=0,
                             init_from="{base}"))
  return runs


def get_config(arg=None):
  return table1.get_config(_split_own(arg)[1])


def choose(*results: dict) -> list[dict]:
  """The rule applied to tuning tables' results.json (each its first decoding; several tables
  of one grid, all against the same SFT run and prompts, are read as one): per tuned row,
  every candidate {row, knob, value, clip, samples, ppl_ratio, gap_closed, qualifies, chosen}; a row
  with no qualifying value has its lowest-perplexity one chosen, with qualifies False."""
  comparisons = [c for r in results for c in next(iter(r["decodings"].values()))["comparisons"]]
  out = []
  for comp in comparisons:
    m = _LABEL.match(comp["row"])
    if not m:
      continue
    ppl = comp["deltas"]["perplexity_ratio"]["delta"]
    gap = comp["gap_closed"]["feature_sinkhorn"]
    out.append({"row": m["row"], "knob": m["knob"], "value": float(m["value"]),
                "clip": float(m["clip"] or 0), "samples": int(m["samples"] or 0),
                "ppl_ratio": ppl, "gap_closed": gap["value"] if gap["defined"] else None,
                "qualifies": ppl <= PPL_TOLERANCE, "chosen": False})
  for row in ROWS:
    ok = [c for c in out if c["row"] == row and c["qualifies"] and c["gap_closed"] is not None]
    if ok:
      max(ok, key=lambda c: c["gap_closed"])["chosen"] = True
    elif any(c["row"] == row for c in out):
      min((c for c in out if c["row"] == row), key=lambda c: c["ppl_ratio"])["chosen"] = True
  return out


def report(candidates: list[dict]) -> str:
  lines = ["| row | value | clip | samples/step | PPL/SFT − 1 | feature gap closed | within +3% "
           "| chosen |", "|---|---|---|---|---|---|---|---|"]
  for c in candidates:
    gap = "gap not resolved" if c["gap_closed"] is None else f"{c['gap_closed']:.2f}"
    clip = f"{c['clip']:g}" if c["knob"] == "λ" else "–"  # the DFT rows' clip only
    samples = (c["samples"] or table1.DEPLOYED["dist_batch"]) if c["knob"] == "λ" else "–"
    lines.append(f"| {c['row']} | {c['knob']}={c['value']:g} | {clip} | {samples} | "
                 f"{c['ppl_ratio']:+.4f} | {gap} | {'yes' if c['qualifies'] else 'no'} | "
                 f"{'**yes**' if c['chosen'] else ''} |")
  for row in dict.fromkeys(c["row"] for c in candidates):
    if not any(c["chosen"] and c["qualifies"] for c in candidates if c["row"] == row):
      knob = next(c["knob"] for c in candidates if c["row"] == row)
      lines.append(f"\n{row}: no {knob} on the grid keeps perplexity within +3% of SFT with a "
                   "resolved gap; chosen: its lowest-perplexity value (widen the grid)")
  return "\n".join(lines)


def _load(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


if __name__ == "__main__":
  if len(sys.argv) < 2:
    sys.exit("usage: python -m experiments.tune_table1 TUNING_TABLE/results.json [MORE ...]")
  try:
    tables = [_load(path) for path in sys.argv[1:]]
  except (OSError, ValueError) as e:  # a missing or unreadable results.json: one line
    sys.exit(f"tune_table1: {e}")
  print(report(choose(*tables)))
