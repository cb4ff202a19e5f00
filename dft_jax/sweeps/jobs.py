"""One run of a sweep as a submitit job: the train CLI in a child process, preemptible.

submitit pickles a `TrainJob` and calls it in each task of the job (one task per host, or per
process). The call starts `python -m dft_jax.train ... --workdir=ROOT/NAME` with its output
appended to the workdir's train.log (train.rank<N>.log for the other tasks), and, when the job
has several tasks, the flags that make the tasks one JAX program: `--distributed` on SLURM
(jax.distributed.initialize reads the SLURM environment), an explicit localhost coordinator
under submitit's LocalExecutor.

Preemption and time limits: submitit sends its signal (USR2 by default, `signal_delay_s` before
the limit) and calls `checkpoint()` in task 0. That sends SIGTERM to the trainer, which saves a
checkpoint at its next step boundary and exits 0 (every process agrees on the step); the job is
then requeued with a fresh copy of itself, and the train loop resumes from that checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import time

from dft_jax.sweeps.launch import LOG_FILE, finished

TASKS_FILE = "tasks.jsonl"  # in the workdir: each task's start and exit (host, pid, job id)


class TrainFailed(RuntimeError):
  """The trainer exited non-zero, or stopped before its last step without being preempted."""


def free_port() -> int:
  """A TCP port free on this host now (the local coordinator of a multi-task job)."""
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _job_environment():
  """submitit's view of this task (rank, number of tasks, job id); None outside a job."""
  import submitit  # noqa: PLC0415 (only inside a job: the core install has no submitit)
  try:
    return submitit.JobEnvironment()
  except RuntimeError:
    return None


@dataclasses.dataclass
class TrainJob:
  """What a submitit job calls: `argv` (the train CLI without --workdir), run from `cwd`."""
  name: str
  argv: list[str]
  cwd: str
  workdir: str
  local_port: int | None = None  # multi-task LocalExecutor jobs: the coordinator's port

  def _distributed_flags(self, env) -> list[str]:
    if env is None or env.num_tasks == 1:
      return []
    if self.local_port is None:  # on SLURM: jax.distributed.initialize() reads its environment
      return ["--distributed"]
    return [f"--coordinator_address=localhost:{self.local_port}",
            f"--num_processes={env.num_tasks}", f"--process_id={env.global_rank}"]

  def _record(self, env, rank: int, event: str, **more) -> None:
    """Appends one JSON line to the workdir's tasks.jsonl: this task's event ("start" or
    "exit"), rank, host, pid, job id and time."""
    entry = {"event": event, "rank": rank, "host": socket.gethostname(), "pid": os.getpid(),
             "job_id": env.job_id if env else None, "time": time.time(), **more}
    with open(os.path.join(self.workdir, TASKS_FILE), "a") as f:
      f.write(json.dumps(entry) + "\n")

  def __call__(self) -> dict:
    env = _job_environment()
    rank = env.global_rank if env else 0
    os.makedirs(self.workdir, exist_ok=True)
    self._record(env, rank, "start")
    log_path = os.path.join(self.workdir, LOG_FILE if rank == 0 else f"train.rank{rank}.log")
    argv = [*self.argv, *self._distributed_flags(env), f"--workdir={self.workdir}"]
    with open(log_path, "a") as log:
      self._proc = subprocess.Popen(argv, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)
      status = self._proc.wait()
    self._record(env, rank, "exit", status=status)
    if status != 0:
      raise TrainFailed(f"run {self.name!r} failed with exit status {status}; its output is in "
                        f"{log_path}")
    if rank == 0 and not finished(self.workdir):
      raise TrainFailed(f"run {self.name!r} stopped before its last step without a requeue; "
                        "resubmit the sweep to resume it")
    return {"name": self.name, "workdir": self.workdir}

  def checkpoint(self, *args, **kwargs):
    """submitit's preemption hook (task 0): the trainer saves and exits, then a fresh copy of
    this job is requeued and resumes from that checkpoint."""
    del args, kwargs
    import submitit  # noqa: PLC0415
    proc = getattr(self, "_proc", None)
    if proc is not None and proc.poll() is None:
      proc.send_signal(signal.SIGTERM)  # the train loop: save at the next step, exit 0
      try:  # wait without reaping: the interrupted Popen.wait in __call__ holds its lock
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
      except ChildProcessError:
        pass
    return submitit.helpers.DelayedSubmission(dataclasses.replace(self))
