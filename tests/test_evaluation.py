"""Sampling and evaluation end to end: the CLIs, perplexity, feature divergences, the human row,
tables, and reproduce_table on two tiny finished runs."""

import dataclasses
import json
import math
import os
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from dft_jax.data import tokenizer as tokenizer_lib
from dft_jax.evaluation import (comparison, intervals, report, reproduce, samples, score_cache,
                                 scored, tables)
from dft_jax.evaluation.scored import ScoredRun
from dft_jax.models import Decoder, ModelConfig

import dft_setup
import train_utils

WORDS = train_utils.WORDS


def _texts(n, seed, repeat=False):
  rng = np.random.RandomState(seed)
  if repeat:
    return ["the cat sat on the mat. " * 20 for _ in range(n)]
  return [" ".join(" ".join(rng.choice(WORDS, rng.randint(3, 14))).capitalize() + "."
                   for _ in range(rng.randint(2, 6))) for _ in range(n)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Two finished 4-step runs on a synthetic corpus: a base and its fine-tune."""
  root = tmp_path_factory.mktemp("eval_runs")
  text_dir, tok = train_utils.make_corpus(root, num_docs=200)
  data_dir = str(root / "data")
  base, tuned = str(root / "base"), str(root / "tuned")
  for workdir, extra in ((base, []), (tuned, [f"--config.init_from={base}"])):
    done = train_utils.run(train_utils.command(workdir, text_dir, tok, data_dir,
                                               "--config.total_steps=4", *extra))
    assert done.returncode == 0, done.stderr[-2000:]
  return {"base": base, "tuned": tuned, "root": root}


def test_read_texts_accepts_jsonl_and_plain_text_and_names_bad_lines(tmp_path):
  jsonl, plain, bad = tmp_path / "a.jsonl", tmp_path / "b.txt", tmp_path / "c.jsonl"
  samples.write_jsonl(str(jsonl), [{"prompt": "p", "text": "one two"}, {"text": "three"}])
  plain.write_text("first line\n\nsecond line\n")
  bad.write_text('{"text": "ok"}\n{"txt": "no"}\n')
  assert samples.read_texts(str(jsonl)) == ["one two", "three"]
  assert samples.read_texts(str(plain)) == ["first line", "second line"]
  with pytest.raises(ValueError, match=r"c.jsonl:2: .*'text'"):
    samples.read_texts(str(bad))
  with pytest.raises(ValueError, match="no such file"):
    samples.read_texts(str(tmp_path / "missing.jsonl"))


def test_held_out_cuts_round_robin_and_raises_too_few_cuts(monkeypatch):
  tok = dft_setup.tokenizer()
  docs = [" ".join(f"w{i}" for i in range(10)), "w20 w21 w22 w23"]  # 2 and 1 cuts of 2 + 2
  monkeypatch.setattr(samples.sources, "documents", lambda corpus, split, data_dir: docs)
  prompts, continuations, doc_ids = samples.held_out(
      "two_docs", tok, num_prompts=3, prompt_len=2, continuation_len=2)
  ids_a, ids_b = tok.encode_batch(docs)
  assert doc_ids.tolist() == [0, 1, 0]  # first cuts of every document before second cuts
  assert prompts.tolist() == [ids_a[0:2], ids_b[0:2], ids_a[4:6]]
  assert [c.tolist() for c in continuations] == [ids_a[2:4], ids_b[2:4], ids_a[6:8]]
  with pytest.raises(samples.TooFewCuts, match="gives 3 non-overlapping cuts .* fewer than the 4"):
    samples.held_out("two_docs", tok, num_prompts=4, prompt_len=2, continuation_len=2)


def test_perplexity_equals_a_direct_computation():
  docs = _texts(12, 0)
  tok = tokenizer_lib.train_byte_level_bpe(docs, vocab_size=300)
  cfg = ModelConfig(model_type="llama", vocab_size=320, hidden_size=32, intermediate_size=64,
                    num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8)
  model = Decoder(cfg, rngs=nnx.Rngs(0))
  eos = tok.eos_id
  rows = [tok.encode(text) + [eos] for text in docs[:5]]
  ids = np.zeros((5, max(map(len, rows))), np.int32)  # right padding: causal, never attended
  for r, row in enumerate(rows):
    ids[r, :len(row)] = row
  logits = np.asarray(model(jax.numpy.asarray(ids)), np.float64)
  top = logits.max(-1, keepdims=True)
  logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
  total = -sum(logp[r, np.arange(len(row) - 1), row[1:]].sum() for r, row in enumerate(rows))
  count = sum(len(row) - 1 for row in rows)
  out = report.perplexity(model, tok, docs[:5], seq_len=128, batch_size=2)
  assert out["ppl_tokens"] == count
  assert out["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)


def test_human_against_itself_and_repeated_text():
  human = _texts(80, 1)
  tok = tokenizer_lib.train_byte_level_bpe(human, vocab_size=300)
  space = report.FeatureSpace(human, tok, window=32)
  own = space.divergences(space(human))
  assert abs(own["feature_sinkhorn"]) < 1e-3 and abs(own["feature_mmd"]) < 0.05
  assert max(abs(g) for g in space.gaps(space(human)).values()) < 1e-9
  floor = report.human_reference(human, space)
  assert floor["sent_len_w1"] < 1.5 and abs(floor["judge_accuracy"] - 0.5) < 0.2
  other = report.evaluate(_texts(80, 2), human, feature_space=space)
  assert set(report.KEYS) <= set(other)
  assert abs(other["judge_accuracy"] - 0.5) < 0.2      # same generator: indistinguishable
  rep = report.evaluate(_texts(80, 3, repeat=True), human, feature_space=space)
  assert rep["diversity"] < 1e-2 and rep["judge_accuracy"] > 0.9
  assert rep["feature_sinkhorn"] > 10 * max(other["feature_sinkhorn"], 1e-3)


def test_tables_aggregate_over_seeds_and_label_reported_figures():
  results = [{"row": "SFT", "diversity": 0.5, "perplexity": 10.0},
             {"row": "SFT", "diversity": 0.7, "perplexity": 12.0},
             {"row": "DFT (score-function)", "diversity": 0.9, "perplexity": 11.0},
             {"row": "human", "diversity": 0.95}]
  table = tables.aggregate(results)
  mean, sd, n = table["SFT"]["diversity"]
  assert (mean, n) == (pytest.approx(0.6), 2) and sd == pytest.approx(np.std([.5, .7], ddof=1))
  md = tables.markdown(table)
  lines = [line for line in md.splitlines() if line.startswith("| ")]
  assert lines[1].startswith("| SFT | 2 | 11.0 ± 1.4 | 0.600 ± 0.141")
  assert any(line.startswith("| DFT (reported) |") and "0.710" in line for line in lines)
  assert "reported" not in tables.markdown(table, reported=False)
  tex = tables.latex(table)
  assert tex.count(r"\\") == 1 + len(table) + len(tables.REPORTED)


def test_sample_and_evaluate_clis(runs, tmp_path):
  out, human, again = (str(tmp_path / f) for f in ("s.jsonl", "h.jsonl", "s2.jsonl"))
  base = [sys.executable, "-m", "dft_jax.sample", "--workdir", runs["tuned"],
          "--num_prompts", "8", "--prompt_len", "4", "--max_new_tokens", "16"]
  for args in (["--out", out, "--human_out", human], ["--out", again]):
    done = train_utils.run(base + args)
    assert done.returncode == 0, done.stderr[-2000:]
  rows = [json.loads(line) for line in open(out)]
  assert len(rows) == 8 and all(set(r) == {"prompt", "text"} for r in rows)
  assert open(out).read() == open(again).read()  # fixed seed: the same samples
  assert len(samples.read_texts(human)) == 8
  done = train_utils.run([sys.executable, "-m", "dft_jax.evaluate", "--samples", out,
                          "--human", human, "--workdir", runs["tuned"], "--json"])
  assert done.returncode == 0, done.stderr[-2000:]
  metrics = json.loads(done.stdout.strip().splitlines()[-1])
  assert set(report.KEYS) | {"perplexity"} <= set(metrics)
  assert all(math.isfinite(v) for v in metrics.values())
  done = train_utils.run([sys.executable, "-m", "dft_jax.evaluate", "--samples",
                          str(tmp_path / "none.jsonl"), "--human", human])
  assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == \
      f"evaluate: error: {tmp_path / 'none.jsonl'}: no such file"


def test_reproduce_table_on_two_finished_runs(runs):
  # the two runs stand in for SFT and DFT, so the comparison and the verdict are built too
  out = str(runs["root"] / "table")
  done = train_utils.run([sys.executable, "scripts/reproduce_table.py", runs["base"] + "=SFT",
                          runs["tuned"] + "=DFT (score-function)", "--out", out,
                          "--num_prompts", "10", "--prompt_len", "4", "--max_new_tokens", "16",
                          "--ppl_docs", "8", "--bootstrap", "20", "--embedding_run", "first",
                          "--decodings", "0.7:0.9,1:1"])
  assert done.returncode == 0, done.stderr[-3000:]
  md = open(os.path.join(out, "table.md")).read()
  assert md in done.stdout
  sections = md.split("### ")[1:]
  assert [s.splitlines()[0] for s in sections] == ["deployed: T=0.7, top-p=0.9", "T=1"]
  for k, section in enumerate(sections):
    rows = [line.split(" | ")[0][2:] for line in section.splitlines()
            if line.startswith("| ") and " | seeds | " not in line and "row − SFT" not in line]
    table_rows = rows[:rows.index("human") + 1]
    assert table_rows == ["SFT", "DFT (score-function)", "human"]
    assert ("SFT (reported)" in rows) == (k == 0)  # the article's figures once
    assert "10 held-out prompts" in section and "second human set of 10" in section
    verdicts = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(verdicts) >= 4  # the article's four claims, then a target line per resolved gap
    assert comparison.ONE_SEED in section  # one seed: its verdicts say they are preliminary
    assert all(any(v in line for v in ("**holds**", "**does not hold**", "**inconclusive**"))
               for line in verdicts)
  assert r"\begin{tabular}" in open(os.path.join(out, "table.tex")).read()
  for png in ("sentence_lengths.png", "feature_gaps.png", "training_curves.png"):
    with open(os.path.join(out, png), "rb") as f:
      data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
  results = json.load(open(os.path.join(out, "results.json")))
  deployed = results["decodings"]["deployed: T=0.7, top-p=0.9"]
  assert [r["row"] for r in deployed["runs"]] == ["SFT", "DFT (score-function)"]
  assert deployed["runs"][0]["win_rate"] == 0.5 and 0 <= deployed["runs"][1]["win_rate"] <= 1
  # the embedding space of the first run: a column for every row, the human floor, an interval
  assert all("embedding_mmd" in r for r in deployed["runs"])
  assert "embedding_mmd" in results["human"]
  assert "Emb. MMD² ↓" in md and f"Embeddings: {os.path.basename(runs['base'])}" in md
  [comp] = deployed["comparisons"]
  assert "embedding_mmd" in comp["deltas"]
  assert comp["row"] == "DFT (score-function)"
  for key, d in comp["deltas"].items():  # the point difference is the table's own
    if key in deployed["runs"][0]:
      assert d["delta"] == pytest.approx(deployed["runs"][1][key] - deployed["runs"][0][key],
                                         abs=1e-9, nan_ok=True), key  # slop: NaN on
      # texts this short (no n-gram reaches its minimum count), in both places
  assert set(comp["gap_closed"]) == {"sent_len_var", "feature_sinkhorn", "diversity"}
  targets = comp["claims"][4:]  # one per resolved gap: "holds" only if its interval is > 0.5
  assert [t["claim"] for t in targets] == [
      f"closes ≥ 50% of the {comparison.GAP_NAMES[k]} gap" for k in comparison.GAP_CLOSED
      if comp["gap_closed"][k]["defined"]]
  for t in targets:
    assert t["verdict"] == intervals.verdict(t["lo"], t["hi"], above=0.5)
  for line in open(os.path.join(out, "samples", "tuned.0.jsonl")):
    assert set(json.loads(line)) == {"prompt", "text"}
  assert reproduce.row_label({"loss": {"name": "dft", "estimator": "score_function"}}) == \
      "DFT (score-function)"


def test_no_sft_row_means_no_comparison_and_one_line_saying_why():
  # nothing is measured: the human side, samples' scores and perplexities are never touched
  run = lambda row, workdir: ScoredRun(row, workdir, 0, None, {})  # noqa: E731
  runs = [run("base", "a"), run("DFT (score-function)", "b")]
  comps, why = comparison.compare_all(runs, "T=1", None, 20, 0)
  assert comps == [] and why == (
      "no comparison: none of the runs is an SFT row (a run fine-tuned with loss ce from "
      "init_from, or one labelled RUN_DIR=SFT) to compare against")
  comps, why = comparison.compare_all(runs[:1] + [run("SFT", "c")], "T=1", None, 20, 0)
  assert comps == [] and why == "no comparison: no row besides SFT and base to compare with SFT"


def test_reproduce_table_without_an_sft_row_writes_the_table_alone(runs):
  out = str(runs["root"] / "table_no_sft")
  done = train_utils.run([sys.executable, "scripts/reproduce_table.py", runs["base"],
                          runs["tuned"] + "=DFT (score-function)", "--out", out,
                          "--num_prompts", "6", "--prompt_len", "4", "--max_new_tokens", "8",
                          "--ppl_docs", "4", "--bootstrap", "5", "--decodings", "1:1"])
  assert done.returncode == 0, done.stderr[-3000:]
  assert "Traceback" not in done.stderr
  reasons = [line for line in done.stdout.splitlines() if "no comparison" in line]
  assert reasons == ["[table] no comparison: none of the runs is an SFT row (a run fine-tuned "
                     "with loss ce from init_from, or one labelled RUN_DIR=SFT) to compare "
                     "against"]
  md = open(os.path.join(out, "table.md")).read()
  assert md in done.stdout and "− SFT" not in md and "Verdict" not in md
  rows = [line.split(" | ")[0][2:] for line in md.splitlines() if line.startswith("| ")]
  assert rows[1:rows.index("human") + 1] == ["base", "DFT (score-function)", "human"]
  [(_, decoding)] = json.load(open(os.path.join(out, "results.json")))["decodings"].items()
  assert decoding["comparisons"] == [] and len(decoding["runs"]) == 2


def test_a_second_table_reuses_each_runs_scores_and_a_retrained_run_misses(runs):
  table = lambda out, *extra: train_utils.run([  # noqa: E731
      sys.executable, "scripts/reproduce_table.py", runs["base"] + "=SFT",
      runs["tuned"] + "=DFT (score-function)", "--out", str(runs["root"] / out),
      "--num_prompts", "5", "--prompt_len", "4", "--max_new_tokens", "8", "--ppl_docs", "4",
      "--bootstrap", "5", "--decodings", "1:1", *extra])
  done = [table(out, *extra) for out, extra in (("reuse_a", ()), ("reuse_b", ()),
                                                ("reuse_c", ("--noreuse_scores",)))]
  assert all(d.returncode == 0 for d in done), done[-1].stderr[-3000:]
  scored_lines = [[line for line in d.stdout.splitlines() if line.startswith("[table] ") and
                   ("/2 SFT" in line or "/2 DFT" in line)] for d in done]
  assert [[" | reused" in line for line in lines] for lines in scored_lines] == [
      [False, False], [True, True], [False, False]]
  results = [json.load(open(runs["root"] / out / "results.json"))["decodings"]["deployed: T=1"]
             for out in ("reuse_a", "reuse_b")]
  for key in ("perplexity", "diversity", "feature_sinkhorn", "judge_accuracy"):
    assert [r[key] for r in results[0]["runs"]] == [r[key] for r in results[1]["runs"]], key
  samples_of = lambda out: open(runs["root"] / out / "samples" / "tuned.0.jsonl").read()  # noqa
  assert samples_of("reuse_a") == samples_of("reuse_b")
  # the key: the same run and settings give one key; a rewritten checkpoint another
  held = scored.HeldOut(None, np.zeros((5, 4), np.int32), np.zeros(5), ["a"], ["b"], ["c"],
                        None, None, {})
  settings = reproduce.Settings("c", "test", 4, 8, 0, (("T=1", {}),), 4, 5, False, "out")
  before = score_cache.key(runs["tuned"], held, settings)
  assert before == score_cache.key(runs["tuned"], held, settings)
  assert before != score_cache.key(runs["tuned"], held, dataclasses.replace(settings, split="x"))
  step_dir = os.path.join(runs["tuned"], "checkpoints", "4")
  stat = os.stat(step_dir)
  os.utime(step_dir, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
  assert score_cache.key(runs["tuned"], held, settings) != before
  os.utime(step_dir, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_sample_cli_decodes_at_the_given_temperature_and_top_p(runs, tmp_path):
  """--top_p near 0 keeps only the most likely token: greedy decoding, whatever the
  temperature; T = 0.7 / top-p = 0.9 is reproducible by seed and not T = 1's draw."""
  def sample(name, *flags):
    out = str(tmp_path / f"{name}.jsonl")
    done = train_utils.run([sys.executable, "-m", "dft_jax.sample", "--workdir", runs["tuned"],
                            "--num_prompts", "6", "--prompt_len", "4", "--max_new_tokens",
                            "12", "--out", out, *flags])
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line)["text"] for line in open(out)]

  greedy = sample("greedy", "--temperature", "0")
  assert sample("nucleus_floor", "--temperature", "0.7", "--top_p", "1e-6") == greedy
  deployed = sample("deployed", "--temperature", "0.7", "--top_p", "0.9")
  assert sample("deployed_again", "--temperature", "0.7", "--top_p", "0.9") == deployed
  assert deployed != sample("t1", "--temperature", "1.0") and deployed != greedy


