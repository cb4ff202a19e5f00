"""The launcher flags of scripts/sweep.py and scripts/reproduce_table.py, and `launch`.

Resources come from the sweep file's RESOURCES dict, then from the flags given on the command
line (a flag left at its default does not override the file).
"""

from __future__ import annotations

import shlex
from typing import Callable

from absl import flags

from dft_jax.sweeps import cluster
from dft_jax.sweeps.commands import command
from dft_jax.sweeps.launch import SweepError, run_all
from dft_jax.sweeps.spec import load_resources

_RESOURCE_FLAGS = ("partition", "account", "nodes", "tasks_per_node", "gpus_per_node",
                   "cpus_per_task", "time_min", "signal_delay_s")


_FLAGS = (  # name, default (its type is the flag's), help
    ("launcher", "sequential", "Where the runs go: " + " | ".join(cluster.LAUNCHERS) +
     " (sequential: one after another, here)."),
    ("max_parallel", 2, "local: runs at a time."),
    ("wait", False, "slurm: wait for the jobs and report (local always waits)."),
    ("partition", "", "slurm: partition."),
    ("account", "", "slurm: account."),
    ("nodes", 1, "slurm: nodes per run (one JAX process per task)."),
    ("tasks_per_node", 1, "slurm/local: tasks (JAX processes) per node."),
    ("gpus_per_node", 0, "slurm/local: GPUs per node."),
    ("cpus_per_task", 0, "slurm: CPUs per task (0: the cluster's default)."),
    ("time_min", 24 * 60, "slurm/local: time limit per job, minutes."),
    ("signal_delay_s", 120, "slurm/local: the preemption signal comes this long before the "
     "time limit (the run checkpoints and is requeued)."),
    ("slurm_extra", "", "slurm: other sbatch options, KEY=VALUE,... (qos=high,constraint=h100)."),
    ("xpk_cluster", "", "xpk: the GKE cluster."),
    ("tpu_type", "", "xpk: TPU type of each slice, e.g. v5p-128."),
    ("num_slices", 1, "xpk: slices per run."),
    ("docker_image", "", "xpk: image holding dft_jax (its workdir the repo)."),
    ("project", "", "xpk: GCP project (default: gcloud's)."),
    ("zone", "", "xpk: zone (default: gcloud's)."),
    ("workload_prefix", "dft", "xpk: workload names are PREFIX-RUN."),
)


def define_flags(values: flags.FlagValues | None = None) -> None:
  """--launcher and what each launcher needs (into absl's FLAGS, or `values`)."""
  define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, str: flags.DEFINE_string}
  values = flags.FLAGS if values is None else values
  for name, default, help_ in _FLAGS:
    define[type(default)](name, default, help_, flag_values=values)


def resources(sweep: str, values=None) -> cluster.Resources:
  """The sweep file's RESOURCES overridden by the resource flags given on the command line."""
  values = flags.FLAGS if values is None else values
  merged = dict(load_resources(sweep))
  merged.update({k: values[k].value for k in _RESOURCE_FLAGS if values[k].present})
  if values["slurm_extra"].present:
    merged["extra"] = cluster.parse_extra(values.slurm_extra)
  return cluster.Resources.from_dict(merged)


def _xpk_target(values) -> cluster.XpkTarget:
  missing = [f"--{k}" for k in ("xpk_cluster", "tpu_type", "docker_image") if not values[k].value]
  if missing:
    raise SweepError(f"the xpk launcher needs {', '.join(missing)}")
  return cluster.XpkTarget(cluster=values.xpk_cluster, tpu_type=values.tpu_type,
                           docker_image=values.docker_image, num_slices=values.num_slices,
                           project=values.project, zone=values.zone,
                           prefix=values.workload_prefix)


def launch(runs: list[dict], root: str, sweep: str, *, wait: bool | None = None,
           log: Callable[[str], None] = print, out: Callable[[str], None] = print,
           values=None) -> None:
  """Launches the runs as the flags say: sequential and local return when they are done,
  slurm once submitted (or done, with `wait`), xpk after writing its commands to `out`."""
  values = flags.FLAGS if values is None else values
  launcher = values.launcher
  if launcher not in cluster.LAUNCHERS:
    raise SweepError(f"unknown launcher {launcher!r}; known: {', '.join(cluster.LAUNCHERS)}")
  wait = values.wait if wait is None else wait
  if launcher == "sequential":
    run_all(runs, root, log=log)
  elif launcher == "xpk":
    for line in cluster.xpk_commands(runs, root, _xpk_target(values)):
      out(line)
  elif launcher == "local":
    cluster.run_local(runs, root, resources(sweep, values), max_parallel=values.max_parallel,
                      log=log)
  else:
    jobs = cluster.submit_slurm(runs, root, resources(sweep, values), log=log)
    log(f"slurm: {len(jobs)} job(s) submitted; their ids and logs are in {root}/sweep.json")
    if wait:
      cluster.wait(jobs, root, log=log)


def print_commands(runs: list[dict], root: str, out: Callable[[str], None] = print) -> None:
  """One shell line per run, in order (--print)."""
  for run_ in runs:
    out(shlex.join(command(run_, root)))

