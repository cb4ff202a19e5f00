"""Cluster launchers (scripts/sweep.py --launcher=local|slurm|xpk), all on CPU.

local: submitit's LocalExecutor runs a 3-run tiny sweep (two independent runs and one that
fine-tunes the first): the independent runs overlap in time, the dependent one starts after its
parent finished, and every final checkpoint and loss equals the sequential launcher's. A
two-task local job trains as two JAX processes (CPU collectives) to one process's losses. A
preemption signal to a running job leaves a checkpoint, the job is requeued and ends with the
uninterrupted losses. slurm: a stand-in sbatch records the scripts (resources, the array, the
afterok dependency); a finished sweep submits nothing. xpk: the command lines as text.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

import train_utils as tu
from dft_jax import sweeps
from dft_jax.sweeps import cluster, jobs

submitit = pytest.importorskip("submitit", reason="the cluster extra (in the test extra)")

TINY = {"total_steps": 24, "batch_size": 8, "seq_len": 32, "log_every": 1,
        "checkpoint_every": 100, "eval_every": 12, "eval_batches": 1, "model.vocab_size": 320,
        "model.hidden_size": 32, "model.intermediate_size": 64, "model.num_layers": 2,
        "model.num_heads": 4, "model.num_kv_heads": 2, "model.head_dim": 8,
        "optim.warmup_steps": 2}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  root = tmp_path_factory.mktemp("corpus")
  text_dir, tok = tu.make_corpus(str(root))
  return {"data.corpus": text_dir, "data.tokenizer": tok, "data.data_dir": str(root / "data")}


def _runs(corpus, names=("a", "b", "c")):
  """a, b: tiny pretrainings (seeds 0, 1); c: a fine-tune of a (init_from "{a}")."""
  config = "experiments/pretrain_tiny.py"
  every = {**TINY, **corpus}
  made = {"a": sweeps.run("a", config, seed=0, **every),
          "b": sweeps.run("b", config, seed=1, **every),
          "c": sweeps.run("c", config, seed=0, init_from="{a}",
                          **{**every, "total_steps": 8, "optim.lr": 1e-3})}
  return sweeps.validate([made[n] for n in names])


def _events(workdir):
  with open(os.path.join(workdir, jobs.TASKS_FILE)) as f:
    return [json.loads(line) for line in f]


def _final_params(workdir):
  import orbax.checkpoint as ocp
  path = os.path.join(workdir, "checkpoints")
  step = max(int(s) for s in os.listdir(path) if s.isdigit())
  return step, ocp.PyTreeCheckpointer().restore(os.path.join(path, str(step), "state"))["params"]


@pytest.fixture(scope="module")
def sequential(corpus, tmp_path_factory):
  root = str(tmp_path_factory.mktemp("sequential"))
  sweeps.run_all(_runs(corpus), root, log=lambda _: None)
  return root


def test_local_launcher_runs_in_parallel_after_dependencies(corpus, sequential, tmp_path):
  root, lines = str(tmp_path / "local"), []
  runs = _runs(corpus)
  sweeps.write_manifest(runs, root, "tiny")
  cluster.run_local(runs, root, max_parallel=2, log=lines.append, poll_s=0.2)
  span = {}
  for name in "abc":
    events = _events(os.path.join(root, name))
    assert [e["event"] for e in events] == ["start", "exit"] and events[1]["status"] == 0
    span[name] = (events[0]["time"], events[1]["time"])
  assert span["a"][0] < span["b"][1] and span["b"][0] < span["a"][1], span  # overlap
  assert span["c"][0] >= span["a"][1], span                                 # after its parent
  for name in "abc":
    assert tu.losses(os.path.join(root, name)) == tu.losses(os.path.join(sequential, name))
    (s1, p1), (s2, p2) = (_final_params(os.path.join(r, name)) for r in (root, sequential))
    assert s1 == s2
    for x, y in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
      np.testing.assert_array_equal(x, y)
  manifest = sweeps.read_manifest(root)
  assert all(r["job"]["launcher"] == "local" and r["job"]["id"] for r in manifest["runs"])
  assert lines[-1].startswith("sweep done: 3 runs")

  lines.clear()  # resubmitting a finished sweep runs nothing
  cluster.run_local(runs, root, log=lines.append, poll_s=0.2)
  assert lines[0].startswith("local: 0 of 3 runs to do")
  assert all(len(_events(os.path.join(root, n))) == 2 for n in "abc")


def test_local_launcher_names_the_failed_run_and_skips_its_dependents(corpus, tmp_path):
  runs = _runs(corpus)
  runs[0]["overrides"]["data.corpus"] = str(tmp_path / "no_such_corpus")  # fails at start
  root = str(tmp_path / "fails")
  with pytest.raises(sweeps.SweepError, match=r"run 'a' failed with exit status 1; its output "
                     r"is in .*/a/train.log \(its log ends: train: error: unknown corpus .*"
                     r"not started: c"):
    cluster.run_local(runs[:1] + runs[2:], root, log=lambda _: None, poll_s=0.2)


def test_two_task_local_job_trains_as_two_processes(corpus, sequential, tmp_path):
  root = str(tmp_path / "two")
  runs = _runs(corpus, names=("a",))
  cluster.run_local(runs, root, cluster.Resources(tasks_per_node=2), log=lambda _: None,
                    poll_s=0.2)
  events = _events(os.path.join(root, "a"))
  assert sorted(e["rank"] for e in events if e["event"] == "start") == [0, 1]
  with open(os.path.join(root, "a", "train.log")) as f:
    log = f.read()
  assert "'fsdp': 2" in log  # one mesh over both processes' devices
  two, one = tu.losses(os.path.join(root, "a")), tu.losses(os.path.join(sequential, "a"))
  assert two.keys() == one.keys()
  np.testing.assert_allclose(list(two.values()), list(one.values()), rtol=2e-5)


def test_preempted_local_job_checkpoints_requeues_and_resumes(corpus, sequential, tmp_path):
  root = str(tmp_path / "preempted")
  runs = _runs(corpus, names=("a",))
  workdir = os.path.join(root, "a")
  errors = []
  thread = threading.Thread(target=lambda: _capture(errors, cluster.run_local, runs, root,
                                                    log=lambda _: None, poll_s=0.2))
  thread.start()
  metrics, deadline = os.path.join(workdir, "metrics.jsonl"), time.time() + 240
  while time.time() < deadline:
    if os.path.isfile(metrics) and len(open(metrics).read().splitlines()) >= 3:
      os.kill(_events(workdir)[0]["pid"], signal.SIGUSR2)  # submitit's preemption signal
      break
    time.sleep(0.02)
  thread.join(timeout=300)
  assert not errors, errors
  events = _events(workdir)
  assert [e["event"] for e in events] == ["start", "start", "exit"], events  # requeued once
  with open(os.path.join(workdir, "train.log")) as f:
    log = f.read()
  stopped = int(log.split("preempted: saved step ")[1].split()[0])
  assert 3 <= stopped < TINY["total_steps"]
  assert f"resumed from {workdir}/checkpoints at step {stopped}" in log
  assert tu.losses(workdir) == tu.losses(os.path.join(sequential, "a"))


def _capture(errors, fn, *args, **kwargs):
  try:
    fn(*args, **kwargs)
  except Exception as e:  # noqa: BLE001 (reported by the test)
    errors.append(e)


# --- slurm through a stand-in sbatch ---------------------------------------------------------

SBATCH = """#!/bin/sh
# Stands in for sbatch: keeps a copy of the script it is given, answers with a job id.
n=$(ls "{record}" | wc -l)
cp "$1" "{record}/$n.sh"
echo "Submitted batch job $((1000 + n))"
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
  bin_dir, record = tmp_path / "bin", tmp_path / "sbatch_record"
  bin_dir.mkdir()
  record.mkdir()
  (bin_dir / "sbatch").write_text(SBATCH.format(record=record))
  (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
  for tool in ("sbatch", "srun"):
    (bin_dir / tool).chmod(0o755)
  monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
  return record


def _scripts(record):
  return [(record / f"{i}.sh").read_text() for i in range(len(os.listdir(record)))]


def test_slurm_launcher_submits_an_array_and_an_afterok_dependency(corpus, fake_slurm, tmp_path):
  root, runs = str(tmp_path / "slurm"), _runs(corpus)
  sweeps.write_manifest(runs, root, "tiny")
  res = cluster.Resources(partition="gpu", account="lab", nodes=2, tasks_per_node=1,
                          gpus_per_node=8, time_min=90, extra=(("qos", "high"),))
  submitted = cluster.submit_slurm(runs, root, res, log=lambda _: None)
  assert {n: j.job_id for n, j in submitted.items()} == {"a": "1000_0", "b": "1000_1",
                                                         "c": "1001"}
  array, dependent = _scripts(fake_slurm)
  for script in (array, dependent):
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --nodes=2",
                 "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --time=90", "#SBATCH --qos=high", "#SBATCH --signal=USR2@120"):
      assert line in script, (line, script)
  assert "#SBATCH --array=0-1%2" in array and "--dependency" not in array
  assert "#SBATCH --dependency=afterok:1000_0" in dependent and "--array" not in dependent
  manifest = sweeps.read_manifest(root)
  assert [r["job"]["id"] for r in manifest["runs"]] == ["1000_0", "1000_1", "1001"]
  assert all(r["job"]["log"].endswith("_0_log.out") for r in manifest["runs"])

  # the job each task unpickles: the run's train command, resumable from its workdir
  job = submitted["c"].submission().function
  assert isinstance(job, jobs.TrainJob) and job.workdir == os.path.join(root, "c")
  assert f"--config.init_from={root}/a" in job.argv and job.local_port is None

  for r in runs:  # finished: a second submission submits nothing
    os.makedirs(os.path.join(root, r["name"], "checkpoints",
                             str(sweeps.build_config(r, root).total_steps)))
    with open(os.path.join(root, r["name"], "config.json"), "w") as f:
      f.write(sweeps.build_config(r, root).to_json())
  assert cluster.submit_slurm(runs, root, res, log=lambda _: None) == {}
  assert len(_scripts(fake_slurm)) == 2


