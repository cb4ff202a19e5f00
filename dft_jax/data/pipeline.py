"""The grain input pipeline: documents -> tokens -> packed fixed-length rows -> host batches.

  shuffle by seed (anew each epoch) -> tokenize (+EOS) -> concat-then-split packing (a long
  document is split across rows, never dropped) -> batch -> this process's rows

Sharding over JAX processes (`shard_by`): "rows" (the default) has every process read the
same global stream and keep its rows of each batch, so a run on N hosts trains on exactly the
batches of a run on one, and resumes on another host count unchanged; the price is that each
host tokenizes the whole global batch. "documents" gives each process a disjoint share of the
documents instead (no repeated work; the stream then depends on the process count).

Each row carries `tokens`, `segment_ids` (0 = padding), `positions` (within the piece of a document in that row) and
`loss_mask` (1 where token t is a target predicted from tokens < t of the same document).
A document longer than what is left of a row continues in the next row as a new piece
(positions restart at 0 there; attention never reaches back across rows anyway).
The iterator's state (`get_state` / `set_state`) is small JSON-able data: saved with a
checkpoint, it makes a resumed run see exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import grain
import jax
import numpy as np
from grain import experimental as grain_exp

from dft_jax.data.tokenizer import Tokenizer

FIELDS = ("tokens", "segment_ids", "positions", "loss_mask")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  seq_len: int
  batch_size: int             # global batch; each process yields batch_size / process_count
  seed: int = 0
  num_epochs: int | None = None  # None: repeat forever
  add_bos: bool = False
  add_eos: bool = True
  worker_count: int = 0       # grain worker processes (0: in the main process)
  shard_by: str = "rows"      # over processes: "rows" of one global stream, or "documents"


class _Tokenize(grain.transforms.Map):
  """Document (str, or bytes from a TFDS record) -> {"tokens": int32 ids}."""

  def __init__(self, tokenizer: Tokenizer, bos: int | None, eos: int | None):
    self.tokenizer, self.bos, self.eos = tokenizer, bos, eos

  def map(self, doc) -> dict[str, np.ndarray]:
    if isinstance(doc, dict):
      doc = doc["text"]
    if isinstance(doc, bytes):
      doc = doc.decode("utf-8", errors="replace")
    ids = self.tokenizer.encode(doc)
    if self.bos is not None:
      ids = [self.bos] + ids
    if self.eos is not None:
      ids = ids + [self.eos]
    return {"tokens": np.asarray(ids, np.int32)}


def _to_row(packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  segments = packed["tokens_segment_ids"].astype(np.int32)
  same_doc = np.concatenate([[False], (segments[1:] == segments[:-1]) & (segments[1:] != 0)])
  return {"tokens": packed["tokens"].astype(np.int32), "segment_ids": segments,
          "positions": packed["tokens_positions"].astype(np.int32),
          "loss_mask": same_doc.astype(np.float32)}


class _Rows(grain.transforms.Map):
  """A global batch -> this process's rows [start, stop)."""

  def __init__(self, start: int, stop: int):
    self.start, self.stop = start, stop

  def map(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v[self.start:self.stop] for k, v in batch.items()}


def special_ids(tokenizer: Tokenizer, cfg: PipelineConfig) -> tuple[int | None, int | None]:
  """BOS / EOS ids the pipeline adds (None where `cfg` adds none)."""
  return (tokenizer.bos_id if cfg.add_bos else None, tokenizer.eos_id if cfg.add_eos else None)


def make_dataset(documents: Sequence[Any], tokenizer: Tokenizer, cfg: PipelineConfig, *,
                 model_vocab_size: int | None = None, process_index: int | None = None,
                 process_count: int | None = None) -> grain.IterDataset:
  """The training stream for this process: dicts of [local_batch, seq_len] numpy arrays."""
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if cfg.batch_size % process_count:
    raise ValueError(f"batch_size={cfg.batch_size} is not divisible by the {process_count} "
                     "processes")
  if cfg.seq_len < 2:
    raise ValueError(f"seq_len must be >= 2, got {cfg.seq_len}")
  if not len(documents):
    raise ValueError("0 documents: nothing to read")
  if cfg.shard_by == "documents" and len(documents) < process_count:
    raise ValueError(f"{len(documents)} document(s) cannot be shared by {process_count} "
                     "processes")
  if model_vocab_size is not None:
    tokenizer.check_fits(model_vocab_size)
  bos, eos = special_ids(tokenizer, cfg)
  if cfg.shard_by not in ("rows", "documents"):
    raise ValueError(f"shard_by must be 'rows' or 'documents', got {cfg.shard_by!r}")
  by_rows = cfg.shard_by == "rows"
  ds = grain.MapDataset.source(documents)
  if not by_rows:
    ds = ds[process_index::process_count]
  ds = ds.shuffle(seed=cfg.seed).repeat(cfg.num_epochs)
  ds = ds.map(_Tokenize(tokenizer, bos, eos))
  it = ds.to_iter_dataset()
  it = grain_exp.ConcatThenSplitIterDataset(it, length_struct={"tokens": cfg.seq_len})
  rows = cfg.batch_size // process_count
  it = it.map(_to_row).batch(cfg.batch_size if by_rows else rows, drop_remainder=True)
  if by_rows and process_count > 1:
    it = it.map(_Rows(process_index * rows, (process_index + 1) * rows))
  if cfg.worker_count > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=cfg.worker_count))
  return it


def to_global(batch: dict[str, np.ndarray], sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
  """Host-local batch -> global arrays (each process contributes its rows)."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
