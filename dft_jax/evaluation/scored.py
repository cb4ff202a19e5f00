"""The typed values a table is built from: the held-out human side, and each run's scores
(reproduce.Evaluator makes them; comparison, tables and plots read them)."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class HeldOut:
  """What every run is measured against: the held-out prompts, their human continuations and a
  second human set (the noise floor), the perplexity documents, and the spaces fitted on the
  human continuations."""
  tok: object                # the runs' shared tokenizer
  prompts_NxP: np.ndarray    # prompt token ids
  doc_ids_N: np.ndarray      # the document each prompt was cut from (bootstrap clusters)
  human: list[str]           # the prompts' true continuations
  human_b: list[str]         # as many other continuations: the second human set
  ppl_texts: list[str]       # documents scored for perplexity
  space: object              # report.FeatureSpace fitted on `human`
  emb_space: object | None   # report.EmbeddingSpace of a stated model, or None
  human_fns: dict            # comparison.human_metrics: the human side of gap closed


@dataclasses.dataclass(frozen=True)
class Decoded:
  """One run's continuations of the held-out prompts at one decoding, and their scores."""
  texts: list[str]
  feats_NxF: np.ndarray        # in HeldOut.space
  metrics: dict                # text metrics, divergences, judge accuracy, MAUVE
  verdicts: dict               # judge.two_sample_accuracy: per-text correctness for intervals
  emb_NxE: np.ndarray | None   # in HeldOut.emb_space, when there is one


@dataclasses.dataclass(frozen=True)
class ScoredRun:
  """A finished run scored for the table: its row, perplexity, and per decoding (by label) its
  continuations' scores."""
  row: str                       # table row label; runs of one row are its seeds
  run: str                       # workdir
  seed: int                      # training seed (SFT of the same seed is the comparison's)
  perplexity: dict               # report.perplexity(per_piece=True)
  decodings: dict[str, Decoded]