def test_bench_quick_part_prints_its_json():
  """A cheap part of the README's benchmark command (no prepared corpus needed): it runs and
  its last line is the JSON of its figures."""
  done = train_utils.run([sys.executable, "scripts/bench.py", "--parts", "decode_vs_hf",
                          "--quick", "--json"])
  assert done.returncode == 0, done.stderr[-2000:]
  result = json.loads(done.stdout.strip().splitlines()[-1])
  assert result["decode_vs_hf"] > 0 and result["decode_tokens_per_s"] > 0


def test_perplexity_ratio_pairs_each_seed_with_its_own_sft():
  # SFT seeds differ by 10% in perplexity; each tuned seed is exactly its own seed's SFT, so
  # the ratio is 0 — against SFT seed 0 alone it would read about +5%
  tokens = np.full(8, 100.0)
  def run(row, seed, nll_per_token):
    ppl = {"nll_per_piece": tokens * nll_per_token, "tokens_per_piece": tokens,
           "doc_per_piece": np.arange(8) % 4}
    return ScoredRun(row, f"{row}{seed}", seed, ppl, {})
  sft = [run("SFT", 0, 3.0), run("SFT", 1, 3.0 + math.log(1.1))]
  tuned = [run("DFT", 1, 3.0 + math.log(1.1)), run("DFT", 0, 3.0)]
  ratio = comparison.perplexity_ratio(sft, tuned, reps=20, seed=0)
  assert ratio == pytest.approx({"delta": 0.0, "lo": 0.0, "hi": 0.0}, abs=1e-9)
  shifted = comparison.perplexity_ratio(sft, [run("DFT", 1, 3.0 + math.log(1.21))], 20, 0)
  assert shifted["delta"] == pytest.approx(0.1)
  no_own = comparison.perplexity_ratio(sft, [run("DFT", 7, 3.0 + math.log(1.1))], 20, 0)
  assert no_own["delta"] == pytest.approx(0.1)  # no SFT of seed 7: the first SFT run


