"""Where a result came from: versions, commit, machine, command line, lock file.

Each training run appends one record per start (a resumed run may start on another machine)
to WORKDIR/provenance.jsonl; every results.json carries the table's own record and its runs'.
`digest` is the one line a table's footer prints; `differences` says which fields the runs'
records disagree on, so a table built from mixed environments says so.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import time

import jax

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "ott-jax", "numpy")
FILE = "provenance.jsonl"
# the checkout holding this package, and the lock file of the committed results' environment
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOCK = os.path.join(REPO, "scripts", "lock", "main.txt")
COMPARED = ("versions", "commit", "dirty", "platform", "device_kind", "cpu", "lock_sha256")


def _version(package: str) -> str | None:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


def _git(*args: str) -> str | None:
  try:
    done = subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.TimeoutExpired):
    return None
  return done.stdout.strip() if done.returncode == 0 else None


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _sha256(path: str) -> str | None:
  if not os.path.isfile(path):
    return None
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def _lock_pins(path: str) -> dict[str, str]:
  """{package: version} of the `name==version` lines of a lock file."""
  pins = {}
  if os.path.isfile(path):
    with open(path) as f:
      for line in f:
        name, sep, version = line.split(";")[0].split("\\")[0].strip().partition("==")
        if sep and not name.startswith("#"):
          pins[name.lower().replace("_", "-")] = version.strip()
  return pins


def collect(argv: list[str] | None = None) -> dict:
  """This process's record: versions, git commit and dirty flag, platform, device kind and
  count, CPU model, Python, command line, the lock file's sha256 and whether the installed
  versions match its pins, and the time (UTC)."""
  versions = {p: _version(p) for p in PACKAGES}
  commit = _git("rev-parse", "HEAD")
  status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
  pins = _lock_pins(LOCK)
  off_lock = sorted(p for p, v in versions.items() if p in pins and v and pins[p] != v)
  devices = jax.devices()
  return {
      "versions": versions,
      "commit": commit,
      "dirty": bool(status) if commit else None,
      "platform": jax.default_backend(),
      "device_kind": devices[0].device_kind,
      "devices": len(devices),
      "processes": jax.process_count(),
      "cpu": _cpu_model(),
      "python": platform.python_version(),
      "command": shlex.join(sys.argv if argv is None else argv),
      "lock": os.path.relpath(LOCK, REPO) if pins else None,
      "lock_sha256": _sha256(LOCK),
      "matches_lock": (not off_lock) if pins else None,
      "off_lock": off_lock,
      "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
  }


def append(workdir: str, record: dict | None = None) -> dict:
  """Appends this start's record to WORKDIR/provenance.jsonl; returns it."""
  record = record or collect()
  with open(os.path.join(workdir, FILE), "a") as f:
    f.write(json.dumps(record) + "\n")
  return record


def read(workdir: str) -> list[dict]:
  """A run's records, one per start (empty for runs made before provenance was kept)."""
  path = os.path.join(workdir, FILE)
  if not os.path.isfile(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def digest(record: dict) -> str:
  """One line: versions, commit, device and CPU, lock."""
  v = record["versions"]
  commit = (record["commit"] or "no git")[:10] + (" (dirty)" if record.get("dirty") else "")
  lock = ("no lock file" if not record.get("lock_sha256") else
          f"lock {record['lock_sha256'][:12]}" +
          ("" if record.get("matches_lock") else
           f" (installed differs: {', '.join(record.get('off_lock') or []) or 'unknown'})"))
  return (f"jax {v.get('jax')} · jaxlib {v.get('jaxlib')} · flax {v.get('flax')} · "
          f"optax {v.get('optax')} · orbax {v.get('orbax-checkpoint')} · "
          f"ott-jax {v.get('ott-jax')} · numpy {v.get('numpy')} · commit {commit} · "
          f"{record['platform']} {record['device_kind']} ×{record.get('devices', 1)} · "
          f"{record['cpu']} · {lock}")


def differences(records: list[dict]) -> list[str]:
  """The compared fields on which the records disagree, as 'field: a | b' lines."""
  out = []
  for key in COMPARED:
    values = list(dict.fromkeys(json.dumps(r.get(key), sort_keys=True) for r in records))
    if len(values) > 1:
      out.append(f"{key}: {' | '.join(values)}")
  return out
