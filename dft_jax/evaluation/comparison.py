"""Row − SFT on the same prompts: every bootstrapped metric as a function of the drawn
prompt indices (seeds averaged within a replicate), paired bootstrap intervals, the
gap-closed column and the claims' verdicts (intervals.py), and their Markdown; and each DFT
row head to head with the EBFT-style rival, paired the same way."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.stats

from dft_jax.evaluation import drawn, intervals, self_bleu, tables, text_metrics
from dft_jax.evaluation.scored import Decoded, HeldOut, ScoredRun

# Metrics with a paired bootstrap interval, and those that also get a gap-closed column.
BOOTSTRAPPED = ("diversity", "distinct_2", "self_bleu4", "compression_ratio", "degenerate", "zipf",
                "sent_len_mean", "sent_len_var", "sent_len_w1", "unigram_l2", "slop_ratio",
                "feature_sinkhorn", "feature_mmd", "judge_accuracy")
GAP_CLOSED = ("sent_len_var", "feature_sinkhorn", "diversity")
GAP_NAMES = {"sent_len_var": "sentence-length variance", "feature_sinkhorn": "feature Sinkhorn",
             "diversity": "diversity"}
HALF_GAP = 0.5  # the table's target: a row closes at least half of each SFT -> human gap
RIVAL = "EBFT-style"  # the feature-matching rival each DFT row is measured against directly
HEAD_TO_HEAD = ("feature_sinkhorn", "diversity")


def _text_metrics(keys: Sequence[str], texts: Sequence[str], human: Sequence[str]) -> dict:
  """Text metric `key` -> its value on the units `idx` (numpy indices into both lists, repeats
  allowed), each text's words, n-grams and sentences counted once for every draw."""
  per = text_metrics.PerText(texts)
  pick = lambda xs, idx: [xs[i] for i in idx]  # noqa: E731
  out = {}
  for key in keys:  # each key once: the closures below see their own objects
    if key == "self_bleu4":
      out[key] = self_bleu.SelfBleu(texts, 4)
    elif key == "slop_ratio":
      slop = text_metrics.Slop(texts, human)
      out[key] = lambda idx: slop.ratio(idx, idx)
    elif key == "sent_len_w1":
      per_human = text_metrics.PerText(human)
      out[key] = lambda idx: float(scipy.stats.wasserstein_distance(
          per.sentence_lengths(idx), per_human.sentence_lengths(idx, "human texts")))
    else:
      out[key] = {
          "diversity": per.diversity, "degenerate": per.degenerate_rate,
          "sent_len_mean": lambda idx: float(np.mean(per.sentence_lengths(idx))),
          "sent_len_var": lambda idx: float(np.var(per.sentence_lengths(idx), ddof=0)),
          "distinct_2": lambda idx: text_metrics.distinct_n(pick(texts, idx), 2),
          "compression_ratio": lambda idx: text_metrics.compression_ratio(pick(texts, idx)),
          "zipf": lambda idx: text_metrics.zipf_coefficient(pick(texts, idx)),
          "unigram_l2": lambda idx: text_metrics.unigram_l2(pick(texts, idx), pick(human, idx)),
      }[key]
  return out


def _unit_metrics(dec: Decoded, held: HeldOut) -> dict:
  """Every bootstrapped metric of one run at one decoding as a function of the drawn prompt
  indices."""
  space, emb_space, human_NxF = held.space, held.emb_space, held.space.human_NxF
  feats_NxF, emb_NxE = dec.feats_NxF, dec.emb_NxE
  correct_h, correct_m = dec.verdicts["correct_human"], dec.verdicts["correct_model"]
  texts = _text_metrics([k for k in BOOTSTRAPPED if not k.startswith(("feature_", "judge_"))],
                        dec.texts, held.human)
  out = {k: intervals.memo(f) for k, f in texts.items()}
  div = intervals.memo(lambda idx: space.divergences(feats_NxF[idx], human_NxF[idx]),
                       batch=lambda draws: drawn.divergences_of_draws(feats_NxF, human_NxF, draws))
  for k in ("feature_sinkhorn", "feature_mmd"):
    out[k] = intervals.memo(lambda idx, k=k: div(idx)[k], sources=[div])
  out["judge_accuracy"] = intervals.memo(
      lambda idx: 0.5 * (correct_h[idx].mean() + correct_m[idx].mean()))
  if emb_NxE is not None:
    out["embedding_mmd"] = intervals.memo(
        lambda idx: emb_space.divergences(emb_NxE[idx], emb_space.human_NxF[idx])["embedding_mmd"],
        batch=lambda draws: drawn.mmd_of_draws(emb_NxE, emb_space.human_NxF, draws))
  return out


def _seed_mean(fns: Sequence[dict]) -> dict:
  """Metric functions averaged over seeds (the same drawn prompts for every seed)."""
  return {k: intervals.memo(lambda idx, k=k: float(np.mean([f[k](idx) for f in fns])),
                           sources=[f[k] for f in fns])
          for k in fns[0]}


