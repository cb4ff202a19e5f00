r"""How much a reader has to open to follow the default DFT objective, and other simplicity
figures, measured rather than estimated.

  python scripts/objective_footprint.py [--json]

- objective files/lines: the files of dft_jax/losses/ and dft_jax/sampling.py whose code runs
  when the default DFT loss (experiments/dft.py's loss config: statistics features, Sinkhorn,
  score-function estimator) is built and traced once on a tiny model (sys.setprofile over
  `losses.make` and `jax.make_jaxpr` of the loss), with their line counts;
- score_function's parameters;
- functions with more than 8 parameters, keyword-only parameters with defaults aside, outside
  the CLIs (dft_jax/{aot,convert,evaluate,sample,stats}.py, __main__.py files, scripts/);
- `sys.path` edits in dft_jax/, experiments/ and scripts/;
- timing figures in docstrings of dft_jax/ and experiments/ (a number of ms or s, or a ratio
  such as '3x faster').
"""

import ast
import inspect
import json
import os
import re
import sys

import jax
import jax.numpy as jnp
from flax import nnx

from dft_jax import losses
from dft_jax.losses import dft as dft_lib
from dft_jax.losses import reference
from dft_jax.models import Decoder, ModelConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout measured
CLI_FILES = re.compile(r"(^dft_jax/(aot|convert|evaluate|sample|stats)\.py$|__main__\.py$|"
                       r"^scripts/)")
TIMING = re.compile(r"\d+(\.\d+)?\s*(ms\b|s\b|[x×]\s*(faster|cheaper|slower|less|more|the)\b"
                    r"|[x×]$)")


def objective_files() -> dict[str, int]:
  """{file: lines} of the objective's own files that run for the default DFT loss."""
  cfg = ModelConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_layers=2,
                    num_heads=4, num_kv_heads=2, head_dim=8)
  loss_cfg = dft_lib.config(gen_len=8, prompt_len=4, dist_batch=4)
  model = Decoder(cfg, rngs=nnx.Rngs(0))
  batch = {"tokens": jnp.ones((4, 16), jnp.int32), "segment_ids": jnp.ones((4, 16), jnp.int32),
           "positions": jnp.tile(jnp.arange(16), (4, 1)),
           "loss_mask": jnp.ones((4, 16), jnp.float32)}
  ran = set()

  def profile(frame, event, arg):
    del arg
    if event == "call":
      ran.add(os.path.abspath(frame.f_code.co_filename))

  sys.setprofile(profile)
  try:
    ref = reference.placeholder(loss_cfg, cfg, bank_rows=64)
    context = losses.Context(None, "", None, reference=ref, eos_id=1)
    loss_fn = losses.make(loss_cfg, cfg, context)
    jax.make_jaxpr(lambda m: loss_fn(m, batch, jax.random.key(0), 0))(model)
  finally:
    sys.setprofile(None)
  own = [f for f in ran if f.startswith(os.path.join(ROOT, "dft_jax", "losses")) or
         f == os.path.join(ROOT, "dft_jax", "sampling.py")]
  return {os.path.relpath(f, ROOT): sum(1 for _ in open(f)) for f in sorted(own)}


def _python_files(*dirs):
  for d in dirs:
    for base, _, names in os.walk(os.path.join(ROOT, d)):
      for name in sorted(names):
        if name.endswith(".py"):
          yield os.path.relpath(os.path.join(base, name), ROOT)


def _counted_params(args: ast.arguments) -> int:
  kw_without_default = sum(d is None for d in args.kw_defaults)
  positional = [a for a in args.posonlyargs + args.args if a.arg not in ("self", "cls")]
  return len(positional) + kw_without_default + bool(args.vararg) + bool(args.kwarg)


def wide_functions() -> list[str]:
  out = []
  for path in _python_files("dft_jax", "experiments"):
    if CLI_FILES.search(path):
      continue
    for node in ast.walk(ast.parse(open(os.path.join(ROOT, path)).read())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        n = _counted_params(node.args)
        if n > 8:
          out.append(f"{path}:{node.lineno} {node.name} ({n})")
  return out


def sys_path_edits() -> list[str]:
  out = []
  for path in _python_files("dft_jax", "experiments", "scripts"):
    for i, line in enumerate(open(os.path.join(ROOT, path)), 1):
      if re.search(r"sys\.path\.(insert|append)|sys\.path\[", line):
        out.append(f"{path}:{i}")
  return out


def docstring_timings() -> list[str]:
  out = []
  for path in _python_files("dft_jax", "experiments"):
    tree = ast.parse(open(os.path.join(ROOT, path)).read())
    for node in ast.walk(tree):
      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        doc = ast.get_docstring(node) or ""
        for line in doc.splitlines():
          if TIMING.search(line):
            out.append(f"{path}: {line.strip()[:90]}")
  return out


def main():
  files = objective_files()
  report = {
      "objective_files": files, "objective_file_count": len(files),
      "objective_lines": sum(files.values()),
      "score_function_params": len(inspect.signature(dft_lib.score_function).parameters),
      "wide_functions": wide_functions(), "sys_path_edits": sys_path_edits(),
      "docstring_timings": docstring_timings()}
  if "--json" in sys.argv:
    print(json.dumps(report, indent=1))
    return
  print(f"default objective: {len(files)} files, {report['objective_lines']} lines")
  for f, n in files.items():
    print(f"  {n:5d}  {f}")
  print(f"score_function parameters: {report['score_function_params']}")
  for key in ("wide_functions", "sys_path_edits", "docstring_timings"):
    print(f"{key}: {len(report[key])}")
    for item in report[key]:
      print(f"  {item}")


if __name__ == "__main__":
  main()
