r"""Runs a sweep (an experiments file with get_sweep): here, on SLURM, or as xpk commands.

  python scripts/sweep.py experiments/table1.py --root runs/table1                  # here, in turn
  python scripts/sweep.py experiments/table1.py:seeds=3 --root runs/t --launcher=local \
      --max_parallel=4                                                   # here, in parallel
  python scripts/sweep.py experiments/ablations.py:family=all,seeds=3 --root /shared/abl \
      --launcher=slurm --partition=gpu --gpus_per_node=8 --time_min=240              # SLURM
  python scripts/sweep.py experiments/table1.py --root /gcs/runs/t --launcher=xpk \
      --xpk_cluster=my-v5p --tpu_type=v5p-128 --docker_image=gcr.io/me/dft_jax      # GKE
  python scripts/sweep.py experiments/ablations.py:family=lam --root runs/abl --print

Every run's config is built first (a bad override fails before any training), and a workdir
holding checkpoints of another config is refused. Runs whose workdir ROOT/NAME already reached
its last step are skipped, so rerunning (or resubmitting) a sweep resumes it. A run that names
another ("{base}") starts after it: in turn, once it finished (local), or with an afterok
dependency (slurm). sequential stops at the first failing run; local and slurm --wait finish
what they can and exit non-zero naming each failed run and its log. Cluster jobs checkpoint
and requeue on preemption or near their time limit, then resume. --print writes one shell
command per run instead. ROOT/sweep.json records the runs, their commands, and each job's id
and log. Resources also come from the sweep file's RESOURCES dict (flags given win).
"""

import os
import sys

from absl import app, flags

from dft_jax import sweeps
from dft_jax.sweeps import cli

flags.DEFINE_string("root", None, "Directory of the run workdirs (ROOT/NAME) and sweep.json.",
                    required=True)
flags.DEFINE_bool("print", False, "Print the commands instead of running them.")
cli.define_flags()
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) != 2:
    sys.exit("usage: python scripts/sweep.py experiments/FILE.py[:arg] --root DIR "
             "[--launcher=sequential|local|slurm|xpk] [--print]")
  sweep = argv[1]
  root = FLAGS.root if "://" in FLAGS.root else os.path.abspath(FLAGS.root)
  try:
    runs = sweeps.load(sweep)
    sweeps.check(runs, root)
    path = sweeps.write_manifest(runs, root, sweep)
    if FLAGS.print:
      cli.print_commands(runs, root)
      print(f"sweep: {len(runs)} runs; manifest {path}", file=sys.stderr)
      return
    log = lambda line: print(line, flush=True)  # noqa: E731
    if FLAGS.launcher != "xpk":
      log(f"sweep: {sweep}: {len(runs)} runs in {root} ({FLAGS.launcher}); manifest {path}")
    cli.launch(runs, root, sweep, log=log)
  except (ValueError, sweeps.SweepError) as e:
    sys.exit(f"sweep: error: {e}")


if __name__ == "__main__":
  app.run(main)
