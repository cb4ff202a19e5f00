"""From finished runs to the paper table: sample, evaluate, compare, write table and plots.

Every run continues the same held-out prompts (non-overlapping cuts of the fine-tuning corpus's
test split; tune on validation) with the same sampling seed, at each decoding of DECODINGS;
the human row is the documents' true continuations, and its comparative metrics are measured
against a second, equally large set of human continuations (the noise floor). Perplexity is
measured on test documents. Below each table, for every fine-tuned row but SFT (DFT first):
row − SFT with paired bootstrap intervals over prompts, the gap-closed column and the
article's claims with computed verdicts (intervals.py); without an SFT row, the tables alone
and one line saying why.

load_held_out builds the human side once; Evaluator.run(runs) scores every run and returns
the scores (scored.ScoredRun); write_table builds tables, comparisons and plots from them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable, Sequence

import numpy as np

from dft_jax.data import files, sources, tokenizer as tokenizer_lib
from dft_jax.evaluation import (comparison, intervals, judge, plots, report, samples,
                                 score_cache, tables, text_metrics)
from dft_jax.evaluation.scored import Decoded, HeldOut, ScoredRun
from dft_jax.train import checkpoint, provenance

NAMES = {"mixce": "MixCE", "tailr": "TaiLr", "emo": "EMO", "dyft": "DyFT"}


def row_label(config: dict) -> str:
  """The table row of a run, from its config (when no sweep names it)."""
  loss = config["loss"]
  if loss["name"] == "ce":
    return "SFT" if config.get("init_from") else "base"
  if loss["name"] == "dft":
    return f"DFT ({loss['estimator'].replace('_', '-')})"
  return NAMES.get(loss["name"], loss["name"])


def training_curve(workdir: str) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.isfile(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _compare_to(label: str, seed: int, runs: Sequence[dict]) -> dict | None:
  """The SFT run of the same seed (else the first SFT run) that `label`'s run is judged against."""
  sft = [r for r in runs if r["row"] == "SFT"]
  if label == "SFT" or not sft:
    return None
  return next((r for r in sft if r["seed"] == seed), sft[0])


# The decodings a table is evaluated at: the deployed setting (the one DFT samples with in
# training, and the one the verdict is read from); parse_decodings("0.7:0.9,1:1") adds plain
# temperature 1 (a second table, sampled and scored again).
DECODINGS = (("deployed: T=0.7, top-p=0.9", {"temperature": 0.7, "top_p": 0.9}),)
def parse_decodings(spec: str) -> tuple:
  """'0.7:0.9,1.0:1.0' -> DECODINGS-style ((label, {temperature, top_p}), ...)."""
  out = []
  for item in filter(None, spec.split(",")):
    try:
      t, p = (float(x) for x in item.split(":"))
    except ValueError:
      raise ValueError(f"decoding {item!r} is not TEMPERATURE:TOP_P") from None
    if t <= 0 or not 0 < p <= 1:
      raise ValueError(f"decoding {item!r}: temperature must be > 0 and top-p in (0, 1]")
    label = f"T={t:g}" + (f", top-p={p:g}" if p < 1 else "")
    out.append(((f"deployed: {label}" if not out else label), {"temperature": t, "top_p": p}))
  if not out:
    raise ValueError("no decoding given")
  return tuple(out)


@dataclasses.dataclass(frozen=True)
class Settings:
  """How every run of a table is measured, and where its samples and files go."""
  corpus: str
  split: str
  prompt_len: int
  max_new_tokens: int
  seed: int                  # sampling seed, the same for every run; also the bootstrap's
  decodings: tuple           # DECODINGS-style; the first is the deployed one
  ppl_pieces: int | None
  bootstrap: int             # paired bootstrap replicates
  reported: bool             # the article's figures beside the first decoding's table
  out_dir: str
  feature_clip: float = 0.0  # > 0: feature statistics winsorized at ±clip sd (FeatureSpace)


# The table's feature statistics are winsorized at ±5 human sds: a repetition loop sits tens of
# sds out and alone decided a run's Feature Sinkhorn (one seed read 1,232 against SFT's 132);
# the Degenerate column counts those texts instead. 0 reads the unclipped statistics.
FEATURE_CLIP = 5.0


