"""A tiny corpus, tokenizer and command line for end-to-end training tests."""

import json
import os
import subprocess
import sys

import numpy as np

from dft_jax.data import tokenizer as tokenizer_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ("the cat dog sat ran on a mat big small red house tree river stone quiet loud old new "
         "and but then so it was is over under near").split()


def make_corpus(root, num_docs: int = 60) -> tuple[str, str]:
  """A directory of short synthetic documents and a 300-token BPE trained on them."""
  rng = np.random.RandomState(0)
  text_dir = os.path.join(root, "texts")
  os.makedirs(text_dir, exist_ok=True)
  docs = []
  for i in range(num_docs):
    sentences = [" ".join(rng.choice(WORDS, rng.randint(3, 12))).capitalize() + "."
                 for _ in range(rng.randint(1, 6))]
    docs.append(" ".join(sentences))
    with open(os.path.join(text_dir, f"doc{i:02d}.txt"), "w") as f:
      f.write(docs[-1])
  tok_path = os.path.join(root, "tokenizer.json")
  tokenizer_lib.train_byte_level_bpe(docs, vocab_size=300).save(tok_path)
  return text_dir, tok_path


def command(workdir, text_dir, tok_path, data_dir, *overrides) -> list[str]:
  base = {
      "total_steps": 12, "batch_size": 8, "seq_len": 32, "log_every": 1, "checkpoint_every": 4,
      "eval_every": 6, "eval_batches": 1, "model.vocab_size": 320, "model.hidden_size": 32,
      "model.intermediate_size": 64, "model.num_layers": 2, "model.num_heads": 4,
      "model.num_kv_heads": 2, "model.head_dim": 8, "optim.warmup_steps": 2,
      "data.corpus": text_dir, "data.tokenizer": tok_path, "data.data_dir": data_dir,
  }
  args = [sys.executable, "-m", "dft_jax.train", "--config",
          os.path.join(REPO, "experiments", "pretrain_tiny.py"), "--workdir", str(workdir)]
  args += [f"--config.{k}={v}" for k, v in base.items()]
  return args + list(overrides)


def env(devices: int = 1) -> dict:
  out = dict(os.environ)
  out["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  out["JAX_PLATFORMS"] = "cpu"
  return out


def run(args, devices=1, timeout=300) -> subprocess.CompletedProcess:
  return subprocess.run(args, capture_output=True, text=True, env=env(devices), timeout=timeout,
                        cwd=REPO)


def losses(workdir) -> dict[int, float]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {r["step"]: r["loss"] for r in rows}
