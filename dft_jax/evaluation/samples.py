"""Held-out prompts, their human continuations, model continuations, and the files that hold them.

Prompts are non-overlapping cuts of held-out documents (several per document: `held_out`), so
every run and the human reference continue the same prompts: line i of every samples file
belongs to prompt i. Sample files are JSONL with one {"prompt", "text"} per line; readers also
accept plain text, one document per line.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import jax
import numpy as np

from dft_jax import sampling
from dft_jax.data import sources
from dft_jax.data import tokenizer as tokenizer_lib
from dft_jax.data.tokenizer import Tokenizer
from dft_jax.train import checkpoint


class TooFewCuts(ValueError):
  """A split has fewer non-overlapping cuts than the prompts asked for."""


def held_out(corpus: str, tokenizer: Tokenizer, *, num_prompts: int, prompt_len: int,
             continuation_len: int, split: str = "validation", max_cuts_per_doc: int = 64,
             data_dir: str | None = None) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
  """Prompts [N, prompt_len], their human continuations (token ids, `continuation_len`
  each) and the index of the document each was cut from [N] (the clusters of a document-level
  bootstrap), cut from the documents of `split`: cut j of a document starts at token
  j * (prompt_len + continuation_len), so cuts never overlap, and only full cuts are kept.
  Cuts are taken round-robin over documents (first cuts of every document, then second
  cuts, ...), so a short request spreads over as many documents as it can. Fewer than
  `num_prompts` available cuts is a TooFewCuts naming how many there are."""
  docs = sources.documents(corpus, split, data_dir)
  texts = [d.decode("utf-8", "replace") if isinstance(d, bytes) else d
           for d in (docs[i] for i in range(len(docs)))]
  stride = prompt_len + continuation_len
  cuts_of = [[ids[j * stride:(j + 1) * stride] for j in range(min(len(ids) // stride,
                                                                   max_cuts_per_doc))]
             for ids in tokenizer.encode_batch(texts)]
  placed = [(d, doc[j]) for j in range(max(map(len, cuts_of), default=0))
            for d, doc in enumerate(cuts_of) if j < len(doc)][:num_prompts]
  cuts = [c for _, c in placed]
  if len(cuts) < num_prompts:
    raise TooFewCuts(f"{corpus} ({split}) gives {len(cuts)} non-overlapping cuts of "
                     f"{prompt_len} + {continuation_len} tokens, fewer than the {num_prompts} "
                     "prompts asked for; ask for fewer prompts or shorter cuts")
  prompts = np.asarray([c[:prompt_len] for c in cuts], np.int32)
  doc_ids = np.asarray([d for d, _ in placed], np.int32)
  return prompts, [np.asarray(c[prompt_len:], np.int32) for c in cuts], doc_ids


def continue_prompts(model, prompts_NxP: np.ndarray, *, max_new_tokens: int, seed: int,
                     eos: int, batch_size: int = 32, temperature: float = 1.0, top_k: int = 0,
                     top_p: float = 1.0) -> list[np.ndarray]:
  """Continuations (ids before the first EOS) of each prompt; batch b uses fold_in(seed, b).

  The last batch is padded with copies of its last prompt, so one compiled decoder serves all.
  """
  key = jax.random.key(seed)
  out = []
  for b, start in enumerate(range(0, len(prompts_NxP), batch_size)):
    chunk = prompts_NxP[start:start + batch_size]
    padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - len(chunk), 0)])
    s = sampling.generate(model, padded, max_new_tokens=max_new_tokens,
                          rng=jax.random.fold_in(key, b), temperature=temperature,
                          top_k=top_k, top_p=top_p, eos_id=eos, pad_id=eos)
    tokens, valid = np.asarray(s.tokens_BxC), np.asarray(s.valid_BxC)
    for row, ok in zip(tokens[:len(chunk)], valid[:len(chunk)]):
      out.append(row[ok & (row != eos)])
  return out


def records(tokenizer: Tokenizer, prompts_NxP, continuations: Sequence[np.ndarray]) -> list[dict]:
  return [{"prompt": tokenizer.decode(p.tolist()), "text": tokenizer.decode(c.tolist())}
          for p, c in zip(prompts_NxP, continuations)]


def write_jsonl(path: str, rows: Sequence[dict]) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
  os.replace(tmp, path)


def read_texts(path: str) -> list[str]:
  """Texts of a JSONL file (its `text` field) or of a plain file (one document per line)."""
  if not os.path.isfile(path):
    raise ValueError(f"{path}: no such file")
  with open(path, encoding="utf-8", errors="replace") as f:
    lines = [line.rstrip("\n") for line in f if line.strip()]
  if not lines:
    raise ValueError(f"{path}: empty (no texts)")
  if not lines[0].lstrip().startswith("{"):
    return lines
  texts = []
  for n, line in enumerate(lines, 1):
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
      raise ValueError(f"{path}:{n}: a JSON line without a string 'text' field")
    texts.append(row["text"])
  return texts


def run_config(workdir: str) -> dict:
  """A training run's config.json."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise ValueError(f"{workdir}: not a training workdir (no config.json)")
  with open(path) as f:
    return json.load(f)


def sample_run(workdir: str, *, corpus: str | None = None, num_prompts: int = 64,
               prompt_len: int = 16, max_new_tokens: int = 64, seed: int = 0,
               split: str = "validation", data_dir: str | None = None,
               **decoding) -> tuple[list[dict], list[dict]]:
  """A run's continuations of held-out prompts, and the human continuations of the same
  prompts: two lists of {"prompt", "text"} in prompt order."""
  data = run_config(workdir)["data"]
  corpus, data_dir = corpus or data["corpus"], data_dir or data["data_dir"] or None
  tok = tokenizer_lib.load(os.path.join(workdir, "tokenizer.json"))
  model, _ = checkpoint.load_model(workdir)
  prompts, human, _ = held_out(corpus, tok, num_prompts=num_prompts, prompt_len=prompt_len,
                            continuation_len=max_new_tokens, split=split, data_dir=data_dir)
  texts = continue_prompts(model, prompts, max_new_tokens=max_new_tokens, seed=seed,
                           eos=tok.eos_id, **decoding)
  return records(tok, prompts, texts), records(tok, prompts, human)
