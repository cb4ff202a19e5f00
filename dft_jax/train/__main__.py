r"""python -m dft_jax.train --config=experiments/FILE.py[:args] --workdir=DIR [--config.k=v]

Multi-host: on TPU pods / SLURM, `--distributed` calls jax.distributed.initialize() with the
cluster's own settings; or give --coordinator_address, --num_processes and --process_id.
"""

import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from dft_jax.train import loop, overrides

config_flags.DEFINE_config_file("config", None, "Experiment config file[:args].",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and config.json go.",
                    required=True)
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-process).")
FLAGS = flags.FLAGS


def parse_flags(argv):
  """absl parsing, with a bad --config override reported in one line."""
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    sys.exit(f"train: error: {overrides.error_line(e, argv)}")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  if FLAGS.coordinator_address:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  elif FLAGS.distributed:
    jax.distributed.initialize()
  if FLAGS.config is None:
    sys.exit("train: error: --config is required")
  try:
    loop.train(FLAGS.config, FLAGS.workdir)
  except (loop.TrainError, ValueError, FileNotFoundError) as e:
    print(f"train: error: {e}", file=sys.stderr, flush=True)
    os._exit(1)  # skip interpreter teardown of background checkpoint threads


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