@dataclasses.dataclass(frozen=True)
class DecodingTable:
  """One decoding's table: aggregated rows, the runs' rows, the comparisons with SFT (or why
  there are none), its Markdown and LaTeX, and the DFT rows head to head with EBFT-style."""
  table: dict
  rows: list[dict]
  comparisons: list[dict]
  no_comparison: str | None
  markdown: str
  latex: str
  head_to_head: list[dict]


def reproduce(runs: Sequence[tuple[str, str | None]], out_dir: str, *, corpus: str | None = None,
              split: str = "test", num_prompts: int = 256, prompt_len: int = 16,
              max_new_tokens: int = 48, seed: int = 0, ppl_docs: int = 64,
              ppl_pieces: int | None = 64, decodings=DECODINGS, bootstrap: int = 200,
              reported: bool = True, embedding_run: str | None = None,
              feature_clip: float = FEATURE_CLIP, reuse_scores: bool = True,
              log: Callable[[str], None] = print) -> dict:
  """Evaluates (workdir, row label or None) pairs at each decoding; writes results.json,
  table.md, table.tex and PNG plots into `out_dir`; returns {decoding label: table}.

  Prompts: `num_prompts` non-overlapping cuts of `split` documents; another `num_prompts` cuts
  give the second human half, so the split-half floor compares sets as large as a run's.
  embedding_run: a run whose model embeds every text for `embedding_mmd` (report.EmbeddingSpace).
  feature_clip: > 0 winsorizes the feature statistics at ±clip human sds (report.FeatureSpace).
  Intervals resample documents, then prompts within them (intervals.clustered).
  reuse_scores: take a run's scores from its score cache when it was scored alike before
  (score_cache.py), and keep new ones there.
  """
  if not runs:
    raise ValueError("no runs to tabulate")
  dlabels = [dlabel for dlabel, _ in decodings]
  if len(set(dlabels)) < len(dlabels):  # a run's scores are kept by decoding label
    raise ValueError(f"decodings {dlabels} name one decoding twice")
  start = time.time()
  os.makedirs(os.path.join(out_dir, "samples"), exist_ok=True)
  configs = [samples.run_config(w) for w, _ in runs]
  labels = [label or row_label(c) for (_, label), c in zip(runs, configs)]
  tok = _shared_tokenizer([w for w, _ in runs])
  tuned = ([c for c, label in zip(configs, labels) if label != "base"] or configs)[0]["data"]
  corpus, data_dir = corpus or tuned["corpus"], tuned["data_dir"] or None
  settings = Settings(corpus, split, prompt_len, max_new_tokens, seed, tuple(decodings),
                      ppl_pieces, bootstrap, reported, out_dir, feature_clip)
  held = load_held_out(settings, tok, num_prompts, data_dir, ppl_docs, embedding_run)
  log(f"[table] {len(runs)} runs, {num_prompts} prompts of {corpus} ({split}) x "
      f"{len(decodings)} decodings, {max_new_tokens} new tokens, sampling seed {seed}")
  progress = lambda line: log(f"{line} ({time.time() - start:.0f}s)")  # noqa: E731
  scored = Evaluator(held, settings, log=progress, reuse_scores=reuse_scores).run(
      [(workdir, label) for (workdir, _), label in zip(runs, labels)])
  tables_out = write_table(scored, held, settings, log)
  first = {}
  for (workdir, _), label in zip(runs, labels):
    first.setdefault(label, workdir)
  plots.training_curves({k: training_curve(w) for k, w in first.items()},
                        os.path.join(out_dir, "training_curves.png"))
  log(f"[table] wrote table.md, table.tex, results.json, 3 plots to {out_dir} "
      f"({time.time() - start:.0f}s)")
  return tables_out


def _shared_tokenizer(workdirs: Sequence[str]) -> tokenizer_lib.Tokenizer:
  """The runs' tokenizer; runs with different tokenizers cannot share a table."""
  tok = tokenizer_lib.load(os.path.join(workdirs[0], "tokenizer.json"))
  for workdir in workdirs:
    other = tokenizer_lib.load(os.path.join(workdir, "tokenizer.json"))
    if other.fingerprint != tok.fingerprint:
      raise ValueError(f"{workdir} uses another tokenizer than {workdirs[0]}: perplexities and "
                       "features would not be comparable")
  return tok


