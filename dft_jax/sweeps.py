r"""Sweeps: the runs behind a paper table, as data, big_vision style.

  python scripts/sweep.py experiments/table1.py:seeds=3 --root runs/table1           # run here
  python scripts/sweep.py experiments/ablations.py:family=lam --root runs/abl --print  # commands

A sweep file is an experiments file with `get_sweep(arg=None) -> list[dict]`; each run is

  {"name": "dft_s0",                      # unique, filesystem-safe: its workdir is ROOT/NAME
   "row": "DFT (score-function)",         # the table row it reports into
   "seed": 0,
   "config": "experiments/dft.py:domain=literary,lam=0.05",  # the --config argument
   "overrides": {"seed": 0, "init_from": "{base}"},          # --config.KEY=VALUE
   "after": ["base"]}                     # runs it needs, all earlier in the list

"{NAME}" in `config` or in a string override is replaced by ROOT/NAME, the workdir of run NAME
(which then counts as a dependency). A run is done when its workdir holds the checkpoint of
its config's last step (the train loop always saves at total_steps); `run_all` skips those, so
rerunning a sweep resumes it, and it refuses a workdir whose checkpoints belong to another config.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from typing import Callable

from dft_jax.models import pretrained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = "sweep.json"
LOG_FILE = "train.log"  # the run's output, appended to on each attempt, in its workdir
KEYS = ("name", "row", "seed", "config", "overrides", "after")
DERIVED = ("workdir", "command")  # in the manifest beside each run; validate() drops them
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_REF = re.compile(r"\{([^{}]*)\}")


class SweepError(RuntimeError):
  """A run that failed or stopped early; the message names it and says how to go on."""


# --- building sweeps -----------------------------------------------------------------------


def arg_string(**kw) -> str:
  """arg_string(domain='news', lam=0.2) -> 'domain=news,lam=0.2' (experiments/base.parse_arg)."""
  return ",".join(f"{k}={v}" for k, v in kw.items())


def run(name: str, config: str, *, row: str | None = None, seed: int | None = None,
        after=(), **overrides) -> dict:
  """One run; `seed` also goes into the overrides. Dotted override keys as `**{'loss.x': 1}`."""
  if seed is not None:
    overrides = {"seed": seed, **overrides}
  return {"name": name, "row": row or name, "seed": seed or 0, "config": config,
          "overrides": overrides, "after": list(after)}


def base_run(model: str = "tiny", steps: int = 300, name: str = "base",
             domain: str = "literary") -> dict:
  """The run every fine-tune of a sweep starts from (`init_from="{base}"`): a pretraining of a
  preset, or, for a pretrained model (`models.pretrained.MODELS`), a zero-step run that
  records the fetched model as it is (`steps` is then ignored)."""
  if model in pretrained.MODELS:
    return run(name, "experiments/sft.py:" + arg_string(domain=domain, model=model, steps=0),
               row="base")
  return run(name, "experiments/pretrain_tiny.py:" + arg_string(model=model, steps=steps),
             row="base")


def _refs(run_: dict) -> list[str]:
  texts = [run_["config"]] + [v for v in run_["overrides"].values() if isinstance(v, str)]
  return [m for t in texts for m in _REF.findall(t)]


def validate(runs, where: str = "sweep") -> list[dict]:
  """Checked, normalized copies of the runs: defaults filled in, "{NAME}" references added to
  `after`. Every problem is a one-line ValueError naming the run."""
  if not isinstance(runs, (list, tuple)) or not runs:
    raise ValueError(f"{where}: get_sweep must return a non-empty list of runs, got "
                     f"{type(runs).__name__}")
  out, seen = [], set()
  for i, r in enumerate(runs):
    if not isinstance(r, dict) or not isinstance(r.get("name"), str):
      raise ValueError(f"{where}: run {i} is not a dict with a 'name'")
    name = r["name"]
    bad = lambda msg: ValueError(f"{where}: run {name!r}: {msg}")  # noqa: E731
    if not _NAME.fullmatch(name):
      raise bad("the name must be filesystem-safe: letters, digits, '_', '.', '-'")
    if name in seen:
      raise bad("duplicate name")
    unknown = set(r) - set(KEYS) - set(DERIVED)
    if unknown:
      raise bad(f"unknown key(s) {sorted(unknown)}; known: {', '.join(KEYS)}")
    if not isinstance(r.get("config"), str) or not r["config"]:
      raise bad("'config' must be the --config argument, e.g. 'experiments/dft.py:lam=0.1'")
    overrides = dict(r.get("overrides") or {})
    for key, value in overrides.items():
      if not isinstance(key, str) or not _FIELD.fullmatch(key):
        raise bad(f"override key {key!r} is not a dotted config field")
      if isinstance(value, list):
        overrides[key] = value = tuple(value)
      if not isinstance(value, (str, int, float, bool, tuple)):
        raise bad(f"override {key}={value!r}: only str, int, float, bool and tuple pass "
                  "through --config.KEY=VALUE")
    seed = r.get("seed", overrides.get("seed", 0))
    if not isinstance(seed, int) or overrides.get("seed", seed) != seed:
      raise bad(f"seed {seed!r} must be an int equal to overrides['seed'] "
                f"({overrides.get('seed')!r})")
    after = r.get("after") or []
    if isinstance(after, str) or not all(isinstance(a, str) for a in after):
      raise bad("'after' must be a list of run names")
    norm = {"name": name, "row": str(r.get("row") or name), "seed": seed, "config": r["config"],
            "overrides": overrides, "after": list(after)}
    for ref in _refs(norm):
      if ref not in norm["after"]:
        norm["after"].append(ref)
    for dep in norm["after"]:
      if dep == name:
        raise bad("depends on itself")
      if dep not in seen:
        known = any(x.get("name") == dep for x in runs if isinstance(x, dict))
        raise bad(f"depends on {dep!r}, which " +
                  ("comes later in the sweep" if known else "is not a run of the sweep"))
    seen.add(name)
    out.append(norm)
  return out


def _load_module(path: str):
  """Imports a .py file as config_flags does (relative to the cwd; else to the repo root)."""
  where = path if os.path.isfile(path) or os.path.isabs(path) else os.path.join(REPO, path)
  if not os.path.isfile(where):
    raise ValueError(f"sweep file {path!r} does not exist")
  name = "sweep_" + re.sub(r"\W", "_", os.path.abspath(where))
  spec = importlib.util.spec_from_file_location(name, where)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load(path: str) -> list[dict]:
  """'experiments/table1.py[:arg]' -> its validated runs (`get_sweep(arg)`)."""
  file, sep, arg = path.partition(":")
  module = _load_module(file)
  if not hasattr(module, "get_sweep"):
    raise ValueError(f"{file} has no get_sweep(arg=None)")
  try:
    runs = module.get_sweep(arg) if sep else module.get_sweep()
  except ValueError as e:  # a bad arg: say whose
    raise ValueError(f"{path}: {e}") from None
  return validate(runs, where=path)


# --- commands ------------------------------------------------------------------------------


def workdir(run_: dict, root: str) -> str:
  return os.path.join(root, run_["name"])


def _resolve(text: str, root: str) -> str:
  return _REF.sub(lambda m: os.path.join(root, m.group(1)), text)


def flag_value(value) -> str:
  """A config value as config_flags parses it back: bools as true/false, tuples as Python
  literals (its tuple parser runs ast.literal_eval), strings in double quotes so that the
  shell-quoted line stays readable: ("word_frequency", "entropy"), a 1-tuple with its comma."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, (tuple, list)):
    items = [json.dumps(v) if isinstance(v, str) else flag_value(v) for v in value]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
  return str(value)


