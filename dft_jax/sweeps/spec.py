"""Building, checking and loading sweeps: the runs as plain dicts (format in the package doc)."""

from __future__ import annotations

import importlib.util
import os
import re

from dft_jax.models import pretrained
from dft_jax.sweeps.paths import locate

KEYS = ("name", "row", "seed", "config", "overrides", "after")
DERIVED = ("workdir", "command", "job")  # in the manifest beside each run; validate() drops them
REF = re.compile(r"\{([^{}]*)\}")  # "{NAME}": the workdir of run NAME
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def arg_string(**kw) -> str:
  """arg_string(domain='news', lam=0.2) -> 'domain=news,lam=0.2' (experiments/base.parse_arg)."""
  return ",".join(f"{k}={v}" for k, v in kw.items())


def run(name: str, config: str, *, row: str | None = None, seed: int | None = None,
        after=(), **overrides) -> dict:
  """One run; `seed` also goes into the overrides. Dotted override keys as `**{'loss.x': 1}`."""
  if seed is not None:
    overrides = {"seed": seed, **overrides}
  return {"name": name, "row": row or name, "seed": seed or 0, "config": config,
          "overrides": overrides, "after": list(after)}


def base_run(model: str = "tiny", steps: int = 300, name: str = "base",
             domain: str = "literary") -> dict:
  """The run every fine-tune of a sweep starts from (`init_from="{base}"`): a pretraining of a
  preset, or, for a pretrained model (`models.pretrained.MODELS`, or a model's path), a
  zero-step run that records the model as it is (`steps` is then ignored)."""
  if pretrained.is_pretrained(model):
    return run(name, "experiments/sft.py:" + arg_string(domain=domain, model=model, steps=0),
               row="base")
  return run(name, "experiments/pretrain_tiny.py:" + arg_string(model=model, steps=steps),
             row="base")


def _refs(run_: dict) -> list[str]:
  """Names of the runs whose workdir the config or a string override refers to."""
  texts = [run_["config"]] + [v for v in run_["overrides"].values() if isinstance(v, str)]
  return [m for t in texts for m in REF.findall(t)]


def _overrides(r: dict, bad) -> dict:
  """A run's overrides, checked: dotted field keys, values that --config.KEY=VALUE passes
  (lists become tuples)."""
  overrides = dict(r.get("overrides") or {})
  for key, value in overrides.items():
    if not isinstance(key, str) or not _FIELD.fullmatch(key):
      raise bad(f"override key {key!r} is not a dotted config field")
    if isinstance(value, list):
      overrides[key] = value = tuple(value)
    if not isinstance(value, (str, int, float, bool, tuple)):
      raise bad(f"override {key}={value!r}: only str, int, float, bool and tuple pass "
                "through --config.KEY=VALUE")
  return overrides


def _normalized(r: dict, bad) -> dict:
  """One run (its name already checked) with its keys checked, its defaults filled in and
  "{NAME}" references added to `after`."""
  name = r["name"]
  unknown = set(r) - set(KEYS) - set(DERIVED)
  if unknown:
    raise bad(f"unknown key(s) {sorted(unknown)}; known: {', '.join(KEYS)}")
  if not isinstance(r.get("config"), str) or not r["config"]:
    raise bad("'config' must be the --config argument, e.g. 'experiments/dft.py:lam=0.1'")
  overrides = _overrides(r, bad)
  seed = r.get("seed", overrides.get("seed", 0))
  if not isinstance(seed, int) or overrides.get("seed", seed) != seed:
    raise bad(f"seed {seed!r} must be an int equal to overrides['seed'] "
              f"({overrides.get('seed')!r})")
  after = r.get("after") or []
  if isinstance(after, str) or not all(isinstance(a, str) for a in after):
    raise bad("'after' must be a list of run names")
  norm = {"name": name, "row": str(r.get("row") or name), "seed": seed, "config": r["config"],
          "overrides": overrides, "after": list(after)}
  for ref in _refs(norm):
    if ref not in norm["after"]:
      norm["after"].append(ref)
  return norm


def validate(runs, where: str = "sweep") -> list[dict]:
  """Checked, normalized copies of the runs: defaults filled in, "{NAME}" references added to
  `after`. Every problem is a one-line ValueError naming the run."""
  if not isinstance(runs, (list, tuple)) or not runs:
    raise ValueError(f"{where}: get_sweep must return a non-empty list of runs, got "
                     f"{type(runs).__name__}")
  out, seen = [], set()
  for i, r in enumerate(runs):
    if not isinstance(r, dict) or not isinstance(r.get("name"), str):
      raise ValueError(f"{where}: run {i} is not a dict with a 'name'")
    name = r["name"]
    bad = lambda msg: ValueError(f"{where}: run {name!r}: {msg}")  # noqa: E731
    if not _NAME.fullmatch(name):
      raise bad("the name must be filesystem-safe: letters, digits, '_', '.', '-'")
    if name in seen:
      raise bad("duplicate name")
    norm = _normalized(r, bad)
    for dep in norm["after"]:
      if dep == name:
        raise bad("depends on itself")
      if dep not in seen:
        known = any(x.get("name") == dep for x in runs if isinstance(x, dict))
        raise bad(f"depends on {dep!r}, which " +
                  ("comes later in the sweep" if known else "is not a run of the sweep"))
    seen.add(name)
    out.append(norm)
  return out


def _load_module(path: str):
  """Imports a sweep file, found relative to the cwd first, then to the source checkout."""
  where = locate(path, "sweep file")
  name = "sweep_" + re.sub(r"\W", "_", os.path.abspath(where))
  spec = importlib.util.spec_from_file_location(name, where)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_resources(path: str) -> dict:
  """The sweep file's `RESOURCES` dict (what each cluster job asks for), or {}."""
  resources = getattr(_load_module(path.partition(":")[0]), "RESOURCES", {})
  if not isinstance(resources, dict):
    raise ValueError(f"{path}: RESOURCES must be a dict, got {type(resources).__name__}")
  return resources


def load(path: str) -> list[dict]:
  """'experiments/table1.py[:arg]' -> its validated runs (`get_sweep(arg)`)."""
  file, sep, arg = path.partition(":")
  module = _load_module(file)
  if not hasattr(module, "get_sweep"):
    raise ValueError(f"{file} has no get_sweep(arg=None)")
  try:
    runs = module.get_sweep(arg) if sep else module.get_sweep()
  except ValueError as e:  # a bad arg: say whose
    raise ValueError(f"{path}: {e}") from None
  return validate(runs, where=path)
