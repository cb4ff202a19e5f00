"""Sweeps: the paper table and the ablations expand as intended, every run's config builds
through config_flags (tuple overrides included) into a loss config the loss accepts, --print
lines parse back, bad sweeps fail naming the run, run_all skips done runs and stops at a
failure. No training: the trainer is faked (in process, or as a subprocess that runs the train
CLI's own flag parsing and writes what a finished run leaves)."""

import json
import os
import shlex
import subprocess
import sys
import textwrap

import pytest

from dft_jax import losses, sweeps
from dft_jax.losses import divergences, features

REPO = sweeps.REPO
ROOT = "/tmp/sweep_root"
FINETUNES = ("SFT", "DFT (score-function)", "MixCE", "TaiLr", "DyFT", "EBFT-style")


def _by_row(runs):
  out = {}
  for r in runs:
    out.setdefault(r["row"], []).append(r)
  return out


def test_table1_expansion():
  demo = sweeps.load("experiments/table1.py")
  assert [r["name"] for r in demo] == ["base", "sft_s0", "dft_s0"]
  # the pretrained default: base is the fetched model recorded by a zero-step run, and DFT
  # samples with the deployed decoding
  assert demo[0]["config"] == ("experiments/sft.py:domain=encyclopedia,model=smollm2-135m,"
                               "steps=0")
  assert "temperature=0.7,top_p=0.9" in demo[2]["config"]
  assert "lr=5e-05" in demo[1]["config"] and "lr=5e-05" in demo[2]["config"]
  runs = sweeps.load("experiments/table1.py:model=tiny,baselines=True,seeds=3")
  assert runs[0]["name"] == "base" and runs[0]["row"] == "base" and runs[0]["after"] == []
  assert "pretrain_tiny.py" in runs[0]["config"]
  rows = _by_row(runs)
  assert list(rows) == ["base", *FINETUNES]
  for row in FINETUNES:
    assert [r["seed"] for r in rows[row]] == [0, 1, 2]
    for r in rows[row]:
      assert r["after"] == ["base"]
      assert r["overrides"] == {"seed": r["seed"], "init_from": "{base}"}
  assert len({r["name"] for r in runs}) == len(runs) == 19
  ebft = sweeps.build_config(rows["EBFT-style"][0], ROOT).loss
  assert (ebft.name, ebft.features, ebft.divergence, ebft.estimator) == \
      ("dft", "embedding", "energy", "score_function")
  spaces = sweeps.load("experiments/table1.py:model=tiny,features=stats:embedding:both")
  assert [r["name"] for r in spaces] == ["base", "sft_s0", "dft_s0", "dft_embedding_s0",
                                         "dft_both_s0"]
  built = [sweeps.build_config(r, ROOT).loss for r in spaces[2:]]
  assert [b.features for b in built] == ["stats", "embedding", "both"]
  assert all(b.to_dict() == {**built[0].to_dict(), "features": b.features} for b in built)

  small = sweeps.load("experiments/table1.py:model=tiny,domain=news,seeds=2,steps=7,"
                      "baselines=False")
  assert list(_by_row(small)) == ["base", "SFT", "DFT (score-function)"]
  assert [r["name"] for r in small] == ["base", "sft_s0", "dft_s0", "sft_s1", "dft_s1"]
  assert all("domain=news" in r["config"] and "steps=7" in r["config"] for r in small[1:])


def test_table1_get_config_is_its_dft_run():
  from experiments import dft, table1
  ours = table1.get_config("model=tiny,domain=news,steps=7,seeds=5")
  assert ours.to_json() == dft.get_config("domain=news,steps=7").to_json()
  run = next(r for r in sweeps.load("experiments/table1.py:model=tiny,domain=news,steps=7") if
             r["name"] == "dft_s0")
  built = sweeps.build_config(run, ROOT)
  assert built.loss.to_json() == ours.loss.to_json() and built.total_steps == 7