def human_metrics(human: list[str], space, human_feats, human_b_feats) -> dict:
  """The human side of the gap-closed column, as functions of the drawn prompts (one memo for
  every decoding and row): own diversity and sentence-length variance, and the feature
  Sinkhorn floor between the two human sets."""
  out = {k: intervals.memo(f)
         for k, f in _text_metrics(("diversity", "sent_len_var"), human, human).items()}
  out["feature_sinkhorn"] = intervals.memo(
      lambda idx: space.divergences(human_feats[idx], human_b_feats[idx])["feature_sinkhorn"],
      batch=lambda draws: [d["feature_sinkhorn"] for d in drawn.divergences_of_draws(
          human_feats, human_b_feats, draws)])
  return out


def row_metrics(runs: Sequence[ScoredRun], decoding: str, held: HeldOut) -> dict:
  """Every bootstrapped metric of one table row (its runs: seeds, averaged) at `decoding` as
  functions of the drawn prompts."""
  return _seed_mean([_unit_metrics(r.decodings[decoding], held) for r in runs])


def perplexity_ratio(sft_runs: Sequence[ScoredRun], row_runs: Sequence[ScoredRun], reps: int,
                     seed: int) -> dict:
  """{delta, lo, hi} of perplexity(row) / perplexity(SFT) − 1, averaged over the row's seeds,
  each seed against the SFT run of its own seed (the first SFT run when none has it)."""
  ratios = []
  for r in row_runs:
    base = next((s for s in sft_runs if s.seed == r.seed), sft_runs[0]).perplexity
    ratios.append(intervals.ratio_interval(base["nll_per_piece"], base["tokens_per_piece"],
                                           r.perplexity["nll_per_piece"], reps, seed,
                                           base.get("doc_per_piece")))
  return {k: float(np.mean([x[k] for x in ratios])) for k in ("delta", "lo", "hi")}


def _fns_of(runs: Sequence[ScoredRun], decoding: str, held: HeldOut, fns: dict):
  """row -> its row_metrics, memoized in `fns` (one set of memos per row and decoding)."""
  def fns_of(row):
    if row not in fns:
      fns[row] = row_metrics([r for r in runs if r.row == row], decoding, held)
    return fns[row]
  return fns_of


def compare(runs: Sequence[ScoredRun], decoding: str, row: str, sft_fns: dict, held: HeldOut,
            reps: int, seed: int, row_fns: dict | None = None) -> dict:
  """Row `row` − SFT at `decoding` with paired bootstrap intervals, gap closed, and the claims'
  verdicts; sft_fns: SFT's row_metrics (one memo for every compared row), row_fns the row's
  (computed here when None)."""
  sft_runs = [r for r in runs if r.row == "SFT"]
  row_runs = [r for r in runs if r.row == row]
  n = len(held.human)
  row_fns = row_fns or row_metrics(row_runs, decoding, held)
  human_fns = held.human_fns
  draws = intervals.clustered(held.doc_ids_N, reps, seed)
  intervals.prefetch([*sft_fns.values(), *row_fns.values(), *human_fns.values()], draws)
  deltas = {k: intervals.paired(sft_fns[k], row_fns[k], draws, n) for k in sft_fns}
  gaps = {k: intervals.gap_closed(sft_fns[k], row_fns[k], human_fns[k], draws, n)
          for k in GAP_CLOSED}
  deltas["perplexity_ratio"] = ppl_ratio = perplexity_ratio(sft_runs, row_runs, reps, seed)
  verdicts = intervals.claims(sft_fns, row_fns, human_fns, draws, n, ppl_ratio)
  for k in GAP_CLOSED:  # the target: at least half of each resolved gap closed
    g = gaps[k]
    if g["defined"]:
      verdicts.append({"claim": f"closes ≥ {HALF_GAP:.0%} of the {GAP_NAMES[k]} gap",
                       "statistic": f"gap closed, vs {HALF_GAP}", "delta": g["value"],
                       "lo": g["lo"], "hi": g["hi"],
                       "verdict": intervals.verdict(g["lo"], g["hi"], above=HALF_GAP)})
  return {"row": row, "seeds": len(row_runs), "deltas": deltas, "gap_closed": gaps,
          "claims": verdicts}


def compare_all(runs: Sequence[ScoredRun], decoding: str, held: HeldOut, reps: int,
                seed: int, fns: dict | None = None) -> tuple[list[dict], str | None]:
  """(`compare` of every fine-tuned row but SFT and base, in table order; None) or, when there
  is nothing to compare (no SFT row, or no other row), ([], the one-line reason). `fns`: a
  dict that keeps each row's metric memos for head_to_head."""
  rows = list(dict.fromkeys(r.row for r in runs))
  if "SFT" not in rows:
    return [], ("no comparison: none of the runs is an SFT row (a run fine-tuned with loss ce "
                "from init_from, or one labelled RUN_DIR=SFT) to compare against")
  compared = [row for row in rows if row not in ("SFT", "base")]
  if not compared:
    return [], "no comparison: no row besides SFT and base to compare with SFT"
  fns_of = _fns_of(runs, decoding, held, {} if fns is None else fns)
  return [compare(runs, decoding, row, fns_of("SFT"), held, reps, seed, fns_of(row))
          for row in compared], None


