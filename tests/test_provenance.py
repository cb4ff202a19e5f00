"""Provenance: the record a run and a table keep, its one-line digest, and a table built from
runs of different environments saying so."""

import json
import os

import jax
import numpy

from dft_jax.evaluation import reproduce
from dft_jax.train import provenance


def test_record_holds_versions_commit_machine_command_and_lock():
  record = provenance.collect(["python", "-m", "dft_jax.train", "--workdir=a b"])
  assert record["versions"]["jax"] == jax.__version__
  assert record["versions"]["numpy"] == numpy.__version__
  assert set(record["versions"]) == set(provenance.PACKAGES)
  assert all(record["versions"].values())
  assert len(record["commit"]) == 40 and isinstance(record["dirty"], bool)  # a git checkout
  assert (record["platform"], record["devices"]) == ("cpu", len(jax.devices()))
  assert record["cpu"] and record["command"] == "python -m dft_jax.train '--workdir=a b'"
  line = provenance.digest(record)
  assert f"jax {jax.__version__}" in line and record["commit"][:10] in line
  assert "\n" not in line


def test_lock_pins_are_read_and_checked(tmp_path, monkeypatch):
  lock = tmp_path / "main.txt"
  lock.write_text("# made by pip-compile\njax==0.0.1 \\\n    --hash=sha256:00\n"
                  f"numpy=={numpy.__version__} \\\n    --hash=sha256:11\n")
  monkeypatch.setattr(provenance, "LOCK", str(lock))
  record = provenance.collect()
  assert record["lock_sha256"] == provenance._sha256(str(lock))
  assert record["matches_lock"] is False and record["off_lock"] == ["jax"]
  assert "installed differs: jax" in provenance.digest(record)


def test_a_table_of_runs_from_different_environments_says_so(tmp_path):
  same, other = provenance.collect(), provenance.collect()
  other["versions"] = {**other["versions"], "jax": "0.0.1"}
  dirs = [str(tmp_path / name) for name in ("a", "b", "old")]
  for d in dirs:
    os.makedirs(d)
  provenance.append(dirs[0], same)
  provenance.append(dirs[1], same)
  block, footer = reproduce.provenance_block(dirs[:2])
  assert block["differences"] == [] and "all trained in one environment" in footer
  provenance.append(dirs[1], other)  # resumed elsewhere
  block, footer = reproduce.provenance_block(dirs)
  assert len(block["runs"][dirs[1]]) == 2
  assert block["differences"][0].startswith("versions: ")
  assert "trained in DIFFERENT environments (versions:" in footer
  assert "No provenance recorded for run(s) old" in footer
  json.dumps(block)  # results.json can hold it
