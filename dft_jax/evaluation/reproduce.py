"""From finished runs to the paper table: sample, evaluate, compare, write table and plots.

Every run continues the same held-out prompts (non-overlapping cuts of the fine-tuning corpus's
test split; tune on validation) with the same sampling seed, at each decoding of DECODINGS;
the human row is the documents' true continuations, and its comparative metrics are measured
against a second, equally large set of human continuations (the noise floor). Perplexity is
measured on test documents. Below each table, for every fine-tuned row but SFT (DFT first):
row − SFT with paired bootstrap intervals over prompts, the gap-closed column and the
article's claims with computed verdicts (intervals.py).
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Sequence

import numpy as np

from dft_jax.data import sources, tokenizer as tokenizer_lib
from dft_jax.evaluation import (intervals, judge, plots, report, samples, tables,
                                 text_metrics)

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
# Metrics with a paired bootstrap interval, and those that also get a gap-closed column.
BOOTSTRAPPED = ("diversity", "distinct_2", "self_bleu4", "compression_ratio", "zipf",
                "sent_len_mean", "sent_len_var", "sent_len_w1", "unigram_l2", "slop_ratio",
                "feature_sinkhorn", "feature_mmd", "judge_accuracy")
GAP_CLOSED = ("sent_len_var", "feature_sinkhorn", "diversity")


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


def _text_metric(key: str, texts: Sequence[str], human: Sequence[str]):
  """Metric `key` on the units `idx` (numpy indices into both lists)."""
  pick = lambda xs, idx: [xs[i] for i in idx]  # noqa: E731
  own = {"diversity": text_metrics.diversity,
         "distinct_2": lambda t: text_metrics.distinct_n(t, 2),
         "self_bleu4": lambda t: text_metrics.self_bleu(t, 4),
         "compression_ratio": text_metrics.compression_ratio,
         "zipf": text_metrics.zipf_coefficient,
         "sent_len_mean": text_metrics.sentence_length_mean,
         "sent_len_var": text_metrics.sentence_length_variance}
  if key in own:
    return lambda idx: float(own[key](pick(texts, idx)))
  pair = {"sent_len_w1": text_metrics.sentence_length_w1,
          "unigram_l2": text_metrics.unigram_l2, "slop_ratio": text_metrics.slop_ratio}[key]
  return lambda idx: float(pair(pick(texts, idx), pick(human, idx)))


def _unit_metrics(texts, human, feats_NxF, human_NxF, space, correct_h, correct_m, emb=None,
                  emb_space=None) -> dict:
  """Every bootstrapped metric of one run as a function of the drawn prompt indices."""
  out = {k: _text_metric(k, texts, human) for k in BOOTSTRAPPED
         if not k.startswith(("feature_", "judge_"))}
  div = intervals.memo(lambda idx: space.divergences(feats_NxF[idx], human_NxF[idx]))
  out["feature_sinkhorn"] = lambda idx: div(idx)["feature_sinkhorn"]
  out["feature_mmd"] = lambda idx: div(idx)["feature_mmd"]
  out["judge_accuracy"] = lambda idx: 0.5 * (correct_h[idx].mean() + correct_m[idx].mean())
  if emb is not None:
    out["embedding_mmd"] = lambda idx: emb_space.divergences(emb[idx], emb_space.human_NxF[idx])[
        "embedding_mmd"]
  return {k: intervals.memo(f) for k, f in out.items()}


def _seed_mean(fns: Sequence[dict]) -> dict:
  """Metric functions averaged over seeds (the same drawn prompts for every seed)."""
  return {k: intervals.memo(lambda idx, k=k: float(np.mean([f[k](idx) for f in fns])))
          for k in fns[0]}


def _sample_and_score(model, tok, prompts, human, human_feats, space, decoding, seed,
                      max_new_tokens, path, emb_space=None):
  conts = samples.continue_prompts(model, prompts, max_new_tokens=max_new_tokens, seed=seed,
                                   eos=samples.eos_id(tok), batch_size=64, **decoding)
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


def _human_metrics(human: list[str], space, human_feats, human_b_feats) -> dict:
  """The human side of the gap-closed column, as functions of the drawn prompts (one memo for
  every decoding and row): own diversity and sentence-length variance, and the feature
  Sinkhorn floor between the two human sets."""
  out = {k: intervals.memo(_text_metric(k, human, human)) for k in ("diversity", "sent_len_var")}
  out["feature_sinkhorn"] = intervals.memo(lambda idx: space.divergences(
      human_feats[idx], human_b_feats[idx])["feature_sinkhorn"])
  return out


def _row_metrics(entries: list[dict], human: list[str], human_feats, space) -> dict:
  """Every bootstrapped metric of one table row (its seeds averaged) as functions of the drawn
  prompts."""
  return _seed_mean([_unit_metrics(r["texts"], human, r["feats"], human_feats, space,
                                   r["verdicts"]["correct_human"], r["verdicts"]["correct_model"],
                                   r.get("emb"), r.get("emb_space"))
                     for r in entries])


def _comparison(decoding_runs: list[dict], sft_fns: dict, row: str, human_fns: dict, ppl: dict,
                reps: int, seed: int, human: list[str], space, human_feats) -> dict:
  """Row `row` − SFT with paired bootstrap intervals, gap closed, and the claims' verdicts."""
  sft = [r for r in decoding_runs if r["row"] == "SFT"]
  dft = [r for r in decoding_runs if r["row"] == row]
  n = len(human)
  fns = {"sft": sft_fns, "dft": _row_metrics(dft, human, human_feats, space)}
  draws = intervals.indices(n, reps, seed)
  intervals.prefetch([fns["sft"]["feature_sinkhorn"], fns["dft"]["feature_sinkhorn"],
                      human_fns["feature_sinkhorn"]], draws)
  deltas = {k: intervals.paired(fns["sft"][k], fns["dft"][k], draws, n) for k in fns["sft"]}
  gaps = {k: intervals.gap_closed(fns["sft"][k], fns["dft"][k], human_fns[k], draws, n)
          for k in GAP_CLOSED}
  ppl_ratio = None
  if ppl:
    base = ppl[sft[0]["run"]]
    ratios = [intervals.ratio_interval(base["nll_per_piece"], base["tokens_per_piece"],
                                       ppl[r["run"]]["nll_per_piece"], reps, seed)
              for r in dft if r["run"] in ppl]
    ppl_ratio = {k: float(np.mean([x[k] for x in ratios])) for k in ("delta", "lo", "hi")}
    deltas["perplexity_ratio"] = ppl_ratio
  verdicts = intervals.claims(fns["sft"], fns["dft"], human_fns, draws, n, ppl_ratio)
  return {"dft_row": dft[0]["row"], "seeds": len(dft), "deltas": deltas, "gap_closed": gaps,
          "claims": verdicts}