def train_args(run_: dict, root: str) -> list[str]:
  """The train CLI's arguments for the run, without the interpreter and the --workdir."""
  args = [f"--config={_resolve(run_['config'], root)}"]
  for key, value in run_["overrides"].items():
    value = _resolve(value, root) if isinstance(value, str) else value
    args.append(f"--config.{key}={flag_value(value)}")
  return args


def command(run_: dict, root: str, python: str = "python") -> list[str]:
  """argv of `python -m dft_jax.train ... --workdir=ROOT/NAME`, to run from the repo root."""
  return [python, "-m", "dft_jax.train", *train_args(run_, root),
          f"--workdir={workdir(run_, root)}"]


def build_config(run_: dict, root: str):
  """The run's ConfigDict, made by ml_collections config_flags from the same arguments the
  train CLI gets (lock_config=True as there): a typo'd override or a value of the wrong type
  fails here, before any training."""
  from absl import flags
  from ml_collections import config_flags
  args = train_args(run_, root)
  file, sep, arg = args[0][len("--config="):].partition(":")
  if not os.path.isabs(file):  # the train CLI runs from the repo root
    args[0] = f"--config={os.path.join(REPO, file)}{sep}{arg}"
  argv = ["train", *args]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "config", flag_values=values,
                                  lock_config=True, sys_argv=argv)
  path = list(sys.path)  # experiments files put the repo root on it at each load
  try:
    values(argv)
  except Exception as e:  # absl wraps parser errors; keep the first line
    raise ValueError(f"run {run_['name']!r}: {str(e).splitlines()[0]}") from None
  finally:
    sys.path[:] = path
  return values.config


# --- manifest ------------------------------------------------------------------------------


def write_manifest(runs: list[dict], root: str, sweep: str) -> str:
  """ROOT/sweep.json: the sweep file, its arg, and each run with its workdir and command."""
  file, _, arg = sweep.partition(":")
  entries = [{**r, "overrides": dict(r["overrides"]), "workdir": workdir(r, root),
              "command": command(r, root)} for r in runs]
  os.makedirs(root, exist_ok=True)
  path = os.path.join(root, MANIFEST)
  with open(path + ".tmp", "w") as f:
    json.dump({"sweep": file, "arg": arg, "root": root, "runs": entries}, f, indent=2,
              ensure_ascii=False)
  os.replace(path + ".tmp", path)
  return path


