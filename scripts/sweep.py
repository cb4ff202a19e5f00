r"""Runs a sweep (an experiments file with get_sweep) here, in sequence, or prints its commands.

  python scripts/sweep.py experiments/table1.py --root runs/table1
  python scripts/sweep.py experiments/ablations.py:family=lam,seeds=3 --root runs/abl --print

Every run's config is built first (a bad override fails before any training), and a workdir
holding checkpoints of another config is refused (before the manifest is written). Runs whose
workdir ROOT/NAME already reached its last step are skipped, so rerunning resumes the sweep;
it stops at the first failing run. --print writes one shell command per run to stdout instead,
in order (each needs the ones before it that it names), to run from the directory the sweep
file was found under (the current one, else the source checkout: dft_jax.sweeps.paths).
Both write ROOT/sweep.json: the runs, their workdirs and commands, the sweep file and its arg.
"""

import os
import shlex
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dft_jax import sweeps  # noqa: E402

flags.DEFINE_string("root", None, "Directory of the run workdirs (ROOT/NAME) and sweep.json.",
                    required=True)
flags.DEFINE_bool("print", False, "Print the commands instead of running them.")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) != 2:
    sys.exit("usage: python scripts/sweep.py experiments/FILE.py[:arg] --root DIR [--print]")
  sweep = argv[1]
  try:
    runs = sweeps.load(sweep)
    sweeps.check(runs, os.path.abspath(FLAGS.root))
    path = sweeps.write_manifest(runs, FLAGS.root, sweep)
    if FLAGS.print:
      for run in runs:
        print(shlex.join(sweeps.command(run, FLAGS.root)), flush=True)
      print(f"sweep: {len(runs)} runs; manifest {path}", file=sys.stderr)
      return
    print(f"sweep: {sweep}: {len(runs)} runs in {FLAGS.root}; manifest {path}", flush=True)
    sweeps.run_all(runs, FLAGS.root, log=lambda line: print(line, flush=True))
  except (ValueError, sweeps.SweepError) as e:
    sys.exit(f"sweep: error: {e}")


if __name__ == "__main__":
  app.run(main)