def _comparison_markdown(comp: dict, decoding_label: str, prompts: int, reps: int) -> str:
  names = dict((c[0], c[1]) for c in tables.COLUMNS)
  names["perplexity_ratio"] = "PPL ratio DFT/SFT − 1"
  lines = [f"**{comp['dft_row']} − SFT, {decoding_label}**: paired bootstrap over {prompts} "
           f"prompts ({reps} replicates, 95% intervals; seeds averaged within a replicate: "
           f"{comp['seeds']}). Gap closed = (SFT − DFT) / (SFT − human); for the feature "
           "divergence 'human' is the split-half floor.", "",
           "| metric | DFT − SFT | 95% CI | gap closed | 95% CI |", "|---|---|---|---|---|"]
  for key, d in comp["deltas"].items():
    g = comp["gap_closed"].get(key)
    gap = ("– | –" if not g else "SFT ≈ human (gap not resolved) | –" if not g["defined"]
           else f"{g['value']:.2f} | [{g['lo']:.2f}, {g['hi']:.2f}]")
    lines.append(f"| {names.get(key, key)} | {d['delta']:+.4g} | [{d['lo']:+.4g}, "
                 f"{d['hi']:+.4g}] | {gap} |")
  lines += ["", f"Verdict ({comp['dft_row']} vs SFT, {decoding_label}; computed from the "
                "intervals):",
            intervals.summarize(comp["claims"]), ""]
  return "\n".join(lines)


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
  tok = tokenizer_lib.load(os.path.join(runs[0][0], "tokenizer.json"))
  for (workdir, _), c in zip(runs, configs):
    other = tokenizer_lib.load(os.path.join(workdir, "tokenizer.json"))
    if other.fingerprint != tok.fingerprint:
      raise ValueError(f"{workdir} uses another tokenizer than {runs[0][0]}: perplexities and "
                       "features would not be comparable")
  tuned = ([c for c, label in zip(configs, labels) if label != "base"] or configs)[0]["data"]
  corpus, data_dir = corpus or tuned["corpus"], tuned["data_dir"] or None
  prompts_all, human_ids = samples.held_out(corpus, tok, num_prompts=2 * num_prompts,
                                            prompt_len=prompt_len,
                                            continuation_len=max_new_tokens, split=split,
                                            data_dir=data_dir)
  prompts = prompts_all[:num_prompts]
  records = samples.records(tok, prompts_all, human_ids)
  human = [r["text"] for r in records[:num_prompts]]
  human_b = [r["text"] for r in records[num_prompts:]]
  samples.write_jsonl(os.path.join(out_dir, "samples", "human.jsonl"), records[:num_prompts])
  docs = sources.documents(corpus, split, data_dir)
  ppl_texts = [docs[i] for i in range(min(ppl_docs, len(docs)))]
  space = report.FeatureSpace(human, tok, max_new_tokens)
  human_feats, human_b_feats = space.human_NxF, space(human_b)
  human_fns = _human_metrics(human, space, human_feats, human_b_feats)
  log(f"[table] {len(runs)} runs, {len(prompts)} prompts of {corpus} ({split}) x "
      f"{len(decodings)} decodings, {max_new_tokens} new tokens, sampling seed {seed}")

  from dft_jax.train import checkpoint
  emb_space = None
  if embedding_run:  # a stated model, the same for every row (default: the first run's)
    emb_model, _ = checkpoint.load_model(embedding_run)
    emb_space = report.EmbeddingSpace(emb_model, tok, human, max_new_tokens,
                                      name=f"{os.path.basename(os.path.normpath(embedding_run))}"
                                           f" final layer, mean pooling")
  per_decoding = {label: [] for label, _ in decodings}
  ppl, lengths, gaps = {}, {}, {}
  for i, ((workdir, _), config, label) in enumerate(zip(runs, configs, labels)):
    model, _ = checkpoint.load_model(workdir)
    scored = report.perplexity(model, tok, ppl_texts, per_piece=True, max_pieces=ppl_pieces)
    ppl[workdir] = scored
    name = os.path.basename(os.path.normpath(workdir))
    for d, (dlabel, decoding) in enumerate(decodings):
      path = os.path.join(out_dir, "samples", f"{name}.{d}.jsonl")
      texts, feats, metrics, verdicts, emb = _sample_and_score(
          model, tok, prompts, human, human_feats, space, decoding, seed, max_new_tokens, path,
          emb_space)
      metrics.update(perplexity=scored["perplexity"], ppl_tokens=scored["ppl_tokens"])
      per_decoding[dlabel].append({"row": label, "run": workdir,
                                   "seed": int(config.get("seed", 0)), "metrics": metrics,
                                   "texts": texts, "feats": feats, "verdicts": verdicts,
                                   "emb": emb, "emb_space": emb_space})
      if d == 0:
        gaps.setdefault(label, []).append(space.gaps(feats))
        lengths.setdefault(label, []).extend(text_metrics.sentence_lengths(texts).tolist())
      log(f"[table] {i + 1}/{len(runs)} {label} ({dlabel}): ppl {scored['perplexity']:.2f} | "
          f"diversity {metrics['diversity']:.3f} | sent. len. var "
          f"{metrics['sent_len_var']:.1f} | sinkhorn {metrics['feature_sinkhorn']:.2f} | "
          f"judge {metrics['judge_accuracy']:.2f} ({time.time() - start:.0f}s)")
  human_row = {"row": "human", **report.human_reference(human, space, seed=seed, other=human_b,
                                                        embedding_space=emb_space)}

  md, tex, results, tables_out = [], [], {"corpus": corpus, "split": split, "decodings": {}}, {}
  for d, (dlabel, entries) in enumerate(per_decoding.items()):
    texts_of = {e["run"]: e["texts"] for e in entries}
    rows = [{"row": e["row"], "run": e["run"], "seed": e["seed"], **e["metrics"]}
            for e in entries]
    for r in rows:
      other = _compare_to(r["row"], r["seed"], rows)
      if r["row"] == "SFT":
        r["win_rate"] = 0.5  # against itself: every pair ties
      elif other is not None:
        duel = judge.pairwise(human, texts_of[r["run"]], texts_of[other["run"]], seed=seed,
                              folds=min(5, len(human)))
        r["win_rate"], r["judge_vs_sft"] = duel["win_rate"], {"against": other["run"], **duel}
    table = tables_out[dlabel] = tables.aggregate(rows + [human_row])
    compared = [] if not any(e["row"] == "SFT" for e in entries) else list(dict.fromkeys(
        e["row"] for e in entries if e["row"] not in ("SFT", "base")))
    sft_fns = _row_metrics([e for e in entries if e["row"] == "SFT"], human, human_feats, space)
    comps = [_comparison(entries, sft_fns, row, human_fns, ppl, bootstrap, seed, human, space,
                         human_feats) for row in compared]
    caption = (f"{corpus} ({split} split), decoding {dlabel}: {len(prompts)} held-out prompts "
               f"({prompt_len} tokens, non-overlapping cuts), {max_new_tokens} new tokens; "
               f"mean ± sd over seeds. Judge = classifier proxy for human preference. PPL on "
               f"{rows[0]['ppl_tokens']} tokens of {len(ppl_texts)} {split} documents. Human row: "
               "its own metrics; comparative "
               f"ones against a second human set of {len(human_b)} continuations (the noise "
               "floor)." + (f" Embeddings: {emb_space.name}." if emb_space else ""))
    md.append(f"### {dlabel}\n\n" + tables.markdown(table, reported=reported and d == 0,
                                                     caption=caption))
    tex.append(tables.latex(table, reported=False, caption=caption))
    for comp in comps:
      md.append(_comparison_markdown(comp, dlabel, len(prompts), bootstrap))
      log(f"[table] {comp['dft_row']} − SFT, {dlabel}: verdict\n" +
          intervals.summarize(comp["claims"]))
    results["decodings"][dlabel] = {"runs": rows, "comparisons": comps}
  results["human"] = human_row
  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=1, default=_json_default)
  with open(os.path.join(out_dir, "table.md"), "w") as f:
    f.write("\n".join(md))
  with open(os.path.join(out_dir, "table.tex"), "w") as f:
    f.write("\n".join(tex))
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
  return tables_out


def _json_default(x):
  if isinstance(x, np.ndarray):
    return x.tolist()
  if isinstance(x, (np.floating, np.integer, np.bool_)):
    return x.item()
  raise TypeError(type(x).__name__)