def read_manifest(root: str) -> dict:
  """{'sweep', 'arg', 'root', 'runs'}; the runs validated (tuples restored), so
  `run_all(read_manifest(root)['runs'], root)` reruns the sweep as written."""
  path = os.path.join(root, MANIFEST)
  if not os.path.isfile(path):
    raise ValueError(f"no sweep manifest {path}")
  with open(path) as f:
    manifest = json.load(f)
  runs = validate(manifest["runs"], where=path)
  for run_, entry in zip(runs, manifest["runs"]):
    run_.update({k: entry[k] for k in DERIVED if k in entry})
  manifest["runs"] = runs
  return manifest


# --- running -------------------------------------------------------------------------------


def _checkpoint_steps(workdir_: str) -> list[int]:
  """Committed checkpoint steps (orbax writes into '<step>.orbax-checkpoint-tmp-*' first)."""
  where = os.path.join(workdir_, "checkpoints")
  if not os.path.isdir(where):
    return []
  return sorted(int(d) for d in os.listdir(where)
                if d.isdigit() and os.path.isdir(os.path.join(where, d)))


def _saved_config(workdir_: str) -> dict | None:
  path = os.path.join(workdir_, "config.json")
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def finished(workdir_: str) -> bool:
  """Whether the run in `workdir_` reached its total_steps: the loop always checkpoints the
  last step, and a preempted run (also exit 0) stops before it."""
  saved = _saved_config(workdir_)
  return saved is not None and saved.get("total_steps") in _checkpoint_steps(workdir_)


def _differences(saved, wanted, prefix="") -> list[str]:
  """Leaves present in both configs that differ (a field added to the code since is not one)."""
  if isinstance(saved, dict) and isinstance(wanted, dict):
    return [d for k in saved.keys() & wanted.keys()
            for d in _differences(saved[k], wanted[k], f"{prefix}{k}.")]
  return [] if saved == wanted else [f"{prefix[:-1]}: {saved!r} -> {wanted!r}"]


def check_workdir(run_: dict, root: str) -> None:
  """A workdir with checkpoints must hold this run's config (init_from aside: it moves with the
  root); else resuming or skipping it would report another run's numbers."""
  wd = workdir(run_, root)
  saved = _saved_config(wd)
  if saved is None or not _checkpoint_steps(wd):
    return
  wanted = json.loads(build_config(run_, root).to_json())
  diffs = sorted(d for d in _differences(saved, wanted) if not d.startswith("init_from:"))
  if diffs:
    raise ValueError(f"run {run_['name']!r}: {wd} holds checkpoints of another config "
                     f"({'; '.join(diffs[:3])}); use another root or delete that workdir")


def check(runs: list[dict], root: str) -> None:
  """Before any run: every config builds, and every existing workdir holds its own run."""
  for run_ in runs:
    build_config(run_, root)
    check_workdir(run_, root)


def _execute(argv: list[str], cwd: str, log_path: str) -> int:
  """Runs argv, its output both to our stdout and appended to log_path; the exit status."""
  with open(log_path, "a") as log_file:
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    for line in proc.stdout:
      sys.stdout.write(line)
      sys.stdout.flush()
      log_file.write(line)
    return proc.wait()


def run_all(runs: list[dict], root: str, log: Callable[[str], None] = print,
            python: str | None = None, execute: Callable | None = None) -> None:
  """Runs the sweep in order from the repo root, one `python -m dft_jax.train` at a time;
  finished runs are skipped. Stops at the first failure (SweepError naming the run); the runs
  done before it stay done, so rerunning resumes. `execute(argv, cwd, log_path) -> exit status`
  replaces the subprocess (tests)."""
  runs = validate(runs)
  root = os.path.abspath(root)
  python = python or sys.executable
  execute = execute or _execute
  check(runs, root)
  shown = os.path.basename(python)
  for i, run_ in enumerate(runs, 1):
    name, wd = run_["name"], workdir(run_, root)
    prefix = f"[{i}/{len(runs)}] {name}"
    if finished(wd):
      log(f"{prefix}: done, skipped ({wd})")
      continue
    argv = command(run_, root, python)
    log(f"{prefix}: {shlex.join([shown, *argv[1:]])}")
    os.makedirs(wd, exist_ok=True)
    status = execute(argv, REPO, os.path.join(wd, LOG_FILE))
    if status != 0:
      raise SweepError(f"run {name!r} ({run_['row']}) failed with exit status {status}; its "
                       f"output is in {os.path.join(wd, LOG_FILE)}. Runs before it are done: "
                       "rerun the sweep to resume from it")
    if not finished(wd):
      raise SweepError(f"run {name!r} exited before its last step (preempted?); rerun the "
                       "sweep to resume it")
  log(f"sweep done: {len(runs)} runs in {root}")