def load_held_out(settings: Settings, tok: tokenizer_lib.Tokenizer, num_prompts: int,
                  data_dir: str | None, ppl_docs: int, embedding_run: str | None) -> HeldOut:
  """Prompts, their human continuations (written to samples/human.jsonl) and a second human
  set, perplexity documents, the feature spaces fitted on the human continuations."""
  s = settings
  prompts_all, human_ids, doc_ids = samples.held_out(
      s.corpus, tok, num_prompts=2 * num_prompts, prompt_len=s.prompt_len,
      continuation_len=s.max_new_tokens, split=s.split, data_dir=data_dir)
  records = samples.records(tok, prompts_all, human_ids)
  human = [r["text"] for r in records[:num_prompts]]
  human_b = [r["text"] for r in records[num_prompts:]]
  samples.write_jsonl(os.path.join(s.out_dir, "samples", "human.jsonl"), records[:num_prompts])
  docs = sources.documents(s.corpus, s.split, data_dir)
  ppl_texts = [docs[i] for i in range(min(ppl_docs, len(docs)))]
  space = report.FeatureSpace(human, tok, s.max_new_tokens, clip=s.feature_clip)
  human_fns = comparison.human_metrics(human, space, space.human_NxF, space(human_b))
  emb_space = None
  if embedding_run:  # a stated model, the same for every row (default: the first run's)
    emb_model, _ = checkpoint.load_model(embedding_run)
    name = os.path.basename(os.path.normpath(embedding_run))
    emb_space = report.EmbeddingSpace(emb_model, tok, human, s.max_new_tokens,
                                      name=f"{name} final layer, mean pooling")
  return HeldOut(tok, prompts_all[:num_prompts], doc_ids[:num_prompts], human, human_b, ppl_texts,
                 space, emb_space, human_fns)


class Evaluator:
  """Scores finished runs against one held-out set, in big_vision's evaluator manner: built
  once with the held-out data and settings, `run(runs)` returns every run's scores (nothing is
  kept on the evaluator, so tables and plots are built from what it returns)."""

  def __init__(self, held: HeldOut, settings: Settings, *,
               log: Callable[[str], None] = print, reuse_scores: bool = True):
    self.held, self.settings, self.log = held, settings, log
    self.reuse_scores = reuse_scores

  def run(self, runs: Sequence[tuple[str, str]]) -> list[ScoredRun]:
    """(workdir, row label) pairs -> their scores, in order; logs a line per run and decoding."""
    return [self.score_run(workdir, row, progress=f"{i + 1}/{len(runs)} ")
            for i, (workdir, row) in enumerate(runs)]

  def score_run(self, workdir: str, row: str, *, progress: str = "") -> ScoredRun:
    """Perplexity on the held-out documents, then samples and their scores at each decoding;
    reused from the run's score cache (score_cache.py) when it was scored alike before."""
    held, s = self.held, self.settings
    seed = int(samples.run_config(workdir).get("seed", 0))
    cache_key = score_cache.key(workdir, held, s) if self.reuse_scores else None
    cached = score_cache.load(workdir, cache_key)
    if cached is None:
      model, _ = checkpoint.load_model(workdir)
      ppl = report.perplexity(model, held.tok, held.ppl_texts, per_piece=True,
                              max_pieces=s.ppl_pieces)
      by_decoding = {dlabel: self.sample_and_score(model, decoding)
                     for dlabel, decoding in s.decodings}
      score_cache.save(workdir, cache_key, ppl, by_decoding)
    else:
      ppl, by_decoding = cached
    name = os.path.basename(os.path.normpath(workdir))
    for d, (dlabel, (dec, rows)) in enumerate(by_decoding.items()):
      samples.write_jsonl(os.path.join(s.out_dir, "samples", f"{name}.{d}.jsonl"), rows)
      m = dec.metrics
      self.log(f"[table] {progress}{row} ({dlabel}): ppl {ppl['perplexity']:.2f} | "
               f"diversity {m['diversity']:.3f} | sent. len. var {m['sent_len_var']:.1f} | "
               f"sinkhorn {m['feature_sinkhorn']:.2f} | judge {m['judge_accuracy']:.2f}"
               + (" | reused" if cached else ""))
    return ScoredRun(row, workdir, seed, ppl, {d: dec for d, (dec, _) in by_decoding.items()})

  def sample_and_score(self, model, decoding: dict) -> tuple[Decoded, list[dict]]:
    """The model's continuations of the held-out prompts at `decoding`, their metrics,
    feature-space divergences, judge verdicts, embeddings and MAUVE; and the sample rows."""
    held, s = self.held, self.settings
    conts = samples.continue_prompts(model, held.prompts_NxP, max_new_tokens=s.max_new_tokens,
                                     seed=s.seed, eos=held.tok.eos_id, batch_size=64, **decoding)
    rows = samples.records(held.tok, held.prompts_NxP, conts)
    texts = [r["text"] for r in rows]
    feats_NxF = held.space(texts)
    metrics = text_metrics.compute(texts, held.human, seed=s.seed)
    metrics.update(held.space.divergences(feats_NxF))
    verdicts = judge.two_sample_accuracy(held.human, texts, folds=5, seed=s.seed)
    metrics["judge_accuracy"] = verdicts["accuracy"]
    emb_NxE = None
    if held.emb_space is not None:
      emb_NxE = held.emb_space(texts)
      metrics.update(held.emb_space.divergences(emb_NxE))
    metrics.update(report.mauve_scores(feats_NxF, held.space.human_NxF, emb_NxE,
                                       None if emb_NxE is None else held.emb_space.human_NxF))
    return Decoded(texts, feats_NxF, metrics, verdicts, emb_NxE), rows