def test_table1_rows_take_their_own_lambda_and_clip():
  runs = sweeps.load("experiments/table1.py:model=tiny,domain=narrative,baselines=True,"
                     "features=stats:both,clip=5,lam=0.003,lam_both=0.01,lam_ebft=0.03")
  loss = {r["name"]: sweeps.build_config(r, ROOT).loss for r in runs if r["name"] != "base"}
  assert (loss["dft_s0"].lam, loss["dft_both_s0"].lam, loss["ebft_s0"].lam) == (0.003, 0.01, 0.03)
  assert loss["dft_s0"].feature_clip == loss["dft_both_s0"].feature_clip == 5.0
  assert loss["ebft_s0"].feature_clip == 0.0  # embeddings only: no statistics to clip
  assert "clip" not in sweeps.load("experiments/table1.py")[2]["config"]  # off: as before


def test_table2_rows_follow_what_was_chosen(monkeypatch):
  from experiments import table2
  monkeypatch.setitem(table2.CHOSEN, "narrative",
                      dict(lam=0.0001, clip=0.0, lam_both=0.0003, lam_ebft=0.01, eta=0.9,
                           lr_dyft=5e-6))
  runs = table2.get_sweep("model=tiny,seeds=2")
  names = [r["name"] for r in runs]
  # no embedding λ and no TaiLr γ chosen: no rows for them
  assert names[:7] == ["base", "sft_s0", "dft_s0", "dft_both_s0", "mixce_s0", "dyft_s0",
                       "ebft_s0"] and len(names) == 13
  built = {r["name"]: sweeps.build_config(r, ROOT) for r in runs if r["name"] != "base"}
  loss = {name: c.loss for name, c in built.items()}
  assert (loss["dft_s1"].lam, loss["dft_both_s1"].lam, loss["ebft_s1"].lam) == \
      (0.0001, 0.0003, 0.01)
  # the rivals' own knobs: MixCE's η and DyFT's lr as chosen
  assert (loss["mixce_s1"].eta, built["dyft_s1"].optim.lr) == (0.9, 5e-6)
  assert built["mixce_s1"].optim.lr == built["sft_s1"].optim.lr != 5e-6
  # table1 takes some of the rivals by name, and names an unknown one
  assert [r["name"] for r in sweeps.load("experiments/table1.py:model=tiny,baselines=ebft")] \
      == ["base", "sft_s0", "dft_s0", "ebft_s0"]
  with pytest.raises(ValueError, match="unknown baseline.*emo"):
    sweeps.load("experiments/table1.py:model=tiny,baselines=ebft:emo")
  monkeypatch.setitem(table2.CHOSEN, "narrative", dict(lam=0.0001, clip=0.0))
  assert [r["name"] for r in table2.get_sweep("model=tiny,seeds=1")] == [
      "base", "sft_s0", "dft_s0"]
  with pytest.raises(ValueError, match="no values chosen for domain 'news'"):
    table2.get_sweep("domain=news")


def test_tune_table1_grid_and_rule():
  from experiments import tune_table1
  runs = sweeps.load("experiments/tune_table1.py:model=tiny,rows=stats:ebft,lams=0.001:0.01,"
                     "clips=5:0")
  assert [r["name"] for r in runs] == [
      "base", "sft_s0", "stats_lam0.001_clip5_s0", "stats_lam0.001_clip0_s0",
      "stats_lam0.01_clip5_s0", "stats_lam0.01_clip0_s0", "ebft_lam0.001_clip5_s0",
      "ebft_lam0.01_clip5_s0"]
  built = {r["name"]: sweeps.build_config(r, ROOT).loss for r in runs[2:]}
  assert built["stats_lam0.01_clip0_s0"].feature_clip == 0.0
  assert (built["ebft_lam0.01_clip5_s0"].lam, built["ebft_lam0.01_clip5_s0"].features) == \
      (0.01, "embedding")

  def comp(row, ppl, gap, defined=True):
    return {"row": row, "deltas": {"perplexity_ratio": {"delta": ppl}},
            "gap_closed": {"feature_sinkhorn": {"value": gap, "defined": defined}}}
  results = {"decodings": {"deployed": {"comparisons": [
      comp("stats (λ=0.001, clip=5)", 0.01, 0.2), comp("stats (λ=0.01, clip=5)", 0.029, 0.6),
      comp("stats (λ=0.03, clip=5)", 0.05, 0.9),           # closes most, but +5% perplexity
      comp("ebft (λ=0.001, clip=5)", 0.04, 0.5), comp("DFT (something else)", 0, 1)]}}}
  chosen = tune_table1.choose(results)
  assert [(c["row"], c["value"]) for c in chosen if c["chosen"] and c["qualifies"]] == [
      ("stats", 0.01)]
  assert [c["qualifies"] for c in chosen] == [True, True, False, False]
  text = tune_table1.report(chosen)
  assert "ebft: no λ on the grid keeps perplexity within +3% of SFT" in text
  # no qualifying value: the row still gets one, its lowest-perplexity value, said as such
  assert [(c["row"], c["value"]) for c in chosen if c["chosen"] and not c["qualifies"]] == [
      ("ebft", 0.001)]
  # two tables of one grid are read as one: a better value in the second wins
  more = {"decodings": {"deployed": {"comparisons": [
      comp("stats (λ=0.003, clip=0)", 0.02, 0.7), comp("ebft (λ=0.0003, clip=0)", 0.01, 0.1)]}}}
  both = tune_table1.choose(results, more)
  assert [(c["row"], c["value"], c["clip"]) for c in both if c["chosen"]] == [
      ("stats", 0.003, 0.0), ("ebft", 0.0003, 0.0)]


