"""Evaluation like a paper: text metrics, the judge, feature-space divergences,
perplexity, paired comparisons, tables and plots.

  text_metrics.py   rep-n, diversity, distinct-n, Zipf, sentence lengths, unigram L2,
                    compression, slop, MAUVE (ngrams.py: words and n-grams; self_bleu.py)
  judge.py          a human-vs-model classifier: two-sample accuracy and pairwise win rate
                    (judge_features, judge_classifier, judge_accuracy, judge_pairwise)
  report.py         everything above for one set of samples against a human reference
  samples.py        held-out prompts and a run's continuations of them
  intervals.py      paired bootstrap intervals, gap closed, computed verdicts
  comparison.py     row − SFT on the same prompts, with intervals and verdicts
  tables.py         Markdown / LaTeX tables with mean ± sd over seeds
  plots.py          sentence-length histograms, per-feature gaps, training curves
  scored.py         typed values a table is built from: held-out set, scored runs
  reproduce.py      finished runs -> the paper table
"""
