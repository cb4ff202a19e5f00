"""Training end to end: golden loss, sharded = single-device, SIGTERM resume, resharding,
two processes, bad input. Multi-device runs go through subprocesses with XLA_FLAGS."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import train_utils as tu

HERE = os.path.dirname(os.path.abspath(__file__))


def _sharded(meshes, devices=8, grad_accum=1, *flags):
  done = tu.run([sys.executable, os.path.join(HERE, "sharded_step.py"), "--meshes", meshes,
                 "--grad_accum", str(grad_accum), *flags], devices=devices)
  assert done.returncode == 0, done.stderr[-3000:]
  line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


def _close(a, b, rtol=1e-5):
  """Relative difference of the losses and of every parameter (by norm)."""
  assert abs(a["loss"] - b["loss"]) <= rtol * abs(b["loss"]), (a["loss"], b["loss"])
  for x, y in zip(a["params"], b["params"]):  # one nested list per parameter array
    x, y = np.asarray(x), np.asarray(y)
    assert np.linalg.norm(x - y) <= rtol * np.linalg.norm(y)


# Recorded from this implementation (tiny model, fixed batch, seed 0): a regression guard.
GOLDEN_LOSS = 4.178937


def test_golden_one_step_loss():
  import sharded_step
  result = sharded_step.one_step((1, 1, 1), devices=jax.devices()[:1])
  assert abs(result["loss"] - GOLDEN_LOSS) < 1e-4, result["loss"]


def test_a_step_with_a_non_finite_loss_leaves_params_and_optimizer_state_unchanged():
  import sharded_step
  from dft_jax.data import pipeline
  from dft_jax.train import mesh as mesh_lib
  from dft_jax.train import setup as setup_lib
  ce, batch = sharded_step.loss_and_batch("ce", None)

  def scaled(scale):  # the CE loss times `scale` (nan: a step whose loss is not finite)
    def loss_fn(*args, **kwargs):
      loss, metrics = ce(*args, **kwargs)
      return loss * scale, metrics
    return loss_fn

  setup = setup_lib.build(sharded_step.CFG, sharded_step.OPTIM, mesh_shape=(1, 1, 1),
                          devices=jax.devices()[:1])
  state = setup.init_state(seed=0)
  for scale, finite in ((1.0, True), (float("nan"), False), (1.0, True)):
    before = jax.tree.map(np.asarray, (state.params, state.opt_state))
    step = setup.train_step(scaled(scale))
    with jax.set_mesh(setup.mesh):
      state, metrics = step(state, pipeline.to_global(batch, mesh_lib.batch_sharding(setup.mesh)))
    after = jax.tree.map(np.asarray, (state.params, state.opt_state))
    same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(after),
                                                   jax.tree.leaves(before)))
    assert float(metrics["finite"]) == float(finite) and same != finite
  assert int(state.step) == 3


def test_sharded_step_equals_single_device_step():
  results = _sharded("1,1,1;8,1,1;2,4,1;2,2,2;1,4,2")
  single = results.pop("1,1,1")
  for mesh, result in results.items():
    _close(result, single)


def test_gradient_accumulation_equals_one_big_batch():
  # every microbatch has the same token count, so the mean of means is the full-batch mean
  big, accumulated = _sharded("2,1,1", devices=2), _sharded("2,1,1", devices=2, grad_accum=2)
  _close(accumulated["2,1,1"], big["2,1,1"], rtol=1e-5)


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_agree_with_one():
  """Data parallel and FSDP across two processes: the step's loss and parameters, and the
  starting model's embedding fingerprint and bank (gathered from the other process's
  shards), equal one process's."""
  port = _free_port()
  script = os.path.join(HERE, "sharded_step.py")
  meshes = "2,1,1;1,2,1"
  procs = [subprocess.Popen([sys.executable, script, "--meshes", meshes, "--embedding",
                             "--coordinator", f"localhost:{port}", "--num_processes", "2",
                             "--process_id", str(i)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=tu.env(1), cwd=tu.REPO) for i in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  assert all(p.returncode == 0 for p in procs), outs[0][1][-2000:] + outs[1][1][-2000:]
  line = [l for l in outs[0][0].splitlines() if l.startswith("RESULT ")][-1]
  two, one = json.loads(line[len("RESULT "):]), _sharded(meshes, 2, 1, "--embedding")
  for mesh in meshes.split(";"):
    _close(two[mesh], one[mesh])
    assert two[mesh]["fingerprint"] == one[mesh]["fingerprint"] == one["2,1,1"]["fingerprint"]
    np.testing.assert_allclose(two[mesh]["bank"], one[mesh]["bank"], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  root = tmp_path_factory.mktemp("corpus")
  text_dir, tok = tu.make_corpus(str(root))
  return text_dir, tok, str(root / "data")


def _final_params(workdir):
  import orbax.checkpoint as ocp
  path = os.path.join(workdir, "checkpoints")
  step = max(int(s) for s in os.listdir(path) if s.isdigit())
  tree = ocp.PyTreeCheckpointer().restore(os.path.join(path, str(step), "state"))
  return step, tree["params"]


def test_sigterm_then_resume_matches_an_uninterrupted_run(corpus, tmp_path):
  straight = tmp_path / "straight"
  done = tu.run(tu.command(straight, *corpus))
  assert done.returncode == 0, done.stderr[-3000:]

  interrupted = tmp_path / "interrupted"
  proc = subprocess.Popen(tu.command(interrupted, *corpus, "--config.checkpoint_every=100"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=tu.env(1), cwd=tu.REPO)
  deadline = time.time() + 240
  metrics = interrupted / "metrics.jsonl"
  while time.time() < deadline and proc.poll() is None:
    if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
      proc.send_signal(signal.SIGTERM)
      break
    time.sleep(0.05)
  out, err = proc.communicate(timeout=240)
  assert proc.returncode == 0, err[-3000:]
  assert "preempted: saved step" in out
  stopped_at = int(out.split("preempted: saved step ")[1].split()[0])
  assert 3 <= stopped_at < 12

  done = tu.run(tu.command(interrupted, *corpus, "--config.checkpoint_every=100"))
  assert done.returncode == 0, done.stderr[-3000:]
  assert f"resumed from {interrupted}/checkpoints at step {stopped_at}" in done.stdout
  assert tu.losses(interrupted) == tu.losses(straight)
  (s1, p1), (s2, p2) = _final_params(straight), _final_params(interrupted)
  assert s1 == s2 == 12
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
    np.testing.assert_array_equal(a, b)


def test_checkpoint_from_8_devices_restores_on_4_and_1(corpus, tmp_path):
  workdir = tmp_path / "w"
  runs = [(8, "(2,4,1)", 4), (4, "(-1,1,1)", 8), (1, "(1,1,1)", 12)]
  for devices, mesh, steps in runs:
    done = tu.run(tu.command(workdir, *corpus, f"--config.mesh_shape={mesh}",
                             f"--config.total_steps={steps}"), devices=devices)
    assert done.returncode == 0, done.stderr[-3000:]
    if steps > 4:
      assert f"at step {steps - 4}" in done.stdout
  assert max(tu.losses(workdir)) == 12


def _error_line(done):
  assert done.returncode != 0
  return done.stderr.strip().splitlines()[-1]


def test_bad_input_gets_one_clear_line(corpus, tmp_path):
  cmd = lambda *o: tu.command(tmp_path / "w", *corpus, *o)
  for flag, name in (("--config.foo=1", "foo"), ("--config.total_steps=abc", "total_steps")):
    line = _error_line(tu.run(cmd(flag)))
    assert line.startswith("train: error:") and name in line, line
  line = _error_line(tu.run(tu.command("/proc/not_writable", *corpus)))
  assert line.startswith("train: error: workdir '/proc/not_writable' is not writable")
  line = _error_line(tu.run(cmd("--config.init_from=/no/such/model")))
  assert line == "train: error: init_from '/no/such/model' does not exist"
  line = _error_line(tu.run(cmd("--config.model.vocab_size=100")))
  assert line == "train: error: tokenizer has 300 tokens but the model's vocabulary has only 100"


def test_nan_loss_stops_naming_the_step_and_keeps_checkpoints(corpus, tmp_path):
  workdir = tmp_path / "nan"
  done = tu.run(tu.command(workdir, *corpus, "--config.total_steps=4"))
  assert done.returncode == 0
  done = tu.run(tu.command(workdir, *corpus, "--config.total_steps=12", "--config.optim.lr=1e30",
                           "--config.optim.clip_norm=0"))
  line = _error_line(done)
  assert line.startswith("train: error: step ") and "not finite" in line
  assert "the last checkpoint is 4" in line
  assert os.path.isdir(workdir / "checkpoints" / "4")


def test_init_from_incompatible_run_is_refused(corpus, tmp_path):
  base = tmp_path / "base"
  assert tu.run(tu.command(base, *corpus, "--config.total_steps=2")).returncode == 0
  with open(base / "model_config.json") as f:
    config = json.load(f)
  config["hidden_size"] = 48
  with open(base / "model_config.json", "w") as f:
    json.dump(config, f)
  line = _error_line(tu.run(tu.command(tmp_path / "ft", *corpus,
                                       f"--config.init_from={base}")))
  assert line.startswith("train: error: parameter ") and "has shape" in line, line


def test_init_from_a_run_and_from_its_hf_export(corpus, tmp_path):
  base = tmp_path / "base"
  assert tu.run(tu.command(base, *corpus, "--config.total_steps=3")).returncode == 0
  hf_dir = tmp_path / "hf"
  done = tu.run([sys.executable, "-m", "dft_jax.convert", "--from", str(base), "--to-hf",
                 str(hf_dir)])
  assert done.returncode == 0, done.stderr[-2000:]
  _, base_params = _final_params(base)
  for source in (base, hf_dir):  # lr 0: the fine-tuned params are exactly the starting ones
    ft = tmp_path / f"ft_{source.name}"
    done = tu.run(tu.command(ft, *corpus, f"--config.init_from={source}",
                             "--config.total_steps=1", "--config.optim.lr=0",
                             "--config.optim.weight_decay=0", "--config.model.hidden_size=128",
                             "--config.model.num_layers=5"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"from init_from={source}" in done.stdout
    # config.json records the architecture trained (init_from's), not the config file's
    with open(ft / "config.json") as f, open(ft / "model_config.json") as g:
      recorded, trained = json.load(f)["model"], json.load(g)
    assert (recorded["hidden_size"], recorded["num_layers"]) == (32, 2)
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                "num_kv_heads", "head_dim", "rope_theta", "tie_word_embeddings"):
      assert recorded[key] == trained[key], key
    _, ft_params = _final_params(ft)
    for a, b in zip(jax.tree.leaves(base_params), jax.tree.leaves(ft_params)):
      np.testing.assert_array_equal(a, b)


def test_lora_trains_only_the_adapters(corpus, tmp_path):
  base = tmp_path / "base"
  assert tu.run(tu.command(base, *corpus, "--config.total_steps=3")).returncode == 0
  ft = tmp_path / "lora"
  done = tu.run(tu.command(ft, *corpus, f"--config.init_from={base}", "--config.total_steps=4",
                           "--config.model.lora_rank=4",
                           "--config.model.lora_targets=('q','v','down')"))
  assert done.returncode == 0, done.stderr[-2000:]
  assert "LoRA: rank 4 on q,v,down; base weights frozen" in done.stdout
  import orbax.checkpoint as ocp
  state = ocp.PyTreeCheckpointer().restore(str(ft / "checkpoints" / "4" / "state"))
  _, base_params = _final_params(base)
  for a, b in zip(jax.tree.leaves(base_params), jax.tree.leaves(state["frozen"])):
    np.testing.assert_array_equal(a, b)
  adapters = jax.tree_util.tree_flatten_with_path(state["params"])[0]
  assert len(adapters) == 2 * 3 * 2  # (A, B) x 3 targets x 2 layers
  assert all(np.abs(x).max() > 0 for _, x in adapters)  # B starts at 0 and has moved
  done = tu.run([sys.executable, "-m", "dft_jax.convert", "--from", str(ft), "--to-hf",
                 str(tmp_path / "merged")])
  assert done.returncode == 0, done.stderr[-2000:]


def test_unreadable_newest_checkpoint_falls_back_to_the_previous_one(corpus, tmp_path):
  workdir = tmp_path / "w"
  assert tu.run(tu.command(workdir, *corpus, "--config.total_steps=8")).returncode == 0
  state_dir = workdir / "checkpoints" / "8" / "state"
  for f in state_dir.rglob("*"):  # damage step 8's arrays, as a half-written copy would be
    if f.is_file() and "manifest" in f.name:
      f.write_bytes(b"garbage")
  done = tu.run(tu.command(workdir, *corpus, "--config.total_steps=12"))
  assert done.returncode == 0, done.stderr[-2000:]
  assert "checkpoint at step 8 could not be restored" in done.stdout
  assert f"resumed from {workdir}/checkpoints at step 4" in done.stdout
  assert os.path.isdir(workdir / "checkpoints" / "12")
