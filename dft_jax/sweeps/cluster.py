"""A sweep on the engines researchers already run: submitit (SLURM, or this machine) and xpk.

  local   submitit's LocalExecutor: runs in parallel here (up to max_parallel), each started
          once the runs it names have finished; waits, and fails naming the run and its log.
  slurm   submitit's SlurmExecutor: runs with the same pending parents go as one sbatch (a job
          array when there are several), with `--dependency=afterok:<parents' job ids>`;
          returns once all are submitted (or waits, like local).
  xpk     the `xpk workload create` command of each run (TPU slices on GKE), with an
          `xpk workload list --wait-for-job-completion` before the first run that needs another.

Finished runs are never submitted again, so resubmitting a sweep resumes it. Job ids and log
paths go into ROOT/sweep.json ("job" of each run). Jobs are `jobs.TrainJob`s: preemptible,
requeued, and resumed from their checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import sys
import time
from typing import Callable

from dft_jax.sweeps.commands import command, config_root, train_args, workdir
from dft_jax.sweeps.jobs import TrainJob, free_port
from dft_jax.sweeps.launch import SweepError, check, finished, record_jobs

LAUNCHERS = ("sequential", "local", "slurm", "xpk")
_RAISED = re.compile(r"^\s*[\w.]+(?:Error|Failed|Exception): (.*)$")  # a traceback's last line
SUBMITIT_DIR = ".submitit"  # under ROOT: submitit's pickles, sbatch scripts and job logs


@dataclasses.dataclass(frozen=True)
class Resources:
  """What each job asks for (SLURM's names; the local launcher uses the tasks and GPUs)."""
  partition: str = ""
  account: str = ""
  nodes: int = 1
  tasks_per_node: int = 1     # JAX processes per node: 1 (a process drives all local chips)
  gpus_per_node: int = 0
  cpus_per_task: int = 0      # 0: the cluster's default
  time_min: int = 24 * 60
  signal_delay_s: int = 120   # preemption signal this long before the time limit
  extra: tuple[tuple[str, str], ...] = ()  # any other sbatch option: (("qos", "high"), ...)

  @classmethod
  def from_dict(cls, values: dict) -> Resources:
    """Resources from a dict (a sweep file's RESOURCES); unknown keys are one ValueError."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(f"unknown resource(s) {unknown}; known: {', '.join(sorted(known))}")
    values = dict(values)
    if isinstance(values.get("extra"), dict):
      values["extra"] = tuple(values["extra"].items())
    return cls(**values)

  @property
  def tasks(self) -> int:
    return self.nodes * self.tasks_per_node


def parse_extra(text: str) -> tuple[tuple[str, str], ...]:
  """'qos=high,constraint=a100' -> (("qos", "high"), ("constraint", "a100"))."""
  out = []
  for item in filter(None, (s.strip() for s in text.split(","))):
    key, sep, value = item.partition("=")
    if not sep or not key:
      raise ValueError(f"slurm_extra item {item!r} is not KEY=VALUE")
    out.append((key.strip().replace("-", "_"), value.strip()))
  return tuple(out)


def _submitit():
  try:
    import submitit  # noqa: PLC0415 (an optional extra)
  except ImportError:
    raise SweepError("the local and slurm launchers need submitit: pip install "
                     "'dft_jax[cluster]' (or pip install submitit)") from None
  return submitit


def pending(runs: list[dict], root: str) -> list[dict]:
  """The runs whose workdir has not reached its last step."""
  return [r for r in runs if not finished(workdir(r, root))]


def groups(runs: list[dict]) -> list[tuple[tuple[str, ...], list[dict]]]:
  """Runs grouped by the runs they wait for (among `runs`), in sweep order: one submission
  each, after its parents' (which come earlier: a sweep lists parents first)."""
  names = {r["name"] for r in runs}
  out: dict[tuple[str, ...], list[dict]] = {}
  for r in runs:
    out.setdefault(tuple(a for a in r["after"] if a in names), []).append(r)
  return list(out.items())


def train_job(run_: dict, root: str, python: str, local_tasks: int = 1) -> TrainJob:
  """The submitit callable of a run; a multi-task local job gets a coordinator port."""
  argv = command(run_, root, python)[:-1]  # TrainJob adds --workdir after the task's flags
  return TrainJob(name=run_["name"], argv=argv, cwd=config_root(run_, root),
                  workdir=workdir(run_, root),
                  local_port=free_port() if local_tasks > 1 else None)


def _job_entry(launcher: str, job) -> dict:
  return {"launcher": launcher, "id": str(job.job_id), "log": str(job.paths.stdout),
          "submitted": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _last_line(path: str) -> str:
  """The last non-empty line of a text file ('' if there is none)."""
  if not os.path.isfile(path):
    return ""
  with open(path, errors="replace") as f:
    lines = [line.strip() for line in f if line.strip()]
  return lines[-1] if lines else ""


def _failure(name: str, job, root: str) -> str:
  """One line: the run, why (the job's error, the last line of its train log), and where its
  output is."""
  trace = str(job.exception()).strip().splitlines()  # submitit wraps the task's traceback
  raised = [m.group(1) for m in map(_RAISED.match, trace) if m]
  reason = raised[-1] if raised else (trace[0] if trace else "no error recorded")
  log = os.path.join(root, name, "train.log")
  if not reason.startswith(f"run {name!r}"):
    reason = f"run {name!r} failed: {reason}; its output is in {log} and {job.paths.stdout}"
  last = _last_line(log)
  return reason + (f" (its log ends: {last})" if last else "")


def run_local(runs: list[dict], root: str, resources: Resources = Resources(), *,
              max_parallel: int = 2, python: str | None = None,
              log: Callable[[str], None] = print, poll_s: float = 0.5) -> None:
  """Runs the pending runs here through submitit's LocalExecutor, up to `max_parallel` at a
  time, each once its parents have finished. Waits for all; SweepError naming every failed
  run (and the runs it kept from starting) if any failed."""
  submitit = _submitit()
  root, python = os.path.abspath(root), python or sys.executable
  check(runs, root)
  executor = submitit.LocalExecutor(folder=os.path.join(root, SUBMITIT_DIR, "%j"))
  executor.update_parameters(timeout_min=resources.time_min,
                             tasks_per_node=resources.tasks_per_node,
                             gpus_per_node=resources.gpus_per_node,
                             signal_delay_s=resources.signal_delay_s)
  todo = pending(runs, root)
  done = {r["name"] for r in runs} - {r["name"] for r in todo}
  running, failed, skipped = {}, {}, []
  log(f"local: {len(todo)} of {len(runs)} runs to do, up to {max_parallel} at a time")
  while todo or running:
    finished_now, failed_now = _reap(running, root, log)
    done.update(finished_now)
    failed.update(failed_now)
    lost = set(failed) | set(skipped)
    for r in [r for r in todo if any(a in lost for a in r["after"])]:
      todo.remove(r)
      skipped.append(r["name"])
      log(f"{r['name']}: not started (it needs a failed run)")
    started = {}
    for r in [r for r in todo if all(a in done for a in r["after"])]:
      if len(running) >= max_parallel:
        break
      todo.remove(r)
      running[r["name"]] = job = executor.submit(train_job(r, root, python, resources.tasks))
      started[r["name"]] = _job_entry("local", job)
      log(f"{r['name']}: started (job {job.job_id}; log "
          f"{os.path.join(workdir(r, root), 'train.log')})")
    record_jobs(root, started)  # a no-op when nothing started
    if todo or running:
      time.sleep(poll_s)
  if failed:
    more = f"; not started: {', '.join(skipped)}" if skipped else ""
    raise SweepError("; ".join(failed.values()) + more +
                     ". Finished runs stay done: rerun to resume")
  log(f"sweep done: {len(runs)} runs in {root}")


def _slurm_executor(submitit, root: str, resources: Resources, python: str | None):
  if not resources.partition:
    raise SweepError("the slurm launcher needs a partition: --partition=NAME (or "
                     "RESOURCES = {'partition': ...} in the sweep file)")
  try:
    executor = submitit.SlurmExecutor(folder=os.path.join(root, SUBMITIT_DIR, "%j"),
                                      python=shlex.quote(python) if python else None)
  except RuntimeError as e:  # no srun here
    raise SweepError(f"slurm launcher: {e} (submit from a SLURM login node)") from None
  optional = {"account": resources.account, "gpus_per_node": resources.gpus_per_node,
              "cpus_per_task": resources.cpus_per_task}
  executor.update_parameters(
      partition=resources.partition, nodes=resources.nodes,
      ntasks_per_node=resources.tasks_per_node, time=resources.time_min,
      signal_delay_s=resources.signal_delay_s, additional_parameters=dict(resources.extra),
      **{k: v for k, v in optional.items() if v})
  return executor


def submit_slurm(runs: list[dict], root: str, resources: Resources, *,
                 python: str | None = None, log: Callable[[str], None] = print) -> dict:
  """Submits the pending runs to SLURM: one sbatch per group of runs with the same pending
  parents (a job array if several), `afterok` on the parents' jobs. Returns {name: job}."""
  submitit = _submitit()
  root = os.path.abspath(root)
  check(runs, root)
  executor = _slurm_executor(submitit, root, resources, python)
  jobs, entries = {}, {}
  todo = pending(runs, root)
  if len(todo) < len(runs):
    log(f"slurm: {len(runs) - len(todo)} finished run(s) skipped")
  for parents, members in groups(todo):
    dependency = ("afterok:" + ":".join(str(jobs[p].job_id) for p in parents)) if parents else None
    executor.update_parameters(job_name=members[0]["name"] if len(members) == 1 else
                               f"{members[0]['name']}+{len(members) - 1}", dependency=dependency)
    try:
      with executor.batch():
        submitted = [executor.submit(train_job(r, root, python or sys.executable))
                     for r in members]
    except Exception as e:  # noqa: BLE001 (sbatch's refusal, e.g. an unknown partition)
      lines = str(e).strip().splitlines() or [repr(e)]
      raise SweepError(f"sbatch refused run(s) {', '.join(r['name'] for r in members)}: "
                       f"{lines[-1]}") from None
    for r, job in zip(members, submitted):
      jobs[r["name"]] = job
      entries[r["name"]] = _job_entry("slurm", job)
      log(f"{r['name']}: job {job.job_id}" + (f" ({dependency})" if dependency else ""))
  record_jobs(root, entries)
  return jobs


def _reap(running: dict, root: str, log: Callable[[str], None]) -> tuple[set, dict]:
  """Removes the finished jobs from `running` {name: job}: (names done, {name: failure line})."""
  done, failed = set(), {}
  for name, job in list(running.items()):
    if job.done():
      del running[name]
      if job.exception() is None:
        done.add(name)
        log(f"{name}: done")
      else:
        failed[name] = _failure(name, job, root)
        log(failed[name])
  return done, failed


def wait(jobs: dict, root: str, log: Callable[[str], None] = print, poll_s: float = 30) -> None:
  """Waits for submitted jobs; SweepError naming the failed runs and their logs."""
  left, failed = dict(jobs), {}
  while left:
    failed.update(_reap(left, root, log)[1])
    if left:
      time.sleep(poll_s)
  if failed:
    raise SweepError("; ".join(failed.values()))


@dataclasses.dataclass(frozen=True)
class XpkTarget:
  """Where xpk places each run: a GKE cluster of TPU slices, and the image that holds dft_jax."""
  cluster: str
  tpu_type: str               # e.g. v5p-128, v5litepod-256
  docker_image: str
  num_slices: int = 1
  project: str = ""
  zone: str = ""
  prefix: str = "dft"         # workload names: PREFIX-RUN (lowercase, '-', <= 40 characters)
  python: str = "python3"


def workload_name(prefix: str, name: str) -> str:
  """A GKE workload name for a run: lowercase letters, digits and '-', at most 40 long."""
  text = re.sub(r"[^a-z0-9-]+", "-", f"{prefix}-{name}".lower()).strip("-")
  return text[:40].rstrip("-")


def xpk_commands(runs: list[dict], root: str, target: XpkTarget) -> list[str]:
  """Shell lines: per pending run, `xpk workload create` running the train command with
  --distributed on every worker, after waiting for the runs it needs. ROOT must be storage
  every worker sees (a GCS FUSE mount, Filestore)."""
  todo = pending(runs, root)
  names = {r["name"]: workload_name(target.prefix, r["name"]) for r in todo}
  if len(set(names.values())) < len(names):
    raise SweepError(f"workload names collide after shortening to 40 characters: {names}")
  where = [f"--cluster={target.cluster}"] + [f"--{k}={v}" for k, v in
                                             (("project", target.project), ("zone", target.zone))
                                             if v]
  lines, waited = [], set()
  for r in todo:
    for parent in (a for a in r["after"] if a in names and a not in waited):
      lines.append(shlex.join(["xpk", "workload", "list", *where,
                               f"--wait-for-job-completion={names[parent]}"]))
      waited.add(parent)
    train = shlex.join([target.python, "-m", "dft_jax.train", *train_args(r, root),
                        f"--workdir={workdir(r, root)}", "--distributed"])
    lines.append(shlex.join(["xpk", "workload", "create", *where, f"--workload={names[r['name']]}",
                             f"--tpu-type={target.tpu_type}", f"--num-slices={target.num_slices}",
                             f"--docker-image={target.docker_image}", f"--command={train}"]))
  return lines
