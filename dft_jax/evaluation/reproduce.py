"""From finished runs to the paper table: sample, evaluate, compare, write table and plots.

Every run continues the same held-out prompts (the fine-tuning corpus's validation split) with
the same sampling seed; the human row is the documents' true continuations. Perplexity is
measured on whole validation documents with the runs' (shared) tokenizer.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Sequence

import numpy as np

from dft_jax.data import sources, tokenizer as tokenizer_lib
from dft_jax.evaluation import judge, plots, report, samples, tables, text_metrics

NAMES = {"mixce": "MixCE", "tailr": "TaiLr", "emo": "EMO"}


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


def reproduce(runs: Sequence[tuple[str, str | None]], out_dir: str, *, corpus: str | None = None,
              num_prompts: int = 64, prompt_len: int = 16, max_new_tokens: int = 64,
              seed: int = 0, ppl_docs: int = 64, reported: bool = True,
              log: Callable[[str], None] = print) -> dict:
  """Evaluates (workdir, row label or None) pairs; writes results.json, table.md, table.tex
  and PNG plots into `out_dir`; returns the aggregated table."""
  if not runs:
    raise ValueError("no runs to tabulate")
  start = time.time()
  os.makedirs(os.path.join(out_dir, "samples"), exist_ok=True)
  configs = [samples.run_config(w) for w, _ in runs]
  labels = [label or row_label(c) for (_, label), c in zip(runs, configs)]
  tok = tokenizer_lib.load(os.path.join(runs[0][0], "tokenizer.json"))
  for (workdir, _), c in zip(runs, configs):
    other = tokenizer_lib.load(os.path.join(workdir, "tokenizer.json"))
    if other.fingerprint != tok.fingerprint:
      raise ValueError(f"{workdir} uses another tokenizer than {runs[0][0]}: perplexities and "
                       "features would not be comparable")
  tuned = ([c for c, label in zip(configs, labels) if label != "base"] or configs)[0]["data"]
  corpus, data_dir = corpus or tuned["corpus"], tuned["data_dir"] or None
  prompts, human_ids = samples.held_out(corpus, tok, num_prompts=num_prompts,
                                        prompt_len=prompt_len, continuation_len=max_new_tokens,
                                        data_dir=data_dir)
  human = [r["text"] for r in samples.records(tok, prompts, human_ids)]
  samples.write_jsonl(os.path.join(out_dir, "samples", "human.jsonl"),
                      samples.records(tok, prompts, human_ids))
  docs = sources.documents(corpus, "validation", data_dir)
  ppl_texts = [docs[i] for i in range(min(ppl_docs, len(docs)))]
  space = report.FeatureSpace(human, tok, max_new_tokens)
  log(f"[table] {len(runs)} runs, {len(prompts)} prompts of {corpus} (validation), "
      f"{max_new_tokens} new tokens, sampling seed {seed}")

  from dft_jax.train import checkpoint
  results, texts_of, lengths, gaps = [], {}, {}, {}
  for i, ((workdir, _), config, label) in enumerate(zip(runs, configs, labels)):
    model, _ = checkpoint.load_model(workdir)
    conts = samples.continue_prompts(model, prompts, max_new_tokens=max_new_tokens, seed=seed,
                                     eos=samples.eos_id(tok))
    rows = samples.records(tok, prompts, conts)
    name = os.path.basename(os.path.normpath(workdir))
    samples.write_jsonl(os.path.join(out_dir, "samples", f"{name}.jsonl"), rows)
    texts = texts_of[workdir] = [r["text"] for r in rows]
    metrics = report.evaluate(texts, human, feature_space=space, seed=seed)
    metrics.update(report.perplexity(model, tok, ppl_texts))
    feats = space(texts)
    gaps.setdefault(label, []).append(space.gaps(feats))
    lengths.setdefault(label, []).extend(text_metrics.sentence_lengths(texts).tolist())
    results.append({"row": label, "run": workdir, "seed": int(config.get("seed", 0)),
                    **metrics})
    log(f"[table] {i + 1}/{len(runs)} {label}: {workdir} | ppl {metrics['perplexity']:.1f} | "
        f"diversity {metrics['diversity']:.3f} | sinkhorn {metrics['feature_sinkhorn']:.2f} | "
        f"judge {metrics['judge_accuracy']:.2f} ({time.time() - start:.0f}s)")
  for r in results:
    other = _compare_to(r["row"], r["seed"], results)
    if r["row"] == "SFT":
      r["win_rate"] = 0.5  # against itself: every pair ties
    elif other is not None:
      duel = judge.pairwise(human, texts_of[r["run"]], texts_of[other["run"]], seed=seed,
                            folds=min(5, len(human)))
      r["win_rate"], r["judge_vs_sft"] = duel["win_rate"], {"against": other["run"], **duel}
  human_row = {"row": "human", **report.human_reference(human, space, seed=seed)}

  table = tables.aggregate(results + [human_row])
  caption = (f"{corpus}: {len(prompts)} held-out prompts, {max_new_tokens} new tokens, "
             f"temperature 1; mean ± sd over seeds. Judge = classifier proxy for human "
             f"preference. PPL on {len(ppl_texts)} validation documents. Human row: comparative "
             f"metrics between its two halves (the noise floor).")
  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump({"corpus": corpus, "runs": results, "human": human_row}, f, indent=1)
  with open(os.path.join(out_dir, "table.md"), "w") as f:
    f.write(tables.markdown(table, reported=reported, caption=caption))
  with open(os.path.join(out_dir, "table.tex"), "w") as f:
    f.write(tables.latex(table, reported=reported, caption=caption))
  plots.sentence_lengths(text_metrics.sentence_lengths(human), lengths,
                         os.path.join(out_dir, "sentence_lengths.png"))
  plots.feature_gaps({k: {n: float(np.mean([g[n] for g in v])) for n in v[0]}
                      for k, v in gaps.items()}, os.path.join(out_dir, "feature_gaps.png"))
  first = {}
  for (workdir, _), label in zip(runs, labels):
    first.setdefault(label, workdir)
  plots.training_curves({k: training_curve(w) for k, w in first.items()},
                        os.path.join(out_dir, "training_curves.png"))
  log(f"[table] wrote table.md, table.tex, results.json, 3 plots to {out_dir} "
      f"({time.time() - start:.0f}s)")
  return table