def test_tune_table1_second_knob_samples_per_step():
  from experiments import tune_table1
  runs = sweeps.load("experiments/tune_table1.py:model=tiny,rows=stats:ebft,lams=0.001,"
                     "clips=0,samples=0:32")
  assert [r["name"] for r in runs] == [
      "base", "sft_s0", "stats_lam0.001_clip0_s0", "stats_lam0.001_clip0_n32_s0",
      "ebft_lam0.001_clip0_s0"]  # the grid's other rows take its first value
  built = {r["name"]: sweeps.build_config(r, ROOT).loss for r in runs[2:]}
  assert built["stats_lam0.001_clip0_n32_s0"].dist_batch == 32
  assert built["stats_lam0.001_clip0_s0"].dist_batch == built["ebft_lam0.001_clip0_s0"].dist_batch
  assert built["stats_lam0.001_clip0_s0"].dist_batch != 32
  comps = [{"row": r["row"], "deltas": {"perplexity_ratio": {"delta": ppl}},
            "gap_closed": {"feature_sinkhorn": {"value": gap, "defined": True}}}
           for r, ppl, gap in zip(runs[2:4], (0.01, 0.02), (0.1, 0.3))]
  chosen = tune_table1.choose({"decodings": {"deployed": {"comparisons": comps}}})
  assert [(c["samples"], c["chosen"]) for c in chosen] == [(0, False), (32, True)]
  assert "| stats | λ=0.001 | 0 | 32 |" in tune_table1.report(chosen)
  # table2's CHOSEN may hold it: the DFT and EBFT-style rows then draw that many per step
  table = sweeps.load("experiments/table1.py:model=tiny,samples=32,baselines=True")
  assert {sweeps.build_config(r, ROOT).loss.dist_batch for r in table
          if r["name"] in ("dft_s0", "ebft_s0")} == {32}