def head_to_head(runs: Sequence[ScoredRun], decoding: str, held: HeldOut, reps: int, seed: int,
                 fns: dict | None = None) -> list[dict]:
  """Each DFT row − the EBFT-style row at `decoding` (HEAD_TO_HEAD metrics, the same clustered
  draws as `compare`, seeds averaged within a replicate), with the verdict of "beats
  EBFT-style on the feature Sinkhorn" (its interval below 0); [] without an EBFT-style row."""
  rows = list(dict.fromkeys(r.row for r in runs))
  if RIVAL not in rows:
    return []
  fns_of = _fns_of(runs, decoding, held, {} if fns is None else fns)
  draws, n = intervals.clustered(held.doc_ids_N, reps, seed), len(held.human)
  out = []
  for row in (r for r in rows if r.startswith("DFT")):
    deltas = {k: intervals.paired(fns_of(RIVAL)[k], fns_of(row)[k], draws, n)
              for k in HEAD_TO_HEAD}
    d = deltas["feature_sinkhorn"]
    claim = {"claim": f"beats {RIVAL} on the feature Sinkhorn",
             "statistic": f"{row} − {RIVAL}", **d,
             "verdict": intervals.verdict(-d["hi"], -d["lo"])}  # lower is better
    out.append({"row": row, "rival": RIVAL, "seeds": sum(r.row == row for r in runs),
                "deltas": deltas, "claims": [claim]})
  return out


def head_to_head_markdown(h2h: Sequence[dict], decoding_label: str, reps: int) -> str:
  names = dict((c[0], c[1]) for c in tables.COLUMNS)
  lines = [f"**DFT rows − {RIVAL}, {decoding_label}**: the same paired, document-clustered "
           f"bootstrap ({reps} replicates, 95% intervals).", "",
           "| row | " + " | ".join(f"{names[k]}: row − {RIVAL} | 95% CI" for k in HEAD_TO_HEAD)
           + f" | beats {RIVAL} on the feature Sinkhorn |",
           "|---|" + "---|---|" * len(HEAD_TO_HEAD) + "---|"]
  for h in h2h:
    cells = " | ".join(f"{h['deltas'][k]['delta']:+.4g} | [{h['deltas'][k]['lo']:+.4g}, "
                       f"{h['deltas'][k]['hi']:+.4g}]" for k in HEAD_TO_HEAD)
    lines.append(f"| {h['row']} | {cells} | **{h['claims'][0]['verdict']}** |")
  if any(h["seeds"] == 1 for h in h2h):
    lines += ["", ONE_SEED]
  return "\n".join(lines + [""])


def markdown(comp: dict, decoding_label: str, prompts: int, documents: int, reps: int) -> str:
  names = dict((c[0], c[1]) for c in tables.COLUMNS)
  names["perplexity_ratio"] = "PPL ratio row/SFT − 1"
  lines = [f"**{comp['row']} − SFT, {decoding_label}**: paired bootstrap over {prompts} "
           f"prompts clustered in {documents} documents (documents drawn, then prompts within "
           f"them; {reps} replicates, 95% intervals; seeds averaged within a replicate: "
           f"{comp['seeds']}). Gap closed = (SFT − row) / (SFT − human); for the feature "
           "divergence 'human' is the split-half floor.", "",
           "| metric | row − SFT | 95% CI | gap closed | 95% CI |", "|---|---|---|---|---|"]
  for key, d in comp["deltas"].items():
    g = comp["gap_closed"].get(key)
    gap = ("– | –" if not g else "SFT ≈ human (gap not resolved) | –" if not g["defined"]
           else f"{g['value']:.2f} | [{g['lo']:.2f}, {g['hi']:.2f}]")
    lines.append(f"| {names.get(key, key)} | {d['delta']:+.4g} | [{d['lo']:+.4g}, "
                 f"{d['hi']:+.4g}] | {gap} |")
  lines += ["", f"Verdict ({comp['row']} vs SFT, {decoding_label}; computed from the "
                "intervals):",
            intervals.summarize(comp["claims"]), ""]
  if comp["seeds"] == 1:
    lines += [ONE_SEED, ""]
  return "\n".join(lines)


# under every one-seed verdict: what one seed can say (the same run on another CPU can differ
# in the last bits of its arithmetic, draw other samples, and flip a verdict)
ONE_SEED = ("One seed per row: a preliminary reading, not a finding (another machine's float "
            "arithmetic can flip it); read the claims off a table of several seeds.")
