"""A run's table scores, kept in its own directory so that the next table reuses them.

Scoring a run (perplexity, sampling 256 continuations, features, judge) is the slow part of a
table; tuning and test tables share most runs (base, SFT, the chosen λ's seed 0). The scores
are stored under WORKDIR/scores/KEY.pkl, where KEY digests everything they depend on: the run's
newest checkpoint (step and write time), the held-out prompts, human continuations and
perplexity documents, the settings that change a score, and VERSION. A retrained run, another
split or decoding, or a new clip misses the cache; bump VERSION when the scoring code changes
what it computes. The files are a cache: deleting them only costs time.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle

import numpy as np

from dft_jax.evaluation.scored import HeldOut
from dft_jax.train import checkpoint

VERSION = 1


def _checkpoint_id(workdir: str) -> dict:
  """The newest checkpoint's step and write time ({} without one): a retrained run gets
  another key."""
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    return {}
  step = checkpoint.manager(workdir, create=False).latest_step()
  if step is None:
    return {}
  return {"step": step,
          "mtime_ns": os.stat(os.path.join(workdir, "checkpoints", str(step))).st_mtime_ns}


def _digest(texts_or_array) -> str:
  h = hashlib.sha256()
  if isinstance(texts_or_array, np.ndarray):
    h.update(np.ascontiguousarray(texts_or_array).tobytes())
  else:
    for t in texts_or_array:
      h.update(t.encode("utf-8") + b"\0")
  return h.hexdigest()


def key(workdir: str, held: HeldOut, settings) -> str | None:
  """The cache key of `workdir`'s scores under `held` and `settings` (reproduce.Settings);
  None when the run has no checkpoint to identify it by."""
  ckpt = _checkpoint_id(workdir)
  if not ckpt:
    return None
  s = settings
  parts = {"version": VERSION, "checkpoint": ckpt, "prompts": _digest(held.prompts_NxP),
           "human": _digest(held.human), "human_b": _digest(held.human_b),
           "ppl_texts": _digest(held.ppl_texts),
           "embedding": held.emb_space.name if held.emb_space else None,
           "settings": [s.corpus, s.split, s.prompt_len, s.max_new_tokens, s.seed,
                        [list(d) for d in s.decodings], s.ppl_pieces, s.feature_clip]}
  return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _path(workdir: str, cache_key: str) -> str:
  return os.path.join(workdir, "scores", f"{cache_key}.pkl")


def load(workdir: str, cache_key: str | None) -> tuple[dict, dict] | None:
  """(perplexity, {decoding label: (Decoded, sample rows)}) stored under `cache_key`, or None."""
  if cache_key is None or not os.path.isfile(_path(workdir, cache_key)):
    return None
  with open(_path(workdir, cache_key), "rb") as f:
    return pickle.load(f)


def save(workdir: str, cache_key: str | None, perplexity: dict, by_decoding: dict) -> None:
  """Stores what `load` returns: the perplexity and {decoding label: (Decoded, sample rows)}
  (written atomically)."""
  if cache_key is None:
    return
  path = _path(workdir, cache_key)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "wb") as f:
    pickle.dump((perplexity, by_decoding), f)
  os.replace(path + ".tmp", path)
