"""From finished runs to the paper table: sample, evaluate, compare, write table and plots.

Every run continues the same held-out prompts (non-overlapping cuts of the fine-tuning corpus's
test split; tune on validation) with the same sampling seed, at each decoding of DECODINGS;
the human row is the documents' true continuations, and its comparative metrics are measured
against a second, equally large set of human continuations (the noise floor). Perplexity is
measured on test documents. Below each table, for every fine-tuned row but SFT (DFT first):
row − SFT with paired bootstrap intervals over prompts, the gap-closed column and the
article's claims with computed verdicts (intervals.py); without an SFT row, the tables alone
and one line saying why.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Sequence

import numpy as np

from dft_jax.data import files, sources, tokenizer as tokenizer_lib
from dft_jax.evaluation import (comparison, intervals, judge, plots, report, samples, tables,
                                 text_metrics)
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


# The decodings a table is evaluated at: the deployed setting first (the one DFT samples with
# in training, and the one the verdict is read from), then plain temperature 1.
DECODINGS = (("deployed: T=0.7, top-p=0.9", {"temperature": 0.7, "top_p": 0.9}),
             ("T=1", {"temperature": 1.0, "top_p": 1.0}))  # = parse_decodings("0.7:0.9,1:1")
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


def _sample_and_score(model, tok, prompts, human, human_feats, space, decoding, seed,
                      max_new_tokens, path, emb_space=None):
  conts = samples.continue_prompts(model, prompts, max_new_tokens=max_new_tokens, seed=seed,
                                   eos=tok.eos_id, batch_size=64, **decoding)
  rows = samples.records(tok, prompts, conts)
  samples.write_jsonl(path, rows)
  texts = [r["text"] for r in rows]
  feats = space(texts)
  metrics = text_metrics.compute(texts, human, seed=seed)
  metrics.update(space.divergences(feats))
  verdicts = judge.two_sample_accuracy(human, texts, folds=5, seed=seed)
  metrics["judge_accuracy"] = verdicts["accuracy"]
  emb = None
  if emb_space is not None:
    emb = emb_space(texts)
    metrics.update(emb_space.divergences(emb))
  metrics.update(report.mauve_scores(feats, human_feats, emb,
                                     None if emb is None else emb_space.human_NxF))
  return texts, feats, metrics, verdicts, emb


def reproduce(runs: Sequence[tuple[str, str | None]], out_dir: str, *, corpus: str | None = None,
              split: str = "test", num_prompts: int = 256, prompt_len: int = 16,
              max_new_tokens: int = 48, seed: int = 0, ppl_docs: int = 64,
              ppl_pieces: int | None = 64, decodings=DECODINGS, bootstrap: int = 200,
              reported: bool = True, embedding_run: str | None = None,
              log: Callable[[str], None] = print) -> dict:
  """Evaluates (workdir, row label or None) pairs at each decoding; writes results.json,
  table.md, table.tex and PNG plots into `out_dir`; returns {decoding label: table}.

  Prompts: `num_prompts` non-overlapping cuts of `split` documents; another `num_prompts` cuts
  give the second human half, so the split-half floor compares sets as large as a run's.
  embedding_run: a run whose model embeds every text for `embedding_mmd` (report.EmbeddingSpace).
  """
  if not runs:
    raise ValueError("no runs to tabulate")
  start = time.time()
  os.makedirs(os.path.join(out_dir, "samples"), exist_ok=True)
  configs = [samples.run_config(w) for w, _ in runs]
  labels = [label or row_label(c) for (_, label), c in zip(runs, configs)]
  tok = _shared_tokenizer([w for w, _ in runs])
  tuned = ([c for c, label in zip(configs, labels) if label != "base"] or configs)[0]["data"]
  corpus, data_dir = corpus or tuned["corpus"], tuned["data_dir"] or None
  ev = _Evaluation(corpus, split, tok, prompt_len, max_new_tokens, seed, out_dir)
  ev.held_out(num_prompts, data_dir, ppl_docs, embedding_run)
  log(f"[table] {len(runs)} runs, {num_prompts} prompts of {corpus} ({split}) x "
      f"{len(decodings)} decodings, {max_new_tokens} new tokens, sampling seed {seed}")
  for i, ((workdir, _), config, label) in enumerate(zip(runs, configs, labels)):
    for dlabel, metrics, scored in ev.score_run(workdir, config, label, decodings, ppl_pieces):
      log(f"[table] {i + 1}/{len(runs)} {label} ({dlabel}): ppl {scored['perplexity']:.2f} | "
          f"diversity {metrics['diversity']:.3f} | sent. len. var "
          f"{metrics['sent_len_var']:.1f} | sinkhorn {metrics['feature_sinkhorn']:.2f} | "
          f"judge {metrics['judge_accuracy']:.2f} ({time.time() - start:.0f}s)")
  tables_out = ev.write(decodings, bootstrap, reported, log)
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


class _Evaluation:
  """One table's state: the held-out prompts and human sets, the feature spaces, and every
  run's scored samples per decoding."""

  def __init__(self, corpus, split, tok, prompt_len, max_new_tokens, seed, out_dir):
    self.corpus, self.split, self.tok, self.seed, self.out_dir = corpus, split, tok, seed, out_dir
    self.prompt_len, self.max_new_tokens = prompt_len, max_new_tokens
    self.per_decoding, self.ppl, self.lengths, self.gaps = {}, {}, {}, {}

  def held_out(self, num_prompts, data_dir, ppl_docs, embedding_run) -> None:
    """Prompts, their human continuations and a second human set, perplexity documents, the
    feature spaces fitted on the human continuations."""
    prompts_all, human_ids = samples.held_out(
        self.corpus, self.tok, num_prompts=2 * num_prompts, prompt_len=self.prompt_len,
        continuation_len=self.max_new_tokens, split=self.split, data_dir=data_dir)
    self.prompts = prompts_all[:num_prompts]
    records = samples.records(self.tok, prompts_all, human_ids)
    self.human = [r["text"] for r in records[:num_prompts]]
    self.human_b = [r["text"] for r in records[num_prompts:]]
    samples.write_jsonl(os.path.join(self.out_dir, "samples", "human.jsonl"),
                        records[:num_prompts])
    docs = sources.documents(self.corpus, self.split, data_dir)
    self.ppl_texts = [docs[i] for i in range(min(ppl_docs, len(docs)))]
    self.space = report.FeatureSpace(self.human, self.tok, self.max_new_tokens)
    self.human_fns = comparison.human_metrics(self.human, self.space, self.space.human_NxF,
                                              self.space(self.human_b))
    self.emb_space = None
    if embedding_run:  # a stated model, the same for every row (default: the first run's)
      emb_model, _ = checkpoint.load_model(embedding_run)
      name = os.path.basename(os.path.normpath(embedding_run))
      self.emb_space = report.EmbeddingSpace(emb_model, self.tok, self.human,
                                             self.max_new_tokens,
                                             name=f"{name} final layer, mean pooling")

  def score_run(self, workdir, config, label, decodings, ppl_pieces):
    """Perplexity, then samples and metrics at each decoding; yields (decoding, metrics,
    perplexity) as each finishes."""
    model, _ = checkpoint.load_model(workdir)
    scored = report.perplexity(model, self.tok, self.ppl_texts, per_piece=True,
                               max_pieces=ppl_pieces)
    self.ppl[workdir] = scored
    name = os.path.basename(os.path.normpath(workdir))
    for d, (dlabel, decoding) in enumerate(decodings):
      path = os.path.join(self.out_dir, "samples", f"{name}.{d}.jsonl")
      texts, feats, metrics, verdicts, emb = _sample_and_score(
          model, self.tok, self.prompts, self.human, self.space.human_NxF, self.space, decoding,
          self.seed, self.max_new_tokens, path, self.emb_space)
      metrics.update(perplexity=scored["perplexity"], ppl_tokens=scored["ppl_tokens"])
      self.per_decoding.setdefault(dlabel, []).append(
          {"row": label, "run": workdir, "seed": int(config.get("seed", 0)),
           "metrics": metrics, "texts": texts, "feats": feats, "verdicts": verdicts,
           "emb": emb, "emb_space": self.emb_space})
      if d == 0:
        self.gaps.setdefault(label, []).append(self.space.gaps(feats))
        self.lengths.setdefault(label, []).extend(
            text_metrics.sentence_lengths(texts).tolist())
      yield dlabel, metrics, scored

  def _table(self, entries, dlabel, first, human_row, bootstrap, reported):
    """(aggregated table, its rows, the comparisons with SFT, why there are none or None,
    Markdown, LaTeX) of a decoding."""
    texts_of = {e["run"]: e["texts"] for e in entries}
    rows = [{"row": e["row"], "run": e["run"], "seed": e["seed"], **e["metrics"]}
            for e in entries]
    for r in rows:
      other = _compare_to(r["row"], r["seed"], rows)
      if r["row"] == "SFT":
        r["win_rate"] = 0.5  # against itself: every pair ties
      elif other is not None:
        duel = judge.pairwise(self.human, texts_of[r["run"]], texts_of[other["run"]],
                              seed=self.seed, folds=min(5, len(self.human)))
        r["win_rate"], r["judge_vs_sft"] = duel["win_rate"], {"against": other["run"], **duel}
    table = tables.aggregate(rows + [human_row])
    comps, no_comparison = comparison.compare_all(entries, self.human_fns, self.ppl, bootstrap,
                                                  self.seed, self.human, self.space,
                                                  self.space.human_NxF)
    caption = (f"{self.corpus} ({self.split} split), decoding {dlabel}: {len(self.prompts)} "
               f"held-out prompts ({self.prompt_len} tokens, non-overlapping cuts), "
               f"{self.max_new_tokens} new tokens; mean ± sd over seeds. Judge = classifier "
               f"proxy for human preference. PPL on {rows[0]['ppl_tokens']} tokens of "
               f"{len(self.ppl_texts)} {self.split} documents. Human row: its own metrics; "
               f"comparative ones against a second human set of {len(self.human_b)} "
               "continuations (the noise floor)."
               + (f" Embeddings: {self.emb_space.name}." if self.emb_space else ""))
    md = f"### {dlabel}\n\n" + tables.markdown(table, reported=reported and first,
                                                caption=caption)
    return (table, rows, comps, no_comparison, md,
            tables.latex(table, reported=False, caption=caption))

  def write(self, decodings, bootstrap, reported, log) -> dict:
    """The tables, comparisons and plots of every decoding into out_dir."""
    human_row = {"row": "human", **report.human_reference(
        self.human, self.space, seed=self.seed, other=self.human_b,
        embedding_space=self.emb_space)}
    md, tex, tables_out, no_comparison = [], [], {}, None
    results = {"corpus": self.corpus, "split": self.split, "decodings": {}}
    for d, (dlabel, _) in enumerate(decodings):
      table, rows, comps, no_comparison, table_md, table_tex = self._table(
          self.per_decoding[dlabel], dlabel, d == 0, human_row, bootstrap, reported)
      tables_out[dlabel] = table
      md.append(table_md)
      tex.append(table_tex)
      for comp in comps:
        md.append(comparison.markdown(comp, dlabel, len(self.prompts), bootstrap))
        log(f"[table] {comp['dft_row']} − SFT, {dlabel}: verdict\n" +
            intervals.summarize(comp["claims"]))
      results["decodings"][dlabel] = {"runs": rows, "comparisons": comps}
    if no_comparison:  # the same rows at every decoding: said once
      log(f"[table] {no_comparison}")
    results["human"] = human_row
    run_dirs = list(dict.fromkeys(e["run"] for e in self.per_decoding[decodings[0][0]]))
    results["provenance"], footer = provenance_block(run_dirs)
    md.append(footer)
    files.write_text(os.path.join(self.out_dir, "results.json"),
                     json.dumps(results, indent=1, default=_json_default))
    files.write_text(os.path.join(self.out_dir, "table.md"), "\n".join(md))
    files.write_text(os.path.join(self.out_dir, "table.tex"), "\n".join(tex))
    plots.sentence_lengths(text_metrics.sentence_lengths(self.human), self.lengths,
                           os.path.join(self.out_dir, "sentence_lengths.png"))
    plots.feature_gaps({k: {n: float(np.mean([g[n] for g in v])) for n in v[0]}
                        for k, v in self.gaps.items()},
                       os.path.join(self.out_dir, "feature_gaps.png"))
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
