"""Bring your own model and corpus (the README walk-through), at tiny scale: a GGUF file (a
Llama as llama.cpp writes it) and a folder of .txt files give base, SFT, DFT and the table
through the one command

  python scripts/reproduce_table.py --sweep experiments/table1.py:model=FILE,domain=DIR ...

The GGUF is converted once to a Hugging Face directory (the same loader as any HF Llama/Qwen
directory), the folder is the target domain and the human reference alike, and every run's
config.json records the architecture trained (the GGUF's), with provenance beside it."""

import json
import os
import subprocess
import sys

import pytest

import train_utils

gguf = pytest.importorskip("gguf")
from test_gguf import D, LAYERS, write_tiny_gguf  # noqa: E402


def test_own_gguf_model_and_text_folder_give_sft_dft_and_the_table(tmp_path):
  model = write_tiny_gguf(str(tmp_path / "my-llama.gguf"))
  texts, _ = train_utils.make_corpus(str(tmp_path / "corpus"), num_docs=200)
  root = str(tmp_path / "runs")
  env = dict(train_utils.env(1), DFT_JAX_DATA=str(tmp_path / "cache"))
  command = [sys.executable, "scripts/reproduce_table.py", "--sweep",
             f"experiments/table1.py:model={model},domain={texts},steps=3", "--root", root,
             "--num_prompts", "6", "--prompt_len", "4", "--max_new_tokens", "12",
             "--ppl_docs", "8", "--bootstrap", "20", "--embedding_run", ""]
  done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900,
                        cwd=train_utils.REPO)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

  results = json.load(open(os.path.join(root, "table", "results.json")))
  deployed = results["decodings"]["deployed: T=0.7, top-p=0.9"]
  assert [r["row"] for r in deployed["runs"]] == ["base", "SFT", "DFT (score-function)"]
  assert deployed["comparisons"][0]["row"] == "DFT (score-function)"
  assert results["corpus"] == texts
  runs = results["provenance"]["runs"]
  assert sorted(os.path.basename(r) for r in runs) == ["base", "dft_s0", "sft_s0"]
  assert results["provenance"]["differences"] == []
  assert "Runs: all trained in one environment" in open(os.path.join(root, "table",
                                                                        "table.md")).read()
  for name in ("base", "sft_s0", "dft_s0"):
    with open(os.path.join(root, name, "config.json")) as f:
      config = json.load(f)
    assert config["data"]["corpus"] == texts
    assert (config["model"]["hidden_size"], config["model"]["num_layers"]) == (D, LAYERS)
    assert os.path.isfile(os.path.join(root, name, "provenance.jsonl"))
  converted = json.load(open(os.path.join(root, "base", "config.json")))["init_from"]
  assert converted.startswith(str(tmp_path / "cache" / "models" / "gguf" / "my-llama-"))
  assert "converting" in done.stdout and done.stdout.count("converting") == 1  # once
