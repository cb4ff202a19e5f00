r"""Sweeps: the runs behind a paper table, as data, big_vision style.

  python scripts/sweep.py experiments/table1.py:seeds=3 --root runs/table1           # run here
  python scripts/sweep.py experiments/ablations.py:family=lam --root runs/abl --print  # commands
  python scripts/sweep.py experiments/table1.py:seeds=3 --root /shared/t --launcher=slurm \
      --partition=gpu --gpus_per_node=1                                  # SLURM, via submitit

A sweep file is an experiments file with `get_sweep(arg=None) -> list[dict]`; each run is

  {"name": "dft_s0",                      # unique, filesystem-safe: its workdir is ROOT/NAME
   "row": "DFT (score-function)",         # the table row it reports into
   "seed": 0,
   "config": "experiments/dft.py:domain=literary,lam=0.05",  # the --config argument
   "overrides": {"seed": 0, "init_from": "{base}"},          # --config.KEY=VALUE
   "after": ["base"]}                     # runs it needs, all earlier in the list

"{NAME}" in `config` or in a string override is replaced by ROOT/NAME, the workdir of run NAME
(which then counts as a dependency). Relative sweep and config files are found in the current
directory first, then in the source checkout (paths.py). A run is done when its workdir holds
its last step's checkpoint; `run_all` skips those, so rerunning a sweep resumes it.

  paths.py     where relative files are found (cwd, then REPO)
  spec.py      building runs (run, base_run, arg_string), validate, load
  commands.py  a run's workdir, train CLI arguments and command, build_config
  launch.py    the manifest (sweep.json), finished / check, run_all (sequential)
  jobs.py      TrainJob: a run as a submitit job (multi-task, preemption -> requeue)
  cluster.py   the local and slurm launchers (submitit) and xpk commands
  cli.py       the launcher flags of scripts/sweep.py and scripts/reproduce_table.py
"""

from dft_jax.sweeps.commands import (build_config, command, config_root, flag_value,
                                     resolve_refs, train_args, workdir)
from dft_jax.sweeps.launch import (LOG_FILE, MANIFEST, SweepError, check, check_workdir,
                                   finished, read_manifest, record_jobs, run_all,
                                   write_manifest)
from dft_jax.sweeps.paths import REPO, locate
from dft_jax.sweeps.spec import DERIVED, KEYS, arg_string, base_run, load, run, validate

__all__ = ["DERIVED", "KEYS", "LOG_FILE", "MANIFEST", "REPO", "SweepError", "arg_string",
           "base_run", "build_config", "check", "check_workdir", "command", "config_root",
           "finished", "flag_value", "load", "locate", "read_manifest", "record_jobs",
           "resolve_refs", "run",
           "run_all", "train_args", "validate", "workdir", "write_manifest"]
