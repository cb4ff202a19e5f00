"""Whitespace words and n-grams of decoded texts: an n-gram is a tuple of n consecutive words
inside one text (n-grams never cross texts). Shared by the text metrics and self-BLEU."""

from __future__ import annotations

from typing import Sequence

Ngram = tuple[str, ...]


def check_texts(texts: Sequence[str]) -> None:
  """Raise on an empty set of texts."""
  if len(texts) == 0:
    raise ValueError("no texts")


def ngrams(words: Sequence[str], n: int) -> list[Ngram]:
  """The len(words) - n + 1 n-grams of one text; none when it has fewer than n words."""
  if n < 1:
    raise ValueError(f"n-gram order must be >= 1, got {n}")
  return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
