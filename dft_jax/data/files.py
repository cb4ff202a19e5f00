"""Files written whole or not at all: write to a temporary sibling, then rename over the target
(atomic on POSIX), so an interrupted run never leaves a half-written file for the next to read."""

from __future__ import annotations

import contextlib
import os

import numpy as np


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


def write_text(path: str, text: str) -> None:
  """`text` to `path`, UTF-8 with '\\n' line ends, atomically."""
  with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
    f.write(text)


def savez(path: str, **arrays) -> None:
  """np.savez of `arrays` to `path` (which should end in .npz), atomically."""
  with atomic_path(path, ".npz") as tmp:
    np.savez(tmp, **arrays)