def test_tune_table1_tunes_each_rival_over_its_own_knob():
  from experiments import tune_table1
  runs = sweeps.load("experiments/tune_table1.py:model=tiny,rows=mixce:tailr:dyft,etas=0.5:0.9,"
                     "gammas=0.01,dyft_lrs=1e-05:0.0001")
  assert [r["row"] for r in runs[2:]] == [
      "mixce (η=0.5)", "mixce (η=0.9)", "tailr (γ=0.01)", "dyft (lr=1e-05)", "dyft (lr=0.0001)"]
  built = {r["name"]: sweeps.build_config(r, ROOT) for r in runs[2:]}
  assert (built["mixce_eta0.9_s0"].loss.eta, built["tailr_gamma0.01_s0"].loss.gamma) == (0.9, 0.01)
  assert built["dyft_lr1e-05_s0"].optim.lr == 1e-05

  def comp(row, ppl, gap):
    return {"row": row, "deltas": {"perplexity_ratio": {"delta": ppl}},
            "gap_closed": {"feature_sinkhorn": {"value": gap, "defined": True}}}
  results = {"decodings": {"deployed": {"comparisons": [
      comp("mixce (η=0.5)", 0.2, -0.5), comp("mixce (η=0.9)", 0.02, -0.1),
      comp("dyft (lr=1e-05)", 0.3, -0.4), comp("dyft (lr=0.0001)", 1.5, -2.0)]}}}
  chosen = {(c["row"], c["value"]): (c["chosen"], c["qualifies"])
            for c in tune_table1.choose(results)}
  assert chosen == {("mixce", 0.5): (False, False), ("mixce", 0.9): (True, True),
                    ("dyft", 1e-05): (True, False), ("dyft", 0.0001): (False, False)}
  # the table takes the chosen knobs
  table = {r["name"]: sweeps.build_config(r, ROOT) for r in sweeps.load(
      "experiments/table1.py:model=tiny,baselines=True,eta=0.9,gamma=0.001,lr_dyft=1e-05")}
  assert (table["mixce_s0"].loss.eta, table["tailr_s0"].loss.gamma,
          table["dyft_s0"].optim.lr, table["mixce_s0"].optim.lr) == (
              0.9, 0.001, 1e-05, table["sft_s0"].optim.lr)
  with pytest.raises(ValueError, match="unknown row 'nope'"):
    sweeps.load("experiments/tune_table1.py:rows=nope")


@pytest.mark.parametrize("family,count", [("lam", 4), ("epsilon", 2), ("groups", 5),
                                          ("estimator", 2), ("divergence", 2), ("mode", 1),
                                          ("gen_len", 2), ("features", 2), ("all", 20)])
def test_ablation_families(family, count):
  """base + the shared reference run + the family's other values, per seed."""
  runs = sweeps.load(f"experiments/ablations.py:family={family}")
  assert [r["name"] for r in runs[:2]] == ["base", "ref_s0"]
  assert len(runs) == 2 + count
  two = sweeps.load(f"experiments/ablations.py:family={family},seeds=2")
  assert len(two) == 1 + 2 * (1 + count)
  assert len({r["name"] for r in two}) == len(two)
  assert all(r["after"] == ["base"] for r in two[1:])


def test_unknown_ablation_family():
  with pytest.raises(ValueError, match="unknown ablation family 'nope'"):
    sweeps.load("experiments/ablations.py:family=nope")


SWEEPS = ["experiments/table1.py:model=tiny", "experiments/ablations.py:family=all",
          "experiments/tune_table1.py:model=tiny,rows=stats:embedding:both:ebft,clips=5:0",
          "experiments/tune_table1.py:model=tiny,rows=mixce:tailr:dyft",
          "experiments/table2.py:model=tiny,baselines=True",
          "experiments/sft.py", "experiments/dft.py", "experiments/baselines.py"]


def _check_loss(loss):
  """What losses.make checks before it needs a tokenizer and the domain's statistics."""
  if loss.name != "dft":
    losses.make(loss, None)
    return
  with pytest.raises(ValueError, match="needs the run's tokenizer"):
    losses.make(loss, None)  # every earlier check passed
  features.group_mask(loss.groups)
  divergences.make(loss.divergence)
  assert loss.prompt_len + loss.gen_len <= 2048


@pytest.mark.parametrize("sweep", SWEEPS)
def test_every_run_builds_through_config_flags(sweep):
  runs = sweeps.load(sweep)
  for r in runs:
    config = sweeps.build_config(r, ROOT)
    assert config.seed == r["seed"]
    assert config.init_from == ("" if r["name"] == "base" else os.path.join(ROOT, "base"))
    for key, value in r["overrides"].items():
      got = config
      for part in key.split("."):
        got = got[part]
      want = sweeps.resolve_refs(value, ROOT) if isinstance(value, str) else value
      assert got == want and type(got) is type(want), (r["name"], key, got)
    _check_loss(config.loss)


