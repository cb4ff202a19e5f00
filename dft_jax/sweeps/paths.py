"""Where relative sweep and config files are found: the current directory, then the checkout.

A sweep names its files relative to a project root ("experiments/table1.py"). That root is the
current directory when it holds the file (a project of one's own, or an installed dft_jax), else
the source checkout this package sits in (REPO), so the repo's own sweeps run from anywhere.
"""

from __future__ import annotations

import os

# The source checkout holding this package (dft_jax/sweeps/ -> its parent's parent); when
# dft_jax is installed rather than checked out, it may hold no experiments/.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def roots() -> list[str]:
  """Directories a relative path is tried against, in order: the cwd, then REPO."""
  cwd = os.getcwd()
  if os.path.isdir(REPO) and os.path.samefile(cwd, REPO):
    return [REPO]
  return [cwd, REPO]


def find_root(path: str, what: str = "file") -> str:
  """The directory a file path resolves against: REPO for an absolute path (it resolves
  against nothing; the checkout stays the place to run from), else the first of roots()
  holding it. A missing file is one ValueError naming every path tried."""
  if os.path.isabs(path):
    if os.path.isfile(path):
      return REPO
    raise ValueError(f"{what} {path!r} not found")
  tried = [(root, os.path.join(root, path)) for root in roots()]
  for root, where in tried:
    if os.path.isfile(where):
      return root
  raise ValueError(f"{what} {path!r} not found; tried {' and '.join(w for _, w in tried)}")


def locate(path: str, what: str = "file") -> str:
  """The absolute path of a sweep or config file, found as find_root says."""
  return os.path.join(find_root(path, what), path)  # an absolute `path` replaces the root