def test_head_to_head_with_ebft_matches_the_hand_computed_cases(monkeypatch):
  # Two documents of 20 prompts. "DFT (score-function)" is EBFT-style minus 1 on every prompt:
  # −1 in every replicate, so it beats EBFT-style. "DFT (both)" is 1 below it on document A
  # and 1 above on B: 0 at the point, and −1 / 0 / +1 as the drawn documents are AA / AB / BB,
  # so the interval is [−1, +1], inconclusive. MixCE is no DFT row: not compared.
  import types
  doc_ids = np.repeat([0, 1], 20)
  ebft = np.linspace(10, 12, 40)
  per_prompt = {"EBFT-style": ebft, "DFT (score-function)": ebft - 1,
                "DFT (both)": ebft + np.where(doc_ids == 0, -1.0, 1.0), "MixCE": ebft + 5}
  calls = []

  def row_metrics(runs, decoding, held):
    calls.append(runs[0].row)
    x = per_prompt[runs[0].row]
    return {k: (lambda idx, x=x: float(x[idx].mean())) for k in comparison.HEAD_TO_HEAD}

  monkeypatch.setattr(comparison, "row_metrics", row_metrics)
  run = lambda row, seed: ScoredRun(row, f"{row}{seed}", seed, None, {})  # noqa: E731
  runs = [run(row, seed) for seed in range(2) for row in per_prompt]
  held = types.SimpleNamespace(doc_ids_N=doc_ids, human=[""] * 40)
  h2h = comparison.head_to_head(runs, "T=1", held, 400, 0)
  assert [h["row"] for h in h2h] == ["DFT (score-function)", "DFT (both)"]
  assert sorted(calls) == sorted(["EBFT-style", "DFT (score-function)", "DFT (both)"])
  first, both = (h["deltas"]["feature_sinkhorn"] for h in h2h)
  assert (first["delta"], first["lo"], first["hi"]) == pytest.approx((-1, -1, -1))
  assert (both["delta"], both["lo"], both["hi"]) == pytest.approx((0, -1, 1))
  assert [h["claims"][0]["verdict"] for h in h2h] == ["holds", "inconclusive"]
  assert h2h[0]["seeds"] == 2
  md = comparison.head_to_head_markdown(h2h, "T=1", 400)
  assert "| DFT (score-function) | -1 | [-1, -1] |" in md and "**inconclusive** |" in md
  assert comparison.ONE_SEED not in md  # two seeds per row
  assert comparison.ONE_SEED in comparison.head_to_head_markdown(
      comparison.head_to_head(runs[:4], "T=1", held, 10, 0), "T=1", 10)
  assert comparison.head_to_head(runs[:3], "T=1", held, 10, 0) != []
  no_rival = [r for r in runs if r.row != "EBFT-style"]
  assert comparison.head_to_head(no_rival, "T=1", held, 10, 0) == []
