"""HF `tokenizer.json` through `tokenizers`, with the checks a training run needs.

The fingerprint (a hash of the vocabulary) ties reference statistics and checkpoints to the
tokenizer that made them.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Iterable, Sequence

import tokenizers


BOS_SPELLINGS = ("<|bos|>", "<s>", "<|begin_of_text|>", "<bos>")
EOS_SPELLINGS = ("<|eos|>", "</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>")


class TokenizerError(ValueError):
  """A tokenizer that is missing, unreadable, or does not fit the model."""


class Tokenizer:
  """A thin wrapper: encode / decode, vocabulary size, special ids, fingerprint."""

  def __init__(self, tok: tokenizers.Tokenizer, path: str | None = None):
    self.tok = tok
    self.path = path

  @property
  def vocab_size(self) -> int:
    return self.tok.get_vocab_size(with_added_tokens=True)

  def token_id(self, token: str) -> int | None:
    return self.tok.token_to_id(token)

  def special_id(self, spellings: Sequence[str]) -> int:
    """The id of the first of `spellings` in the vocabulary (special tokens vary by family)."""
    for name in spellings:
      i = self.token_id(name)
      if i is not None:
        return i
    raise ValueError(f"tokenizer has none of the special tokens {tuple(spellings)}")

  @property
  def bos_id(self) -> int:
    return self.special_id(BOS_SPELLINGS)

  @property
  def eos_id(self) -> int:
    return self.special_id(EOS_SPELLINGS)

  def encode(self, text: str) -> list[int]:
    return self.tok.encode(text, add_special_tokens=False).ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]

  def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
    return self.tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

  def id_to_piece(self, i: int) -> str | None:
    return self.tok.id_to_token(int(i))

  @property
  def fingerprint(self) -> str:
    vocab = sorted(self.tok.get_vocab(with_added_tokens=True).items())
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]

  def check_fits(self, model_vocab_size: int) -> None:
    """Every id the tokenizer can emit must index the model's embedding table."""
    if self.vocab_size > model_vocab_size:
      raise TokenizerError(f"tokenizer has {self.vocab_size} tokens but the model's vocabulary "
                           f"has only {model_vocab_size}")

  def save(self, path: str) -> None:
    self.tok.save(path)


def load(path: str | os.PathLike) -> Tokenizer:
  """`path` is a `tokenizer.json` file or a directory holding one."""
  path = os.fspath(path)
  file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
  if not os.path.isfile(file):
    raise TokenizerError(f"no tokenizer.json at {path}")
  try:
    return Tokenizer(tokenizers.Tokenizer.from_file(file), file)
  except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
    raise TokenizerError(f"cannot read tokenizer {file}: {e}") from None


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int,
                         special_tokens: Sequence[str] = ("<|pad|>", "<|bos|>", "<|eos|>")
                         ) -> Tokenizer:
  """A byte-level BPE (GPT-2 style pieces, `Ġ` marks a leading space) for from-scratch models."""
  tok = tokenizers.Tokenizer(tokenizers.models.BPE())
  tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = tokenizers.decoders.ByteLevel()
  trainer = tokenizers.trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=list(special_tokens), show_progress=False,
      initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(texts, trainer)
  return Tokenizer(tok)
