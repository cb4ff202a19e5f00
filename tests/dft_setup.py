"""A tiny language and reference corpus where sentence length is the thing to learn."""

import numpy as np
import tokenizers

from dft_jax.losses import dft
from dft_jax.losses import reference as reference_lib
from dft_jax.data import tokenizer as tokenizer_lib
from dft_jax.models import ModelConfig

WORDS = [f"w{i}" for i in range(28)]


def tokenizer():
  vocab = {"[UNK]": 0, "<|eos|>": 1, "Ġ.": 2, **{f"Ġ{w}": i + 3 for i, w in enumerate(WORDS)}}
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Metaspace(replacement="Ġ", prepend_scheme="always")
  tok.decoder = tokenizers.decoders.Metaspace(replacement="Ġ", prepend_scheme="always")
  return tokenizer_lib.Tokenizer(tok)


def short_sentence_docs(n=200, seed=0):
  """Human reference: sentences of 2-4 words."""
  rng = np.random.RandomState(seed)
  return [" ".join(" ".join(rng.choice(WORDS, rng.randint(2, 5))) + " ."
                   for _ in range(12)) for _ in range(n)]


MODEL = ModelConfig(vocab_size=32, hidden_size=32, intermediate_size=64, num_layers=2,
                    num_heads=4, num_kv_heads=2, head_dim=8)


def loss_config(stats_file, **kw):
  """The DFT loss config (its one definition) at the tiny language's scale."""
  return dft.config(**{**dict(
      divergence="mmd", lam=1.0, lam_warmup_steps=1, every=2, ce_weight=0.0, dist_batch=16,
      prompt_len=4, gen_len=16, groups=("sentence_length", "punctuation"),
      stats_file=stats_file), **kw})


def batch(tok, docs, rows=16, length=32):
  ids = [tok.encode(d)[:length] for d in docs[:rows]]
  tokens = np.asarray(ids, np.int32)
  return {"tokens": tokens, "segment_ids": np.ones_like(tokens),
          "positions": np.tile(np.arange(length, dtype=np.int32), (rows, 1)),
          "loss_mask": np.concatenate([np.zeros((rows, 1), np.float32),
                                       np.ones((rows, length - 1), np.float32)], axis=1)}


def reference(directory):
  """(tokenizer, short-sentence documents, path of their stats file written in `directory`)."""
  tok, docs = tokenizer(), short_sentence_docs()
  path = str(directory / "short.npz")
  reference_lib.save_stats(reference_lib.compute_stats(docs, tok, window=16, max_windows=256),
                           path)
  return tok, docs, path
