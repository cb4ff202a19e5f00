r"""The pod-scale table of BENCHMARKS.md: `python -m dft_jax.aot --json` for each (preset,
topology), one after another, then a Markdown table of what the compiler says and the
roofline estimates (compiler figures and estimates, not measurements).

  python scripts/aot_table.py --out runs/aot                      # the committed table
  python scripts/aot_table.py --out runs/aot --only llama3.2-1b@v5e:2x4

Each combination's JSON is kept in --out; a rerun reuses those that exist.
"""

import argparse
import json
import os
import subprocess
import sys

COMBOS = (
    ("llama3.2-1b", "v5e:2x4", "stats,both"),
    ("llama3.1-8b", "v5p:4x4x4", "stats,both"),
    ("llama3.2-1b", "v6e:4x4", "stats"),
    ("llama3.1-8b", "v6e:4x4", "stats"),
    ("llama3.1-8b", "v5e:2x2", "stats"),   # does not fit: the command exits 1
)


def run(model: str, topology: str, features: str, out: str) -> dict:
  path = os.path.join(out, f"{model}@{topology.replace(':', '_')}.json")
  if not os.path.isfile(path):
    cmd = [sys.executable, "-m", "dft_jax.aot", f"--config=experiments/dft.py:model={model}",
           f"--topology={topology}", f"--dft_features={features}", "--json"]
    print("$", " ".join(cmd[1:]), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = []
    for line in proc.stdout:  # each step's line as it is compiled
      if line.strip():
        lines.append(line.rstrip())
        if not line.startswith("{"):
          print(line.rstrip(), flush=True)
    result = json.loads(lines[-1])
    result["exit_code"] = proc.wait()
    with open(path, "w") as f:
      json.dump(result, f, indent=1)
  with open(path) as f:
    return json.load(f)


def table(results: list[tuple[str, dict]]) -> str:
  rows = ["| preset | topology | mesh | step | peak GiB/chip | HBM GiB | fits | "
          "FLOPs/token (jaxpr) | analytic | est. step | est. MFU | compile s |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for model, r in results:
    mesh = "x".join(str(v) for v in r["mesh"].values())
    for step, s in r["steps"].items():
      est = ("– | –" if s["est_step_s"] is None else
             f"{1e3 * s['est_step_s']:.0f} ms | {100 * s['est_mfu']:.0f}%")
      peak = f"{s['peak_bytes'] / 2**30:.1f}" + ("" if s["argument_bytes"] else " (temps)")
      rows.append(f"| {model} | {r['topology']} | {mesh} | {step} | {peak} | "
                  f"{s['hbm_bytes'] / 2**30:.0f} | {'yes' if s['fits'] else '**no**'} | "
                  f"{s['flops_per_token']:.2e} | {s['analytic_flops_per_token']:.2e} | {est} | "
                  f"{s['compile_s']:.0f} |")
  return "\n".join(rows)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--only", default="", help="model@topology[,...]")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  wanted = set(filter(None, args.only.split(",")))
  results = [(m, run(m, t, f, args.out)) for m, t, f in COMBOS
             if not wanted or f"{m}@{t}" in wanted]
  print(table(results))


if __name__ == "__main__":
  main()
