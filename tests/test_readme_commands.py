"""The README's main command, at tiny scale: `scripts/reproduce_table.py --sweep` trains a
base, an SFT and a DFT run (the DFT reference from its corpus by the default path), writes
the table, and a rerun trains nothing and writes it again."""

import json
import os
import sys

import train_utils

SWEEP = '''
from dft_jax import sweeps

SHAPE = {shape!r}


def get_sweep(arg=None):
  tune = dict(SHAPE, init_from="{{base}}", total_steps=4)
  return [
      sweeps.run("base", "experiments/pretrain_tiny.py", row="base", **dict(SHAPE, total_steps=6)),
      sweeps.run("sft", "experiments/pretrain_tiny.py", row="SFT", after=["base"], **tune),
      sweeps.run("dft", "experiments/dft.py:gen_len=16,dist_batch=8", row="DFT (score-function)",
                 after=["base"], **tune),
  ]
'''


def test_reproduce_table_sweep_trains_resumes_and_writes_the_table(tmp_path):
  text_dir, tok = train_utils.make_corpus(str(tmp_path), num_docs=120)
  shape = {"batch_size": 8, "seq_len": 32, "log_every": 2, "checkpoint_every": 4,
           "eval_every": 4, "eval_batches": 1, "model.vocab_size": 320,
           "model.hidden_size": 32, "model.intermediate_size": 64, "model.num_layers": 2,
           "model.num_heads": 4, "model.num_kv_heads": 2, "model.head_dim": 8,
           "optim.warmup_steps": 1, "data.corpus": text_dir, "data.tokenizer": tok,
           "data.data_dir": str(tmp_path / "data")}
  sweep = tmp_path / "tiny_table.py"
  sweep.write_text(SWEEP.format(shape=shape))
  root = str(tmp_path / "runs")
  command = [sys.executable, "scripts/reproduce_table.py", "--sweep", str(sweep), "--root", root,
             "--num_prompts", "6", "--prompt_len", "4", "--max_new_tokens", "12",
             "--ppl_docs", "8", "--bootstrap", "20", "--embedding_run", ""]
  first = train_utils.run(command, timeout=900)
  assert first.returncode == 0, first.stderr[-3000:]
  for name in ("base", "sft", "dft"):
    assert os.path.isdir(os.path.join(root, name, "checkpoints")), name
  results = json.load(open(os.path.join(root, "table", "results.json")))
  deployed = results["decodings"]["deployed: T=0.7, top-p=0.9"]
  assert [r["row"] for r in deployed["runs"]] == ["base", "SFT", "DFT (score-function)"]
  assert deployed["comparisons"][0]["row"] == "DFT (score-function)"
  table = open(os.path.join(root, "table", "table.md")).read()
  # the columns of the committed demo table, every one of them (MAUVE needs the eval extra)
  committed = open(os.path.join(train_utils.REPO, "experiments", "results", "table1_demo",
                                "table.md")).read()
  assert _headers(table) == _headers(committed)
  assert "MAUVE" in _headers(table)[0]
  os.remove(os.path.join(root, "table", "table.md"))
  again = train_utils.run(command, timeout=900)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count("done, skipped") == 3        # resumed: nothing trained again
  assert open(os.path.join(root, "table", "table.md")).read() == table


def _headers(markdown: str) -> list[str]:
  """The header row of each table in a table.md."""
  return [line for line in markdown.splitlines() if line.startswith("| run |")]