def test_pretrained_table_builds_through_config_flags(tmp_path, monkeypatch):
  # a stand-in for the fetched model: configs only need its directory to be marked fetched
  monkeypatch.setenv("DFT_JAX_DATA", str(tmp_path))
  folder = tmp_path / "models" / "smollm2-135m"
  folder.mkdir(parents=True)
  (folder / "fetched.json").write_text("{}")
  built = {r["name"]: sweeps.build_config(r, ROOT) for r in sweeps.load("experiments/table1.py")}
  assert built["base"].init_from == str(folder) and built["base"].total_steps == 0
  assert built["dft_s0"].init_from == os.path.join(ROOT, "base")
  loss = built["dft_s0"].loss
  assert (loss.temperature, loss.top_p, loss.gen_len, loss.lam) == (0.7, 0.9, 48, 0.001)
  assert built["sft_s0"].optim.lr == built["dft_s0"].optim.lr == 5e-5
  _check_loss(loss)
  monkeypatch.setenv("DFT_JAX_DATA", str(tmp_path / "empty"))
  with pytest.raises(Exception, match="pretrained.fetch|pretrained fetch smollm2-135m"):
    sweeps.build_config(sweeps.load("experiments/table1.py")[1], ROOT)


def test_ablation_values_reach_the_loss_config():
  built = {r["name"]: sweeps.build_config(r, ROOT).loss
           for r in sweeps.load("experiments/ablations.py:family=all")[1:]}
  ref = built["ref_s0"]
  assert (ref.lam, ref.epsilon, ref.estimator, ref.divergence, ref.mode, ref.gen_len,
          ref.features) == (0.002, 0.05, "score_function", "sinkhorn", "joint", 64, "stats")
  assert ref.groups == tuple(features.GROUPS)
  assert built["lam0.2_s0"].lam == 0.2 and built["epsilon0.01_s0"].epsilon == 0.01
  assert built["no_entropy_s0"].groups == tuple(g for g in features.GROUPS if g != "entropy")
  assert built["straight_through_s0"].estimator == "straight_through"
  assert built["energy_s0"].divergence == "energy" and built["alternate_s0"].mode == "alternate"
  assert built["gen_len128_s0"].gen_len == 128
  assert built["embedding_s0"].features == "embedding" and built["both_s0"].features == "both"
  for name, loss in built.items():  # one knob at a time
    diffs = [k for k in ref if loss[k] != ref[k]]
    assert len(diffs) == (0 if name == "ref_s0" else 1), (name, diffs)


def test_flag_values():
  assert sweeps.flag_value(("a",)) == '("a",)'
  assert sweeps.flag_value(("a", "b")) == '("a", "b")'
  assert sweeps.flag_value(True) == "true" and sweeps.flag_value(0.2) == "0.2"


def _script(*args):
  done = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "sweep.py"), *args],
                        capture_output=True, text=True, cwd=REPO, timeout=120)
  return done


def test_print_lines_parse_back_and_manifest(tmp_path):
  root = str(tmp_path / "abl")
  sweep = "experiments/ablations.py:family=groups,seeds=2"
  done = _script(sweep, "--root", root, "--print")
  assert done.returncode == 0, done.stderr
  lines = done.stdout.strip().splitlines()
  runs = sweeps.load(sweep)
  assert [shlex.split(line) for line in lines] == [sweeps.command(r, root) for r in runs]
  ablated = shlex.split(lines[2])
  assert f"--config.init_from={root}/base" in ablated
  assert '--config.loss.groups=("diversity", "sentence_length", "punctuation", "entropy")' in \
      ablated
  manifest = sweeps.read_manifest(root)
  assert (manifest["sweep"], manifest["arg"]) == ("experiments/ablations.py",
                                                  "family=groups,seeds=2")
  assert [{k: r[k] for k in sweeps.KEYS} for r in manifest["runs"]] == runs
  assert manifest["runs"][2]["workdir"] == os.path.join(root, runs[2]["name"])


def test_bad_override_fails_before_anything(tmp_path):
  bad = sweeps.run("x", "experiments/dft.py", **{"loss.epsilonn": 0.1})
  with pytest.raises(ValueError, match="run 'x'") as e:
    sweeps.build_config(bad, str(tmp_path))
  assert str(e.value) == ("run 'x': bad --config override --config.loss.epsilonn: no field "
                          "'epsilonn' (did you mean \"epsilon\"?)")
  with pytest.raises(ValueError, match="run 'x'"):
    sweeps.build_config(sweeps.run("x", "experiments/dft.py", **{"loss.gen_len": "long"}),
                        str(tmp_path))


