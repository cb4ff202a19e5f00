"""A run as the train CLI sees it: its workdir, its arguments, its command, its ConfigDict."""

from __future__ import annotations

import json
import os

from absl import flags
from ml_collections import config_flags

from dft_jax.sweeps.paths import find_root
from dft_jax.train import overrides
from dft_jax.sweeps.spec import REF


def workdir(run_: dict, root: str) -> str:
  """ROOT/NAME: where the run's checkpoints, config.json and log go."""
  return os.path.join(root, run_["name"])


def resolve_refs(text: str, root: str) -> str:
  """Every "{NAME}" in `text` replaced by the workdir ROOT/NAME."""
  return REF.sub(lambda m: os.path.join(root, m.group(1)), text)


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
  args = [f"--config={resolve_refs(run_['config'], root)}"]
  for key, value in run_["overrides"].items():
    value = resolve_refs(value, root) if isinstance(value, str) else value
    args.append(f"--config.{key}={flag_value(value)}")
  return args


def command(run_: dict, root: str, python: str = "python") -> list[str]:
  """argv of `python -m dft_jax.train ... --workdir=ROOT/NAME`, to run from config_root(run_)
  (the repository root for the repo's own sweeps)."""
  return [python, "-m", "dft_jax.train", *train_args(run_, root),
          f"--workdir={workdir(run_, root)}"]


def _config_file(run_: dict, root: str) -> str:
  """The run's config file as written (relative or absolute), without its ':arg'."""
  return resolve_refs(run_["config"], root).partition(":")[0]


def config_root(run_: dict, root: str) -> str:
  """Where the run's train CLI runs from: the directory its config file resolves against
  (the cwd first, then the source checkout); a ValueError naming the run if it is nowhere."""
  try:
    return find_root(_config_file(run_, root), "config file")
  except ValueError as e:
    raise ValueError(f"run {run_['name']!r}: {e}") from None


def build_config(run_: dict, root: str):
  """The run's ConfigDict, made by ml_collections config_flags from the same arguments the
  train CLI gets (lock_config=True as there): a typo'd override or a value of the wrong type
  fails here, before any training."""
  args = train_args(run_, root)
  _, sep, arg = args[0][len("--config="):].partition(":")
  file = os.path.join(config_root(run_, root), _config_file(run_, root))
  args[0] = f"--config={file}{sep}{arg}"
  argv = ["train", *args]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "config", flag_values=values,
                                  lock_config=True, sys_argv=argv)
  try:
    values(argv)
  except (AttributeError, KeyError) as e:  # a typo'd field: the train CLI's own line
    raise ValueError(f"run {run_['name']!r}: {overrides.error_line(e, argv)}") from None
  except Exception as e:  # absl wraps parser errors; keep the first line
    raise ValueError(f"run {run_['name']!r}: {str(e).splitlines()[0]}") from None
  return values.config