def test_slurm_launcher_waits_only_for_unfinished_parents(corpus, fake_slurm, tmp_path):
  root, runs = str(tmp_path / "slurm"), _runs(corpus)
  a = runs[0]
  os.makedirs(os.path.join(root, "a", "checkpoints", str(TINY["total_steps"])))
  with open(os.path.join(root, "a", "config.json"), "w") as f:
    f.write(sweeps.build_config(a, root).to_json())
  submitted = cluster.submit_slurm(runs, root, cluster.Resources(partition="p"),
                                   log=lambda _: None)
  assert set(submitted) == {"b", "c"}
  (script,) = _scripts(fake_slurm)  # b and c: one array, nothing to wait for
  assert "#SBATCH --array=0-1%2" in script and "--dependency" not in script


def _sweep_cli(*args, env=None):
  return subprocess.run([sys.executable, os.path.join(tu.REPO, "scripts", "sweep.py"), *args],
                        capture_output=True, text=True, cwd=tu.REPO, timeout=120, env=env)


def test_launcher_errors_are_one_line(tmp_path):
  sweep = "experiments/sft.py"
  done = _sweep_cli(sweep, "--root", str(tmp_path / "r"), "--launcher=pbs")
  assert done.returncode != 0
  assert done.stderr.strip().splitlines()[-1] == (
      "sweep: error: unknown launcher 'pbs'; known: sequential, local, slurm, xpk")
  done = _sweep_cli(sweep, "--root", str(tmp_path / "r"), "--launcher=slurm")
  assert done.stderr.strip().splitlines()[-1].startswith(
      "sweep: error: the slurm launcher needs a partition: --partition=NAME")
  done = _sweep_cli(sweep, "--root", str(tmp_path / "r"), "--launcher=xpk")
  assert done.stderr.strip().splitlines()[-1] == (
      "sweep: error: the xpk launcher needs --xpk_cluster, --tpu_type, --docker_image")