def _decoding_table(scored: Sequence[ScoredRun], dlabel: str, human_row: dict, held: HeldOut,
                    settings: Settings) -> DecodingTable:
  """The table of decoding `dlabel`: every run's row with its judged win rate over SFT, the
  human row, the comparisons with SFT, and their Markdown and LaTeX."""
  s = settings
  first = dlabel == s.decodings[0][0]
  texts_of = {r.run: r.decodings[dlabel].texts for r in scored}
  rows = [{"row": r.row, "run": r.run, "seed": r.seed, **r.decodings[dlabel].metrics,
           "perplexity": r.perplexity["perplexity"], "ppl_tokens": r.perplexity["ppl_tokens"]}
          for r in scored]
  for r in rows:
    other = _compare_to(r["row"], r["seed"], rows)
    if r["row"] == "SFT":
      r["win_rate"] = 0.5  # against itself: every pair ties
    elif other is not None:
      duel = judge.pairwise(held.human, texts_of[r["run"]], texts_of[other["run"]],
                            seed=s.seed, folds=min(5, len(held.human)))
      r["win_rate"], r["judge_vs_sft"] = duel["win_rate"], {"against": other["run"], **duel}
  table = tables.aggregate(rows + [human_row])
  fns = {}  # each row's metric memos, shared by the comparisons with SFT and head to head
  comps, no_comparison = comparison.compare_all(scored, dlabel, held, s.bootstrap, s.seed, fns)
  h2h = comparison.head_to_head(scored, dlabel, held, s.bootstrap, s.seed, fns)
  caption = (f"{s.corpus} ({s.split} split), decoding {dlabel}: {len(held.prompts_NxP)} "
             f"held-out prompts ({s.prompt_len} tokens, non-overlapping cuts of "
             f"{len(np.unique(held.doc_ids_N))} documents), "
             f"{s.max_new_tokens} new tokens; mean ± sd over seeds. Judge = classifier "
             f"proxy for human preference. PPL on {rows[0]['ppl_tokens']} tokens of "
             f"{len(held.ppl_texts)} {s.split} documents. Human row: its own metrics; "
             f"comparative ones against a second human set of {len(held.human_b)} "
             "continuations (the noise floor)."
             + (f" Feature statistics clipped at ±{s.feature_clip:g} human sd."
                if s.feature_clip else "")
             + (f" Embeddings: {held.emb_space.name}." if held.emb_space else ""))
  md = f"### {dlabel}\n\n" + tables.markdown(table, reported=s.reported and first,
                                              caption=caption)
  return DecodingTable(table, rows, comps, no_comparison, md,
                       tables.latex(table, reported=False, caption=caption), h2h)