def _sweep_file(tmp_path, runs_src):
  path = tmp_path / "bad_sweep.py"
  path.write_text(textwrap.dedent(f"""
      def get_sweep(arg=None):
        c = "experiments/sft.py"
        return {runs_src}
      """))
  return str(path)


@pytest.mark.parametrize("runs_src,message", [
    ("[dict(name='a', config=c), dict(name='a', config=c)]", "run 'a': duplicate name"),
    ("[dict(name='a', config=c, after=['z'])]", "run 'a': depends on 'z', which is not a run"),
    ("[dict(name='a', config=c, after=['b']), dict(name='b', config=c)]",
     "run 'a': depends on 'b', which comes later"),
    ("[dict(name='a', config=c, overrides={'init_from': '{basee}'})]",
     "run 'a': depends on 'basee', which is not a run"),
    ("[dict(name='a/b', config=c)]", "run 'a/b': the name must be filesystem-safe"),
    ("[dict(name='a', config=c, seed=1, overrides={'seed': 2})]", "run 'a': seed 1"),
    ("[dict(name='a', config=c, overrides={'x': None})]", "run 'a': override x=None"),
    ("[]", "non-empty list"),
])
def test_bad_sweeps(tmp_path, runs_src, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(")):
    sweeps.load(_sweep_file(tmp_path, runs_src))


def test_sweep_files_resolve_from_the_cwd_then_the_checkout(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  # not in the cwd: the source checkout's file, and its runs train from the checkout
  runs = sweeps.load("experiments/sft.py")
  assert sweeps.config_root(runs[1], ROOT) == REPO
  # in the cwd: that one first, even where the checkout has a file of the same name
  (tmp_path / "experiments").mkdir()
  (tmp_path / "experiments" / "sft.py").write_text(
      "def get_sweep(arg=None):\n  return [dict(name='mine', config='experiments/sft.py')]\n")
  mine = sweeps.load("experiments/sft.py")
  assert [r["name"] for r in mine] == ["mine"]
  assert sweeps.config_root(mine[0], ROOT) == str(tmp_path)
  with pytest.raises(ValueError, match="sweep file 'experiments/nope.py' not found; tried "
                     f"{tmp_path}/experiments/nope.py and {REPO}/experiments/nope.py"):
    sweeps.load("experiments/nope.py")
  with pytest.raises(ValueError, match="run 'x': config file 'nope.py' not found; tried"):
    sweeps.build_config(sweeps.run("x", "nope.py:a=1"), ROOT)


def test_references_become_dependencies():
  runs = sweeps.validate([sweeps.run("a", "c.py"),
                          sweeps.run("b", "c.py", **{"loss.stats_file": "{a}/x.npz"})])
  assert runs[1]["after"] == ["a"]
  assert "--config.loss.stats_file=/r/a/x.npz" in sweeps.command(runs[1], "/r")


# --- run_all with a fake trainer -------------------------------------------------------------


def _micro():
  """base + two fine-tunes of a few steps (never trained here)."""
  return sweeps.validate([
      sweeps.base_run(steps=2),
      sweeps.run("sft_s0", "experiments/sft.py:steps=2", row="SFT", seed=0, init_from="{base}"),
      sweeps.run("dft_s0", "experiments/dft.py:steps=2", row="DFT (score-function)", seed=0,
                 init_from="{base}", **{"loss.groups": ("word_frequency", "entropy")}),
  ])


class FakeTrainer:
  """execute(argv, cwd, log_path): leaves what a finished run leaves (config.json, the last
  step's checkpoint), or fails / stops early for the runs named so."""

  def __init__(self, runs, root, fail=(), preempt=()):
    self.runs, self.root = {r["name"]: r for r in runs}, root
    self.fail, self.preempt, self.calls = set(fail), set(preempt), []

  def __call__(self, argv, cwd, log_path):
    assert cwd == REPO and argv[1:3] == ["-m", "dft_jax.train"]
    workdir = argv[-1][len("--workdir="):]
    name = os.path.basename(workdir)
    self.calls.append(name)
    if name in self.fail:
      return 1
    config = sweeps.build_config(self.runs[name], self.root)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json(indent=2))
    last = 1 if name in self.preempt else config.total_steps
    os.makedirs(os.path.join(workdir, "checkpoints", str(last)))
    return 0


def test_run_all_skips_done_runs_and_stops_at_a_failure(tmp_path):
  runs, root, lines = _micro(), str(tmp_path), []
  fake = FakeTrainer(runs, root, fail={"sft_s0"})
  with pytest.raises(sweeps.SweepError, match="run 'sft_s0' .* exit status 1"):
    sweeps.run_all(runs, root, log=lines.append, execute=fake)
  assert fake.calls == ["base", "sft_s0"]
  assert sweeps.finished(os.path.join(root, "base"))
  assert lines[0].startswith("[1/3] base: python") and lines[1].startswith("[2/3] sft_s0: ")

  fake, lines = FakeTrainer(runs, root), []
  sweeps.run_all(runs, root, log=lines.append, execute=fake)
  assert fake.calls == ["sft_s0", "dft_s0"]
  assert lines[0].startswith("[1/3] base: done, skipped")

  fake = FakeTrainer(runs, root)
  sweeps.run_all(runs, root, log=lambda _: None, execute=fake)
  assert fake.calls == []


def test_run_all_preempted_run_is_not_done(tmp_path):
  runs, root = _micro(), str(tmp_path)
  with pytest.raises(sweeps.SweepError, match="run 'base' exited before its last step"):
    sweeps.run_all(runs, root, log=lambda _: None,
                   execute=FakeTrainer(runs, root, preempt={"base"}))
  assert not sweeps.finished(os.path.join(root, "base"))


def test_run_all_refuses_a_workdir_of_another_config(tmp_path):
  runs, root = _micro(), str(tmp_path)
  sweeps.run_all(runs, root, log=lambda _: None, execute=FakeTrainer(runs, root))
  other = _micro()
  other[2]["overrides"]["loss.groups"] = ("entropy",)
  fake = FakeTrainer(other, root)
  with pytest.raises(ValueError, match=r"run 'dft_s0': .* another config \(loss.groups"):
    sweeps.run_all(other, root, log=lambda _: None, execute=fake)
  assert fake.calls == []


FAKE_PYTHON = """\
#!{python}
# Stands in for `python -m dft_jax.train`: the train CLI's own flag parsing, then what a
# finished run leaves.
import os, sys
assert sys.argv[1:3] == ["-m", "dft_jax.train"], sys.argv
from dft_jax.train.__main__ import FLAGS, parse_flags
parse_flags(["train", *sys.argv[3:]])
os.makedirs(os.path.join(FLAGS.workdir, "checkpoints", str(FLAGS.config.total_steps)))
with open(os.path.join(FLAGS.workdir, "config.json"), "w") as f:
  f.write(FLAGS.config.to_json(indent=2))
print("fake train:", FLAGS.config.loss.get("groups"), FLAGS.config.init_from)
"""


def test_run_all_through_the_train_cli_flags(tmp_path, capsys):
  """The real subprocess path: argv parsed by dft_jax.train's flags (the tuple override too),
  output teed to the run's train.log."""
  fake = tmp_path / "python"
  fake.write_text(FAKE_PYTHON.format(python=sys.executable))
  fake.chmod(0o755)
  runs, root = _micro(), str(tmp_path / "runs")
  sweeps.run_all(runs, root, log=lambda _: None, python=str(fake))
  with open(os.path.join(root, "dft_s0", "config.json")) as f:
    saved = json.load(f)
  assert saved["loss"]["groups"] == ["word_frequency", "entropy"]
  assert saved["init_from"] == os.path.join(root, "base") and saved["seed"] == 0
  with open(os.path.join(root, "dft_s0", sweeps.LOG_FILE)) as f:
    assert "fake train: ('word_frequency', 'entropy')" in f.read()
  assert all(sweeps.finished(os.path.join(root, r["name"])) for r in runs)
  assert "fake train:" in capsys.readouterr().out