def test_missing_submitit_names_the_extra(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
  with pytest.raises(sweeps.SweepError, match=r"need submitit: pip install 'dft_jax\[cluster\]'"):
    cluster.run_local(sweeps.load("experiments/sft.py"), str(tmp_path), log=lambda _: None)


def test_resources_from_the_sweep_file_and_flags(tmp_path):
  from absl import flags
  from dft_jax.sweeps import cli
  values = flags.FlagValues()
  cli.define_flags(values)
  sweep = tmp_path / "mine.py"
  sweep.write_text("RESOURCES = {'partition': 'a100', 'gpus_per_node': 4, 'time_min': 30}\n"
                   "def get_sweep(arg=None):\n  return [dict(name='x', config='c.py')]\n")
  values(["sweep", "--gpus_per_node=8", "--slurm_extra=qos=high,constraint=h100"])
  res = cli.resources(str(sweep), values)
  assert (res.partition, res.gpus_per_node, res.time_min, res.nodes) == ("a100", 8, 30, 1)
  assert res.extra == (("qos", "high"), ("constraint", "h100"))
  sweep.write_text("RESOURCES = {'gpu': 4}\n")
  with pytest.raises(ValueError, match=r"unknown resource\(s\) \['gpu'\]"):
    cli.resources(str(sweep), values)


# --- xpk -------------------------------------------------------------------------------------


def test_xpk_commands(corpus):
  runs = _runs(corpus)
  target = cluster.XpkTarget(cluster="v5p-pod", tpu_type="v5p-128", docker_image="gcr.io/me/dft",
                             num_slices=2, zone="us-east5-a", prefix="Abl")
  lines = cluster.xpk_commands(runs, "/gcs/runs", target)
  args = " ".join(sweeps.train_args(runs[0], "/gcs/runs"))
  assert lines[0] == (
      "xpk workload create --cluster=v5p-pod --zone=us-east5-a --workload=abl-a "
      "--tpu-type=v5p-128 --num-slices=2 --docker-image=gcr.io/me/dft "
      f"'--command=python3 -m dft_jax.train {args} --workdir=/gcs/runs/a --distributed'")
  assert lines[1].startswith("xpk workload create --cluster=v5p-pod --zone=us-east5-a "
                             "--workload=abl-b ")
  assert lines[2] == ("xpk workload list --cluster=v5p-pod --zone=us-east5-a "
                      "--wait-for-job-completion=abl-a")
  assert "--workload=abl-c " in lines[3] and "--config.init_from=/gcs/runs/a " in lines[3]
  assert len(lines) == 4
  assert cluster.workload_name("dft", "DFT_lam0.2_s0") == "dft-dft-lam0-2-s0"
  assert len(cluster.workload_name("x", "y" * 60)) == 40


def test_reproduce_table_collect_names_unfinished_runs(tmp_path):
  root = str(tmp_path / "t")
  done = subprocess.run([sys.executable, os.path.join(tu.REPO, "scripts", "reproduce_table.py"),
                         "--sweep", "experiments/table1.py:model=tiny", "--root", root,
                         "--collect"], capture_output=True, text=True, cwd=tu.REPO, timeout=120)
  assert done.returncode == 1
  assert done.stderr.strip().splitlines()[-1] == (
      f"reproduce_table: error: run(s) not finished in {root}: base, sft_s0, dft_s0")
  done = subprocess.run([sys.executable, os.path.join(tu.REPO, "scripts", "reproduce_table.py"),
                         "--sweep", "experiments/table1.py:model=tiny", "--root", root,
                         "--launcher=xpk"], capture_output=True, text=True, cwd=tu.REPO,
                        timeout=120)
  assert done.stderr.strip().splitlines()[-1].startswith(
      "reproduce_table: error: xpk workloads are not waited for here")
