"""One name for every kind of corpus the configs can point at.

  "news"                  an embedded domain (dft_jax.data.corpora), prepared beforehand by
                          `python -m dft_jax.data.prepare`
  "news,legal"            several, concatenated
  "/path/to/texts"        a local directory of text, built once as a TFDS array_record dataset
  "tfds:NAME[:FIELD]"     a TFDS catalog dataset already prepared in array_record format
"""

from __future__ import annotations

import bisect
import hashlib
import os
from typing import Sequence

from dft_jax.data import corpora, files, text_dataset


class Concat:
  """Random access over several sources, one after the other."""

  def __init__(self, parts: Sequence[Sequence]):
    self.parts = list(parts)
    self.ends = []
    total = 0
    for p in self.parts:
      total += len(p)
      self.ends.append(total)

  def __len__(self) -> int:
    return self.ends[-1] if self.ends else 0

  def __getitem__(self, i: int):
    if not 0 <= i < len(self):
      raise IndexError(i)
    part = bisect.bisect_right(self.ends, i)
    return self.parts[part][i - (self.ends[part - 1] if part else 0)]


def _one(corpus: str, split: str, data_dir: str | None) -> Sequence:
  if corpus.startswith("tfds:"):
    name, _, field = corpus[len("tfds:"):].partition(":")
    return text_dataset.catalog_source(name, split, text_field=field or "text")
  if os.path.isdir(corpus):
    path = os.path.abspath(corpus)
    built = os.path.join(corpora.data_root(data_dir), "tfds",
                         f"{os.path.basename(path)}-{hashlib.sha1(path.encode()).hexdigest()[:8]}")
    with files.process_zero_first(f"build {built}"):
      text_dataset.build(path, built)
    return text_dataset.TextField(text_dataset.source(built, split), "text")
  if corpus in corpora.DOMAINS:
    return corpora.load_split(corpus, split, data_dir)
  raise ValueError(f"unknown corpus {corpus!r}: not a directory, not 'tfds:NAME', and not an "
                   f"embedded domain ({', '.join(corpora.DOMAINS)})")


def documents(corpus: str, split: str = "train", data_dir: str | None = None) -> Sequence:
  """Random-access documents (str) of one split of one or more comma-separated corpora."""
  names = [c.strip() for c in corpus.split(",") if c.strip()]
  corpora.require([c for c in names if c in corpora.DOMAINS], data_dir or None)  # all at once
  parts = [_one(c, split, data_dir or None) for c in names]
  if not parts:
    raise ValueError("no corpus named (data.corpus is empty)")
  return parts[0] if len(parts) == 1 else Concat(parts)