def write_table(scored: Sequence[ScoredRun], held: HeldOut, settings: Settings,
                log: Callable[[str], None] = print) -> dict:
  """The tables, comparisons and plots of every decoding of the scored runs into out_dir;
  returns {decoding label: table}."""
  s = settings
  human_row = {"row": "human", **report.human_reference(
      held.human, held.space, seed=s.seed, other=held.human_b, embedding_space=held.emb_space)}
  md, tex, tables_out, no_comparison = [], [], {}, None
  results = {"corpus": s.corpus, "split": s.split, "decodings": {}}
  for dlabel, _ in s.decodings:
    t = _decoding_table(scored, dlabel, human_row, held, s)
    tables_out[dlabel], no_comparison = t.table, t.no_comparison
    md.append(t.markdown)
    tex.append(t.latex)
    for comp in t.comparisons:
      md.append(comparison.markdown(comp, dlabel, len(held.prompts_NxP),
                                    len(np.unique(held.doc_ids_N)), s.bootstrap))
      log(f"[table] {comp['row']} − SFT, {dlabel}: verdict\n" +
          intervals.summarize(comp["claims"]) +
          ("\n" + comparison.ONE_SEED if comp["seeds"] == 1 else ""))
    if t.head_to_head:
      md.append(comparison.head_to_head_markdown(t.head_to_head, dlabel, s.bootstrap))
      log(f"[table] DFT rows vs {comparison.RIVAL}, {dlabel}:\n" + "\n".join(
          f"{h['row']}: " + intervals.summarize(h["claims"])[2:] for h in t.head_to_head))
    results["decodings"][dlabel] = {"runs": t.rows, "comparisons": t.comparisons,
                                    "head_to_head": t.head_to_head}
  if no_comparison:  # the same rows at every decoding: said once
    log(f"[table] {no_comparison}")
  results["human"] = human_row
  run_dirs = list(dict.fromkeys(r.run for r in scored))
  results["provenance"], footer = provenance_block(run_dirs)
  md.append(footer)
  files.write_text(os.path.join(s.out_dir, "results.json"),
                   json.dumps(results, indent=1, default=_json_default))
  files.write_text(os.path.join(s.out_dir, "table.md"), "\n".join(md))
  files.write_text(os.path.join(s.out_dir, "table.tex"), "\n".join(tex))
  # the plots read the deployed decoding's samples
  deployed = s.decodings[0][0]
  lengths, gaps = {}, {}
  for r in scored:
    dec = r.decodings[deployed]
    lengths.setdefault(r.row, []).extend(text_metrics.sentence_lengths(dec.texts).tolist())
    gaps.setdefault(r.row, []).append(held.space.gaps(dec.feats_NxF))
  plots.sentence_lengths(text_metrics.sentence_lengths(held.human), lengths,
                         os.path.join(s.out_dir, "sentence_lengths.png"))
  plots.feature_gaps({k: {n: float(np.mean([g[n] for g in v])) for n in v[0]}
                      for k, v in gaps.items()},
                     os.path.join(s.out_dir, "feature_gaps.png"))
  return tables_out


def provenance_block(run_dirs: Sequence[str]) -> tuple[dict, str]:
  """results.json's provenance (this table's record, each run's records, the fields on which
  the runs' environments differ) and the table's footer: one digest line, and a line saying
  whether the runs were trained alike."""
  table = provenance.collect()
  runs = {w: provenance.read(w) for w in run_dirs}
  records = [r for rs in runs.values() for r in rs]
  diffs = provenance.differences(records)
  lines = [f"Provenance of this table: {provenance.digest(table)}."]
  if records and not diffs:
    lines.append(f"Runs: all trained in one environment: {provenance.digest(records[-1])}.")
  elif diffs:
    lines.append("Runs: trained in DIFFERENT environments (" + "; ".join(diffs) + ").")
  missing = [os.path.basename(os.path.normpath(w)) for w, rs in runs.items() if not rs]
  if missing:
    lines.append(f"No provenance recorded for run(s) {', '.join(missing)} (made before it "
                 "was kept).")
  return ({"table": table, "runs": runs, "differences": diffs},
          "\n".join(f"<sub>{line}</sub>  " for line in lines) + "\n")


def _json_default(x):
  if isinstance(x, np.ndarray):
    return x.tolist()
  if isinstance(x, (np.floating, np.integer, np.bool_)):
    return x.item()
  raise TypeError(type(x).__name__)
