"""Writing a sweep's manifest and running its runs in order, resumably.

A run is done when its workdir holds the checkpoint of its config's last step (the train loop
always saves at total_steps); `run_all` skips those, so rerunning a sweep resumes it, and it
refuses a workdir whose checkpoints belong to another config.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from typing import Callable

from dft_jax.data import files
from dft_jax.sweeps.commands import build_config, command, config_root, workdir
from dft_jax.sweeps.spec import DERIVED, validate
from dft_jax.train.loop import NUMERICS

MANIFEST = "sweep.json"
LOG_FILE = "train.log"  # the run's output, appended to on each attempt, in its workdir


class SweepError(RuntimeError):
  """A run that failed or stopped early; the message names it and says how to go on."""


def _jobs_of(root: str) -> dict:
  """{run name: its "job" entry} from an existing ROOT/sweep.json (empty if none)."""
  path = os.path.join(root, MANIFEST)
  if not os.path.isfile(path):
    return {}
  with open(path) as f:
    return {r["name"]: r["job"] for r in json.load(f)["runs"] if r.get("job")}


def write_manifest(runs: list[dict], root: str, sweep: str) -> str:
  """ROOT/sweep.json: the sweep file, its arg, and each run with its workdir and command (and
  the job that ran it, kept from an earlier launch)."""
  file, _, arg = sweep.partition(":")
  jobs = _jobs_of(root)
  entries = [{**r, "overrides": dict(r["overrides"]), "workdir": workdir(r, root),
              "command": command(r, root), **({"job": jobs[r["name"]]} if r["name"] in jobs
                                              else {})} for r in runs]
  path = os.path.join(root, MANIFEST)
  files.write_text(path, json.dumps({"sweep": file, "arg": arg, "root": root, "runs": entries},
                                    indent=2, ensure_ascii=False))
  return path


def record_jobs(root: str, jobs: dict) -> None:
  """Sets the "job" entry ({launcher, id, log, submitted}) of runs in ROOT/sweep.json."""
  path = os.path.join(root, MANIFEST)
  if not jobs or not os.path.isfile(path):
    return
  with open(path) as f:
    manifest = json.load(f)
  for entry in manifest["runs"]:
    if entry["name"] in jobs:
      entry["job"] = jobs[entry["name"]]
  files.write_text(path, json.dumps(manifest, indent=2, ensure_ascii=False))


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


def _checkpoint_steps(workdir_: str) -> list[int]:
  """Committed checkpoint steps (orbax writes into '<step>.orbax-checkpoint-tmp-*' first)."""
  where = os.path.join(workdir_, "checkpoints")
  if not os.path.isdir(where):
    return []
  return sorted(int(d) for d in os.listdir(where)
                if d.isdigit() and os.path.isdir(os.path.join(where, d)))


def _saved_config(workdir_: str) -> dict | None:
  """The config.json a run wrote into its workdir, or None."""
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


def _is_architecture(difference: str) -> bool:
  """A difference in config.model's architecture, which a run that starts from init_from
  records as trained (init_from's), not as its config file says."""
  key = difference.partition(":")[0]
  return key.startswith("model.") and key[len("model."):] not in NUMERICS


def check_workdir(run_: dict, root: str) -> None:
  """A workdir with checkpoints must hold this run's config (init_from aside: it moves with the
  root); else resuming or skipping it would report another run's numbers."""
  wd = workdir(run_, root)
  saved = _saved_config(wd)
  if saved is None or not _checkpoint_steps(wd):
    return
  wanted = json.loads(build_config(run_, root).to_json())
  diffs = sorted(d for d in _differences(saved, wanted) if not d.startswith("init_from:") and
                 not (saved.get("init_from") and _is_architecture(d)))
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
  """Runs the sweep in order, one `python -m dft_jax.train` at a time, each from the directory
  its config file resolves against (the repo root for the repo's sweeps); finished runs are
  skipped. Stops at the first failure (SweepError naming the run); the runs done before it
  stay done, so rerunning resumes. `execute(argv, cwd, log_path) -> exit status` replaces the
  subprocess (tests)."""
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
    status = execute(argv, config_root(run_, root), os.path.join(wd, LOG_FILE))
    if status != 0:
      raise SweepError(f"run {name!r} ({run_['row']}) failed with exit status {status}; its "
                       f"output is in {os.path.join(wd, LOG_FILE)}. Runs before it are done: "
                       "rerun the sweep to resume from it")
    if not finished(wd):
      raise SweepError(f"run {name!r} exited before its last step (preempted?); rerun the "
                       "sweep to resume it")
  log(f"sweep done: {len(runs)} runs in {root}")
