"""Files written whole or not at all: write to a temporary sibling, then rename over the target
(atomic on POSIX), so an interrupted run never leaves a half-written file for the next to read."""

from __future__ import annotations

import contextlib
import os

import jax
import numpy as np
from jax.experimental import multihost_utils


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
  """Yields a temporary path beside `path` (ending in `suffix`, for writers that add their own
  extension); renamed onto `path` when the block ends without an error, removed otherwise."""
  os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}{suffix}"
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


@contextlib.contextmanager
def process_zero_first(name: str):
  """Process 0 runs the block first and the other processes after it, behind a barrier: for a
  shared cache (a prepared dataset, a trained tokenizer) that process 0 writes and the others
  then find, where writing it from every host at once would race. One process: no barrier."""
  waits = jax.process_count() > 1
  if waits and jax.process_index() != 0:
    multihost_utils.sync_global_devices(name)
  yield
  if waits and jax.process_index() == 0:
    multihost_utils.sync_global_devices(name)


def exists_on_process_zero(path: str) -> bool:
  """Whether `path` exists, as process 0 sees it: every process takes the same branch (so their
  barriers match) even while process 0 is writing the file."""
  exists = os.path.exists(path)
  if jax.process_count() == 1:
    return exists
  return bool(multihost_utils.broadcast_one_to_all(np.asarray(exists)))


def write_text(path: str, text: str) -> None:
  """`text` to `path`, UTF-8 with '\\n' line ends, atomically."""
  with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
    f.write(text)


def savez(path: str, **arrays) -> None:
  """np.savez of `arrays` to `path` (which should end in .npz), atomically."""
  with atomic_path(path, ".npz") as tmp:
    np.savez(tmp, **arrays)
